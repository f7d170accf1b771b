"""Taking a batch from a confluent-kafka consumer without waiting to fill it.

`Consumer.consume(n, timeout)` blocks until it has n records or the timeout passed, so at
any rate below n per timeout every batch waits the whole timeout: 50 ms of latency added
for nothing. Taking what is queued, and blocking only while nothing is, lets batches grow
with the load instead: records arriving while a batch is decided and committed form the
next one.
"""

from __future__ import annotations

from confluent_kafka import Consumer, Message


def take_available(consumer: Consumer, max_records: int, wait_s: float) -> list[Message]:
    """Up to `max_records` already queued; if none, wait up to `wait_s` for the first."""
    msgs = consumer.consume(max_records, 0)
    if msgs:
        return msgs  # type: ignore[no-any-return]
    first = consumer.poll(wait_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
