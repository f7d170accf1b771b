"""The pure murmur2 partitioner agrees with aiokafka's (the Java default) on any key."""

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.partitioning import key_partition, murmur2


@given(st.binary(max_size=64))
def test_murmur2_matches_aiokafka(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@given(st.text(max_size=40), st.integers(min_value=1, max_value=64))
def test_key_partition_in_range_and_stable(customer_id: str, partitions: int) -> None:
    key = customer_id.encode()
    p = key_partition(key, partitions)
    assert 0 <= p < partitions
    assert p == (aiokafka_murmur2(key) & 0x7FFFFFFF) % partitions
