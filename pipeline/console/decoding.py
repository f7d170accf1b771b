"""Audit records decoded in other processes: Avro decoding is most of the ingest's CPU, and
one Python process decodes about 15,000 audit records a second. Each chunk comes back as an
Arrow table in Arrow's IPC format, which the ingest inserts without touching a row.

Registry-framed records need the schema registry's writer schemas, so with a registry the
ingest decodes in its own process instead (`Ingest`).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

import pyarrow as pa

from pipeline.console.store import audit_row, audit_table
from pipeline.contracts.codec import decode_record

#: (partition, offset, value) of one audit record
Item = tuple[int, int, bytes]


def decode_chunk(items: list[Item]) -> tuple[bytes, int]:
    """The chunk's rows as an Arrow IPC stream, and how many did not decode."""
    rows = []
    bad = 0
    for partition, offset, value in items:
        try:
            rows.append(audit_row(partition, offset, decode_record("audit_record", value)))
        except ValueError:
            bad += 1
    table = audit_table(rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes(), bad


def table_of(ipc: bytes) -> pa.Table:
    return pa.ipc.open_stream(ipc).read_all()


def _exit_with(parent: int) -> None:
    """In a decoding process: exit when the console does, even when it was killed."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class Decoders:
    """A pool of decoding processes (spawned: the console's threads are not forked)."""

    def __init__(self, processes: int | None = None) -> None:
        n = processes or min(4, os.cpu_count() or 1)
        self.pool = ProcessPoolExecutor(
            n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with,
            initargs=(os.getpid(),),
        )
        self.processes = n

    def submit(self, items: list[Item]) -> Future[tuple[bytes, int]]:
        return self.pool.submit(decode_chunk, items)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
