"""`tower worker --runtime transactional`: wiring of policy, metrics, pages and the loop."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from pipeline.kafka.policy_follower import start_policy_follower
from pipeline.processing.batch import BatchProcessor
from pipeline.processing.metrics import TowerMetrics
from pipeline.runtime import gc_tuning
from pipeline.runtime.transactional.changelog import ensure_changelog_topic
from pipeline.runtime.transactional.engine import TransactionalEngine
from pipeline.settings import Settings
from pipeline.web.server import WorkerPort, build_app, serve_in_thread


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run one transactional worker in the foreground until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=loglevel.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = TowerMetrics()
    follower = start_policy_follower(settings, metrics)
    ensure_changelog_topic(settings)
    engine = TransactionalEngine(settings, BatchProcessor(settings, follower.current, metrics))

    async def load(partition: int, key: bytes) -> bytes | None:
        return engine.stores.read(partition, key)

    port = WorkerPort(
        runtime="transactional",
        settings=settings,
        processor=engine.processor,
        registry=metrics.registry,
        owned=engine.owned,
        load=load,
        lag=engine.lag,
        details=lambda: {"transactions": engine.transactions, "aborted": engine.aborts},
    )
    stop_web = serve_in_thread(build_app(port), settings.web_host, settings.web_port)

    def stop(signum: int, frame: FrameType | None) -> None:
        engine.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    gc_tuning.tune_for_batches()
    try:
        engine.run()
    finally:
        follower.stop()
        stop_web()
