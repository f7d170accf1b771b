"""The schema registry settings: checked together, secrets read from files, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.settings import Settings


def test_no_registry_by_default() -> None:
    assert Settings.from_env({}).schema_registry_url == ""


def test_a_url_list_is_cleaned() -> None:
    env = {"TOWER_SCHEMA_REGISTRY_URL": " http://a:8081, https://b:8081/ ,"}
    assert Settings.from_env(env).schema_registry_url == "http://a:8081,https://b:8081/"


def test_secrets_come_from_files_and_are_never_shown(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    env = {
        "TOWER_SCHEMA_REGISTRY_URL": "http://r:8081",
        "TOWER_SCHEMA_REGISTRY_TOKEN_FILE": str(token),
    }
    settings = Settings.from_env(env)
    assert settings.schema_registry_token == "tok-123"
    assert "tok-123" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOWER_SCHEMA_REGISTRY_URL": "registry:8081"}, "TOWER_SCHEMA_REGISTRY_URL"),
        ({"TOWER_OUTPUT_FORMAT": "registry-avro"}, "needs TOWER_SCHEMA_REGISTRY_URL"),
        ({"TOWER_OUTPUT_FORMAT": "protobuf"}, "TOWER_OUTPUT_FORMAT"),
        (
            {"TOWER_SCHEMA_REGISTRY_URL": "http://r", "TOWER_SCHEMA_REGISTRY_USERNAME": "u"},
            "TOWER_SCHEMA_REGISTRY_PASSWORD_FILE",
        ),
        (
            {"TOWER_SCHEMA_REGISTRY_URL": "http://r", "TOWER_SCHEMA_REGISTRY_TOKEN_FILE": "/nope"},
            "TOWER_SCHEMA_REGISTRY_TOKEN_FILE",
        ),
        (
            {"TOWER_SCHEMA_REGISTRY_URL": "http://r", "TOWER_SCHEMA_REGISTRY_CA_FILE": "/nope"},
            "TOWER_SCHEMA_REGISTRY_CA_FILE",
        ),
    ],
    ids=[
        "not-a-url",
        "output-needs-url",
        "bad-format",
        "user-no-password",
        "no-token-file",
        "no-ca",
    ],
)
def test_bad_settings_say_which(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_a_password_file_needs_its_user(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret")
    env = {"TOWER_SCHEMA_REGISTRY_URL": "http://r", "TOWER_SCHEMA_REGISTRY_PASSWORD_FILE": str(pw)}
    with pytest.raises(ValueError, match="USERNAME") as info:
        Settings.from_env(env)
    assert "secret" not in str(info.value)
