"""The security settings reach every client the same way: librdkafka and aiokafka (Faust,
`pipeline.runtime.faust.connection`)."""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path

import faust
import pytest
import trustme

from pipeline.kafka import clients
from pipeline.runtime.faust.connection import faust_connection
from pipeline.settings import Settings


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def test_plaintext_adds_nothing() -> None:
    assert clients.connection(Settings(bootstrap="b:9092")) == {
        "bootstrap.servers": "b:9092",
        "allow.auto.create.topics": False,
    }
    assert faust_connection(Settings(bootstrap="b:9092")) == {"broker": "kafka://b:9092"}


def test_sasl_ssl_maps_to_librdkafka(ca_file: Path) -> None:
    s = Settings(
        bootstrap="b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="tower",
        sasl_password="pw",
        ssl_ca_file=ca_file,
    )
    assert clients.connection(s) == {
        "bootstrap.servers": "b:9093",
        "allow.auto.create.topics": False,
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "tower",
        "sasl.password": "pw",
        "ssl.ca.location": str(ca_file),
    }


def test_sasl_plaintext_sends_no_tls_files(ca_file: Path) -> None:
    s = Settings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password="p",
        ssl_ca_file=ca_file,
    )
    conf = clients.connection(s)
    assert conf["security.protocol"] == "sasl_plaintext" and "ssl.ca.location" not in conf
    creds = faust_connection(s)["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials) and creds.ssl_context is None
    assert creds.mechanism.value == "PLAIN"


def test_sasl_ssl_maps_to_aiokafka_credentials(ca_file: Path) -> None:
    s = Settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="tower",
        sasl_password="pw",
        ssl_ca_file=ca_file,
    )
    creds = faust_connection(s)["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == (
        "tower",
        "pw",
        "SCRAM-SHA-256",
    )
    assert creds.protocol.value == "SASL_SSL"
    assert isinstance(creds.ssl_context, ssl.SSLContext)
    assert creds.ssl_context.check_hostname and creds.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_ssl_with_a_client_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("tower-worker")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    s = Settings(
        security_protocol="SSL", ssl_ca_file=ca_file, ssl_cert_file=cert_file, ssl_key_file=key_file
    )
    conf = clients.connection(s)
    assert conf["ssl.certificate.location"] == str(cert_file)
    assert conf["ssl.key.location"] == str(key_file) and "sasl.username" not in conf
    creds = faust_connection(s)["broker_credentials"]
    assert isinstance(creds, faust.SSLCredentials)
    assert clients.connection(replace(s, security_protocol="PLAINTEXT")) == {
        "bootstrap.servers": s.bootstrap,
        "allow.auto.create.topics": False,
    }
