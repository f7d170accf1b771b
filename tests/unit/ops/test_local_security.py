"""The secured local broker's material, listener settings and the roles' ACLs."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from pipeline.kafka.clients import READER_GROUP_PREFIX
from pipeline.ops import local_kafka, local_security
from pipeline.ops.local_kafka import LocalKafka
from pipeline.ops.local_security import (
    ROLES,
    Grant,
    Material,
    SecurityMaterialError,
    argument_file,
    check_mode,
    client_properties,
    ensure_material,
    listener_config,
    role_grants,
    scram_format_args,
    write_client_files,
)
from pipeline.settings import TopicNames


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return ensure_material(tmp_path_factory.mktemp("run"))


def test_material_is_made_once_and_kept_private(material: Material) -> None:
    again = ensure_material(material.run_dir)
    assert again.passwords == material.passwords
    assert set(material.passwords) == {"admin", *ROLES}
    secret_files = [material.key_file, material.run_dir / "secrets.json"]
    secret_files += [material.password_file(user) for user in material.passwords]
    for path in secret_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for directory in (material.run_dir, material.key_file.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert b"BEGIN PRIVATE KEY" in material.key_file.read_bytes()  # PKCS#8, what Kafka reads


def test_listener_is_sasl_ssl_with_the_authorizer(material: Material) -> None:
    text = listener_config(material, "127.0.0.1", 9, 10)
    conf = dict(line.split("=", 1) for line in text.splitlines())
    assert conf["listeners"] == "SASL_SSL://127.0.0.1:9,CONTROLLER://127.0.0.1:10"
    assert conf["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert conf["authorizer.class.name"].endswith("StandardAuthorizer")
    assert conf["allow.everyone.if.no.acl.found"] == "false"
    users = [a for a in scram_format_args(material) if a.startswith("SCRAM")]
    assert len(users) == len(ROLES) + 1


def test_the_broker_config_names_its_secrets_instead_of_holding_them(material: Material) -> None:
    text = listener_config(material, "127.0.0.1", 9, 10)
    conf = dict(line.split("=", 1) for line in text.splitlines())
    assert conf["config.providers"] == "dir"
    assert conf["ssl.keystore.key"] == f"${{dir:{material.key_file.parent}:broker-key.pem}}"
    admin_file = material.password_file("admin")
    assert f'password="${{dir:{admin_file.parent}:{admin_file.name}}}"' in text
    assert "PRIVATE KEY" not in text
    for password in material.passwords.values():
        assert password not in text


def test_the_scram_users_reach_the_storage_tool_in_a_private_argument_file(
    material: Material, tmp_path: Path
) -> None:
    args = ["kafka.tools.StorageTool", "format", *scram_format_args(material)]
    at = argument_file(tmp_path / "format.args", args)
    assert at == f"@{tmp_path / 'format.args'}"
    assert (tmp_path / "format.args").read_text().splitlines() == args
    assert stat.S_IMODE((tmp_path / "format.args").stat().st_mode) == 0o600
    with pytest.raises(SecurityMaterialError):
        argument_file(tmp_path / "bad.args", ["has space"])


def test_client_files_are_librdkafka_properties(material: Material) -> None:
    files = write_client_files(material, "127.0.0.1:9")
    assert set(files) == set(ROLES)
    props = dict(line.split("=", 1) for line in files["agent"].read_text().splitlines())
    assert props == {
        "bootstrap.servers": "127.0.0.1:9",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "agent",
        "sasl.password": material.passwords["agent"],
        "ssl.ca.location": str(material.ca_file),
    }
    assert client_properties(material, "x:1", "auditor").startswith("bootstrap.servers=x:1\n")
    assert (material.run_dir / "client-agent.java.properties").exists()


T = TopicNames()


@pytest.mark.parametrize(
    ("role", "must", "must_not"),
    [
        ("agent", [Grant("agent", "TOPIC", T.events, "WRITE")], [("TOPIC", T.approved)]),
        (
            "channel",
            [Grant("channel", "TOPIC", T.approved, "READ")],
            [("TOPIC", T.events), ("TOPIC", T.audit)],
        ),
        (
            "auditor",
            [
                Grant("auditor", "TOPIC", T.audit, "READ"),
                Grant("auditor", "GROUP", READER_GROUP_PREFIX, "READ", prefixed=True),
            ],
            [("TOPIC", T.events), ("TOPIC", T.approved)],
        ),
        (
            "policy-author",
            [
                Grant("policy-author", "TOPIC", T.policies, "WRITE"),
                Grant("policy-author", "TOPIC", T.policies, "READ"),
                Grant("policy-author", "TOPIC", T.audit, "WRITE", permission="DENY"),
            ],
            [
                ("TOPIC", T.approved),
                ("TOPIC", T.events),
                ("TOPIC", "*"),
                ("BROKER", "kafka-cluster"),
            ],
        ),
        (
            "topic-admin",
            [
                Grant("topic-admin", "TOPIC", "*", "CREATE"),
                Grant("topic-admin", "TOPIC", "*", "ALTER_CONFIGS"),
                Grant("topic-admin", "TOPIC", T.audit, "WRITE", permission="DENY"),
            ],
            [("TOPIC", T.approved), ("TOPIC", T.events), ("TOPIC", T.policies)],
        ),
        (
            "tower",
            [
                Grant("tower", "TOPIC", T.approved, "ALL"),
                Grant("tower", "TRANSACTIONAL_ID", "app", "ALL", prefixed=True),
            ],
            [],
        ),
    ],
)
def test_each_role_gets_what_it_needs_and_no_more(
    role: str, must: list[Grant], must_not: list[tuple[str, str]]
) -> None:
    grants = [g for g in role_grants(T, "app") if g.role == role]
    for g in must:
        assert g in grants
    for resource, name in must_not:
        assert not [
            g
            for g in grants
            if (g.resource, g.name) == (resource, name) and g.permission == "ALLOW"
        ]


def test_nobody_may_delete_the_audit_or_change_its_configs_and_only_the_tower_writes_it() -> None:
    grants = role_grants(T, "app")
    denied = {
        g.operation for g in grants if (g.role, g.name, g.permission) == ("*", T.audit, "DENY")
    }
    assert denied == {"DELETE", "ALTER_CONFIGS", "ALTER"}
    writers = {
        g.role
        for g in grants
        if g.resource == "TOPIC"
        and g.name in (T.audit, "*")
        and g.operation in ("WRITE", "ALL")
        and g.permission == "ALLOW"
    }
    assert writers == {"tower"}
    assert not [g for g in grants if g.name == T.audit and g.operation == "ALL"]
    for role in set(ROLES) - {"tower"}:
        assert Grant(role, "TOPIC", T.audit, "WRITE", permission="DENY") in grants


def test_a_run_dir_keeps_its_mode(tmp_path: Path) -> None:
    data = tmp_path / "data"
    check_mode(tmp_path, data, secure=True)  # not formatted yet: marks it
    data.mkdir()
    (data / "meta.properties").write_text("")
    check_mode(tmp_path, data, secure=True)
    with pytest.raises(SecurityMaterialError, match="is secured; a plaintext broker"):
        check_mode(tmp_path, data, secure=False)


def test_no_password_is_on_the_storage_tools_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = LocalKafka(port=29999, run_dir=tmp_path / "run", secure=True)
    seen: list[tuple[list[str], str]] = []

    def run(argv: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        argfile = next(a[1:] for a in argv if a.startswith("@"))
        seen.append((argv, Path(argfile).read_text()))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(local_kafka.subprocess, "run", run)
    local_security.private_dir(broker.run_dir)
    broker._write_config()
    broker._format("java", tmp_path / "libs")
    [(argv, argfile)] = seen
    for password in broker.material.passwords.values():
        assert password not in " ".join(argv)
        assert password in argfile  # the tool gets them all
    assert not (broker.run_dir / "format.args").exists()
    assert stat.S_IMODE(broker.config_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(broker.run_dir.stat().st_mode) == 0o700
