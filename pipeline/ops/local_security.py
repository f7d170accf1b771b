"""A secured local broker (`tower kafka up --secure`): a SASL_SSL listener with SCRAM-SHA-512,
the KRaft StandardAuthorizer, five roles with the ACLs they need, and a client properties
file per role, so the project can be tried the way a managed cluster runs it.

The material lives in the broker's run dir (mode 0700): `tls/` (a CA made at first start, the
broker's certificate for 127.0.0.1 and localhost), `secrets.json` (one SCRAM password per
user) and a password file per user, each file holding a secret mode 0600. server.properties
names the admin password and the broker key through Kafka's DirectoryConfigProvider instead
of holding them, and the SCRAM users are created by the storage tool from a java argument
file, so no secret is on a command line (`ps`). The broker authenticates itself to its own
listener as `admin`, a super user;
the controller listener stays PLAINTEXT on loopback (KRaft cannot use SCRAM there), so its
anonymous principal is a super user too: fine on a laptop, not on a shared host.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.kafka.clients import READER_GROUP_PREFIX
from pipeline.settings import Settings, TopicNames

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
#: role -> what it is for (docs/security.md, Roles on a secured cluster)
ROLES = {
    "tower": "the workers: read inputs, write outputs, state changelogs, groups, transactions",
    "agent": "write agent-events only",
    "channel": "read approved-actions only (consumer groups named channel-*)",
    "policy-author": "read and publish policies, nothing else",
    "topic-admin": "create, configure and delete topics, except the audit's trail",
    "auditor": "read the audit (and the policies, to replay decisions)",
}
#: what nobody (but the broker's own super user) may do to the audit topic: delete it,
#: change its retention or other configs, add partitions
AUDIT_DENIED = ("DELETE", "ALTER_CONFIGS", "ALTER")
#: the roles that must never write the audit even where a broader grant would allow it
AUDIT_NON_WRITERS = ("agent", "channel", "policy-author", "topic-admin", "auditor")


class SecurityMaterialError(Exception):
    """The secured broker's material cannot be made; the message says what to do."""


@dataclass(frozen=True)
class Material:
    """Certificates and passwords of one secured local broker."""

    run_dir: Path
    passwords: dict[str, str]

    @property
    def ca_file(self) -> Path:
        return self.run_dir / "tls" / "ca.pem"

    @property
    def chain_file(self) -> Path:
        return self.run_dir / "tls" / "broker-chain.pem"

    @property
    def key_file(self) -> Path:
        return self.run_dir / "tls" / "broker-key.pem"

    def password_file(self, user: str) -> Path:
        """The user's password alone (TOWER_SASL_PASSWORD_FILE; the broker's for `admin`)."""
        return self.run_dir / f"password-{user}"

    def settings(self, bootstrap: str, user: str, base: Settings | None = None) -> Settings:
        """Client settings of `user` for this broker (on top of `base`)."""
        from dataclasses import replace

        return replace(
            base or Settings(),
            bootstrap=bootstrap,
            security_protocol="SASL_SSL",
            sasl_mechanism=MECHANISM,
            sasl_username=user,
            sasl_password=self.passwords[user],
            ssl_ca_file=self.ca_file,
        )

    def env(self, user: str) -> dict[str, str]:
        """The TOWER_* variables that make the project's clients connect as `user`."""
        return {
            "TOWER_SECURITY_PROTOCOL": "SASL_SSL",
            "TOWER_SASL_MECHANISM": MECHANISM,
            "TOWER_SASL_USERNAME": user,
            "TOWER_SASL_PASSWORD": self.passwords[user],
            "TOWER_SSL_CA_FILE": str(self.ca_file),
        }


def ensure_material(run_dir: Path) -> Material:
    """The run dir's CA, broker certificate and passwords, made on first use and then kept."""
    secrets_file = run_dir / "secrets.json"
    tls = run_dir / "tls"
    private_dir(run_dir)
    if secrets_file.exists() and (tls / "ca.pem").exists():
        material = Material(run_dir, json.loads(secrets_file.read_text()))
        _write_password_files(material)
        return material
    try:
        import trustme
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise SecurityMaterialError(
            "a secured broker needs the `trustme` package to make its certificates: "
            "pip install 'journey-tower[local-tls]' (make install does)"
        ) from None
    private_dir(tls)
    ca = trustme.CA(organization_name="Journey Tower local CA", key_type=trustme.KeyType.RSA)
    cert = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(  # Kafka's PEM keystore reads PKCS#8 only
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    material = Material(run_dir, {user: secrets.token_urlsafe(24) for user in (ADMIN, *ROLES)})
    ca.cert_pem.write_to_path(str(material.ca_file))
    material.chain_file.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    _write_private(material.key_file, pkcs8)
    _write_private(secrets_file, json.dumps(material.passwords, indent=2).encode())
    _write_password_files(material)
    return material


def private_dir(path: Path) -> None:
    """A directory only its owner can enter (made if missing, tightened if not)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def write_private(path: Path, data: bytes) -> None:
    """Write a file that is never readable by others, not even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


_write_private = write_private


def _write_password_files(material: Material) -> None:
    for user, password in material.passwords.items():
        _write_private(material.password_file(user), password.encode())


#: server.properties reads secrets from files: `${dir:<directory>:<file name>}`
CONFIG_PROVIDERS = [
    "config.providers=dir",
    "config.providers.dir.class=org.apache.kafka.common.config.provider.DirectoryConfigProvider",
]


def _from_file(path: Path) -> str:
    return f"${{dir:{path.parent}:{path.name}}}"


def listener_config(material: Material, host: str, port: int, controller_port: int) -> str:
    """The server.properties lines of the SASL_SSL listener and the authorizer."""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{_from_file(material.password_file(ADMIN))}";'
    )
    return "\n".join(
        [
            *CONFIG_PROVIDERS,
            f"listeners=SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
            f"advertised.listeners=SASL_SSL://{host}:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=SASL_SSL",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.certificate.chain={_from_file(material.chain_file)}",
            f"ssl.keystore.key={_from_file(material.key_file)}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={material.ca_file}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{ADMIN};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
        ]
    )


def scram_format_args(material: Material) -> list[str]:
    """StorageTool `format` arguments that create every user's SCRAM credential, so the
    broker's own login works from its first start. They hold the passwords: pass them in a
    java argument file (`argument_file`), never on the command line."""
    args: list[str] = []
    for user, password in material.passwords.items():
        args += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
    return args


def argument_file(path: Path, args: list[str]) -> str:
    """Write `args` into a private java argument file; returns the `@file` argument. The
    java launcher expands it in its own process, so `ps` shows `@file`, not the args."""
    for arg in args:
        if any(c.isspace() or c in "\"'\\#@" for c in arg):
            raise SecurityMaterialError(f"cannot put {arg.split('=')[0]!r} in a java argument file")
    _write_private(path, ("\n".join(args) + "\n").encode())
    return f"@{path}"


def client_properties(material: Material, bootstrap: str, user: str) -> str:
    """librdkafka-style client settings (kcat -F, confluent-kafka)."""
    return (
        "\n".join(
            [
                f"bootstrap.servers={bootstrap}",
                "security.protocol=SASL_SSL",
                f"sasl.mechanism={MECHANISM}",
                f"sasl.username={user}",
                f"sasl.password={material.passwords[user]}",
                f"ssl.ca.location={material.ca_file}",
            ]
        )
        + "\n"
    )


def java_client_properties(material: Material, bootstrap: str, user: str) -> str:
    """The same for the Java tools (kafka-console-consumer.sh --consumer.config ...)."""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{material.passwords[user]}";'
    )
    return (
        "\n".join(
            [
                f"bootstrap.servers={bootstrap}",
                "security.protocol=SASL_SSL",
                f"sasl.mechanism={MECHANISM}",
                f"sasl.jaas.config={jaas}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={material.ca_file}",
            ]
        )
        + "\n"
    )


def password_file(material: Material, role: str) -> Path:
    """The role's password alone, for TOWER_SASL_PASSWORD_FILE."""
    return material.password_file(role)


def write_client_files(material: Material, bootstrap: str) -> dict[str, Path]:
    """Per role: `client-<role>.properties` (librdkafka), `client-<role>.java.properties`
    and `password-<role>`, each readable by the owner only."""
    written = {}
    for role in ROLES:
        path = material.run_dir / f"client-{role}.properties"
        _write_private(path, client_properties(material, bootstrap, role).encode())
        java = material.run_dir / f"client-{role}.java.properties"
        _write_private(java, java_client_properties(material, bootstrap, role).encode())
        written[role] = path
    return written


# --- ACLs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One ACL: `role` may (or with DENY: may not) do `operation` on a resource (LITERAL
    name or PREFIXED). Role `*` is every user; a DENY wins over any ALLOW."""

    role: str
    resource: str  # TOPIC, GROUP, TRANSACTIONAL_ID, BROKER (the cluster)
    name: str
    operation: str
    prefixed: bool = False
    permission: str = "ALLOW"


def role_grants(topics: TopicNames, app_id: str) -> list[Grant]:
    """What each role may do, for a deployment's topic names and app id."""
    grants: list[Grant] = []
    own = [
        topics.events,
        topics.wakeups,
        topics.approved,
        topics.deadletter,
        topics.policies,
    ]
    for name in own:
        grants.append(Grant("tower", "TOPIC", name, "ALL"))
    # the audit: written and read (its chain's tail), created by `tower topics create`
    for op in ("CREATE", "WRITE", "READ", "DESCRIBE", "DESCRIBE_CONFIGS"):
        grants.append(Grant("tower", "TOPIC", topics.audit, op))
    for resource in ("TOPIC", "GROUP", "TRANSACTIONAL_ID"):  # changelogs, Faust's own topics
        grants.append(Grant("tower", resource, app_id, "ALL", prefixed=True))
    for role in ("tower", "policy-author", "auditor"):  # their `clients.reader`s
        grants.append(Grant(role, "GROUP", READER_GROUP_PREFIX, "READ", prefixed=True))
    for op in ("DESCRIBE", "CREATE", "DESCRIBE_CONFIGS", "IDEMPOTENT_WRITE"):
        grants.append(Grant("tower", "BROKER", "kafka-cluster", op))
    grants += [Grant("agent", "TOPIC", topics.events, op) for op in ("WRITE", "DESCRIBE")]
    grants += [Grant("channel", "TOPIC", topics.approved, op) for op in ("READ", "DESCRIBE")]
    grants.append(Grant("channel", "GROUP", "channel-", "READ", prefixed=True))
    for op in ("WRITE", "READ", "DESCRIBE", "DESCRIBE_CONFIGS"):
        grants.append(Grant("policy-author", "TOPIC", topics.policies, op))
    for op in ("CREATE", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "ALTER"):
        grants.append(Grant("topic-admin", "TOPIC", "*", op))
    for op in ("CREATE", "DESCRIBE", "DESCRIBE_CONFIGS"):
        grants.append(Grant("topic-admin", "BROKER", "kafka-cluster", op))
    for name in (topics.audit, topics.policies):
        grants += [Grant("auditor", "TOPIC", name, op) for op in ("READ", "DESCRIBE")]
    # the trail's integrity: the DENYs win over the wildcard grants above
    grants += [Grant("*", "TOPIC", topics.audit, op, permission="DENY") for op in AUDIT_DENIED]
    grants += [
        Grant(role, "TOPIC", topics.audit, "WRITE", permission="DENY") for role in AUDIT_NON_WRITERS
    ]
    return grants


def apply_grants(admin_settings: Settings, grants: Iterable[Grant], timeout: float = 30) -> int:
    """Create the ACLs (creating an existing one is a no-op); returns how many were sent."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    from pipeline.kafka import clients

    bindings = [
        AclBinding(
            ResourceType[g.resource],
            g.name,
            ResourcePatternType.PREFIXED if g.prefixed else ResourcePatternType.LITERAL,
            f"User:{g.role}",
            "*",
            AclOperation[g.operation],
            AclPermissionType[g.permission],
        )
        for g in grants
    ]
    admin = clients.admin(admin_settings)
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result()
    return len(bindings)


def secure_marker(run_dir: Path) -> Path:
    """Present in a run dir formatted for the secured broker."""
    return run_dir / "secure"


def check_mode(run_dir: Path, data_dir: Path, secure: bool) -> None:
    """A run dir keeps the mode it was formatted in: its users live in the metadata log."""
    formatted = (data_dir / "meta.properties").exists()
    marked = secure_marker(run_dir).exists()
    if formatted and secure != marked:
        want, have = ("secured", "plaintext") if secure else ("plaintext", "secured")
        raise SecurityMaterialError(
            f"the broker data in {run_dir} is {have}; a {want} broker needs its own: stop it "
            f"(`tower kafka down`), then use another --port, or delete {run_dir}"
        )
    if not formatted:
        if secure:
            secure_marker(run_dir).touch()
        else:
            secure_marker(run_dir).unlink(missing_ok=True)
