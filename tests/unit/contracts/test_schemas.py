"""Where the schemas are found: the package's own (`pipeline.schemas`), unless
TOWER_SCHEMA_DIR names others. The installed wheel's case is tests/integration/test_wheel.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.contracts import schemas

REPO = Path(__file__).resolve().parents[3]


def test_a_checkout_reads_the_top_level_schemas_folder(monkeypatch):
    monkeypatch.delenv("TOWER_SCHEMA_DIR", raising=False)
    assert schemas.schema_dir() == REPO / "schemas"


def test_tower_schema_dir_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("TOWER_SCHEMA_DIR", str(tmp_path))
    assert schemas.schema_dir() == tmp_path


def test_schemas_not_installed_say_what_to_do(monkeypatch):
    def missing(package: str) -> None:
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.delenv("TOWER_SCHEMA_DIR", raising=False)
    monkeypatch.setattr(schemas.resources, "files", missing)
    with pytest.raises(FileNotFoundError) as caught:
        schemas.schema_dir()
    message = str(caught.value)
    assert "\n" not in message
    assert "make install" in message and "TOWER_SCHEMA_DIR" in message
