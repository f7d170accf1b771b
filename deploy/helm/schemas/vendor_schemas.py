"""Write the standalone JSON schemas the chart's offline tests validate rendered objects with.

Kubernetes kinds come from a `kubernetes-validate` wheel's `<version>-local-strict` folder
(additionalProperties false, so a misspelt field fails); each kind becomes one file with only
the definitions it reaches, under `$defs`, descriptions dropped. Custom resources come from
their CRDs' `openAPIV3Schema`, made strict the way the API server prunes (an object that
lists its properties accepts no others unless it preserves unknown fields), with
`metadata` checked as a Kubernetes ObjectMeta.

    python deploy/helm/schemas/vendor_schemas.py K8S_SCHEMA_DIR CRD.yaml...

Sources and versions: deploy/helm/schemas/README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).parent
#: file name in the kubernetes-validate folder -> the vendored file's name
K8S_KINDS = {
    "statefulset-apps-v1.json": "StatefulSet-apps-v1.json",
    "service-v1.json": "Service-v1.json",
    "poddisruptionbudget-policy-v1.json": "PodDisruptionBudget-policy-v1.json",
    "secret-v1.json": "Secret-v1.json",
    "configmap-v1.json": "ConfigMap-v1.json",
    "serviceaccount-v1.json": "ServiceAccount-v1.json",
}
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _strip(node: Any) -> Any:
    """Drop descriptions and rewrite `/api/_definitions.json#/$defs/X` to `#/$defs/X`."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("description", "$id", "x-kubernetes-group-version-kind"):
                continue
            if key == "$ref" and isinstance(value, str):
                value = "#/$defs/" + value.rsplit("/", 1)[-1]
            out[key] = _strip(value)
        return out
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.rsplit("/", 1)[-1])
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _with_defs(root: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """`root` plus every definition it reaches, transitively."""
    needed: dict[str, Any] = {}
    todo = _refs(root)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed[name] = defs[name]
        todo |= _refs(defs[name]) - needed.keys()
    return {"$schema": DRAFT, **root, "$defs": dict(sorted(needed.items()))}


def _strict(node: Any) -> Any:
    """OpenAPI v3 (CRD) to a strict JSON schema: nullable, int-or-string, unknown fields."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: _strict(v)
        for k, v in node.items()
        if k not in ("description", "nullable") and not k.startswith("x-kubernetes-")
    }
    if "properties" in node:
        out["properties"] = {k: _strict(v) for k, v in node["properties"].items()}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in node and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    return out


def crd_schema(crd: dict[str, Any], defs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The served storage version's schema, with `apiVersion` and `kind` pinned."""
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema = _strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"enum": [f"{group}/{version['name']}"]}
    schema["properties"]["kind"] = {"enum": [kind]}
    schema["properties"]["metadata"] = {"$ref": f"#/$defs/{OBJECT_META}"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return f"{kind}-{group.split('.')[0]}-{version['name']}.json", _with_defs(schema, defs)


def main(k8s_dir: Path, crd_files: list[Path]) -> None:
    defs = _strip(json.loads((k8s_dir / "_definitions.json").read_text()))["$defs"]
    written: list[tuple[str, dict[str, Any]]] = []
    for source, name in K8S_KINDS.items():
        root = _strip(json.loads((k8s_dir / source).read_text()))
        root.pop("$schema", None)
        written.append((name, _with_defs(root, defs)))
    for path in crd_files:
        written.append(crd_schema(yaml.safe_load(path.read_text()), defs))
    for name, schema in written:
        (OUT / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
