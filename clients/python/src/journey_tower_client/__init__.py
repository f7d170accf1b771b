"""Journey Tower's HTTP client for agents: ask before contacting a customer.

    from journey_tower_client import TowerClient

    with TowerClient() as tower:  # TOWER_URL, TOWER_TOKEN, TOWER_AGENT from the environment
        ctx = tower.context("cust-42")
        decision = tower.propose("cust-42", department="service", channel="chat",
                                 action="answer", category="service", content="...")
        if decision.emitted:
            ...  # carry out decision.action

HTTP only (httpx): no Kafka client and no worker dependency.
"""

from journey_tower_client.client import AsyncTowerClient, ProposalFields, TowerClient
from journey_tower_client.config import Config
from journey_tower_client.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    Problem,
    TowerError,
    Unavailable,
)
from journey_tower_client.requests import Decision

__all__ = [
    "AsyncTowerClient",
    "AuthError",
    "Config",
    "Decision",
    "InvalidRequest",
    "NotFound",
    "Problem",
    "ProposalFields",
    "TowerClient",
    "TowerError",
    "Unavailable",
]
