"""The ceiling: a plain confluent-kafka loop that decodes and re-encodes every record.

No framework, no state, no decisions: consume a batch, `decode_event` each record,
`encode_record` it again, produce, commit the batch's offsets asynchronously. Whatever the
Tower worker loses against this is framework and decision cost. Run by `bench.throughput`.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

from confluent_kafka import Consumer, Producer

from pipeline.contracts.codec import InvalidEvent, decode_event, encode_record
from pipeline.contracts.events import event_to_dict
from pipeline.runtime.transactional.polling import take_available


def main() -> None:
    bootstrap = os.environ["BENCH_BOOTSTRAP"]
    sink = os.environ["BENCH_SINK"]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": os.environ["BENCH_APP_ID"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    consumer.subscribe([os.environ["BENCH_SOURCE"]])
    running = True

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    while running:
        msgs = take_available(consumer, 500, 0.05)
        for msg in msgs:
            if msg.error():
                continue
            try:
                event = decode_event(msg.key(), msg.value())
            except InvalidEvent:
                continue
            value = encode_record("agent_event", event_to_dict(event), "avro")
            while True:
                try:
                    producer.produce(sink, key=msg.key(), value=value)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)
        if msgs:
            consumer.commit(asynchronous=True)
    producer.flush(30)
    consumer.close()


if __name__ == "__main__":
    main()
