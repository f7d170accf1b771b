"""`tower demo`, one concept per module: the `command`, its child `processes`, the agents'
`traffic`, the `readback` of the outputs, the pure `summary` of them, and the `impact` run."""
