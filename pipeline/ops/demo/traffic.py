"""The demo's traffic: the simulated agents' records, produced at a steady rate or as fast
as the broker takes them."""

from __future__ import annotations

import time
from collections.abc import Iterable

import click

from pipeline.contracts.codec import encode_event
from pipeline.contracts.events import AgentEvent
from pipeline.contracts.partitioning import JAVA_PARTITIONER
from pipeline.kafka import clients
from pipeline.ops.simulator import MALFORMED, ShowcaseSimulator
from pipeline.settings import Settings


def produce(
    settings: Settings, sim: ShowcaseSimulator, seconds: float, rate: int, malformed: int
) -> int:
    """Send the agents' records at `rate` per second; return how many were sent.

    The producer is closed before returning, so no client outlives the broker."""
    producer = clients.producer(
        settings, **JAVA_PARTITIONER, **{"linger.ms": 5, "logger": clients.QUIET}
    )
    produced = 0
    total = int(seconds * rate)
    bad_every = max(1, total // max(1, malformed)) if malformed else 0
    records = list(sim.opening())
    started = time.monotonic()
    try:
        with click.progressbar(length=total, label="agents proposing       ") as bar:
            while produced < total:
                if not records:
                    records = sim.step()
                rec = records.pop(0)
                value = rec.value
                if bad_every and produced % bad_every == bad_every - 1:
                    value = MALFORMED[(produced // bad_every) % len(MALFORMED)]
                producer.produce(settings.topics.events, key=rec.key, value=value)
                producer.poll(0)
                produced += 1
                bar.update(1)
                ahead = produced / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        if producer.flush(30):
            raise click.ClickException("the broker did not take every record within 30 s")
    finally:
        close = getattr(producer, "close", None)  # older confluent-kafka: closed when dropped
        if close is not None:
            close()
    return produced


def send(settings: Settings, events: Iterable[AgentEvent], label: str) -> int:
    """Produce `events` as fast as the broker takes them; return how many."""
    events = list(events)
    producer = clients.producer(
        settings, **JAVA_PARTITIONER, **{"linger.ms": 5, "logger": clients.QUIET}
    )
    try:
        with click.progressbar(events, label=f"{label:<23}") as bar:
            for event in bar:
                value = encode_event(event)
                producer.produce(
                    settings.topics.events, key=event.customer_id.encode(), value=value
                )
                producer.poll(0)
        if producer.flush(30):
            raise click.ClickException("the broker did not take every record within 30 s")
    finally:
        close = getattr(producer, "close", None)
        if close is not None:
            close()
    return len(events)
