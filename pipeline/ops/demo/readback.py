"""Reading the demo's outputs back until every input has its final decision."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import click
from confluent_kafka import TopicPartition

from pipeline.contracts.codec import decode_record
from pipeline.kafka import clients
from pipeline.kafka.schema_registry import lookup_for
from pipeline.settings import Settings


@dataclass
class Outputs:
    audits: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    action_ids: list[str] = field(default_factory=list)


def read_outputs(settings: Settings, expected: int, timeout: float) -> Outputs:
    """Read the demo's outputs until every input has its final decision (or time runs out),
    then on to the end of every output partition, so that actions written together with the
    last audit records are counted too.

    An input counts once it has an audit record citing it or a dead letter; a held proposal
    also needs its final record, which comes when its hold is released."""
    t = settings.topics
    roles = {t.approved: "approved_action", t.audit: "audit_record", t.deadletter: "dead_letter"}
    partitions = [TopicPartition(topic, p) for topic in roles for p in range(settings.partitions)]
    consumer = clients.reader(settings, "demo-summary", **{"auto.offset.reset": "earliest"})
    out = Outputs()
    covered: set[tuple[int, int]] = set()
    held: set[str] = set()
    final: set[str] = set()

    def read(batch: list[Any]) -> None:
        for msg in batch:
            if msg.error():
                continue
            name = roles[msg.topic()]
            record = decode_record(name, msg.value(), lookup_for(settings))
            if name == "approved_action":
                out.action_ids.append(record["action_id"])
                continue
            if name == "dead_letter":
                out.dead_letters.append(record)
            else:
                out.audits.append(record)
                (held if record["outcome"] == "held" else final).add(record["decision_id"])
            if record["source_topic"] == t.events:
                covered.add((record["source_partition"], record["source_offset"]))

    try:
        consumer.assign(partitions)
        deadline = time.monotonic() + timeout
        with click.progressbar(length=expected, label="waiting for decisions  ") as bar:
            while time.monotonic() < deadline:
                before = len(covered)
                read(consumer.consume(1000, 0.5))
                bar.update(len(covered) - before)
                if len(covered) >= expected and held <= final:
                    break
        # The end of every partition, twice in a row: nothing written with the last decisions
        # is still on its way.
        caught_up = 0
        drain_until = time.monotonic() + 10
        while caught_up < 2 and time.monotonic() < drain_until:
            ends = [consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in partitions]
            positions = [max(p.offset, 0) for p in consumer.position(partitions)]
            if all(pos >= end for pos, end in zip(positions, ends, strict=True)):
                caught_up += 1
                time.sleep(0.3)
            else:
                caught_up = 0
                read(consumer.consume(1000, 0.2))
    finally:
        consumer.close()
    return out
