"""Calls handed to the web server's event loop from other threads, many per wake-up.

The processor settles the requests waiting for its decisions from its own thread, a batch
of them at a time, and the producer's poller reports deliveries from another. Each
`call_soon_threadsafe` writes to the loop's wake-up pipe and costs a system call on both
sides; queueing the calls and waking the loop only when no wake-up is pending yet turns a
batch of decisions into one wake-up.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any


class LoopCalls:
    """`calls(fn, arg)`: run `fn(arg)` on `loop` soon, from any thread, in the order given."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queued: list[tuple[Callable[[Any], None], Any]] = []
        self._lock = threading.Lock()

    def __call__(self, fn: Callable[[Any], None], arg: Any) -> None:
        with self._lock:
            self._queued.append((fn, arg))
            if len(self._queued) > 1:  # a wake-up is pending: it runs this call too
                return
        try:
            self.loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is closed: nobody waits for these any more
            with self._lock:
                self._queued.clear()

    def _run(self) -> None:
        with self._lock:
            queued, self._queued = self._queued, []
        for fn, arg in queued:
            fn(arg)
