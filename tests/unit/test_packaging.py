"""pyproject.toml packs every package and the schemas, under an SPDX licence whose text is
in the repository. The built wheel itself is checked in tests/integration/test_wheel.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_under_pipeline_is_listed():
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "pipeline").rglob("__init__.py")
    }
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_the_schemas_folder_and_its_subfolders_are_package_data():
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"]["pipeline.schemas"] == "schemas"
    schemas = REPO / "schemas"
    folders = {schemas, *(p for p in schemas.rglob("*") if p.is_dir() and p.name != "__pycache__")}
    for folder in folders:
        package = ".".join(("pipeline", *folder.relative_to(REPO).parts))
        assert package in setuptools["packages"], package
        patterns = setuptools["package-data"][package]
        for path in folder.iterdir():
            if path.suffix in (".avsc", ".json"):
                assert any(path.match(p) for p in patterns), (path, patterns)


def test_the_licence_is_an_spdx_expression_with_its_text():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in text
    # setuptools reads an SPDX string and license-files from 77 on
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]


def test_the_image_builds_from_the_build_inputs_alone():
    """The image installs the package and finds the schemas inside it, as a wheel does."""
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = {
        name
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for name in line.split()[1:-1]
    }
    assert {"pyproject.toml", "README.md", "LICENSE", "pipeline", "schemas"} <= copied
    # the agents' HTTP client, packed for `tower mcp`
    client = PYPROJECT["tool"]["setuptools"]["package-dir"]["journey_tower_client"]
    assert client.startswith("clients/python/src") and "clients/python/src" in copied
    assert "TOWER_SCHEMA_DIR" not in dockerfile
