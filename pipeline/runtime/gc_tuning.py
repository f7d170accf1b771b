"""Garbage collection for a worker process, the same on both runtimes.

Start-up objects (modules, schemas, the policy, the app) never die: `gc.freeze()` keeps them
out of every later collection. Young objects are collected less often, since a batch
allocates thousands that die with it; full collections over a large heap are what shows up
as pauses in the latency tail.
"""

from __future__ import annotations

import gc

#: gen0 threshold (allocations between young collections), gen1 and gen2 ratios
THRESHOLDS = (10_000, 20, 50)


def tune_for_batches() -> None:
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
