"""Fetched input records waiting to be decided, between the consumer's drain loop and the
worker.

The worker takes everything waiting (up to a batch) each time, so while it awaits a
batch's acknowledgements the next fetches gather into one batch instead of queueing as
many small ones, each of which would wait for acknowledgements of its own. The drain loop
adds without waiting until `limit` records are waiting: a drain loop that waits leaves
aiokafka's fetched records unread, and aiokafka leaves those partitions out of its next
fetch, so their new records would wait for the one after.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Inbox:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._records: list[Any] = []
        self._added = asyncio.Event()
        self._taken = asyncio.Event()

    def __len__(self) -> int:
        return len(self._records)

    async def put(self, records: list[Any]) -> None:
        """Add a fetch's records; waits while `limit` records or more are waiting (the
        back-pressure that stops fetching)."""
        while len(self._records) >= self.limit:
            self._taken.clear()
            await self._taken.wait()
        self._records.extend(records)
        self._added.set()

    async def take(self, max_records: int) -> list[Any]:
        """The oldest waiting records, at most `max_records`; waits for one if none."""
        while not self._records:
            self._added.clear()
            await self._added.wait()
        taken, self._records = self._records[:max_records], self._records[max_records:]
        self._taken.set()
        return taken
