"""The Faust worker's log level holds for every library: no debug records at WARNING."""

from __future__ import annotations

import logging

import faust
import pytest

from pipeline.runtime.faust.app import faust_worker


@pytest.mark.parametrize("loglevel", ["warning", "error"])
def test_debug_calls_build_no_records_at_warning_and_above(loglevel: str) -> None:
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    try:
        faust_worker(faust.App("logging-test"), loglevel)._setup_logging()
        assert not logging.getLogger("aiokafka.producer").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("aiokafka.producer").isEnabledFor(
            logging.getLevelName(loglevel.upper())
        )
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
