"""Ask the broker what a partition holds at an offset, with a consumer of its own.

The sequence guard moves a position over offsets without records (transaction markers,
compaction, retention) only on this answer, never on what the worker's consumer happened
to deliver.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, TopicPartition


def first_record_at(
    bootstrap: str, topic: str, partition: int, offset: int, timeout_s: float = 5.0
) -> tuple[int | None, int]:
    """(offset of the first record at or after `offset`, or None if there is none before
    the log end; the log end). If the broker does not answer in time: (`offset`, end),
    i.e. "assume a record is there", so the caller never skips on a missing answer."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "journey-tower-probe",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # what the Faust runtime's consumer sees (it reads uncommitted, like aiokafka's
            # default): the same records, the same holes
            "isolation.level": "read_uncommitted",
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s
        )
        start = max(offset, low)
        if start >= high:
            return None, high
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error() is None:
                return msg.offset(), high
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return None, high
        return offset, high
    finally:
        consumer.close()
