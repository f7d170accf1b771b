"""Choosing a runtime: the names, the earlier names as aliases, and a clear refusal."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipeline.ops.cli import main
from pipeline.settings import Settings


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
