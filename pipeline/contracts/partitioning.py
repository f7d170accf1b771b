"""Producers must place a customer's records where the workers expect them.

Faust (aiokafka) and Java clients hash keys with murmur2; librdkafka's default is CRC32.
Table routing and per-customer partition lookups assume murmur2, so every producer of
`agent-events` should use the Java default partitioner.
"""

from __future__ import annotations

JAVA_PARTITIONER: dict[str, str] = {"partitioner": "murmur2_random"}

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), as an unsigned
    32-bit int, like aiokafka's."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def key_partition(key: bytes, partitions: int) -> int:
    """The Java default partitioner: positive murmur2 of the key modulo the partitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
