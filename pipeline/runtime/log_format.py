"""The worker's log lines: text, or with `TOWER_LOG_FORMAT=json` one JSON object per line
(`time`, `level`, `logger`, `message`, and `topic`, `partition`, `offset` of the batch being
decided when the line is written during one).

The runtimes set the batch's position around its decision (`deciding`); a filter copies it
onto each record. The SASL password is replaced wherever it would appear, and nothing the
worker logs at INFO carries customer content (events are logged by position, not body).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from pipeline.settings import Settings

TEXT_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
#: (topic, partition, offset) of the first record of the batch being decided
_POSITION: ContextVar[tuple[str, int, int] | None] = ContextVar("tower_position", default=None)


@contextlib.contextmanager
def deciding(topic: str, partition: int, offset: int) -> Iterator[None]:
    """Lines logged inside carry the batch's topic, partition and first offset."""
    token = _POSITION.set((topic, partition, offset))
    try:
        yield
    finally:
        _POSITION.reset(token)


class PositionFilter(logging.Filter):
    """Adds the position of the batch being decided to a record that has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        position = _POSITION.get()
        if position is not None and not hasattr(record, "partition"):
            record.topic, record.partition, record.offset = position
        return True


class TowerJsonFormatter(JsonFormatter):
    """python-json-logger's formatter with the tower's field names and secrets removed."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self.secrets:
            line = line.replace(secret, REDACTED)
        return line


def formatter(settings: Settings) -> logging.Formatter:
    if settings.log_format == "json":
        return TowerJsonFormatter((settings.sasl_password,))
    return logging.Formatter(TEXT_FORMAT)


def use_format(logger: logging.Logger, settings: Settings) -> None:
    """Put the configured format on every handler of `logger` (the root logger, once the
    runtime's logging is set up): Faust's worker sets up its own handlers first."""
    fmt = formatter(settings)
    for handler in logger.handlers:
        if settings.log_format == "json":  # Faust's text format stays as it is
            handler.setFormatter(fmt)
        handler.addFilter(PositionFilter())
    if settings.log_format == "json":
        logging.captureWarnings(True)  # warnings become JSON lines too, not bare stderr text


def configure(settings: Settings, level: str) -> None:
    """The transactional runtime's logging: one handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=level.upper(), handlers=[handler])
    use_format(logging.getLogger(), settings)
    if settings.log_format == "text":
        handler.setFormatter(formatter(settings))
