"""The Faust runtime's aiokafka clients connect with the same settings as every librdkafka
client (`pipeline.kafka.clients.connection`): the brokers, TLS and SASL."""

from __future__ import annotations

from typing import Any

import faust

from pipeline.kafka.clients import TLS_PROTOCOLS, ssl_context
from pipeline.settings import Settings


def faust_connection(settings: Settings) -> dict[str, Any]:
    """Faust app options: `broker` and, when secured, `broker_credentials`."""
    options: dict[str, Any] = {"broker": settings.broker_url}
    protocol = settings.security_protocol
    context = ssl_context(settings) if protocol in TLS_PROTOCOLS else None
    if protocol.startswith("SASL_"):
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            ssl_context=context,
            mechanism=settings.sasl_mechanism,
        )
    elif context is not None:
        options["broker_credentials"] = faust.SSLCredentials(context)
    return options
