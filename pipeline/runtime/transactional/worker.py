"""`tower worker --runtime transactional`: wiring of policy, metrics, pages and the loop."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from pipeline.kafka.policy_follower import start_policy_follower
from pipeline.kafka.schema_registry import attach as attach_schema_registry
from pipeline.processing.batch import BatchProcessor
from pipeline.processing.input_progress import InputProgress
from pipeline.processing.metrics import TowerMetrics
from pipeline.runtime import gc_tuning, log_format
from pipeline.runtime.transactional.engine import ConsumerFenced, TransactionalEngine
from pipeline.settings import Settings
from pipeline.web.server import WorkerPort, build_app, serve_in_thread

log = logging.getLogger(__name__)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run one transactional worker in the foreground until SIGTERM/SIGINT."""
    log_format.configure(settings, loglevel)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = TowerMetrics()
    follower = start_policy_follower(settings, metrics)
    processor = BatchProcessor(settings, follower.current, metrics)
    progress = InputProgress(metrics, settings.liveness_stall_s, watchdog=True)
    writer_schemas = attach_schema_registry(settings, processor)
    #: the engine running now; a fenced consumer's engine is replaced by a new one
    engine = TransactionalEngine(
        settings, processor, progress=progress, writer_schemas=writer_schemas
    )
    restarts = 0

    async def load(partition: int, key: bytes) -> bytes | None:
        return engine.stores.read(partition, key)

    port = WorkerPort(
        runtime="transactional",
        settings=settings,
        processor=processor,
        registry=metrics.registry,
        owned=lambda: engine.owned(),
        load=load,
        lag=lambda: engine.lag(),
        liveness=progress.status,
        details=lambda: {
            "transactions": engine.transactions,
            "aborted": engine.aborts,
            "restarts": restarts,
        },
    )
    stop_web = serve_in_thread(build_app(port), settings.web_host, settings.web_port)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        engine.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    gc_tuning.tune_for_batches()
    try:
        while True:
            try:
                engine.run()
                return
            except ConsumerFenced as exc:
                if stopping:
                    return
                restarts += 1
                log.error("%s: starting again with new clients", exc)
                engine = TransactionalEngine(
                    settings, processor, progress=progress, writer_schemas=writer_schemas
                )
    finally:
        follower.stop()
        stop_web()
