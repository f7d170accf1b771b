"""`TowerClient`: one agent's connection to the tower, Kafka for events and decisions, HTTP
for the context and preflight."""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from email.message import Message as HTTPHeaders
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Unpack, overload

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from pipeline.client.environment import (
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    URL_ENV,
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
    Format,
    ProposalFields,
    check_fields,
    make_proposal,
    make_signal,
    wire_value,
)
from pipeline.client.preflight import Preflight
from pipeline.contracts.codec import decode_record
from pipeline.contracts.events import AgentEvent
from pipeline.contracts.partitioning import JAVA_PARTITIONER, key_partition
from pipeline.core.decision import HELD
from pipeline.kafka import clients
from pipeline.kafka.reader import ScanError, watermarks
from pipeline.settings import Settings, TopicNames

#: how far back `wait_decision` looks for an event this client did not produce
UNKNOWN_EVENT_OFFSETS = 5_000
#: events remembered for `wait_decision`, so a long-running agent's memory stays bounded
REMEMBERED_EVENTS = 10_000
#: the pause before retrying a 503 that names no Retry-After
DEFAULT_RETRY_S = 1.0
API_PREFIX = "/api/v1"


@dataclass(slots=True)
class _Sent:
    """Where an event's decision will appear: the customer's audit partition, from the
    offset that was its end before the event was produced (moved on as it is read)."""

    customer_id: str
    partition: int
    offset: int


class TowerClient:
    """One agent's connection to the tower: Kafka for events and decisions, HTTP for the
    context and preflight. Kafka clients are created on first use and closed by `close()`.

    `timeout_s` bounds every call except `wait_decision`, which has its own: a produce
    waits that long for the broker's acknowledgement, and an HTTP call retries 503s
    (honouring Retry-After) until then, and only then raises TowerUnavailable.

    `kafka` carries the Kafka security settings (default: the TOWER_* variables). On a
    secured cluster the `agent` role may only write `agent-events`; `wait_decision` reads
    the audit, so it needs READ on that topic as well.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        web_url: str | None = None,
        *,
        topics: TopicNames | None = None,
        output_format: Format = "json",
        timeout_s: float = 10.0,
        token: str | None = None,
        kafka: Settings | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if output_format not in ("json", "avro"):
            raise ValueError(f"output_format must be 'json' or 'avro', not {output_format!r}")
        environ = dict(os.environ if env is None else env)
        #: the broker, topics and Kafka security (TLS, SASL) from `kafka`, else from the
        #: TOWER_* variables as every client of the project (docs/security.md); what is
        #: passed here wins
        base = kafka if kafka is not None else client_settings(environ)
        self.settings = replace(
            base,
            bootstrap=base.bootstrap if bootstrap is None else bootstrap,
            topics=base.topics if topics is None else topics,
            output_format=output_format,
        )
        self.web_url = (web_url or web_url_from(environ, base)).rstrip("/")
        self.output_format: Format = output_format
        self.timeout_s = timeout_s
        #: the bearer token for the web API (a viewer's for context, an operator's for
        #: preflight); private, so it is never part of a repr or an error message
        self._token = (token if token is not None else token_from(environ)) or None
        self._producer: Producer | None = None
        self._reader: Consumer | None = None
        self._partitions: int | None = None
        self._sent: OrderedDict[str, _Sent] = OrderedDict()

    def __enter__(self) -> TowerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the Kafka clients (every produce was already acknowledged)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(self.timeout_s)
            producer.close()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    # --- events ---

    def propose(self, customer_id: str, **fields: Unpack[ProposalFields]) -> str:
        """Produce a proposal (fields: `make_proposal`) and return its event id once the
        broker acknowledged it; InvalidProposal before anything is produced."""
        check_fields(fields)
        return self.send(make_proposal(customer_id, **fields))

    def signal(
        self,
        customer_id: str,
        type_: str,
        *,
        agent: str = "crm",
        department: str = "system",
        attributes: Mapping[str, str] | None = None,
        channel: str | None = None,
        conversation_id: str | None = None,
        occurred_at: int | None = None,
        event_id: str | None = None,
    ) -> str:
        """Produce a signal (what happened to the customer); returns its event id."""
        return self.send(
            make_signal(
                customer_id,
                type_,
                agent=agent,
                department=department,
                attributes=attributes,
                channel=channel,
                conversation_id=conversation_id,
                occurred_at=occurred_at,
                event_id=event_id,
            )
        )

    def send(self, event: AgentEvent) -> str:
        """Produce a prepared event (e.g. the one just preflighted); returns its event id.

        The audit partition's end is read first, so `wait_decision` reads only what comes
        after; keyed by customer id with the Java partitioner, as the workers expect.
        """
        value = wire_value(event, self.output_format)
        key = event.customer_id.encode()
        partition = self._audit_partition(key)
        _, end = self._watermarks(partition)
        self._produce(key, value, event.event_id)
        self._sent[event.event_id] = _Sent(event.customer_id, partition, end)
        self._sent.move_to_end(event.event_id)
        while len(self._sent) > REMEMBERED_EVENTS:
            self._sent.popitem(last=False)
        return event.event_id

    def _produce(self, key: bytes, value: bytes, event_id: str) -> None:
        topic = self.settings.topics.events
        producer = self._producer_()
        reports: list[KafkaError | None] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            reports.append(err)

        try:
            producer.produce(topic, value=value, key=key, on_delivery=delivered)
        except (KafkaException, BufferError) as exc:
            raise TowerError(f"cannot produce {event_id} to {topic}: {exc}") from None
        deadline = time.monotonic() + self.timeout_s + 1.0  # the broker's timeout comes first
        while not reports and time.monotonic() < deadline:
            producer.poll(0.1)
        if not reports:
            raise TowerError(
                f"no delivery report for {event_id} within {self.timeout_s:g} s; "
                f"is Kafka up on {self.settings.bootstrap} (TOWER_BOOTSTRAP)?"
            )
        err = reports[0]
        if err is None:
            return
        if err.fatal():  # an idempotent producer's fatal error: start a fresh one next time
            self._producer = None
        hint = ""
        if err.code() in (KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT):
            hint = f"; is Kafka up on {self.settings.bootstrap} (TOWER_BOOTSTRAP)?"
        elif err.code() in (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART):
            hint = (
                "; set TOWER_TOPIC_EVENTS to the tower's events topic (or create the topics "
                "with `tower topics create`)"
            )
        raise TowerError(f"{topic} did not take {event_id}: {err.str()}{hint}")

    def _producer_(self) -> Producer:
        if self._producer is None:
            self._producer = clients.producer(
                self.settings,
                **JAVA_PARTITIONER,
                # the delivery report (with the broker's error) comes within the timeout
                **{"message.timeout.ms": max(1, int(self.timeout_s * 1000))},
                logger=clients.QUIET,
            )
        return self._producer

    # --- decisions ---

    def wait_decision(
        self, event_id: str, *, customer_id: str | None = None, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """The event's final audit record (docs/contracts.md, Outputs): the first with its
        event id and an outcome other than `held` (a held proposal's final record comes when
        its hold is released). DecisionTimeout if none comes in time.

        For an event this client sent, only the audit records after it are read; for any
        other, pass `customer_id`: the newest 5,000 offsets of its audit partition are read.
        """
        sent = self._sent.get(event_id)
        if sent is None:
            if customer_id is None:
                raise TowerError(
                    f"event {event_id!r} was not sent by this client: pass customer_id= to "
                    f"look among the newest {UNKNOWN_EVENT_OFFSETS:,} records of its audit "
                    "partition"
                )
            partition = self._audit_partition(customer_id.encode())
            low, high = self._watermarks(partition)
            sent = _Sent(customer_id, partition, max(low, high - UNKNOWN_EVENT_OFFSETS))
        found = self._read_until(sent, event_id, time.monotonic() + timeout_s)
        if found is None:
            raise DecisionTimeout(event_id, timeout_s)
        return found

    def _read_until(self, sent: _Sent, event_id: str, deadline: float) -> dict[str, Any] | None:
        topic = self.settings.topics.audit
        key = sent.customer_id.encode()
        reader = self._reader_()
        reader.assign([TopicPartition(topic, sent.partition, sent.offset)])
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                for msg in reader.consume(500, min(0.5, remaining)):
                    err = msg.error()
                    if err is not None:
                        if err.fatal():
                            raise TowerError(f"reading {topic}: {err.str()}")
                        continue  # transient (broker restarting): the client retries
                    offset = msg.offset()
                    if offset is None or msg.key() != key:
                        continue
                    record = _audit_record(msg.value())
                    if (
                        record is not None
                        and record.get("event_id") == event_id
                        and record.get("outcome") != HELD
                    ):
                        sent.offset = offset  # a second wait finds it again
                        return record
                    sent.offset = offset + 1
            return None
        finally:
            reader.unassign()

    def _reader_(self) -> Consumer:
        if self._reader is None:
            self._reader = clients.reader(
                self.settings,
                "client",
                **{
                    "isolation.level": "read_committed",  # no aborted or pending decisions
                    "auto.offset.reset": "earliest",  # an offset past retention: oldest kept
                    "socket.connection.setup.timeout.ms": max(1000, int(self.timeout_s * 1000)),
                },
            )
        return self._reader

    def _audit_partition(self, key: bytes) -> int:
        """The customer's audit partition. Workers write audit records to the partition
        number of their input, so it is the customer's `agent-events` partition: murmur2
        modulo that topic's partitions (the same as the audit topic's when both were made
        by `tower topics create`)."""
        if self._partitions is None:
            topic, bootstrap = self.settings.topics.events, self.settings.bootstrap
            try:
                meta = self._reader_().list_topics(topic, timeout=self.timeout_s)
            except KafkaException as exc:
                raise TowerError(
                    f"cannot reach Kafka on {bootstrap} ({exc.args[0]}); set TOWER_BOOTSTRAP "
                    "to the tower's brokers"
                ) from None
            info = meta.topics.get(topic)
            if info is None or info.error is not None or not info.partitions:
                raise TowerError(
                    f"topic {topic!r} does not exist on {bootstrap}; set TOWER_TOPIC_EVENTS "
                    "and TOWER_TOPIC_AUDIT to the tower's topics (or create them with "
                    "`tower topics create`)"
                )
            self._partitions = len(info.partitions)
        return key_partition(key, self._partitions)

    def _watermarks(self, partition: int) -> tuple[int, int]:
        try:
            return watermarks(
                self._reader_(), self.settings.topics.audit, partition, self.timeout_s
            )
        except ScanError as exc:
            raise TowerError(f"{exc}; is TOWER_TOPIC_AUDIT the tower's audit topic?") from None

    # --- web API ---

    def context(self, customer_id: str, *, at: int | None = None) -> dict[str, Any]:
        """What the tower knows about the customer now (or as of `at`, epoch ms): consents,
        open cases, facts told and known, cap headroom, quiet hours, holds, escalation.
        A customer the tower has decided nothing about yet has `known` False and the empty
        context the policy applies to a first proposal (no contacts counted, no consents)."""
        path = f"/customers/{urllib.parse.quote(customer_id, safe='')}/context"
        if at is not None:
            path += "?" + urllib.parse.urlencode({"at": at})
        return self._call("GET", path, None, customer_id)

    @overload
    def preflight(self, event: AgentEvent, /) -> Preflight: ...

    @overload
    def preflight(self, customer_id: str, /, **fields: Unpack[ProposalFields]) -> Preflight: ...

    def preflight(self, target: AgentEvent | str, /, **fields: Any) -> Preflight:
        """What the tower would decide for this proposal now, without producing it: ask
        before spending on generation or sending. Takes `propose`'s arguments or an event."""
        if isinstance(target, AgentEvent):
            if fields:
                raise TypeError("preflight takes an AgentEvent or propose's arguments, not both")
            event = target
        else:
            check_fields(fields)
            event = make_proposal(target, **fields)
        body = wire_value(event, "json")
        return Preflight.from_json(self._call("POST", "/preflight", body, event.customer_id))

    def _call(
        self, method: str, path: str, body: bytes | None, customer_id: str | None
    ) -> dict[str, Any]:
        """One API call; 503s are retried until the client's timeout (docs/operations.md, Web
        pages and probes: the tower answers 503 only while ownership moves, which takes
        seconds)."""
        url = self.web_url + API_PREFIX + path
        deadline = time.monotonic() + self.timeout_s
        while True:
            status, headers, raw = self._http(method, url, body, deadline)
            data = _json(raw)
            # `detail` says what is wrong in a line; `error` is its code
            error = (
                _text(data, "detail")
                or _text(data, "error")
                or raw[:200].decode("utf-8", "replace")
            )
            if status == 200:
                if not isinstance(data, dict):
                    raise TowerError(f"{method} {url} answered 200 without a JSON object")
                return data
            if status == 503:
                retry_after = _retry_after(headers.get("Retry-After"))
                pause = DEFAULT_RETRY_S if retry_after is None else max(0.1, retry_after)
                if time.monotonic() + pause >= deadline:
                    raise TowerUnavailable(retry_after, error)
                time.sleep(pause)
                continue
            if status == 400 and isinstance(data, dict) and "reason" in data:
                raise InvalidProposal(str(data["reason"]), _text(data, "detail") or error)
            if status == 404 and isinstance(data, dict) and customer_id is not None:
                raise UnknownCustomer(customer_id, _text(data, "hint") or error)
            if status in (401, 403):
                which = "no token was given" if self._token is None else "the token was refused"
                raise TowerError(
                    f"{method} {url} answered {status}: {error} ({which}: pass "
                    f"TowerClient(token=...) or set {TOKEN_ENV} or {TOKEN_FILE_ENV})"
                )
            raise TowerError(f"{method} {url} answered {status}: {error}")

    def _http(
        self, method: str, url: str, body: bytes | None, deadline: float
    ) -> tuple[int, HTTPHeaders, bytes]:
        headers = {"Accept": "application/json", "User-Agent": "journey-tower-client"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        timeout = max(0.1, deadline - time.monotonic())
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers, exc.read()
        except urllib.error.URLError as exc:
            raise TowerError(
                f"cannot reach the tower at {self.web_url}: {exc.reason}; set {URL_ENV} to "
                "a worker's URL"
            ) from None
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, bad replies
            raise TowerError(f"{method} {url}: {exc or type(exc).__name__}") from None


def _audit_record(value: bytes | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        return decode_record("audit_record", value)
    except ValueError:  # not an audit record of ours (`tower audit` reports those)
        return None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _text(data: Any, name: str) -> str:
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (either of its forms: seconds, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
