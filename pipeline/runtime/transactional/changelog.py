"""The state changelog's topic, shared with the Faust engine (the restore from it is
`kafka/changelog_restore.py`, which both runtimes use)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from pipeline.kafka import clients
from pipeline.settings import Settings

#: The Faust engine's table name: the same changelog serves both engines.
STATE_TABLE = "customer-state"


def changelog_topic(app_id: str) -> str:
    return f"{app_id}-{STATE_TABLE}-changelog"


def ensure_changelog_topic(settings: Settings, timeout: float = 30.0) -> str:
    """Create the compacted changelog if missing (Faust creates it the same way)."""
    name = changelog_topic(settings.app_id)
    admin = clients.admin(settings)
    topics = admin.list_topics(timeout=timeout).topics
    if name in topics and topics[name].error is None:
        have = len(topics[name].partitions)
        if have != settings.partitions:
            raise RuntimeError(
                f"changelog {name} has {have} partitions, expected {settings.partitions}"
            )
        return name
    spec = NewTopic(
        name, settings.partitions, settings.replication_factor, config={"cleanup.policy": "compact"}
    )
    for fut in admin.create_topics([spec], operation_timeout=timeout).values():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return name
