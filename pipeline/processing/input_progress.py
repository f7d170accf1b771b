"""The worker's progress on its input: the lag gauges and what `/livez` answers.

A runtime reports each decided batch (`decided`), its positions about once a second
(`observe`: per owned input partition the next offset to decide and the log end as last
fetched) and each finished assignment (`assigned`). The web server asks `status` from any
thread; everything it reads is a plain attribute.

Liveness: a worker is `stalled` when input has been waiting (lag > 0) and nothing was
decided and no position advanced for `stall_s`; with the watchdog on (a runtime whose
decisions run on a thread of their own, not the web server's) it is `blocked` when the
runtime has not reported for `stall_s`, which is what a decision thread stuck in a call
looks like from the web server's thread.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping

from pipeline.processing.metrics import TowerMetrics

TopicPartition = tuple[str, int]
OK, STALLED, BLOCKED = "ok", "stalled", "blocked"
#: log-end samples kept per partition while records wait (the oldest one always kept)
MAX_ARRIVALS = 256


class InputProgress:
    def __init__(
        self,
        metrics: TowerMetrics,
        stall_s: float,
        *,
        watchdog: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.metrics, self.stall_s, self.watchdog = metrics, stall_s, watchdog
        self.clock, self.wall = clock, wall
        now = clock()
        #: partition -> (next offset to decide, log end) at the last look
        self.positions: dict[TopicPartition, tuple[int, int]] = {}
        #: partition -> (log end, when first seen) of the samples past the next offset
        self._arrivals: dict[TopicPartition, deque[tuple[int, float]]] = {}
        self._progress_at = now  # a batch decided or a position advanced
        self._waiting_since: float | None = None  # lag > 0 since
        self._report_at = now  # the runtime's last report of any kind

    def decided(self) -> None:
        """A batch was decided."""
        self._progress_at = self._report_at = self.clock()
        self.metrics.last_decision.set(self.wall())

    def beat(self) -> None:
        """The runtime's loop turned (for the watchdog)."""
        self._report_at = self.clock()

    def assigned(self) -> None:
        """An assignment finished (its states restored): one rebalance. A restore may take
        long; the waiting starts now."""
        self.metrics.rebalances.inc()
        self._progress_at = self._report_at = self.clock()

    def observe(self, positions: Mapping[TopicPartition, tuple[int, int]]) -> None:
        """(next offset to decide, log end) per owned input partition; the series of the
        partitions missing from it are removed."""
        now = self.clock()
        self._report_at = now
        m = self.metrics
        for tp in self.positions.keys() - positions.keys():
            self._arrivals.pop(tp, None)
            for gauge in (m.input_lag, m.input_oldest_age):
                with contextlib.suppress(KeyError):
                    gauge.remove(*_labels(tp))
        waiting = False
        for tp, (position, end) in positions.items():
            before = self.positions.get(tp)
            if before is not None and position > before[0]:
                self._progress_at = now
            lag = max(0, end - position)
            arrivals = self._arrivals.setdefault(tp, deque())
            while arrivals and arrivals[0][0] <= position:
                arrivals.popleft()
            if lag and (not arrivals or end > arrivals[-1][0]):
                if len(arrivals) >= MAX_ARRIVALS:
                    del arrivals[1]  # the oldest stays: the age is never understated
                arrivals.append((end, now))
            age = now - arrivals[0][1] if lag and arrivals else 0.0
            labels = _labels(tp)
            m.input_lag.labels(*labels).set(lag)
            m.input_oldest_age.labels(*labels).set(age)
            waiting = waiting or lag > 0
        self.positions = dict(positions)
        if not waiting:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = now

    def lag(self, topic: str) -> dict[int, int]:
        """Per owned partition of `topic`: records not yet decided, at the last look."""
        return {p: max(0, end - pos) for (t, p), (pos, end) in self.positions.items() if t == topic}

    def status(self) -> str:
        """`ok`, `stalled` or `blocked` (see the module's docstring)."""
        now = self.clock()
        if self.watchdog and now - self._report_at > self.stall_s:
            return BLOCKED
        since = self._waiting_since
        if since is not None and now - max(since, self._progress_at) > self.stall_s:
            return STALLED
        return OK


def _labels(tp: TopicPartition) -> tuple[str, str]:
    return tp[0], str(tp[1])
