"""The secured local broker's material, listener settings and the roles' ACLs."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pipeline.kafka.clients import READER_GROUP_PREFIX
from pipeline.ops.local_security import (
    ROLES,
    Grant,
    Material,
    SecurityMaterialError,
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
    for path in (material.key_file, material.run_dir / "secrets.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in material.key_file.read_bytes()  # PKCS#8, what Kafka reads


def test_listener_is_sasl_ssl_with_the_authorizer(material: Material) -> None:
    conf = dict(
        line.split("=", 1) for line in listener_config(material, "127.0.0.1", 9, 10).splitlines()
    )
    assert conf["listeners"] == "SASL_SSL://127.0.0.1:9,CONTROLLER://127.0.0.1:10"
    assert conf["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert conf["authorizer.class.name"].endswith("StandardAuthorizer")
    assert conf["allow.everyone.if.no.acl.found"] == "false"
    assert "\n" not in conf["ssl.keystore.key"] and "\\n" in conf["ssl.keystore.key"]
    users = [a for a in scram_format_args(material) if a.startswith("SCRAM")]
    assert len(users) == len(ROLES) + 1


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
            "operator",
            [
                Grant("operator", "TOPIC", T.policies, "ALL"),
                Grant("operator", "TOPIC", "*", "CREATE"),
            ],
            [("TOPIC", T.approved), ("TOPIC", T.events)],
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
        assert not [g for g in grants if (g.resource, g.name) == (resource, name)]


def test_a_run_dir_keeps_its_mode(tmp_path: Path) -> None:
    data = tmp_path / "data"
    check_mode(tmp_path, data, secure=True)  # not formatted yet: marks it
    data.mkdir()
    (data / "meta.properties").write_text("")
    check_mode(tmp_path, data, secure=True)
    with pytest.raises(SecurityMaterialError, match="is secured; a plaintext broker"):
        check_mode(tmp_path, data, secure=False)
