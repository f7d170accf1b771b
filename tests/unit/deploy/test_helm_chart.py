"""The Helm chart, checked offline: `helm lint`, `helm template` with the default values and
every values file in the chart's ci/, each rendered object against the vendored schema of
its kind, and the invariants the workers rely on. No cluster: nothing is installed or run.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pipeline.kafka.clients import READER_GROUP_PREFIX
from pipeline.kafka.topics import topic_specs
from pipeline.ops.local_security import ROLES, role_grants
from pipeline.runtime.transactional.changelog import changelog_topic
from pipeline.settings import Settings, TopicNames
from tests import tools

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "journey-tower"
SCHEMAS = ROOT / "deploy" / "helm" / "schemas"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE, NAMESPACE = "tower", "tower"
#: the Kubernetes version of the vendored schemas, and the chart's kubeVersion floor
KUBE_VERSION = "1.30.0"
#: what `helm template` does with the defaults, and with each ci/ values file
SCENARIOS = [None, *CI_VALUES]
SCENARIO_IDS = ["default", *(p.stem for p in CI_VALUES)]
#: values that stand for secrets in the ci/ files: they may only ever sit in a Secret
SECRET_VALUES = ("not-a-real-password",)
#: helm's cache, config and data folders, away from the user's
_HELM_HOME = tempfile.TemporaryDirectory(prefix="tower-helm-home-")


def _helm() -> str:
    candidates = [os.environ.get("TOWER_HELM", ""), str(ROOT / ".tools" / "bin" / "helm")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    tools.missing("helm is not built: `make tools` builds it into .tools/bin (needs Go)")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    home = _HELM_HOME.name
    env = {
        **os.environ,
        "HELM_CACHE_HOME": f"{home}/cache",
        "HELM_CONFIG_HOME": f"{home}/config",
        "HELM_DATA_HOME": f"{home}/data",
    }
    return subprocess.run([_helm(), *args], capture_output=True, text=True, check=False, env=env)


@cache
def _template(values_file: Path | None, sets: tuple[str, ...] = ()) -> tuple[int, str, str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += ["--kube-version", KUBE_VERSION]
    if values_file is not None:
        args += ["--values", str(values_file)]
    for item in sets:
        args += ["--set", item]
    done = _run(*args)
    return done.returncode, done.stdout, done.stderr


def render(values_file: Path | None = None, *sets: str) -> list[dict[str, Any]]:
    code, out, err = _template(values_file, tuple(sets))
    assert code == 0, err
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render_error(values_file: Path | None = None, *sets: str) -> str:
    code, _, err = _template(values_file, tuple(sets))
    assert code != 0, f"the render with {sets} should have failed"
    return err


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def worker(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = only(objects, "StatefulSet")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


@cache
def _schema(api_version: str, kind: str) -> dict[str, Any]:
    group, _, version = api_version.rpartition("/")
    name = f"{kind}-{group.split('.')[0]}-{version}" if group else f"{kind}-{version}"
    path = SCHEMAS / f"{name}.json"
    assert path.is_file(), f"no vendored schema for {api_version} {kind} ({path.name})"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


# --- helm lint and the schemas -------------------------------------------------------------


@pytest.mark.parametrize("values_file", SCENARIOS, ids=SCENARIO_IDS)
def test_helm_lint_passes(values_file: Path | None) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION]
    if values_file is not None:
        args += ["--values", str(values_file)]
    done = _run(*args)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values_file", SCENARIOS, ids=SCENARIO_IDS)
def test_every_rendered_object_matches_the_schema_of_its_kind(values_file: Path | None) -> None:
    for obj in render(values_file):
        validator = jsonschema.Draft202012Validator(_schema(obj["apiVersion"], obj["kind"]))
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: {errors}"


def test_the_all_options_file_renders_every_optional_kind() -> None:
    kinds = {o["kind"] for o in render(CHART / "ci" / "all-options-values.yaml")}
    assert kinds >= {
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "ServiceAccount",
        "ConfigMap",
        "ScaledObject",
        "TriggerAuthentication",
        "KafkaTopic",
        "KafkaUser",
        "PodMonitor",
    }


def test_a_misspelt_field_fails_the_vendored_schema() -> None:
    """The schemas are strict: an unknown field is an error, not ignored."""
    sts = only(render(), "StatefulSet")
    sts["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    validator = jsonschema.Draft202012Validator(_schema("apps/v1", "StatefulSet"))
    assert any("livenesProbe" in e.message for e in validator.iter_errors(sts))


# --- the workers' invariants ---------------------------------------------------------------


@pytest.mark.parametrize("values_file", SCENARIOS, ids=SCENARIO_IDS)
def test_each_replica_takes_its_identity_and_address_from_its_pod_name(
    values_file: Path | None,
) -> None:
    objects = render(values_file)
    sts = only(objects, "StatefulSet")
    env = env_of(worker(objects))
    names = list(env)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # a StatefulSet's pod names are unique (<name>-<ordinal>), so the instance ids are
    assert env["TOWER_INSTANCE_ID"]["value"] == "$(POD_NAME)"
    headless = sts["spec"]["serviceName"]
    url = env["TOWER_WEB_URL"]["value"]
    assert f"://$(POD_NAME).{headless}.$(POD_NAMESPACE).svc" in url
    peers = env["TOWER_WEB_PEERS"]["value"].split(",")
    assert peers[0] == url.replace("$(POD_NAME)", "*")
    assert env["TOWER_WEB_HOST"]["value"] == "0.0.0.0"
    for name in ("TOWER_INSTANCE_ID", "TOWER_WEB_URL", "TOWER_WEB_PEERS"):
        assert names.index("POD_NAME") < names.index(name), f"{name} before POD_NAME"
        assert names.index("POD_NAMESPACE") < names.index(name)
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert services[headless]["spec"]["clusterIP"] == "None"
    assert services[headless]["spec"]["publishNotReadyAddresses"] is True
    assert len(services) == 2, "a headless Service and one for pages and API"


@pytest.mark.parametrize("values_file", SCENARIOS, ids=SCENARIO_IDS)
def test_probes_use_livez_and_readyz_on_the_web_port(values_file: Path | None) -> None:
    objects = render(values_file)
    container = worker(objects)
    paths = {p: container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
    assert paths == {"livenessProbe": "/livez", "readinessProbe": "/readyz"}
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    scheme = env_of(container)["TOWER_WEB_URL"]["value"].split(":")[0].upper()
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "web"
        assert container[probe]["httpGet"]["scheme"] == scheme


@pytest.mark.parametrize("values_file", SCENARIOS, ids=SCENARIO_IDS)
def test_the_worker_runs_unprivileged(values_file: Path | None) -> None:
    objects = render(values_file)
    pod = only(objects, "StatefulSet")["spec"]["template"]["spec"]
    context = worker(objects)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["mountPath"] for m in worker(objects)["volumeMounts"]}
    assert {"/data", "/tmp"} <= mounts, "the writable paths on a read-only root"


@pytest.mark.parametrize("values_file", SCENARIOS, ids=SCENARIO_IDS)
def test_a_disruption_budget_covers_the_workers(values_file: Path | None) -> None:
    objects = render(values_file)
    pdb = only(objects, "PodDisruptionBudget")
    labels = only(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_state_is_on_a_volume_per_replica_and_termination_outlasts_a_commit() -> None:
    from pipeline.runtime.transactional.engine import COMMIT_WAIT_S

    sts = only(render(), "StatefulSet")
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    env = env_of(worker([sts]))
    assert env["TOWER_DATA_DIR"]["value"] == "/data"
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > COMMIT_WAIT_S


# --- secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", SCENARIOS, ids=SCENARIO_IDS)
def test_no_secret_value_outside_a_secret(values_file: Path | None) -> None:
    objects = render(values_file)
    env = env_of(worker(objects))
    assert "TOWER_SASL_PASSWORD" not in env and "TOWER_WEB_TOKEN" not in env
    for obj in objects:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        for secret in SECRET_VALUES:
            assert secret not in text, f"{obj['kind']} {obj['metadata']['name']} holds a secret"
    files = {e["name"]: e["value"] for e in env.values() if e["name"].endswith("_FILE")}
    mounted = {m["mountPath"] for m in worker(objects)["volumeMounts"]}
    for name, path in files.items():
        assert str(Path(path).parent) in mounted, f"{name}={path} is not on a mounted volume"


def test_secrets_made_from_values_hold_them_and_are_mounted_as_files() -> None:
    objects = render(CHART / "ci" / "created-secrets-values.yaml")
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    sasl = secrets[f"{RELEASE}-journey-tower-kafka-sasl"]
    assert base64.b64decode(sasl["data"]["password"]).decode() == "not-a-real-password"
    env = env_of(worker(objects))
    assert env["TOWER_SASL_PASSWORD_FILE"]["value"] == "/secrets/kafka-sasl/password"
    assert env["TOWER_WEB_TOKENS_FILE"]["value"] == "/secrets/web-tokens/tokens"
    assert env["TOWER_WEB_PEER_KEY_FILE"]["value"] == "/secrets/web-tokens/peer-key"
    pod = only(objects, "StatefulSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["kafka-sasl"]["secret"]["secretName"] == sasl["metadata"]["name"]
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_notes_warn_when_secrets_are_made_from_values() -> None:
    """`install --dry-run=client` renders NOTES without a cluster."""

    def notes(*values: str) -> str:
        args = ["install", RELEASE, str(CHART), "--dry-run=client"]
        done = _run(*args, *values)
        assert done.returncode == 0, done.stderr
        return done.stdout.split("NOTES:", 1)[1]

    made = notes("--values", str(CHART / "ci" / "created-secrets-values.yaml"))
    assert "WARNING: kafka.sasl.password made the Secret" in made
    assert "WARNING: web.tokens.content made the Secret" in made
    assert "not-a-real-password" not in made
    assert "WARNING" not in notes()


def test_the_secured_render_mounts_every_secret_the_settings_name() -> None:
    objects = render(CHART / "ci" / "all-options-values.yaml")
    env = env_of(worker(objects))
    pod = only(objects, "StatefulSet")["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert env["TOWER_SASL_USERNAME"]["value"] == f"{RELEASE}-journey-tower-tower"
    assert secrets["kafka-sasl"] == f"{RELEASE}-journey-tower-tower"  # Strimzi's user Secret
    assert secrets["kafka-tls"] == "my-cluster-cluster-ca-cert"
    assert secrets["web-tls"] == "tower-web-tls"
    assert env["TOWER_SSL_CA_FILE"]["value"] == "/secrets/kafka-tls/ca.crt"
    assert env["TOWER_WEB_TLS_CERT"]["value"] == "/secrets/web-tls/tls.crt"
    assert env["TOWER_WEB_URL"]["value"].startswith("https://")


@pytest.mark.parametrize("values_file", SCENARIOS, ids=SCENARIO_IDS)
def test_the_worker_accepts_the_rendered_environment(
    values_file: Path | None, tmp_path: Path
) -> None:
    """The env as a pod gets it (pod name expanded, mounted files in place) makes Settings."""
    objects = render(values_file)
    pod = f"{only(objects, 'StatefulSet')['metadata']['name']}-0"
    env: dict[str, str] = {}
    for name, entry in env_of(worker(objects)).items():
        if "value" not in entry:
            continue
        value = entry["value"].replace("$(POD_NAME)", pod).replace("$(POD_NAMESPACE)", NAMESPACE)
        if value.startswith(("/secrets/", "/etc/tower/")):
            path = tmp_path / value.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("secret-from-a-file\n")
            value = str(path)
        env[name] = value
    settings = Settings.from_env(env)
    assert settings.advertised_url.startswith(("http://" + pod, "https://" + pod))
    assert str(settings.data_dir) == "/data"
    assert settings.topics == TopicNames()
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password == "secret-from-a-file"


# --- every setting through values ----------------------------------------------------------


def _setting_names() -> list[str]:
    names = [f"TOWER_{f.name.upper()}" for f in fields(Settings) if f.name != "topics"]
    return names + [f"TOWER_TOPIC_{f.name.upper()}" for f in fields(TopicNames)]


def test_every_setting_can_be_set_through_values() -> None:
    """Either the chart sets it (typed value or its own wiring) or the env map passes it on.
    New settings are covered without touching the chart."""
    all_options = CHART / "ci" / "all-options-values.yaml"
    through_env_map = yaml.safe_load(all_options.read_text())["env"]
    secured = env_of(worker(render(all_options)))
    chart_set = (set(secured) - set(through_env_map)) | {
        "TOWER_SSL_CERT_FILE",
        "TOWER_SSL_KEY_FILE",
    }
    from_a_file_only = {"TOWER_SASL_PASSWORD": "TOWER_SASL_PASSWORD_FILE"}
    free = [n for n in _setting_names() if n not in chart_set and n not in from_a_file_only]
    passed = env_of(worker(render(None, *(f"env.{name}=x" for name in free))))
    for name in free:
        assert passed[name]["value"] == "x", name
    assert set(from_a_file_only.values()) <= set(secured)
    assert {"TOWER_INSTANCE_ID", "TOWER_WEB_URL", "TOWER_WEB_PEERS"} <= chart_set


def test_mtls_files_come_from_the_kafka_tls_secret() -> None:
    env = env_of(
        worker(
            render(
                CHART / "ci" / "all-options-values.yaml",
                "kafka.tls.certKey=user.crt",
                "kafka.tls.keyKey=user.key",
            )
        )
    )
    assert env["TOWER_SSL_CERT_FILE"]["value"] == "/secrets/kafka-tls/user.crt"
    assert env["TOWER_SSL_KEY_FILE"]["value"] == "/secrets/kafka-tls/user.key"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("env.TOWER_SASL_PASSWORD=hunter2",), "env.TOWER_SASL_PASSWORD: the chart sets it"),
        (("env.TOWER_INSTANCE_ID=a",), "env.TOWER_INSTANCE_ID: the chart sets it"),
        (("env.TOWER_APP_ID=a",), "env.TOWER_APP_ID: it has a typed value"),
        (("replicaCount=9",), "replicaCount=9 is more than tower.partitions=8"),
        (("keda.enabled=true", "keda.maxReplicaCount=9"), "keda.maxReplicaCount=9 is more than"),
        (("kafka.securityProtocol=SASL_SSL",), "needs the SASL password"),
        (("web.tokens.existingSecret=",), "refuses to start without a tokens file"),
        (("web.tokens.content=x",), "refuses to start without a peer key"),
        (("web.tls.enabled=true",), "web.tls.enabled needs web.tls.existingSecret"),
        (("podMonitor.enabled=true",), "/metrics needs a viewer token"),
        (("strimzi.users.enabled=true", "strimzi.users.roles={nobody}"), "roles"),
    ],
)
def test_values_that_cannot_work_fail_the_render_with_a_clear_message(
    sets: tuple[str, ...], message: str
) -> None:
    assert message in render_error(None, *sets)


@pytest.mark.parametrize(
    ("sets", "where"),
    [
        (("tower.runtime=native2",), "/tower/runtime"),
        (("tower.partitions=0",), "/tower/partitions"),
        (("kafka.securityProtocol=TLS",), "/kafka/securityProtocol"),
        (("env.tower_app_id=x",), "/env"),
        (("replicas=3",), "replicas"),
        (("web.port=70000",), "/web/port"),
        (("keda.minReplicaCount=0",), "/keda/minReplicaCount"),
    ],
)
def test_the_values_schema_refuses_bad_values(sets: tuple[str, ...], where: str) -> None:
    err = render_error(None, *sets)
    assert "values don't meet the specifications of the schema" in err
    assert where in err


# --- KEDA ----------------------------------------------------------------------------------


def test_keda_scales_on_the_events_lag_only_up_to_the_partitions() -> None:
    objects = render(CHART / "ci" / "all-options-values.yaml")
    scaled = only(objects, "ScaledObject")
    sts = only(objects, "StatefulSet")
    partitions = int(env_of(worker(objects))["TOWER_PARTITIONS"]["value"])
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": sts["metadata"]["name"],
    }
    assert [t["type"] for t in scaled["spec"]["triggers"]] == ["kafka"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["metadata"]["topic"] == "agent-events"
    assert trigger["metadata"]["consumerGroup"] == "journey-tower"
    assert scaled["spec"]["maxReplicaCount"] <= partitions
    assert "replicas" not in sts["spec"], "KEDA owns the replica count"
    auth = only(objects, "TriggerAuthentication")["spec"]
    assert {r["parameter"] for r in auth["secretTargetRef"]} == {"password", "ca"}


def test_keda_refuses_more_replicas_than_partitions() -> None:
    err = render_error(None, "keda.enabled=true", "keda.maxReplicaCount=13", "tower.partitions=12")
    assert "keda.maxReplicaCount=13 is more than tower.partitions=12" in err


# --- Strimzi: topics and users mirror the product ------------------------------------------


def test_kafka_topics_mirror_tower_topics_create_and_the_changelog() -> None:
    objects = render(CHART / "ci" / "all-options-values.yaml")
    settings = Settings(partitions=12, app_id="journey-tower")
    want = {s.name: (s.partitions, s.config) for s in topic_specs(settings)}
    want[changelog_topic(settings.app_id)] = (12, {"cleanup.policy": "compact"})
    have = {
        o["spec"]["topicName"]: (
            o["spec"]["partitions"],
            {k: v for k, v in o["spec"].get("config", {}).items() if k != "min.insync.replicas"},
        )
        for o in objects
        if o["kind"] == "KafkaTopic"
    }
    assert have == want
    for topic in (o for o in objects if o["kind"] == "KafkaTopic"):
        assert topic["spec"]["replicas"] == 3
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "my-cluster"


def _strimzi_grants(user: dict[str, Any]) -> Iterator[tuple[str, str, bool, str, str]]:
    resource_types = {"topic": "TOPIC", "group": "GROUP", "transactionalId": "TRANSACTIONAL_ID"}
    for acl in user["spec"]["authorization"]["acls"]:
        res = acl["resource"]
        permission = acl.get("type", "allow").upper()
        for op in acl["operations"]:
            operation = "".join("_" + c if c.isupper() else c for c in op).strip("_").upper()
            if res["type"] == "cluster":
                yield ("BROKER", "kafka-cluster", False, operation, permission)
            else:
                prefixed = res.get("patternType") == "prefix"
                yield (resource_types[res["type"]], res["name"], prefixed, operation, permission)


def test_kafka_users_carry_the_acls_of_the_local_secured_broker() -> None:
    """pipeline/ops/local_security.py is the one statement of the roles; the chart mirrors it."""
    objects = render(CHART / "ci" / "all-options-values.yaml")
    users = {
        o["metadata"]["labels"]["journey-tower/role"]: o
        for o in objects
        if o["kind"] == "KafkaUser"
    }
    assert set(users) == set(ROLES)
    grants = role_grants(TopicNames(), "journey-tower")
    assert any(g.name == READER_GROUP_PREFIX for g in grants)
    for role, user in users.items():
        # a grant to every principal (`*`) is each KafkaUser's own
        want = {
            (g.resource, g.name, g.prefixed, g.operation, g.permission)
            for g in grants
            if g.role in (role, "*")
        }
        assert set(_strimzi_grants(user)) == want, role
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert user["metadata"]["name"] == f"{RELEASE}-journey-tower-{role}"


# --- the values files in the chart ---------------------------------------------------------


def test_no_plain_secret_in_the_default_values() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["kafka"]["sasl"]["password"] == ""
    assert values["web"]["tokens"]["content"] == ""
    assert values["env"] == {}


def test_the_chart_runs_the_version_the_project_builds() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == project
    assert only(render(), "StatefulSet")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ].endswith(f":{project}")
