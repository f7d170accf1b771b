"""`tower worker` that decides nothing while a file exists: a stuck-but-alive worker.

Run as `python -m tests.faults.stalled_worker worker ...` by the probe tests. The fault
is chosen by an environment variable, so the product's code holds no test hooks.

`TOWER_FAULT_STALL_FILE` names the file. While it exists, on the Faust runtime the task
that decides agent-events waits before taking its next batch (the event loop and the web
server keep running; records are fetched and wait), and on the transactional runtime the
decision thread sleeps before deciding a batch (the web server's thread keeps answering).
Deciding resumes once the file is removed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any


def install() -> None:
    from pipeline.runtime.faust.inbox import Inbox
    from pipeline.runtime.transactional.engine import TransactionalEngine

    path = os.environ["TOWER_FAULT_STALL_FILE"]
    take, decide = Inbox.take, TransactionalEngine._decide

    async def stalled_take(self: Inbox, max_records: int) -> list[Any]:
        while os.path.exists(path):
            await asyncio.sleep(0.1)
        return await take(self, max_records)

    def stalled_decide(self: TransactionalEngine, plan: Any) -> None:
        while os.path.exists(path):
            time.sleep(0.1)
        decide(self, plan)

    Inbox.take = stalled_take  # type: ignore[method-assign]
    TransactionalEngine._decide = stalled_decide  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    from pipeline.ops.cli import main

    sys.argv[0] = "tower"
    main()
