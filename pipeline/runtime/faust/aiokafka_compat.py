"""Fixes to aiokafka, Faust's Kafka client: a bug it has under uvloop, and topics it
would have the broker create.

aiokafka writes a request with `StreamWriter.write` and treats an `OSError` there as a
broken connection. On a transport the broker reset, asyncio's loop drops the write
silently, but uvloop raises `RuntimeError` ("the handler is closed"), which aiokafka lets
through (aio-libs/aiokafka#1038, open). Raised in the client's metadata task, it ends the
task for good: the consumer then fetches from a dead broker forever, and the worker stops
deciding while its process looks healthy. Here that write becomes what aiokafka expects,
a `KafkaConnectionError` on a closed connection, so it moves to another broker.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import aiokafka.client
from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

#: the connection methods that write to the transport
WRITERS = ("send", "_send_sasl_token")


def broken_on_closed_transport(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def write(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except RuntimeError as exc:
            writer = self._writer
            if writer is None or not writer.transport.is_closing():
                raise
            self.close(reason=CloseReason.CONNECTION_BROKEN, exc=exc)
            raise KafkaConnectionError(
                f"Connection at {self._host}:{self._port} broken: {exc}"
            ) from exc

    write.__broken_on_closed_transport__ = True  # type: ignore[attr-defined]
    return write


def close_connections_on_failed_writes() -> None:
    """Install the fix (once; later calls do nothing)."""
    for name in WRITERS:
        method = getattr(AIOKafkaConnection, name)
        if not getattr(method, "__broken_on_closed_transport__", False):
            setattr(AIOKafkaConnection, name, broken_on_closed_transport(method))


class MetadataRequestNoAutoCreate(MetadataRequest):
    """A metadata request that asks the broker not to create the topics it names."""

    def __init__(
        self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = False
    ) -> None:
        super().__init__(topics, allow_auto_topic_creation)


def no_topic_auto_creation() -> None:
    """Have every metadata request of aiokafka's clients ask for no topic auto-creation.

    aiokafka asks for it (`allow_auto_topic_creation=True`) and has no setting against
    it, so a broker with `auto.create.topics.enable` (Kafka's default) would create a
    one-partition topic for any missing topic the worker subscribes or writes to. The
    worker checks its topics before it starts (kafka/startup_checks.py); a topic that goes
    missing later stays missing."""
    aiokafka.client.MetadataRequest = MetadataRequestNoAutoCreate  # type: ignore[misc]
