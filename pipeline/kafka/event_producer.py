"""The agents' API's way onto `agent-events`: one idempotent producer per worker.

Records are keyed by customer and sent to the partition Kafka's Java default partitioner
(murmur2) gives that key, where the workers expect a customer's records
(`contracts/partitioning.py`). Deliveries are confirmed by a poller thread of its own, so
the web server's loop never blocks on the broker.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, Message

from pipeline.kafka.clients import producer
from pipeline.settings import Settings


class EventProducer:
    """`send` returns a future of the delivery: the (partition, offset) written, or the
    KafkaException saying why not."""

    def __init__(self, settings: Settings, **conf: Any) -> None:
        self.topic = settings.topics.events
        self._producer = producer(
            settings,
            **{"linger.ms": 5, "partitioner": "murmur2_random", "client.id": "tower-agents-api"},
            **conf,
        )
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="tower-api-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def send(
        self,
        key: bytes,
        value: bytes,
        partition: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Future[tuple[int, int]]:
        delivered: Future[tuple[int, int]] = Future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                delivered.set_exception(RuntimeError(f"not written to {self.topic}: {err.str()}"))
            else:
                delivered.set_result((msg.partition() or 0, msg.offset() or 0))

        sent: list[tuple[str, str | bytes | None]] | None = [*headers] if headers else None
        try:
            self._producer.produce(
                self.topic,
                value=value,
                key=key,
                partition=partition,
                headers=sent,
                on_delivery=on_delivery,
            )
        except BufferError as exc:
            delivered.set_exception(RuntimeError(f"the producer's queue is full: {exc}"))
        return delivered

    def close(self) -> None:
        self._stop.set()
        self._poller.join(5)
        self._producer.flush(5)
