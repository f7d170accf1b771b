"""The Python client for agents: propose, signal, ask the context, preflight, await decisions.

    from pipeline.client import TowerClient

    with TowerClient() as tower:  # TOWER_BOOTSTRAP, TOWER_URL, TOWER_TOPIC_*, TOWER_TOKEN ...
        ctx = tower.context("cust-42")  # ctx["known"] is False for a new customer
        event_id = tower.propose("cust-42", agent="winback-bot", department="marketing",
                                 channel="email", action="message", category="marketing")
        print(tower.wait_decision(event_id)["outcome"])

Kafka is the contract, so proposals and signals go to `agent-events` and decisions are read
from `audit` exactly as any other producer or audit reader does; the web API is only used
for what Kafka cannot answer: the customer's current context and an advisory preflight.
The HTTP side uses only the standard library, so the client adds no dependency. Where the
workers require authentication, the client sends its bearer token (`token=`, else
`TOWER_TOKEN`, `TOWER_TOKEN_FILE` or `TOWER_WEB_TOKEN`) with every API call.

Every setting not passed comes from the environment as the worker reads it: the broker
(`TOWER_BOOTSTRAP`), the topics (`TOWER_TOPIC_*`), Kafka security (`TOWER_SECURITY_*`,
`TOWER_SASL_*`, `TOWER_SSL_*`) and the web API (`TOWER_URL`, else `TOWER_WEB_URL`, else
`TOWER_WEB_HOST` and `TOWER_WEB_PORT`). Errors name the setting that fixes them.

A client is not thread-safe (one Kafka producer and reader, used synchronously): use one
per thread.

The package holds one concept per module: `errors`, the `events` an agent builds,
`preflight`'s answer, the `environment` the settings come from, and `tower_client`.
"""

from __future__ import annotations

from pipeline.client.environment import (
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    URL_ENV,
    WEB_TOKEN_ENV,
    client_settings,
    token_from,
    web_url_from,
)
from pipeline.client.errors import (
    DecisionTimeout,
    InvalidProposal,
    TowerError,
    TowerUnavailable,
    UnknownCustomer,
)
from pipeline.client.events import (
    MAX_EVENT_BYTES,
    REQUIRED_FIELDS,
    Format,
    ProposalFields,
    check_fields,
    make_proposal,
    make_signal,
    new_event_id,
    validate,
    wire_value,
)
from pipeline.client.preflight import Preflight, TraceStep
from pipeline.client.tower_client import TowerClient

__all__ = [
    "MAX_EVENT_BYTES",
    "REQUIRED_FIELDS",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "URL_ENV",
    "WEB_TOKEN_ENV",
    "DecisionTimeout",
    "Format",
    "InvalidProposal",
    "Preflight",
    "ProposalFields",
    "TowerClient",
    "TowerError",
    "TowerUnavailable",
    "TraceStep",
    "UnknownCustomer",
    "check_fields",
    "client_settings",
    "make_proposal",
    "make_signal",
    "new_event_id",
    "token_from",
    "validate",
    "web_url_from",
    "wire_value",
]
