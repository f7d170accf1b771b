"""`Settings.to_env` is the inverse of `Settings.from_env`: a child worker started with it
runs with exactly the parent's settings, secrets from files stay file paths, and nothing the
parent inherited overrides them."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.settings import (
    COMPRESSIONS,
    EVENT_LOOPS,
    LOG_FORMATS,
    RUNTIMES,
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
    Settings,
    TopicNames,
    host_name,
)

#: what an environment variable can hold (no NUL), never empty: "" means "unset"
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1)
NAMES = st.from_regex(r"[a-z][a-z0-9._-]{0,20}", fullmatch=True)
PATHS = st.builds(Path, st.from_regex(r"[a-zA-Z0-9_./ -]{0,15}[a-zA-Z0-9_]", fullmatch=True))
FINITE = st.floats(allow_nan=False, allow_infinity=False)
POSITIVE = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False)
URLS = st.builds("http://{}:{}".format, NAMES, st.integers(1, 65535))


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Readable files for the settings that must name one."""
    folder = tmp_path_factory.mktemp("secrets")
    files = {name: folder / name for name in ("password", "token", "ca", "cert", "key")}
    for name, path in files.items():
        path.write_text(f"{name}-value\n")
    return files


def settings_values(secrets: dict[str, Path]) -> st.SearchStrategy[dict[str, Any]]:
    """Every field, each with values `from_env` accepts, the checked ones together."""
    maybe_path = st.none() | PATHS
    registry_auth = st.sampled_from(["none", "basic", "token"])
    return st.fixed_dictionaries(
        {
            "bootstrap": st.lists(
                st.builds("{}:{}".format, NAMES, st.integers(1, 65535)), min_size=1
            ).map(",".join),
            "app_id": TEXT,
            "partitions": st.integers(),
            "replication_factor": st.integers(),
            "web_port": st.integers(0, 65535),
            "web_host": NAMES,
            "web_url": st.just("") | URLS,
            "data_dir": PATHS,
            "cache_dir": PATHS,
            "kafka_version": TEXT,
            "kafka_port": st.integers(),
            "controller_port": st.integers(),
            "max_event_bytes": st.integers(),
            "batch_size": st.integers(),
            "batch_within_s": FINITE,
            "transaction_max_records": st.integers(),
            "policy_file": maybe_path,
            "policy_wait_s": FINITE,
            "policy_require_approval": st.booleans(),
            "policy_approvers_file": maybe_path,
            "policy_key_file": maybe_path,
            "runtime": st.sampled_from([*RUNTIMES, "native"]),
            "event_loop": st.sampled_from(EVENT_LOOPS),
            "compression": st.sampled_from(COMPRESSIONS),
            "output_format": st.sampled_from(["avro", "json"]),
            "security_protocol": st.sampled_from(SECURITY_PROTOCOLS).map(str.lower)
            | st.sampled_from(SECURITY_PROTOCOLS),
            "sasl_mechanism": st.sampled_from(SASL_MECHANISMS),
            "sasl_username": TEXT,
            "sasl_password": TEXT,
            "sasl_password_file": st.none() | st.just(secrets["password"]),
            "ssl_ca_file": st.none() | st.just(secrets["ca"]),
            "mtls": st.booleans(),
            "web_tokens_file": maybe_path,
            "web_open_metrics": st.booleans(),
            "web_tls_cert": maybe_path,
            "web_tls_key": maybe_path,
            "web_peers": st.just("") | TEXT,
            "web_peer_key_file": maybe_path,
            "instance_id": st.just("") | NAMES,
            "liveness_stall_s": POSITIVE,
            "log_format": st.sampled_from(LOG_FORMATS),
            "schema_registry_url": st.lists(URLS, max_size=3).map(",".join),
            "registry_auth": registry_auth,
            "schema_registry_username": TEXT,
            "schema_registry_ca_file": st.none() | st.just(secrets["ca"]),
            "topics": st.builds(TopicNames, **{t: NAMES for t in TopicNames().__dict__}),
        }
    )


def build(values: dict[str, Any], secrets: dict[str, Path]) -> Settings:
    """Settings as `from_env` makes them (validated, secrets read, instance id derived)."""
    values = dict(values)
    mtls = values.pop("mtls")
    values["ssl_cert_file"] = secrets["cert"] if mtls else None
    values["ssl_key_file"] = secrets["key"] if mtls else None
    auth = values.pop("registry_auth")
    if auth == "basic":
        values["schema_registry_password_file"] = secrets["password"]
    else:
        values["schema_registry_username"] = ""
    if auth == "token":
        values["schema_registry_token_file"] = secrets["token"]
    topics = values.pop("topics")
    settings = Settings.from_env({}, **values)
    return replace(settings, topics=topics)


# every field is drawn independently of the others, so each one's values are covered as
# in a test of that field alone: Hypothesis's default number of examples
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_from_env_reads_back_what_to_env_wrote(
    data: st.DataObject, secrets: dict[str, Path]
) -> None:
    original = build(data.draw(settings_values(secrets)), secrets)
    env = original.to_env()
    assert Settings.from_env(env) == original
    assert all("\x00" not in v for v in env.values())


def test_every_setting_is_written_so_the_parents_variables_never_leak() -> None:
    parent = {
        "TOWER_PARTITIONS": "3",
        "TOWER_POLICY_FILE": "/parent.yaml",
        "TOWER_RUNTIME": "transactional",
    }
    child = Settings(partitions=8)
    assert Settings.from_env({**parent, **child.to_env()}) == Settings.from_env(child.to_env())
    assert Settings.from_env({**parent, **child.to_env()}).partitions == 8
    assert Settings.from_env({**parent, **child.to_env()}).policy_file is None


def test_a_secret_read_from_a_file_stays_a_file_path(secrets: dict[str, Path]) -> None:
    s = Settings.from_env(
        {
            "TOWER_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "TOWER_SASL_USERNAME": "tower",
            "TOWER_SASL_PASSWORD_FILE": str(secrets["password"]),
            "TOWER_SCHEMA_REGISTRY_URL": "http://registry:8081",
            "TOWER_SCHEMA_REGISTRY_TOKEN_FILE": str(secrets["token"]),
        }
    )
    env = s.to_env()
    assert (s.sasl_password, s.schema_registry_token) == ("password-value", "token-value")
    assert env["TOWER_SASL_PASSWORD_FILE"] == str(secrets["password"])
    assert env["TOWER_SCHEMA_REGISTRY_TOKEN_FILE"] == str(secrets["token"])
    assert "password-value" not in env.values() and "token-value" not in env.values()


def test_a_child_with_its_own_data_dir_gets_its_own_instance_id(tmp_path: Path) -> None:
    here = {"HOSTNAME": host_name(os.environ)}  # the host the child derives its id from
    parent = Settings.from_env({**here, "TOWER_DATA_DIR": str(tmp_path / "a")})
    assert parent.to_env()["TOWER_INSTANCE_ID"] == ""  # derived, not pinned
    child = Settings.from_env(replace(parent, data_dir=tmp_path / "b", instance_id="").to_env())
    assert child.instance_id != parent.instance_id
    named = Settings.from_env({**here, "TOWER_INSTANCE_ID": "replica-1"})
    assert (
        Settings.from_env(replace(named, data_dir=tmp_path / "b").to_env()).instance_id
        == "replica-1"
    )
