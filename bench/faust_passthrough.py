"""The baseline: a naive Faust agent that consumes each record and re-sends it.

What a user of Faust gets without thought; run as a process by `bench.throughput`.
"""

from __future__ import annotations

import os

import faust


def main() -> None:
    app = faust.App(
        os.environ["BENCH_APP_ID"],
        broker=f"kafka://{os.environ['BENCH_BOOTSTRAP']}",
        store="memory://",
        web_enabled=False,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        datadir=os.environ.get("BENCH_DATA_DIR", "var/bench-faust"),
    )
    source = app.topic(os.environ["BENCH_SOURCE"], key_type=bytes, value_type=bytes)
    sink = app.topic(os.environ["BENCH_SINK"], key_type=bytes, value_type=bytes)

    @app.agent(source)
    async def passthrough(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await sink.send(key=event.key, value=event.value)

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
