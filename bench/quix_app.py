"""The peer: Tower's core rule subset built with Quix Streams (quixstreams on PyPI).

What a Quix Streams user would write: an `Application` (confluent-kafka underneath, RocksDB
state with a changelog topic), a custom deserializer calling Tower's own `decode_event`
(so the inputs, Avro and JSON, are read exactly as Tower reads them), one stateful
`apply` running `bench.quix_rules.decide` on Quix's `State`, and the outputs to two topics
with Quix's default JSON serializer: an audit record per input, an action per approval.

Runs in `.venv-quix` (`make bench-quix-deps`; quixstreams pins an older confluent-kafka
than Tower's), started by `bench.throughput` with the repository on PYTHONPATH. It only
imports `pipeline.contracts` (fastavro, msgspec, orjson) and `bench.quix_rules` of this repository.

Environment (as for `bench/raw_loop.py`): BENCH_BOOTSTRAP, BENCH_APP_ID (the consumer
group), BENCH_SOURCE, BENCH_SINK (audit), BENCH_ACTIONS, BENCH_DATA_DIR (RocksDB),
BENCH_GUARANTEE (`exactly-once` or `at-least-once`, Quix's default), and
BENCH_COMMIT_INTERVAL in seconds (unset: Quix's default, 5 s).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from quixstreams import Application, State
from quixstreams.models import Deserializer, SerializationContext
from quixstreams.models.serializers.exceptions import IgnoreMessage

from bench.quix_rules import decide
from pipeline.contracts.codec import InvalidEvent, decode_event
from pipeline.contracts.events import AgentEvent

log = logging.getLogger("bench.quix_app")


class KeyPassThrough(Deserializer):
    """The key as bytes (Quix's default), also kept for `EventDeserializer`: Quix reads a
    message's key just before its value, and `decode_event` checks the key is the customer."""

    def __init__(self) -> None:
        super().__init__()
        self.last: bytes | None = None

    def __call__(self, value: bytes, ctx: SerializationContext) -> bytes:
        self.last = value
        return value


class EventDeserializer(Deserializer):
    """Tower's `decode_event` as a Quix deserializer; an invalid record is skipped (Quix's
    `IgnoreMessage`), where Tower dead-letters it."""

    def __init__(self, keys: KeyPassThrough) -> None:
        super().__init__()
        self.keys = keys

    def __call__(self, value: bytes, ctx: SerializationContext) -> AgentEvent:
        key, self.keys.last = self.keys.last, None  # a keyless record finds None
        try:
            return decode_event(key, value)
        except InvalidEvent as exc:
            log.warning("skipping an invalid record on %s: %s", ctx.topic, exc)
            raise IgnoreMessage(str(exc)) from None


def wall_clock(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    """Stamp each row with the time it is processed. Quix gives outputs their input's
    timestamp; the benchmark reads throughput from the outputs' timestamps, and the backlog's
    were all written before the contender started."""
    return int(time.time() * 1000)


def outputs(event: AgentEvent, state: State) -> list[dict[str, Any]]:
    """The action (if approved), then the audit record."""
    audit, action = decide(state, event)
    return [audit] if action is None else [action, audit]


def build() -> Application:
    env = os.environ
    extra: dict[str, Any] = {}
    if env.get("BENCH_COMMIT_INTERVAL"):
        extra["commit_interval"] = float(env["BENCH_COMMIT_INTERVAL"])
    app = Application(
        broker_address=env["BENCH_BOOTSTRAP"],
        consumer_group=env["BENCH_APP_ID"],
        auto_offset_reset="earliest",  # the backlog is there before the app starts
        processing_guarantee=env.get("BENCH_GUARANTEE", "at-least-once"),
        state_dir=env.get("BENCH_DATA_DIR", "var/bench-quix"),
        loglevel=env.get("BENCH_LOGLEVEL", "INFO"),
        **extra,
    )
    keys = KeyPassThrough()
    events = app.topic(
        env["BENCH_SOURCE"],
        key_deserializer=keys,
        value_deserializer=EventDeserializer(keys),
        timestamp_extractor=wall_clock,
    )
    audit = app.topic(env["BENCH_SINK"])  # JSON values, bytes keys: Quix's defaults
    actions = app.topic(env["BENCH_ACTIONS"])

    def topic_of(value: dict[str, Any], key: Any, timestamp: int, headers: Any) -> Any:
        return audit if "outcome" in value else actions

    sdf = app.dataframe(events)
    sdf = sdf.apply(outputs, stateful=True, expand=True)
    sdf.to_topic(topic_of)
    return app


def main() -> None:
    build().run()  # until SIGTERM, which Quix handles: it commits and closes


if __name__ == "__main__":
    main()
