"""Which worker owns a partition, from the consumer group itself.

Every runtime's group consumer carries its web URL in its client id
(`clients.member_client_id`), and the group coordinator knows each member's assignment,
so describing the group answers "whose pages serve partition p?" on both runtimes with no
topic or protocol of our own. The answer is only as fresh as the group's last rebalance,
which is exactly when ownership changes.

Anyone who may join the group can put any URL in a client id: the URLs found here are
claims, which the web server checks against its peers before sending anything
(`pipeline/web/peers.py`). `client_id` names the member behind a URL for that check's log.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import KafkaException

from pipeline.kafka import clients
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: how long a description is reused before the group is asked again
TTL_S = 2.0


class GroupOwners:
    """Partition of the input topic -> web URL of the member that owns it."""

    def __init__(self, settings: Settings, ttl_s: float = TTL_S) -> None:
        self.settings, self.ttl_s = settings, ttl_s
        self._admin = clients.admin(settings)
        self._owners: dict[int, str] = {}
        self._client_ids: dict[str, str] = {}
        self._fetched = -float("inf")
        self._lock = threading.Lock()

    def owner(self, partition: int, refresh: bool = False) -> str | None:
        """The owner's URL, or None if no member owns it now (rebalancing, or no worker).
        Blocks on the broker when the cached description is stale: call off the loop."""
        with self._lock:
            if refresh or time.monotonic() - self._fetched > self.ttl_s:
                self._owners, self._client_ids = self._describe()
                self._fetched = time.monotonic()
            return self._owners.get(partition)

    def client_id(self, url: str) -> str | None:
        """The client id of the member that named `url`, as of the last description."""
        with self._lock:
            return self._client_ids.get(url)

    def _describe(self) -> tuple[dict[int, str], dict[str, str]]:
        group = self.settings.app_id
        try:
            future = self._admin.describe_consumer_groups([group], request_timeout=5)[group]
            description = future.result(timeout=10)
        except KafkaException as exc:
            log.info("describing consumer group %s failed: %s", group, exc.args[0])
            return {}, {}
        owners: dict[int, str] = {}
        client_ids: dict[str, str] = {}
        for member in description.members:
            url = clients.url_in_client_id(member.client_id)
            if url is None or member.assignment is None:
                continue
            client_ids[url] = member.client_id
            for tp in member.assignment.topic_partitions:
                if tp.topic == self.settings.topics.events:
                    owners[tp.partition] = url
        return owners, client_ids
