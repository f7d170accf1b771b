"""Settings from the environment (prefix `TOWER_`), with defaults that work on a laptop.

One frozen object, read once at start-up, so nothing on the hot path touches `os.environ`.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: the runtimes, named by what they guarantee (docs/runtimes.md, Choosing a runtime)
RUNTIMES = ("faust", "transactional")
#: event loops of the Faust runtime
EVENT_LOOPS = ("uvloop", "asyncio")
#: codecs of the records a worker writes (Kafka's `compression.type`; "none" for none)
COMPRESSIONS = ("zstd", "lz4", "gzip", "snappy", "none")
#: formats of the worker's log lines
LOG_FORMATS = ("text", "json")
#: earlier names, still accepted from TOWER_ENGINE, --engine and TOWER_RUNTIME
RUNTIME_ALIASES = {"native": "transactional"}

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "journey-tower"


@dataclass(frozen=True)
class TopicNames:
    events: str = "agent-events"
    wakeups: str = "tower-wakeups"
    approved: str = "approved-actions"
    audit: str = "audit"
    deadletter: str = "deadletter"
    policies: str = "policies"

    def all(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]


@dataclass(frozen=True)
class Settings:
    """Every knob the worker and the CLI share; see docs/configuration.md."""

    bootstrap: str = "127.0.0.1:9092"
    app_id: str = "journey-tower"
    partitions: int = 8
    #: replicas of every topic the tower creates, changelogs included; -1: the broker's
    #: `default.replication.factor`
    replication_factor: int = -1
    output_format: str = "avro"  # or "json"
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    #: the URL other workers forward customer requests to [default: http://web_host:web_port];
    #: `{hostname}` in it becomes this instance's host name at start (see `host_name`), so
    #: one setting gives every compose replica its own, e.g. http://{hostname}:6066.
    #: Kubernetes can expand its own `$(POD_NAME)` or `$(POD_IP)` in the pod spec instead.
    #: A wildcard host (0.0.0.0, ::) is refused: no other worker can call it.
    web_url: str = ""
    data_dir: Path = Path("var/worker")
    cache_dir: Path = DEFAULT_CACHE
    kafka_version: str = "4.1.1"
    kafka_port: int = 9092
    controller_port: int = 9093
    max_event_bytes: int = 64 * 1024
    batch_size: int = 500
    batch_within_s: float = 0.05
    #: transactional runtime: most input records in one transaction; records decided while
    #: a commit is in flight join the next one up to this (the adaptive commit interval)
    transaction_max_records: int = 5_000
    policy_file: Path | None = None
    #: how long a starting worker waits to read the published policy before deciding
    policy_wait_s: float = 5.0
    #: four-eyes policy changes whatever the policies say (docs/security.md)
    policy_require_approval: bool = False
    #: the approvers' Ed25519 public keys, `name base64-key` a line: four-eyes signatures
    #: verify against these (docs/security.md, Four-eyes policy changes)
    policy_approvers_file: Path | None = None
    #: the operator's private key for `tower policy propose / approve` (`tower policy keygen`)
    policy_key_file: Path | None = None
    #: the Faust runtime is at-least-once, with input offsets of its own (docs/runtimes.md,
    #: Delivery); exactly-once is the transactional runtime's. Kept to refuse an old setting.
    processing_guarantee: str = "at_least_once"
    #: "faust" (at-least-once) or "transactional" (exactly-once, confluent-kafka)
    runtime: str = "faust"
    #: the Faust runtime's event loop: "uvloop" (libuv; the worker spends much of its time
    #: in the loop and aiokafka) or "asyncio" (the standard library's)
    event_loop: str = "uvloop"
    #: the codec of every record the worker writes (actions, audit, changelog, wake-ups);
    #: zstd shrinks the state's replay digests, which lz4 barely does, at no visible CPU cost
    compression: str = "zstd"
    # --- Kafka security (docs/security.md, Kafka: TLS and SASL), the same for every client ---
    #: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    security_protocol: str = "PLAINTEXT"
    #: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (SASL_* protocols)
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    #: never printed: kept out of repr, logs and /healthz
    sasl_password: str = field(default="", repr=False)
    #: read at start into sasl_password (a mounted secret), trailing newline dropped
    sasl_password_file: Path | None = None
    #: the CA that signed the brokers' certificates [default: the system's]
    ssl_ca_file: Path | None = None
    #: client certificate and key, for brokers that require mTLS
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    # --- web server security (docs/security.md, Web authentication) ---
    #: bearer tokens as hashes (`tower web token add`); None: authentication off, and the
    #: web server binds only 127.0.0.1
    web_tokens_file: Path | None = None
    #: /metrics and /healthz without a token (for scrapers and probes)
    web_open_metrics: bool = False
    #: PEM certificate (chain) and key: the web server speaks HTTPS
    web_tls_cert: Path | None = None
    web_tls_key: Path | None = None
    #: the workers requests are forwarded to: comma-separated URL patterns, `*` inside the
    #: host only [default: this worker's own scheme and host, any port]
    web_peers: str = ""
    #: the key the workers sign forwarded requests with (`tower web peer-key new`); needed
    #: with TOWER_WEB_TOKENS_FILE: a forwarded request never carries the caller's token
    web_peer_key_file: Path | None = None
    # --- end of web server security ---
    #: decisions per input partition the worker remembers for `GET /api/v1/decisions/...`
    #: and for answering a retried ask-and-decide (docs/agents.md)
    decision_index_size: int = 20000
    # --- replica identity ---
    #: this replica's name in the consumer group (static member id) and, on the
    #: transactional runtime, its transactional id; unique per replica, stable across its
    #: restarts. [default: the host name (POD_NAME, else HOSTNAME, else the system's) and a
    #: short hash of the data dir: a StatefulSet pod or a container keeps its own, and
    #: workers sharing one host stay apart by their data dirs]
    instance_id: str = ""
    # --- probes and logs ---
    #: /livez fails when input waits but nothing was decided for this long, or the
    #: transactional runtime's loop has not turned for this long (seconds)
    liveness_stall_s: float = 120.0
    #: "text", or "json": one JSON object per line (level, logger, message, partition, offset)
    log_format: str = "text"
    # --- the console (`tower console`, docs/console.md) ---
    #: the console's port (it binds TOWER_WEB_HOST, behind the same tokens)
    console_port: int = 6070
    #: the console's read model (DuckDB); deleted, it is rebuilt from the topics
    console_db: Path = Path("var/console/console.duckdb")
    #: the read model's memory (DuckDB's memory_limit, e.g. 2GB); past it DuckDB spills to disk
    console_db_memory: str = "2GB"
    #: `NAME.key` per person (`tower policy keygen --out DIR`): the console signs a
    #: signed-in person's proposals and approvals with their key from here
    console_keys_dir: Path | None = None
    #: the worker the console asks for a customer's live state (consents, caps, holds),
    #: with the signed-in person's token; any worker answers for every customer
    #: [default: TOWER_WEB_URL, else http://TOWER_WEB_HOST:TOWER_WEB_PORT]
    console_worker_url: str = ""
    # --- schema registry ---
    #: the Confluent-API schema registry (Confluent, Karapace, Apicurio's ccompat API,
    #: Redpanda): comma-separated base URLs, tried in turn. Needed to read registry-framed
    #: input and for TOWER_OUTPUT_FORMAT=registry-avro; empty: no registry
    schema_registry_url: str = ""
    #: HTTP basic auth: the user, and the file holding its password (a mounted secret)
    schema_registry_username: str = ""
    schema_registry_password_file: Path | None = None
    #: or a bearer token, read from a file
    schema_registry_token_file: Path | None = None
    #: the CA that signed the registry's certificate [default: the system's]
    schema_registry_ca_file: Path | None = None
    #: never printed: read at start from the files above
    schema_registry_password: str = field(default="", repr=False)
    schema_registry_token: str = field(default="", repr=False)
    topics: TopicNames = field(default_factory=TopicNames)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read `TOWER_<FIELD>` variables; explicit overrides (CLI flags) win."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "topics":
                continue
            raw = env.get(f"TOWER_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.name, raw, getattr(cls(), f.name))
        topic_values = {
            t.name: env[f"TOWER_TOPIC_{t.name.upper()}"]
            for t in fields(TopicNames)
            if env.get(f"TOWER_TOPIC_{t.name.upper()}")
        }
        values["topics"] = TopicNames(**topic_values)
        if "runtime" not in values and env.get("TOWER_ENGINE"):  # the earlier name
            values["runtime"] = env["TOWER_ENGINE"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "runtime" in values:
            values["runtime"] = RUNTIME_ALIASES.get(values["runtime"], values["runtime"])
        host = host_name(env)
        if "web_url" in values:
            values["web_url"] = values["web_url"].replace("{hostname}", host)
        settings = cls(**values)
        if not settings.instance_id:
            settings = replace(settings, instance_id=default_instance_id(host, settings.data_dir))
        if settings.runtime not in RUNTIMES:
            raise ValueError(
                f"TOWER_RUNTIME must be one of {', '.join(RUNTIMES)} "
                f"(or the earlier name native), not {settings.runtime!r}"
            )
        if settings.event_loop not in EVENT_LOOPS:
            raise ValueError(
                f"TOWER_EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)}, "
                f"not {settings.event_loop!r}"
            )
        if settings.compression not in COMPRESSIONS:
            raise ValueError(
                f"TOWER_COMPRESSION must be one of {', '.join(COMPRESSIONS)}, "
                f"not {settings.compression!r}"
            )
        if settings.output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"TOWER_OUTPUT_FORMAT must be one of {', '.join(OUTPUT_FORMATS)}, "
                f"not {settings.output_format!r}"
            )
        if settings.liveness_stall_s <= 0:
            raise ValueError(
                f"TOWER_LIVENESS_STALL_S must be a number of seconds > 0, "
                f"not {settings.liveness_stall_s!r}"
            )
        if settings.log_format not in LOG_FORMATS:
            raise ValueError(
                f"TOWER_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, "
                f"not {settings.log_format!r}"
            )
        if settings.processing_guarantee != "at_least_once":
            raise ValueError(
                f"TOWER_PROCESSING_GUARANTEE={settings.processing_guarantee!r} is not offered: "
                "the Faust runtime is at-least-once with identical re-emits; for exactly-once "
                "run the transactional runtime (TOWER_RUNTIME=transactional)"
            )
        if (urlsplit(settings.advertised_url).hostname or "") in WILDCARD_HOSTS:
            raise ValueError(
                f"the advertised URL {settings.advertised_url!r} names no host other workers "
                "can call; set TOWER_WEB_URL to this worker's own URL, e.g. "
                f"TOWER_WEB_URL=http://{{hostname}}:{settings.web_port}"
            )
        return _with_registry(_with_security(settings))

    def to_env(self) -> dict[str, str]:
        """The `TOWER_*` variables `from_env` reads back as these settings: the one way a
        child worker's environment is built. Every setting is written, an unset one as "",
        so a variable inherited from the parent never overrides it. A secret read from a
        file stays that file's path; the instance id is left out while it is the one derived
        from the data dir, so a child with its own data dir gets its own."""
        env: dict[str, str] = {}
        for f in fields(self):
            if f.name == "topics" or f.name in _SECRETS_FROM_FILES:
                continue
            env[f"TOWER_{f.name.upper()}"] = _env_value(getattr(self, f.name))
        for secret, source in _SECRETS_FROM_FILES.items():
            from_file = getattr(self, source) is not None
            env[f"TOWER_{secret.upper()}"] = "" if from_file else getattr(self, secret)
        if self.instance_id == default_instance_id(host_name(os.environ), self.data_dir):
            env["TOWER_INSTANCE_ID"] = ""
        for t in fields(TopicNames):
            env[f"TOWER_TOPIC_{t.name.upper()}"] = getattr(self.topics, t.name)
        return env

    def member_id(self, runtime: str) -> str:
        """The static group member id (and transactional id) of this replica on `runtime`:
        a restarted replica rejoins with its partitions at once instead of waiting for its
        killed predecessor's session to expire, and replicas never fence each other.
        RocksDB's lock keeps two live processes off one data dir."""
        instance = self.instance_id or default_instance_id(host_name(os.environ), self.data_dir)
        return kafka_id(f"{self.app_id}-{runtime}-{instance}")

    @property
    def advertised_url(self) -> str:
        scheme = "https" if self.web_tls_cert is not None else "http"
        return self.web_url or f"{scheme}://{self.web_host}:{self.web_port}"

    @property
    def broker_url(self) -> str:
        """The broker list in Faust's `kafka://` URL form."""
        return ";".join(f"kafka://{b}" for b in self.bootstrap.split(","))


#: hosts a server binds to but no client can call (and none at all)
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
#: what Kafka accepts in a group.instance.id (and so in the transactional id we derive too)
_NOT_IN_KAFKA_IDS = re.compile(r"[^A-Za-z0-9._-]")
#: well under Kafka's 249: ids show up in logs and metrics labels
MAX_ID_LENGTH = 120


def host_name(env: Mapping[str, str]) -> str:
    """This instance's host name: Kubernetes' POD_NAME (set through the downward API),
    else HOSTNAME (Docker sets it to the container's), else the system's."""
    return env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname()


def default_instance_id(host: str, data_dir: Path) -> str:
    """The host name with a short hash of the data dir's path: stable across restarts of
    a pod or container (same name, same /data), distinct for workers sharing one host."""
    where = str(data_dir.resolve()).encode()
    return f"{host}-{hashlib.sha1(where).hexdigest()[:8]}"


def kafka_id(raw: str) -> str:
    """`raw` if Kafka accepts it as a group.instance.id and it is short; else its legal
    characters, cut short, and a hash of `raw` (ids that differ stay different)."""
    safe = _NOT_IN_KAFKA_IDS.sub("-", raw)
    if safe == raw and len(raw) <= MAX_ID_LENGTH:
        return raw
    digest = hashlib.sha1(raw.encode()).hexdigest()[:12]
    return f"{safe[: MAX_ID_LENGTH - len(digest) - 1]}-{digest}"


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def _with_security(settings: Settings) -> Settings:
    """Check the Kafka security settings together and read the password file; errors name
    the setting and never its secret value."""
    protocol = settings.security_protocol.upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ValueError(
            f"TOWER_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}, "
            f"not {settings.security_protocol!r}"
        )
    mechanism = settings.sasl_mechanism.upper()
    if mechanism not in SASL_MECHANISMS:
        raise ValueError(
            f"TOWER_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, "
            f"not {settings.sasl_mechanism!r}"
        )
    password = settings.sasl_password
    if settings.sasl_password_file is not None:
        try:
            password = settings.sasl_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(
                f"TOWER_SASL_PASSWORD_FILE={str(settings.sasl_password_file)!r} cannot be read "
                f"({exc.strerror}); mount the secret there or set TOWER_SASL_PASSWORD"
            ) from None
    if protocol.startswith("SASL_") and not (settings.sasl_username and password):
        raise ValueError(
            f"TOWER_SECURITY_PROTOCOL={protocol} needs TOWER_SASL_USERNAME and "
            "TOWER_SASL_PASSWORD (or TOWER_SASL_PASSWORD_FILE)"
        )
    if (settings.ssl_cert_file is None) != (settings.ssl_key_file is None):
        raise ValueError("mTLS needs both TOWER_SSL_CERT_FILE and TOWER_SSL_KEY_FILE")
    for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise ValueError(f"TOWER_{name.upper()}={str(path)!r} is not a readable file")
    return replace(
        settings, security_protocol=protocol, sasl_mechanism=mechanism, sasl_password=password
    )


OUTPUT_FORMATS = ("avro", "json", "registry-avro")


def _read_secret(name: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(
            f"TOWER_{name.upper()}={str(path)!r} cannot be read ({exc.strerror}); mount the "
            "secret there"
        ) from None


def _with_registry(settings: Settings) -> Settings:
    """Check the schema registry settings together and read their secret files; errors
    name the setting, never a secret."""
    urls = [u.strip() for u in settings.schema_registry_url.split(",") if u.strip()]
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ValueError(
                f"TOWER_SCHEMA_REGISTRY_URL: {url!r} is not an http(s) URL, e.g. "
                "http://registry:8081"
            )
    if settings.output_format == "registry-avro" and not urls:
        raise ValueError("TOWER_OUTPUT_FORMAT=registry-avro needs TOWER_SCHEMA_REGISTRY_URL")
    password, token = settings.schema_registry_password, settings.schema_registry_token
    if settings.schema_registry_password_file is not None:
        password = _read_secret(
            "schema_registry_password_file", settings.schema_registry_password_file
        )
    if settings.schema_registry_token_file is not None:
        token = _read_secret("schema_registry_token_file", settings.schema_registry_token_file)
    if password and not settings.schema_registry_username:
        raise ValueError("TOWER_SCHEMA_REGISTRY_PASSWORD_FILE needs TOWER_SCHEMA_REGISTRY_USERNAME")
    if settings.schema_registry_username and not password:
        raise ValueError("TOWER_SCHEMA_REGISTRY_USERNAME needs TOWER_SCHEMA_REGISTRY_PASSWORD_FILE")
    if password and token:
        raise ValueError(
            "set either TOWER_SCHEMA_REGISTRY_USERNAME and _PASSWORD_FILE (basic auth) or "
            "TOWER_SCHEMA_REGISTRY_TOKEN_FILE (bearer), not both"
        )
    ca = settings.schema_registry_ca_file
    if ca is not None and not ca.is_file():
        raise ValueError(f"TOWER_SCHEMA_REGISTRY_CA_FILE={str(ca)!r} is not a readable file")
    return replace(
        settings,
        schema_registry_url=",".join(urls),
        schema_registry_password=password,
        schema_registry_token=token,
    )


def _env_value(value: Any) -> str:
    """A setting as `_coerce` reads it back; None (an unset path) as ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _coerce(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path) or name in _OPTIONAL_PATHS:
            return Path(raw).expanduser()
    except ValueError as exc:
        raise ValueError(
            f"TOWER_{name.upper()}={raw!r} is not a valid {type(default).__name__}"
        ) from exc
    return raw


#: secrets that can be read from a file at start: the secret -> the file's setting
_SECRETS_FROM_FILES = {
    "sasl_password": "sasl_password_file",
    "schema_registry_password": "schema_registry_password_file",
    "schema_registry_token": "schema_registry_token_file",
}
#: fields that are a path or None (their default None says nothing about the type)
_OPTIONAL_PATHS = frozenset(f.name for f in fields(Settings) if f.type == "Path | None")
