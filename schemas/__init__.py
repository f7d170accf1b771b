"""Makes this folder the package `pipeline.schemas` (pyproject.toml maps it), so that a
wheel carries the schemas and an editable install finds them here."""
