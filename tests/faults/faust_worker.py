"""`tower worker` on the Faust runtime with faults injected into faust-streaming itself.

Run as `python -m tests.faults.faust_worker worker ...` by the reproduction tests. The
faults are chosen by environment variables, so the product's code holds no test hooks.

`TOWER_FAULT_STALE_FETCH=1`: after each seek to the committed offsets that follows a
recovery, the first fetch of each stream partition loses its first half: the stream's
first record after the seek lies past the committed offset. That is what the Faust
runtime's restart logs show when it loses records ("gap agent-events/0 251..412" right
after "Seek stream partitions to committed offsets"; the records in between had been
fetched before the seek and were cleared from the agent's queue, and their re-fetch is
dropped below the read offset). faust-streaming 0.15.3 records the jump as a gap, folds
it into the acknowledged offsets and commits past it: those records are never decided
(docs/faust-offsets.md). A worker that checks the sequence itself seeks back instead.

`TOWER_FAULT_LOG` names a file that gets one line per injected fault, gap, dropped
record batch and offset commit, for the test's diagnosis.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def _log(line: str) -> None:
    path = os.environ.get("TOWER_FAULT_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{time.time():.3f} {os.getpid()} {line}\n")


def install() -> None:
    from faust.transport import consumer as faust_consumer
    from faust.transport.drivers import aiokafka as faust_aiokafka

    stale = os.environ.get("TOWER_FAULT_STALE_FETCH") == "1"
    base = faust_consumer.Consumer
    perform_seek, commit_offsets, add_gap = base.perform_seek, base._commit_offsets, base._add_gap
    getmany = faust_aiokafka.Consumer._getmany
    #: stream partitions whose first fetch after the seek is still to be cut
    to_cut: set[Any] = set()

    async def seek_then_cut(self: Any) -> None:
        await perform_seek(self)
        if stale:
            to_cut.update(tp for tp in self.assignment() if not tp.topic.endswith("changelog"))

    async def cut_getmany(self: Any, active_partitions: Any, timeout: float) -> Any:
        records = await getmany(self, active_partitions, timeout)
        for tp in [tp for tp in records if tp in to_cut and len(records[tp]) >= 2]:
            to_cut.discard(tp)
            batch = records[tp]
            half = len(batch) // 2
            records[tp] = batch[half:]
            _log(
                f"stale fetch {tp.topic}/{tp.partition}: starts at {batch[half].offset}, "
                f"{batch[0].offset}..{batch[half - 1].offset} not delivered"
            )
        return records

    async def logged_add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        _log(f"gap {tp.topic}/{tp.partition} {offset_from}..{offset_to}")
        await add_gap(self, tp, offset_from, offset_to)

    async def logged_commit(self: Any, offsets: Any, start_new_transaction: bool = True) -> Any:
        _log("commit " + " ".join(f"{tp.topic}/{tp.partition}={o}" for tp, o in offsets.items()))
        return await commit_offsets(self, offsets, start_new_transaction)

    base.perform_seek = seek_then_cut
    base._commit_offsets = logged_commit
    base._add_gap = logged_add_gap
    faust_aiokafka.Consumer._getmany = cut_getmany


if __name__ == "__main__":
    install()
    from pipeline.ops.cli import main

    sys.argv[0] = "tower"
    main()
