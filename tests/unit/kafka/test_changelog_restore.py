"""The shared changelog restore without a broker: batches, checkpoints, resumption."""

from __future__ import annotations

from confluent_kafka import KafkaError

from pipeline.kafka.changelog_restore import restore
from pipeline.runtime.transactional.state_store import PartitionDB


class FakeMessage:
    def __init__(self, partition: int, offset: int, key=None, value=None, eof=False):
        self._p, self._o, self._k, self._v, self._eof = partition, offset, key, value, eof

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def key(self):
        return self._k

    def value(self):
        return self._v

    def error(self):
        return KafkaError(KafkaError._PARTITION_EOF) if self._eof else None


class FakeConsumer:
    """A changelog per partition: {partition: [(key, value)]}, `batch` records a poll."""

    def __init__(self, logs: dict[int, list[tuple[bytes, bytes | None]]], batch: int) -> None:
        self.logs, self.batch = logs, batch
        self.positions: dict[int, int] = {}
        self.polls = 0

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        return 0, len(self.logs[tp.partition])

    def assign(self, tps):
        self.positions = {tp.partition: tp.offset for tp in tps}

    def unassign(self):
        self.positions = {}

    def consume(self, num_messages, timeout):
        self.polls += 1
        out = []
        for p, pos in list(self.positions.items()):
            log = self.logs[p]
            take = log[pos : pos + self.batch]
            out += [FakeMessage(p, pos + i, k, v) for i, (k, v) in enumerate(take)]
            pos += len(take)
            if pos >= len(log):
                out.append(FakeMessage(p, pos, eof=True))
                del self.positions[p]
            else:
                self.positions[p] = pos
        return out


def test_restore_applies_the_log_in_batches_and_resumes_from_its_checkpoint(tmp_path):
    logs = {
        0: [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"c", b"1"), (b"b", None)],
        1: [(b"x", b"1")],
    }
    dbs = {p: PartitionDB(tmp_path / str(p)) for p in logs}
    consumer = FakeConsumer(logs, batch=2)
    stats = restore(consumer, "changelog", dbs)
    assert stats.keys == 6 and stats.partitions == 2
    assert consumer.polls == 3  # two records per poll: batched, not one write per record
    assert [dbs[0].get(k) for k in (b"a", b"b", b"c")] == [b"2", None, b"1"]
    assert dbs[0].checkpoint() == 5 and dbs[1].checkpoint() == 1

    logs[0].append((b"c", b"2"))  # written after the restore: only it is read next time
    again = restore(FakeConsumer(logs, batch=2), "changelog", dbs)
    assert again.keys == 1 and dbs[0].get(b"c") == b"2"
    for db in dbs.values():
        db.close()


def test_the_restore_consumer_is_built_from_settings():
    """Built without a broker (librdkafka connects lazily): a bad config fails here."""
    from pipeline.kafka.changelog_restore import restore_consumer
    from pipeline.settings import Settings

    restore_consumer(Settings(bootstrap="127.0.0.1:1")).close()


def test_a_restore_stops_at_its_budget_consistent_and_the_next_reads_on(tmp_path):
    logs = {0: [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"c", b"1"), (b"b", None)]}
    dbs = {0: PartitionDB(tmp_path / "0")}
    ticks = iter(range(100))
    stats = restore(
        FakeConsumer(logs, batch=2), "changelog", dbs, budget_s=0.5, clock=lambda: next(ticks)
    )
    assert stats.stopped and stats.keys == 2  # the first batch, then the budget was used up
    assert dbs[0].checkpoint() == 2 and dbs[0].get(b"a") == b"1"

    rest = restore(FakeConsumer(logs, batch=2), "changelog", dbs)
    assert not rest.stopped and rest.keys == 3
    assert [dbs[0].get(k) for k in (b"a", b"b", b"c")] == [b"2", None, b"1"]
    assert dbs[0].checkpoint() == 5
    dbs[0].close()
