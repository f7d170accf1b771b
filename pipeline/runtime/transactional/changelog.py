"""The state changelog's topic, shared with the Faust runtime (the restore from it is
`kafka/changelog_restore.py`, which both runtimes use). `tower topics create` creates it;
the worker checks it before starting (`kafka/startup_checks.py`) and never creates it."""

from __future__ import annotations

from pipeline.kafka.topics import STATE_TABLE, changelog_topic

__all__ = ["STATE_TABLE", "changelog_topic"]
