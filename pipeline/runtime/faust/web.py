"""Pages for journey owners on the worker's own web server: live decisions and customers.

A customer lives on the worker that owns its partition; Faust's table routing forwards a
request for it there, so any worker answers for any customer. The routing agrees with where
the data is only if producers partition like Faust does (murmur2, the Java default).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import faust
from faust.web.exceptions import ServiceUnavailable

from pipeline.contracts.codec import decode_record
from pipeline.kafka.audit_tail import key_partition, read_tail
from pipeline.kafka.topic_scan import ScanError
from pipeline.processing.batch import BatchProcessor, unpack_stored
from pipeline.settings import Settings
from pipeline.web.customer_view import customer_view
from pipeline.web.decision_feed import DecisionFeed, decision_counts
from pipeline.web.pages import LIVE_PAGE, render_customer_page

#: how far back a timeline looks: the newest offsets of the customer's audit partition
TIMELINE_OFFSETS = 2000


def register_views(
    app: faust.App, state_table: Any, processor: BatchProcessor, settings: Settings
) -> DecisionFeed:
    """Add the pages to `app` and start feeding them the processor's decisions."""
    feed = DecisionFeed()
    processor.feed = feed
    changelog = state_table.changelog_topic.get_topic_name()

    def routed(view_fun: Any) -> Any:
        """Faust's table routing, once the producer knows the changelog's partitions.

        Faust hashes the key with the producer's metadata of the changelog topic, which the
        producer only has after writing to it: a worker that has decided nothing yet would
        fail every lookup (TypeError in aiokafka's partitioner). That metadata is asked for
        only once partitions are assigned: by then the tables have declared the changelog,
        whereas asking earlier can make the broker auto-create it with one partition.
        """
        route = app.table_route(table=state_table, match_info="customer_id")(view_fun)

        @functools.wraps(view_fun)
        async def get(view: Any, request: Any, **kwargs: Any) -> Any:
            owners = app.router.table_metadata(state_table.name)
            if not any(parts for tps in owners.values() for parts in tps.values()):
                raise ServiceUnavailable()  # starting or rebalancing, as Faust's routing says
            await app.producer._ensure_producer().partitions_for(changelog)  # type: ignore[attr-defined]
            return await route(view, request, **kwargs)

        return get

    async def customer_data(customer_id: str) -> dict[str, Any]:
        key = customer_id.encode()
        # No current event in a web request: the RocksDB store looks in every partition
        # database this worker holds, and after routing that includes the customer's.
        _, state = unpack_stored(state_table.get(key))
        partition = key_partition(key, settings.partitions)
        error = None
        try:
            records = await asyncio.to_thread(
                read_tail,
                settings.bootstrap,
                settings.topics.audit,
                partition,
                TIMELINE_OFFSETS,
                lambda k: k == key,
            )
        except ScanError as exc:
            records, error = [], str(exc)
        audit = []
        for rec in records:
            try:
                audit.append(decode_record("audit_record", rec.value or b""))
            except ValueError:
                continue  # not ours to judge here; `tower audit` reports bad records
        return customer_view(
            customer_id,
            state,
            processor.policy(),
            audit,
            partition=partition,
            served_by=str(app.conf.canonical_url),
            timeline_error=error,
        )

    @app.page("/")
    async def live_page(view: Any, request: Any) -> Any:
        return view.html(LIVE_PAGE)

    @app.page("/api/decisions")
    async def decisions_api(view: Any, request: Any) -> Any:
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            return view.json({"error": "after must be an integer"}, status=400)
        return view.json(
            {
                "policy_version": processor.policy().policy_version,
                "last": feed.last,
                "decisions": feed.after(after),
                "counts": decision_counts(processor.metrics.decisions),
            }
        )

    @app.page("/customers/{customer_id}")
    @routed
    async def customer_page(view: Any, request: Any, customer_id: str) -> Any:
        data = await customer_data(customer_id)
        return view.html(render_customer_page(data), status=200 if data["known"] else 404)

    @app.page("/api/customers/{customer_id}")
    @routed
    async def customer_api(view: Any, request: Any, customer_id: str) -> Any:
        data = await customer_data(customer_id)
        return view.json(data, status=200 if data["known"] else 404)

    return feed
