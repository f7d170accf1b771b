"""Every policy a replay may need: the built-in one, files named on the command line, and
each version published on the `policies` topic.

A published record is trusted only if its document loads and hashes to the version it is
filed under; anything else is reported and left out, so a replay never runs under a policy
other than the one the audit record names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline.contracts.policy_record import (
    VERSION_PREFIX,
    InvalidPolicyRecord,
    decode_policy_record,
)
from pipeline.core.policy import Policy
from pipeline.core.policy_document import PolicyError, load_policy, load_policy_file
from pipeline.core.replay import PolicyResolver, catalog
from pipeline.kafka.reader import ScanError, TopicRecord, scan_topic
from pipeline.settings import Settings

Warn = Callable[[str], None]


def published_policies(records: Iterable[TopicRecord], warn: Warn) -> list[Policy]:
    """Policies from `policies` topic records keyed `version/<policy_version>`."""
    out: list[Policy] = []
    for rec in records:
        if rec.key is None or not rec.key.startswith(VERSION_PREFIX) or not rec.value:
            continue
        filed_as = rec.key[len(VERSION_PREFIX) :].decode(errors="replace")
        where = f"{rec.topic}@{rec.partition}:{rec.offset} ({filed_as})"
        try:
            policy = load_policy(decode_policy_record(rec.value).document, source=where)
        except (InvalidPolicyRecord, PolicyError) as exc:
            warn(f"skipping policy record {where}: {exc}")
            continue
        if policy.policy_version != filed_as:
            warn(f"skipping policy record {where}: its document is {policy.policy_version}")
            continue
        out.append(policy)
    return out


def policy_resolver(files: Iterable[Path], settings: Settings | None, warn: Warn) -> PolicyResolver:
    """The built-in policy, then the published versions, then `files` (which win a tie).

    A missing or unreadable policies topic is a warning: replay still knows the others.
    """
    policies: list[Policy] = []
    if settings is not None:
        try:
            topic = settings.topics.policies
            policies.extend(published_policies(scan_topic(settings, topic), warn))
        except ScanError as exc:
            warn(f"published policies not read: {exc}")
    policies.extend(load_policy_file(path) for path in files)
    return catalog(policies)
