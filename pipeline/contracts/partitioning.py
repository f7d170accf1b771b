"""Producers must place a customer's records where the workers expect them.

Faust (aiokafka) and Java clients hash keys with murmur2; librdkafka's default is CRC32.
Table routing and per-customer partition lookups assume murmur2, so every producer of
`agent-events` should use the Java default partitioner.
"""

JAVA_PARTITIONER: dict[str, str] = {"partitioner": "murmur2_random"}
