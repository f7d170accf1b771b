"""Choosing a runtime (the names, the earlier names as aliases, a clear refusal), and each
replica's identity: its member id and the URL it advertises."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.ops.cli import main
from pipeline.runtime.transactional.engine import instance_id
from pipeline.settings import Settings, kafka_id


@pytest.mark.parametrize(
    ("env", "override", "runtime"),
    [
        ({}, None, "faust"),
        ({"TOWER_RUNTIME": "transactional"}, None, "transactional"),
        ({"TOWER_RUNTIME": "native"}, None, "transactional"),
        ({"TOWER_ENGINE": "native"}, None, "transactional"),
        ({"TOWER_ENGINE": "faust"}, None, "faust"),
        ({"TOWER_RUNTIME": "faust", "TOWER_ENGINE": "native"}, None, "faust"),  # the new name wins
        ({"TOWER_RUNTIME": "faust"}, "native", "transactional"),  # a flag wins
    ],
)
def test_runtime_names_and_aliases(env: dict[str, str], override: str | None, runtime: str) -> None:
    assert Settings.from_env(env, runtime=override).runtime == runtime


def test_an_unknown_runtime_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="faust, transactional"):
        Settings.from_env({"TOWER_RUNTIME": "bogus"})
    result = CliRunner().invoke(main, ["worker"], env={"TOWER_RUNTIME": "bogus"})
    assert result.exit_code == 3 and "TOWER_RUNTIME must be one of" in result.output
    assert "Traceback" not in result.output


def test_the_advertised_url_defaults_to_host_and_port() -> None:
    assert Settings(web_host="10.0.0.5", web_port=7000).advertised_url == "http://10.0.0.5:7000"
    assert Settings(web_url="http://tower-1:6066").advertised_url == "http://tower-1:6066"


def test_an_unknown_event_loop_is_refused_with_the_choices() -> None:
    assert Settings.from_env({}).event_loop == "uvloop"
    assert Settings.from_env({"TOWER_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(ValueError, match="TOWER_EVENT_LOOP must be one of uvloop, asyncio"):
        Settings.from_env({"TOWER_EVENT_LOOP": "trio"})


def test_compression_defaults_to_zstd_and_refuses_an_unknown_codec() -> None:
    assert Settings.from_env({}).compression == "zstd"
    assert Settings.from_env({"TOWER_COMPRESSION": "none"}).compression == "none"
    with pytest.raises(ValueError, match="TOWER_COMPRESSION must be one of zstd, lz4, gzip"):
        Settings.from_env({"TOWER_COMPRESSION": "brotli"})


# --- replica identity ---------------------------------------------------------------------

DATA = "/data"


def default_hash(data_dir: str) -> str:
    return hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]


@pytest.mark.parametrize(
    ("env", "instance"),
    [
        ({"TOWER_INSTANCE_ID": "tower-0"}, "tower-0"),  # set: wins over every host name
        ({"TOWER_INSTANCE_ID": "tower-0", "POD_NAME": "p", "HOSTNAME": "h"}, "tower-0"),
        ({"POD_NAME": "tower-2", "HOSTNAME": "3f2a9c1b7d4e"}, f"tower-2-{default_hash(DATA)}"),
        ({"HOSTNAME": "3f2a9c1b7d4e"}, f"3f2a9c1b7d4e-{default_hash(DATA)}"),
        ({}, f"{socket.gethostname()}-{default_hash(DATA)}"),
    ],
)
def test_the_instance_id_comes_from_the_setting_else_the_pod_or_host_name(
    env: dict[str, str], instance: str
) -> None:
    settings = Settings.from_env({"TOWER_DATA_DIR": DATA, **env}, app_id="tower")
    assert settings.instance_id == instance
    assert settings.member_id("faust") == f"tower-faust-{instance}"
    assert instance_id(settings) == f"tower-transactional-{instance}"


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        # replicas: one image, one data path, their own host names
        ({"HOSTNAME": "a1"}, {"HOSTNAME": "b2"}, False),
        ({"POD_NAME": "tower-0"}, {"POD_NAME": "tower-1"}, False),
        # workers sharing one host, each with its own data dir
        (
            {"HOSTNAME": "h", "TOWER_DATA_DIR": "/d/1"},
            {"HOSTNAME": "h", "TOWER_DATA_DIR": "/d/2"},
            False,
        ),
        # one replica restarted: its pod name and data path again
        ({"POD_NAME": "tower-0"}, {"POD_NAME": "tower-0"}, True),
        (
            {"TOWER_INSTANCE_ID": "x", "HOSTNAME": "a1"},
            {"TOWER_INSTANCE_ID": "x", "HOSTNAME": "b"},
            True,
        ),
    ],
)
def test_replicas_differ_and_a_restarted_replica_keeps_its_id(
    first: dict[str, str], second: dict[str, str], same: bool
) -> None:
    def member(env: dict[str, str]) -> str:
        return Settings.from_env({"TOWER_DATA_DIR": DATA, **env}).member_id("faust")

    assert (member(first) == member(second)) is same


@pytest.mark.parametrize(
    "instance",
    [
        "tower-0",
        "worker.example.com",
        "a b/c:d@e",  # characters Kafka refuses
        "Ünïcode-hôst",
        "x" * 400,  # far too long
    ],
)
def test_member_ids_hold_only_what_kafka_accepts_and_stay_short(instance: str) -> None:
    member = Settings.from_env({"TOWER_INSTANCE_ID": instance}).member_id("transactional")
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,120}", member), member
    assert member.startswith("journey-tower-transactional-")


def test_ids_that_differ_only_in_refused_characters_stay_different() -> None:
    assert kafka_id("tower-a/b") != kafka_id("tower-a:b")
    assert kafka_id("x" * 300) != kafka_id("x" * 301)
    assert kafka_id("tower-transactional-tower-0") == "tower-transactional-tower-0"


def test_settings_made_in_code_derive_the_id_from_the_process_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOSTNAME", "replica-7")
    monkeypatch.delenv("POD_NAME", raising=False)
    settings = Settings(app_id="tower", data_dir=Path(DATA))
    assert settings.member_id("faust") == f"tower-faust-replica-7-{default_hash(DATA)}"


@pytest.mark.parametrize(
    ("env", "url"),
    [
        (
            {"TOWER_WEB_URL": "http://{hostname}:6066", "HOSTNAME": "3f2a9c1b7d4e"},
            "http://3f2a9c1b7d4e:6066",
        ),
        ({"TOWER_WEB_URL": "http://{hostname}:6066", "POD_NAME": "tower-1"}, "http://tower-1:6066"),
        ({"TOWER_WEB_URL": "https://tower-1.tower:7000"}, "https://tower-1.tower:7000"),
        ({"TOWER_WEB_HOST": "10.0.0.5", "TOWER_WEB_PORT": "7000"}, "http://10.0.0.5:7000"),
        # bound to every interface, advertised by name
        (
            {
                "TOWER_WEB_HOST": "0.0.0.0",
                "TOWER_WEB_URL": "http://{hostname}:6066",
                "HOSTNAME": "w",
            },
            "http://w:6066",
        ),
    ],
)
def test_the_advertised_url_expands_the_host_name(env: dict[str, str], url: str) -> None:
    assert Settings.from_env(env).advertised_url == url


@pytest.mark.parametrize(
    "env",
    [
        {"TOWER_WEB_HOST": "0.0.0.0"},
        {"TOWER_WEB_HOST": "::"},
        {"TOWER_WEB_URL": "http://0.0.0.0:6066"},
        {"TOWER_WEB_URL": "http://[::]:6066"},
        {"TOWER_WEB_URL": "https://[::]"},
    ],
)
def test_a_wildcard_advertised_url_is_refused_in_one_line_naming_tower_web_url(
    env: dict[str, str],
) -> None:
    with pytest.raises(ValueError, match="TOWER_WEB_URL") as caught:
        Settings.from_env(env)
    assert "\n" not in str(caught.value)
    result = CliRunner().invoke(main, ["worker"], env=env)
    assert result.exit_code == 3 and "set TOWER_WEB_URL" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"TOWER_LOG_FORMAT": "xml"}, "TOWER_LOG_FORMAT must be one of text, json"),
        ({"TOWER_LIVENESS_STALL_S": "0"}, "TOWER_LIVENESS_STALL_S must be"),
        ({"TOWER_LIVENESS_STALL_S": "soon"}, "TOWER_LIVENESS_STALL_S='soon' is not a valid"),
    ],
)
def test_probe_and_log_settings_are_checked(env: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Settings.from_env(env)


def test_probe_and_log_settings_are_read() -> None:
    s = Settings.from_env({"TOWER_LOG_FORMAT": "json", "TOWER_LIVENESS_STALL_S": "2.5"})
    assert (s.log_format, s.liveness_stall_s) == ("json", 2.5)
    assert (Settings().log_format, Settings().liveness_stall_s) == ("text", 120.0)
