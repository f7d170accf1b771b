"""Every Kafka client the project creates comes from here, built from `Settings`.

One place for what all clients share (the brokers and the security settings), so no
command, runtime or tool can connect differently from the others.
"""

from __future__ import annotations

import logging
import ssl
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
    """The librdkafka settings every client of `settings`' cluster needs: the brokers,
    the security settings (docs/security.md), and no topic auto-creation."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap,
        # a missing topic is an error, not a one-partition topic the broker makes up
        # (`tower topics create` makes them; librdkafka's producers ask for it by default)
        "allow.auto.create.topics": False,
    }
    if settings.security_protocol != "PLAINTEXT":
        conf["security.protocol"] = settings.security_protocol.lower()
    if settings.security_protocol.startswith("SASL_"):
        conf["sasl.mechanism"] = settings.sasl_mechanism
        conf["sasl.username"] = settings.sasl_username
        conf["sasl.password"] = settings.sasl_password
    for key, path in (
        ("ssl.ca.location", settings.ssl_ca_file),
        ("ssl.certificate.location", settings.ssl_cert_file),
        ("ssl.key.location", settings.ssl_key_file),
    ):
        if path is not None and settings.security_protocol in TLS_PROTOCOLS:
            conf[key] = str(path)
    if settings.log_format == "json":  # librdkafka's own lines through logging, as JSON too
        conf["logger"] = logging.getLogger("librdkafka")
    return conf


TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of aiokafka's clients: the CA file (else the system's) and the client
    certificate for mTLS; host names are checked, as librdkafka does by default."""
    context = ssl.create_default_context(
        cafile=str(settings.ssl_ca_file) if settings.ssl_ca_file else None
    )
    if settings.ssl_cert_file is not None and settings.ssl_key_file is not None:
        context.load_cert_chain(str(settings.ssl_cert_file), str(settings.ssl_key_file))
    return context


def member_client_id(settings: Settings) -> str:
    """The client id of a runtime's group consumer: it carries the worker's web URL, so any
    worker can find the pages of a partition's owner in the group's description."""
    return f"{settings.app_id}@{settings.advertised_url}"


def url_in_client_id(client_id: str) -> str | None:
    """The URL after the first `@` of a member's client id: a claim by whoever joined the
    group, which the web server vets (`pipeline/web/peers.py`) before using it."""
    _, sep, url = client_id.partition("@")
    return url if sep and url.startswith(("http://", "https://")) else None


#: group ids of `reader`s: librdkafka looks up their coordinator even without joining, so a
#: secured cluster grants READ on this prefix to the roles that read (local_security)
READER_GROUP_PREFIX = "tower-reader-"


def reader(settings: Settings, purpose: str, **conf: Any) -> Consumer:
    """A consumer for `assign()`: joins no group and commits nothing, so it never touches
    the tower's consumer groups. `purpose` names it in the broker's logs."""
    return Consumer(
        {
            **connection(settings),
            # required by the client, never joined
            "group.id": f"{READER_GROUP_PREFIX}{purpose}-{uuid.uuid4().hex[:8]}",
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
