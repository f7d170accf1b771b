"""aiokafka fixes: a request written to a connection the broker reset (under uvloop), and
metadata requests that would have the broker create topics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from pipeline.runtime.faust import aiokafka_compat

uvloop = pytest.importorskip("uvloop")


async def reset_connection() -> AIOKafkaConnection:
    """A connection as aiokafka holds it when the broker was killed: open on its side,
    while the loop has closed the transport after the peer's reset."""
    accepted: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = AIOKafkaConnection("127.0.0.1", port)
    conn._reader, conn._writer = await asyncio.open_connection("127.0.0.1", port)
    conn._versions = {MetadataRequest.API_KEY: (0, 0)}
    conn._read_task = asyncio.get_running_loop().create_future()  # not reading: no EOF seen
    while not accepted:
        await asyncio.sleep(0.01)
    accepted[0].transport.abort()  # the broker's side resets
    server.close()
    transport = conn._writer.transport
    for _ in range(200):  # the loop closes the transport once a write meets the reset
        if transport.is_closing():
            break
        transport.write(b"\0")
        await asyncio.sleep(0.01)
    assert transport.is_closing()
    return conn


def test_uvloop_raises_runtime_error_where_aiokafka_expects_os_error() -> None:
    """The bug itself: if aiokafka ever catches it, the fix can go."""

    async def main() -> None:
        conn = await reset_connection()
        with pytest.raises(RuntimeError, match="handler is closed"):
            AIOKafkaConnection.send.__wrapped__(conn, MetadataRequest([]))  # type: ignore[attr-defined]

    aiokafka_compat.close_connections_on_failed_writes()
    uvloop.run(main())


def test_a_write_to_a_reset_connection_closes_it_with_a_connection_error() -> None:
    """What aiokafka's metadata task, fetcher and sender retry on another broker."""
    closed: list[Any] = []

    async def main() -> None:
        conn = await reset_connection()
        conn._on_close_cb = lambda c, reason: closed.append(reason)
        with pytest.raises(KafkaConnectionError, match="broken"):
            await conn.send(MetadataRequest([]))
        assert not conn.connected()

    aiokafka_compat.close_connections_on_failed_writes()
    uvloop.run(main())
    assert len(closed) == 1


def test_other_runtime_errors_still_raise() -> None:
    class OpenTransport:
        def is_closing(self) -> bool:
            return False

    class Writer:
        transport = OpenTransport()

        def write(self, data: bytes) -> None:
            raise RuntimeError("not about the connection")

    async def main() -> None:
        conn = AIOKafkaConnection("127.0.0.1", 9)
        conn._writer = Writer()
        conn._versions = {MetadataRequest.API_KEY: (0, 0)}
        with pytest.raises(RuntimeError, match="not about the connection"):
            conn.send(MetadataRequest([]))

    aiokafka_compat.close_connections_on_failed_writes()
    uvloop.run(main())


def test_installing_twice_wraps_once() -> None:
    aiokafka_compat.close_connections_on_failed_writes()
    send = AIOKafkaConnection.send
    aiokafka_compat.close_connections_on_failed_writes()
    assert AIOKafkaConnection.send is send
    assert not hasattr(send.__wrapped__, "__broken_on_closed_transport__")  # type: ignore[attr-defined]


@pytest.mark.parametrize("topics", [["agent-events"], None])
def test_metadata_requests_ask_for_no_topic_auto_creation(topics: list[str] | None) -> None:
    """What aiokafka's client sends for the topics it subscribes to or writes to."""
    import aiokafka.client

    aiokafka_compat.no_topic_auto_creation()
    request = aiokafka.client.MetadataRequest(topics).prepare({MetadataRequest.API_KEY: (4, 12)})
    assert request.API_VERSION >= 4 and request.allow_auto_topic_creation is False
