"""Every Kafka client the project creates comes from here, built from `Settings`.

One place for what all clients share (the brokers, and the security settings once they
exist), so no command, runtime or tool can connect differently from the others.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from pipeline.settings import Settings

#: librdkafka reports every retry and refused connection; callers report what matters
QUIET = logging.getLogger("pipeline.kafka.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def connection(settings: Settings) -> dict[str, Any]:
    """The librdkafka settings every client of `settings`' cluster needs."""
    return {"bootstrap.servers": settings.bootstrap}


def member_client_id(settings: Settings) -> str:
    """The client id of a runtime's group consumer: it carries the worker's web URL, so any
    worker can find the pages of a partition's owner in the group's description."""
    return f"{settings.app_id}@{settings.advertised_url}"


def url_in_client_id(client_id: str) -> str | None:
    _, sep, url = client_id.partition("@")
    return url if sep and url.startswith(("http://", "https://")) else None


def faust_connection(settings: Settings) -> dict[str, Any]:
    """The same for the Faust runtime's aiokafka clients, as Faust app options."""
    return {"broker": settings.broker_url}


def reader(settings: Settings, purpose: str, **conf: Any) -> Consumer:
    """A consumer for `assign()`: joins no group and commits nothing, so it never touches
    the tower's consumer groups. `purpose` names it in the broker's logs."""
    return Consumer(
        {
            **connection(settings),
            # required by the client, never joined
            "group.id": f"tower-{purpose}-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "logger": QUIET,
            **conf,
        }
    )


def group_consumer(settings: Settings, group: str, **conf: Any) -> Consumer:
    """A member of consumer group `group`."""
    return Consumer({**connection(settings), "group.id": group, **conf})


def producer(settings: Settings, **conf: Any) -> Producer:
    """Writes that must not be lost: acks from all in-sync replicas, idempotent."""
    return Producer({**connection(settings), "acks": "all", "enable.idempotence": True, **conf})


def admin(settings: Settings, **conf: Any) -> AdminClient:
    """Short reconnect backoff so a broker that just came up is noticed within half a second."""
    config: dict[str, Any] = {
        **connection(settings),
        "logger": QUIET,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
        "socket.connection.setup.timeout.ms": 2000,
        **conf,
    }
    return AdminClient(config)
