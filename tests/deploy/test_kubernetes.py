"""The Kubernetes manifests (deploy/kubernetes): the base and every overlay, rendered with ``kubectl kustomize``
as an operator renders them, validated offline against the Kubernetes schemas (strict: unknown fields fail),
then checked for the properties the deployment relies on: health probes, migrations ordered before serving,
selectors that match, settings the registry accepts, and no secrets in the repository."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from registry.api.v1.system import HEALTH_TIMEOUT_S
from registry.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
BASE = KUSTOMIZE / "base"
OVERLAYS = sorted(path.parent for path in (KUSTOMIZE / "overlays").glob("*/kustomization.yaml"))
TARGETS = [BASE, *OVERLAYS]
SECRETS_EXAMPLE = KUSTOMIZE / "secrets.env.example"
OPERATOR_SECRET = "modelkeep-secrets"
"""Created by the operator (``kubectl create secret generic``), never rendered: its keys are listed in
``SECRETS_EXAMPLE``."""

# The oldest release the manifests target, and the newest that kubernetes-validate ships schemas for.
K8S_VERSIONS = ["1.30", kubernetes_validate.latest_version()]

Doc = dict[str, Any]


def target_id(path: Path) -> str:
    return str(path.relative_to(KUSTOMIZE))


@functools.cache
def render(target: Path) -> tuple[Doc, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl is not on PATH: it renders deploy/kubernetes (`kubectl kustomize`); install it", pytrace=False
        )
    done = subprocess.run([kubectl, "kustomize", str(target)], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.fail(f"kubectl kustomize {target_id(target)} failed:\n{done.stderr}", pytrace=False)
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: tuple[Doc, ...], kind: str) -> Doc:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Doc) -> Doc:
    containers: list[Doc] = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['kind']} should run one container"
    return containers[0]


def config_maps(docs: tuple[Doc, ...]) -> dict[str, dict[str, str]]:
    return {doc["metadata"]["name"]: doc.get("data", {}) for doc in of_kind(docs, "ConfigMap")}


def effective_env(docs: tuple[Doc, ...], workload: Doc) -> dict[str, str]:
    """The literal environment the container gets from ConfigMaps (``envFrom``) and plain ``env`` values;
    variables taken from Secrets are left out."""
    maps = config_maps(docs)
    env: dict[str, str] = {}
    for source in container(workload).get("envFrom", []):
        if "configMapRef" in source:
            env |= maps[source["configMapRef"]["name"]]
    for var in container(workload).get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            env.pop(var["name"], None)
    return env


def env_sources(workload: Doc) -> tuple[list[Doc], dict[str, Doc]]:
    """``envFrom`` and the ``valueFrom`` references, by variable."""
    main = container(workload)
    refs = {var["name"]: var["valueFrom"] for var in main.get("env", []) if "valueFrom" in var}
    return main.get("envFrom", []), refs


def window(probe: Doc) -> int:
    """Seconds of consecutive failures before the probe acts (Kubernetes defaults: 10 s, 3)."""
    return int(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))


def secrets_example() -> dict[str, str]:
    pairs = {}
    for line in SECRETS_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def image_tag(image: str) -> str | None:
    name = image.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name and "@" not in name else None


@pytest.fixture(params=TARGETS, ids=target_id)
def docs(request: pytest.FixtureRequest) -> tuple[Doc, ...]:
    target: Path = request.param
    return render(target)


def workloads(docs: tuple[Doc, ...]) -> Iterator[Doc]:
    yield one(docs, "Deployment")
    yield one(docs, "Job")


def test_there_is_an_overlay_to_deploy() -> None:
    assert [path.name for path in OVERLAYS], "deploy/kubernetes/overlays/ has no overlay"
    assert "external" in [path.name for path in OVERLAYS]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_document_validates_against_the_schemas(docs: tuple[Doc, ...], version: str) -> None:
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Job", "Service", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{where} is invalid for Kubernetes {version}: {path}: {exc.message}", pytrace=False)
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{where}: {exc.message}", pytrace=False)


def test_probes_check_health_on_the_serving_port(docs: tuple[Doc, ...]) -> None:
    deployment = one(docs, "Deployment")
    main = container(deployment)
    ports = {port.get("name"): port["containerPort"] for port in main["ports"]}
    assert effective_env(docs, deployment).get("MODELKEEP_PORT", "5000") == str(ports["http"])
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = main[kind]["httpGet"]
        assert check["path"] == "/health", kind
        assert ports.get(check["port"], check["port"]) == ports["http"], f"{kind} probes another port"
        # Let /health give its own answer (503 after HEALTH_TIMEOUT_S) rather than cutting it off.
        assert main[kind].get("timeoutSeconds", 1) > HEALTH_TIMEOUT_S, kind


def test_liveness_is_more_lenient_than_readiness(docs: tuple[Doc, ...]) -> None:
    deployment = one(docs, "Deployment")
    main = container(deployment)
    readiness, liveness = window(main["readinessProbe"]), window(main["livenessProbe"])
    # /health is 503 while the database is unreachable: leave the Service quickly, restart only much later.
    assert readiness <= 15
    assert liveness >= 60 and liveness >= 4 * readiness
    # A new pod waits for the migration Job up to MODELKEEP_MIGRATE_WAIT_SECONDS before it listens.
    wait = float(effective_env(docs, deployment).get("MODELKEEP_MIGRATE_WAIT_SECONDS", 300))
    assert window(main["startupProbe"]) > wait


def test_servers_wait_for_the_migration_job(docs: tuple[Doc, ...]) -> None:
    deployment, job = one(docs, "Deployment"), one(docs, "Job")
    server, migrate = container(deployment), container(job)
    assert [*server.get("command", []), *server.get("args", [])] == ["registry", "serve"]
    assert effective_env(docs, deployment)["MODELKEEP_MIGRATE_ON_START"] == "false"
    assert [*migrate.get("command", []), *migrate.get("args", [])] == ["registry", "db", "upgrade"]
    assert migrate["image"] == server["image"]
    assert env_sources(job) == env_sources(deployment), "the Job must migrate the database the servers use"
    assert effective_env(docs, job)["MODELKEEP_DATA_DIR"] == effective_env(docs, deployment)["MODELKEEP_DATA_DIR"]
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert pod_spec(job)["restartPolicy"] in {"Never", "OnFailure"}
    # No new pod is counted available before the schema is at head, so old ones keep serving meanwhile.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] in (0, "0%")


@pytest.mark.parametrize("overlay", OVERLAYS, ids=target_id)
def test_each_release_gets_its_own_migration_job(overlay: Path) -> None:
    # A Job's template is immutable: reusing the name for a new image would make `kubectl apply` fail.
    job = one(render(overlay), "Job")
    tag = image_tag(container(job)["image"])
    assert tag, "overlays deploy a tagged image"
    # The release, optionally followed by a rerun number (`-2`) for a settings-only change.
    assert re.fullmatch(rf"modelkeep-migrate-{re.escape(tag)}(-\d+)?", job["metadata"]["name"])


def test_selectors_match_the_server_pods(docs: tuple[Doc, ...]) -> None:
    deployment = one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    job_labels = one(docs, "Job")["spec"]["template"]["metadata"]["labels"]

    def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    assert matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert set(pdb["selector"]) == {"matchLabels"} and matches(pdb["selector"]["matchLabels"], pod_labels)
    assert "maxUnavailable" in pdb or "minAvailable" in pdb
    service = one(docs, "Service")
    assert matches(service["spec"]["selector"], pod_labels)
    # Migration pods never receive traffic nor count towards the disruption budget.
    assert not matches(service["spec"]["selector"], job_labels)
    assert not matches(pdb["selector"]["matchLabels"], job_labels)
    ports = {port.get("name"): port["containerPort"] for port in container(deployment)["ports"]}
    for port in service["spec"]["ports"]:
        assert ports.get(port["targetPort"], port["targetPort"]) == ports["http"]


def test_the_autoscaler_owns_the_replica_count(docs: tuple[Doc, ...]) -> None:
    deployment, hpa = one(docs, "Deployment"), one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # Re-applying the manifests must not reset what the autoscaler chose.
    assert "replicas" not in deployment["spec"]
    # CPU utilisation is measured against the request.
    assert "cpu" in container(deployment)["resources"]["requests"]


def test_ingress_lets_multi_gigabyte_uploads_through(docs: tuple[Doc, ...]) -> None:
    ingress = one(docs, "Ingress")
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert notes[prefix + "proxy-body-size"] == "0", "the registry enforces MODELKEEP_MAX_UPLOAD_BYTES itself"
    assert int(notes[prefix + "proxy-read-timeout"]) >= 600
    assert int(notes[prefix + "proxy-send-timeout"]) >= 600
    assert notes[prefix + "proxy-request-buffering"] == "off"
    service = one(docs, "Service")
    service_ports = {port["name"] for port in service["spec"]["ports"]} | {
        port["port"] for port in service["spec"]["ports"]
    }
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"].get("name", backend["port"].get("number")) in service_ports


def test_pods_run_locked_down_as_the_image_user(docs: tuple[Doc, ...]) -> None:
    uid = re.search(r"useradd --uid (\d+)", (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8"))
    assert uid, "deploy/Dockerfile no longer creates its user with a fixed uid"
    for workload in workloads(docs):
        spec, main = pod_spec(workload), container(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == int(uid[1])
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert main["securityContext"]["readOnlyRootFilesystem"] is True
        assert main["securityContext"]["allowPrivilegeEscalation"] is False
        assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(main["resources"]["requests"]) & set(main["resources"]["limits"])
        # The root filesystem is read-only: the data folder (upload spool, metrics) must be a volume.
        mounts = {mount["mountPath"]: mount["name"] for mount in main["volumeMounts"]}
        data_dir = effective_env(docs, workload)["MODELKEEP_DATA_DIR"]
        assert data_dir in mounts, f"{workload['kind']}: MODELKEEP_DATA_DIR={data_dir} is not mounted"
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        assert "emptyDir" in volumes[mounts[data_dir]] or "ephemeral" in volumes[mounts[data_dir]]


def test_every_referenced_setting_exists(docs: tuple[Doc, ...]) -> None:
    maps, example = config_maps(docs), secrets_example()
    secrets = {
        doc["metadata"]["name"]: doc.get("data", {}) | doc.get("stringData", {})
        for doc in docs
        if doc["kind"] == "Secret"
    }
    for workload in workloads(docs):
        env_from, refs = env_sources(workload)
        for source in env_from:
            assert set(source) == {"configMapRef"}, "secrets are read key by key, so each one is checked here"
            assert source["configMapRef"]["name"] in maps
        for name, ref in refs.items():
            if "configMapKeyRef" in ref:
                key_ref = ref["configMapKeyRef"]
                assert key_ref["key"] in maps.get(key_ref["name"], {}), name
            elif "secretKeyRef" in ref:
                key_ref = ref["secretKeyRef"]
                if key_ref["name"] in secrets:
                    assert key_ref["key"] in secrets[key_ref["name"]], name
                else:
                    assert key_ref["name"] == OPERATOR_SECRET, f"{name}: who creates Secret {key_ref['name']}?"
                    assert key_ref["key"] in example, f"{name}: add {key_ref['key']} to {SECRETS_EXAMPLE.name}"


def test_settings_are_ones_the_registry_accepts(docs: tuple[Doc, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    fields = {f"MODELKEEP_{name.upper()}" for name in Settings.model_fields}
    for workload in workloads(docs):
        env = effective_env(docs, workload)
        settings = {name: value for name, value in env.items() if name.startswith("MODELKEEP_")}
        assert set(settings) <= fields, f"not registry settings: {sorted(set(settings) - fields)}"
        assert set(env_sources(workload)[1]) <= fields
        with monkeypatch.context() as patched:
            for name in fields:
                patched.delenv(name, raising=False)
            for name, value in settings.items():
                patched.setenv(name, value)
            parsed = Settings()
        assert parsed.metrics_public is False, "/metrics stays behind a token"
        assert parsed.blob_store_url and parsed.blob_store_url.startswith("s3://"), "pod disks are scratch space"


def test_no_secrets_in_the_repository(docs: tuple[Doc, ...]) -> None:
    assert not of_kind(docs, "Secret"), f"Secrets are created by the operator ({OPERATOR_SECRET}), not rendered"
    secret_key = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|DATABASE_URL", re.IGNORECASE)
    credentials_in_url = re.compile(r"://[^/@\s]*:[^/@\s]*@")
    for name, data in config_maps(docs).items():
        for key, value in data.items():
            assert key == "MODELKEEP_CREATE_ADMIN_TOKEN" or not secret_key.search(key), f"{name}: {key}"
            assert not credentials_in_url.search(value), f"{name}: {key} holds credentials"
    for key, value in secrets_example().items():
        assert "replace-me" in value, f"{SECRETS_EXAMPLE.name}: {key} must hold an example value only"
