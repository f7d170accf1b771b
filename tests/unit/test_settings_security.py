"""Kafka security settings: checked together, the password read from its file, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.settings import Settings


def test_plaintext_is_the_default() -> None:
    s = Settings.from_env({})
    assert (s.security_protocol, s.sasl_username, s.sasl_password) == ("PLAINTEXT", "", "")


def test_the_password_file_is_read_and_the_password_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-value\n")
    s = Settings.from_env(
        {
            "TOWER_SECURITY_PROTOCOL": "sasl_ssl",
            "TOWER_SASL_MECHANISM": "scram-sha-256",
            "TOWER_SASL_USERNAME": "tower",
            "TOWER_SASL_PASSWORD_FILE": str(secret),
        }
    )
    assert (s.security_protocol, s.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert s.sasl_password == "s3cret-value"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"TOWER_SECURITY_PROTOCOL": "TLS"}, "TOWER_SECURITY_PROTOCOL must be one of"),
        ({"TOWER_SASL_MECHANISM": "GSSAPI"}, "TOWER_SASL_MECHANISM must be one of"),
        ({"TOWER_SECURITY_PROTOCOL": "SASL_SSL"}, "needs TOWER_SASL_USERNAME"),
        (
            {
                "TOWER_SECURITY_PROTOCOL": "SASL_SSL",
                "TOWER_SASL_USERNAME": "u",
                "TOWER_SASL_PASSWORD": "",
            },
            "TOWER_SASL_PASSWORD",
        ),
        ({"TOWER_SASL_PASSWORD_FILE": "/nonexistent/pw"}, "cannot be read"),
        ({"TOWER_SSL_CA_FILE": "/nonexistent/ca.pem"}, "is not a readable file"),
        ({"TOWER_SSL_CERT_FILE": "/etc/hostname"}, "needs both TOWER_SSL_CERT_FILE"),
    ],
)
def test_a_bad_combination_is_refused_saying_which_setting(env: dict[str, str], says: str) -> None:
    env = {"TOWER_SASL_PASSWORD": "hunter2-secret", **env}
    with pytest.raises(ValueError, match=says) as caught:
        Settings.from_env(env)
    assert "hunter2" not in str(caught.value)
