"""`tower policy`, one concept per module: the `commands`, the `governance` flow, the
`policy_topic` they read and write, operators' `signing_keys`, the `whatif_input`, and the
commands' `errors`."""
