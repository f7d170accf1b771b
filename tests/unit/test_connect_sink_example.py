"""docs/connect-audit-sink.json: a Kafka Connect JDBC sink of the audit topic with
AvroConverter, valid for the Connect REST API (POST /connectors) and for our schema."""

from __future__ import annotations

from pathlib import Path

import orjson

from pipeline.settings import TopicNames

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "connect-audit-sink.json"


def test_the_connect_sink_example_is_a_valid_connector_request() -> None:
    request = orjson.loads(EXAMPLE.read_bytes())
    assert set(request) == {"name", "config"}
    config = request["config"]
    assert all(isinstance(v, str) for v in config.values()), "Connect wants strings"
    assert config["topics"] == TopicNames().audit
    assert config["value.converter"] == "io.confluent.connect.avro.AvroConverter"
    assert config["value.converter.schema.registry.url"].startswith("http")
    assert config["consumer.override.isolation.level"] == "read_committed"  # exactly-once runtime


def test_the_sink_writes_only_flat_columns_and_keys_on_the_decision_id() -> None:
    """A JDBC sink cannot write arrays or records: the example drops exactly those fields,
    and upserts on a field that exists."""
    config = orjson.loads(EXAMPLE.read_bytes())["config"]
    schema = orjson.loads((REPO / "schemas" / "audit_record.avsc").read_bytes())
    nested = {
        f["name"]
        for f in schema["fields"]
        if isinstance(f["type"], dict)
        or any(isinstance(t, dict) for t in f["type"] if isinstance(f["type"], list))
    }
    assert set(config["transforms.flat.exclude"].split(",")) == nested
    assert config["pk.fields"] in {f["name"] for f in schema["fields"]}
