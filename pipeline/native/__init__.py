"""The native engine: the worker on plain confluent-kafka, with Kafka transactions.

Same `BatchProcessor`, same topics and changelog as the Faust engine (so a deployment can
switch engines), but outputs, state changelog and consumed offsets commit atomically.
"""
