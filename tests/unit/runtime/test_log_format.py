"""TOWER_LOG_FORMAT=json: one JSON object per line, the batch's position on lines logged
while it is decided, the SASL password never."""

from __future__ import annotations

import io
import json
import logging

from pipeline.runtime.log_format import PositionFilter, deciding, formatter
from pipeline.settings import Settings


def lines(settings: Settings, log: callable) -> list[str]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(settings))
    handler.addFilter(PositionFilter())
    logger = logging.getLogger("tower-test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log(logger)
    finally:
        logger.removeHandler(handler)
    return out.getvalue().splitlines()


def test_json_lines_carry_level_logger_message_and_the_batch_position() -> None:
    def log(logger: logging.Logger) -> None:
        logger.info("outside a batch")
        with deciding("agent-events", 3, 1200):
            logger.warning("inside %s", "a batch")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")

    outside, inside, failed = (json.loads(line) for line in lines(Settings(log_format="json"), log))
    assert {k: outside[k] for k in ("level", "logger", "message")} == {
        "level": "INFO", "logger": "tower-test", "message": "outside a batch"
    }  # fmt: skip
    assert "partition" not in outside and "time" in outside
    assert (inside["message"], inside["level"]) == ("inside a batch", "WARNING")
    assert (inside["topic"], inside["partition"], inside["offset"]) == ("agent-events", 3, 1200)
    assert "ValueError: boom" in failed["exc_info"]


def test_the_sasl_password_is_redacted() -> None:
    settings = Settings(log_format="json", sasl_password="s3cr3t-pw")
    out = lines(settings, lambda logger: logger.error("connect failed with s3cr3t-pw"))
    assert "s3cr3t-pw" not in out[0] and "[redacted]" in json.loads(out[0])["message"]


def test_text_stays_the_default() -> None:
    (line,) = lines(Settings(), lambda logger: logger.info("hello"))
    assert line.endswith("INFO tower-test: hello")
