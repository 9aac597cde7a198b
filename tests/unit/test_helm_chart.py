"""The Kubernetes files in deploy/: the Helm chart (deploy/helm/ferry) and the KServe
runtime (deploy/kserve). Static checks only, no cluster and no network:

- the chart is rendered and linted by Helm's own engine (helm-python-sdk: Helm's Go SDK
  in a shared library), for several value sets, with its values.schema.json enforced;
- every rendered object of a built-in kind is validated against the OpenAPI schemas of
  two Kubernetes versions with kubernetes-validate in strict mode (unknown fields fail);
- the custom resources (ServiceMonitor, PrometheusRule, ClusterServingRuntime,
  InferenceService) have no schema there: their structure is checked here by hand;
- what Ferry needs is checked on the rendered YAML, with Ferry's own code where it can
  be: the containers' args are parsed by `ferry`'s argument parser, every FERRY_*
  variable must be a Settings field, and the settings they make must pass the server's
  start-up checks (check_security), bootstrap key included.

Nothing here proves the chart works on a live cluster (deploy/helm/ferry/README.md
says what was not tried)."""

from __future__ import annotations

import argparse
import base64
import copy
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry.cli import _parser
from ferry.errors import ConfigError
from ferry.security.keys import split
from ferry.server import check_security
from ferry.settings import Settings

try:
    import helm_python as helm
    import kubernetes_validate
except ImportError:  # pragma: no cover - the dev extra installs both
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("helm-python-sdk and kubernetes-validate are needed (make install)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "ferry"
ALERTS = ROOT / "deploy" / "prometheus" / "ferry-alerts.yml"
KSERVE = ROOT / "deploy" / "kserve"
METRICS_DOC = ROOT / "docs" / "metrics.md"

KUBERNETES_VERSIONS = ["1.29", "1.32"]
RELEASE, NAMESPACE = "demo", "models"
FULLNAME = f"{RELEASE}-ferry"
DATABASE = {"url": "postgresql+psycopg://ferry:secret@postgres:5432/ferry"}
# Every FERRY_* variable the chart sets is a Settings field (none pending).
PENDING_SETTINGS: set[str] = set()
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    # The chart's defaults, plus the one value without a default: the database.
    "defaults": {"database": DATABASE},
    "hpa-inflight": {
        "database": DATABASE,
        "inference": {
            "autoscaling": {
                "targetCPUUtilizationPercentage": None,
                "inflightRequests": {"enabled": True, "averageValue": "6"},
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
            }
        },
    },
    "s3": {
        "database": DATABASE,
        "storage": {
            "type": "s3",
            "s3": {
                "artifactsUrl": "s3://ferry-models/prod",
                "region": "eu-west-1",
                "endpointUrl": "https://minio.storage:9000",
                "existingSecret": "ferry-aws",
            },
        },
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ferry"}},
    },
    "ingress-monitoring": {
        "database": DATABASE,
        "redis": {"url": "redis://redis:6379/0"},
        "ferry": {"tlsSecret": "ferry-tls", "preStopSleepAction": True, "metricsPublic": False},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "4g"},
            "tls": [{"secretName": "ferry-ingress-tls", "hosts": ["ferry.example.com"]}],
        },
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "labels": {"release": "prometheus"},
                "authorization": {"secretName": "ferry-prometheus-key"},
            },
            "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        },
    },
    "existing-secrets": {
        "database": {"existingSecret": "ferry-db", "existingSecretKey": "dsn"},
        "redis": {"existingSecret": "ferry-redis", "existingSecretKey": "redis-url"},
        "auth": {"existingSecret": "ferry-admin", "existingSecretKey": "key"},
        "storage": {"pvc": {"existingClaim": "ferry-artifacts-nfs"}},
        "inference": {
            "autoscaling": {"enabled": False},
            "replicas": 3,
            "onnxMemoryMb": 1500,
            "nodeSelector": {"node-pool": "inference"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "inference", "effect": "NoSchedule"}],
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "inference"}},
                            },
                        }
                    ]
                }
            },
            "podDisruptionBudget": {"minAvailable": "50%"},
        },
        "control": {"replicas": 1, "podDisruptionBudget": {"enabled": False}},
        "ferry": {"gracefulTimeoutSeconds": 60, "terminationGracePeriodSeconds": 90},
    },
}


# -- rendering ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    helm.disable_logging()
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart makes with these values, as an install would."""
    manifests = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith(".yaml"):
            continue  # NOTES.txt
        objects.extend(obj for obj in yaml.safe_load_all(text) if obj)
    return objects


def render_error(chart: Any, values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(caught.value)


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, (kind, name, [o["metadata"]["name"] for o in objects if o["kind"] == kind])
    return matches[0]


def deployment(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return find(objects, "Deployment", f"{FULLNAME}-{component}")


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return only


def env(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in item.get("env", [])}


def parse_args(args: list[str]) -> argparse.Namespace:
    """The container's args as `ferry` itself parses them (unknown flags exit with 2)."""
    return _parser().parse_args(args)


@pytest.fixture(scope="module")
def rendered(chart: Any) -> dict[str, list[dict[str, Any]]]:
    return {name: render(chart, values) for name, values in VALUE_SETS.items()}


# -- Helm lint and Kubernetes' schemas -----------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint(value_set: str, version: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[value_set], strict=True, namespace=NAMESPACE, kube_version=f"v{version}.0")
    assert report["errors"] == []
    # Severity 1 is information ("icon is recommended"); 2 and 3 are warnings and errors.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_is_valid_kubernetes(
    rendered: dict[str, list[dict[str, Any]]], value_set: str, version: str
) -> None:
    unchecked = set()
    for obj in rendered[value_set]:
        if obj["kind"] in CUSTOM_KINDS:
            unchecked.add(obj["kind"])
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} on Kubernetes {version}: {path}: {exc.message}")
    # Custom resources are checked by test_service_monitor / test_prometheus_rule.
    assert unchecked <= CUSTOM_KINDS


def test_the_validator_rejects_unknown_fields(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Strict mode is what catches a misspelt or misplaced field: make sure it is on."""
    broken = copy.deepcopy(deployment(rendered["defaults"], "inference"))
    container(broken)["readinessprobe"] = container(broken).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_value_sets_make_the_expected_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    def kinds(name: str) -> list[str]:
        return sorted(o["kind"] for o in rendered[name])

    base = ["Deployment", "Deployment", "Job", "PodDisruptionBudget", "PodDisruptionBudget", "Service", "Service"]
    base += ["ServiceAccount"]
    assert kinds("defaults") == sorted([*base, "HorizontalPodAutoscaler", "PersistentVolumeClaim", "Secret", "Secret"])
    assert kinds("s3") == sorted([*base, "HorizontalPodAutoscaler", "Secret", "Secret"])
    optional = ["Ingress", "ServiceMonitor", "PrometheusRule"]
    assert kinds("ingress-monitoring") == sorted(
        [*base, "HorizontalPodAutoscaler", "PersistentVolumeClaim", "Secret", "Secret", "Secret", *optional]
    )
    # Everything from existing objects: no Secret, no claim; a fixed count, no HPA; one PDB.
    assert kinds("existing-secrets") == sorted([*base[:3], "PodDisruptionBudget", "Service", "Service", base[-1]])
    for objects in rendered.values():
        for obj in objects:
            assert obj["metadata"].get("namespace", NAMESPACE) == NAMESPACE
            assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


# -- the nodes -----------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_node_args_are_ferry_server_with_its_role(rendered: dict[str, list[dict[str, Any]]], value_set: str) -> None:
    for component, grpc_port in (("inference", 8001), ("control", 0)):
        args = parse_args(container(deployment(rendered[value_set], component))["args"])
        assert args.command == "server"
        assert args.role == component
        assert args.migrate is False  # --no-migrate: the hook Job migrates
        assert args.host == "0.0.0.0"
        assert args.port == 8000
        assert args.grpc_port == grpc_port
        assert args.data_dir == Path("/var/lib/ferry")
        assert args.auth is None  # keys stay on


def test_inference_args_say_role_inference(rendered: dict[str, list[dict[str, Any]]]) -> None:
    args = container(deployment(rendered["defaults"], "inference"))["args"]
    assert args[:4] == ["server", "--role", "inference", "--no-migrate"]
    assert container(deployment(rendered["defaults"], "control"))["args"][:4] == [
        "server",
        "--role",
        "control",
        "--no-migrate",
    ]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_probes_follow_ferry_health_semantics(rendered: dict[str, list[dict[str, Any]]], value_set: str) -> None:
    objects = rendered[value_set]
    tls = value_set == "ingress-monitoring"
    for component in ("inference", "control"):
        main = container(deployment(objects, component))
        ports = {p["name"]: p["containerPort"] for p in main["ports"]}
        assert ports["http"] == parse_args(main["args"]).port
        if component == "inference":
            assert ports["grpc"] == parse_args(main["args"]).grpc_port
        else:
            assert "grpc" not in ports
        # Ready only once every model is loaded: startup and readiness on /ready,
        # liveness on /live (a slow model load must not get the pod killed).
        for probe, path in (("startupProbe", "/v2/health/ready"), ("readinessProbe", "/v2/health/ready")):
            assert main[probe]["httpGet"]["path"] == path, probe
        assert main["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = main[probe]["httpGet"]
            assert get["port"] == "http", probe
            assert get["scheme"] == ("HTTPS" if tls else "HTTP"), probe
            assert "httpHeaders" not in get, "the health probes are open: no key"
        # --no-migrate nodes wait up to FERRY_SCHEMA_WAIT_S before they listen: the
        # startup window must be longer, or the kubelet restarts nodes waiting for ferry migrate.
        startup = main["startupProbe"]
        schema_wait = float(env(main)["FERRY_SCHEMA_WAIT_S"]["value"])
        assert startup["periodSeconds"] * startup["failureThreshold"] > schema_wait
        assert main["readinessProbe"]["periodSeconds"] <= 10


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_grace_period_is_longer_than_the_drain(rendered: dict[str, list[dict[str, Any]]], value_set: str) -> None:
    for component in ("inference", "control"):
        workload = deployment(rendered[value_set], component)
        pod = workload["spec"]["template"]["spec"]
        main = container(workload)
        drain = float(env(main)["FERRY_GRACEFUL_TIMEOUT_S"]["value"])
        pre_stop = main["lifecycle"]["preStop"]
        if "sleep" in pre_stop:  # Kubernetes' own sleep action (1.30+)
            sleep = pre_stop["sleep"]["seconds"]
        else:
            command = pre_stop["exec"]["command"]
            assert command[0] == "sleep"
            sleep = float(command[1])
        assert 0 < sleep <= 15
        assert pod["terminationGracePeriodSeconds"] > sleep + drain


def test_ferrys_own_drain_default_is_what_the_chart_assumes() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert Settings.model_fields["graceful_timeout_s"].default == defaults["ferry"]["gracefulTimeoutSeconds"] == 30
    assert Settings.model_fields["schema_wait_s"].default == defaults["ferry"]["schemaWaitSeconds"] == 300


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_run_restricted(rendered: dict[str, list[dict[str, Any]]], value_set: str) -> None:
    workloads = [deployment(rendered[value_set], c) for c in ("inference", "control")]
    workloads.append(find(rendered[value_set], "Job"))
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for item in pod["containers"]:
            context = item["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["runAsUser"] == 10001
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_writable_paths_are_volumes(rendered: dict[str, list[dict[str, Any]]], value_set: str) -> None:
    """A read-only root file system: the data dir and /tmp (uploads are spooled there,
    and multiprocessing's forkserver puts its socket there) must be mounted volumes."""
    objects = rendered[value_set]
    for component in ("inference", "control"):
        workload = deployment(objects, component)
        main = container(workload)
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
        data_dir = str(parse_args(main["args"]).data_dir)
        for path in (data_dir, "/tmp"):
            assert path in mounts, path
            volume = volumes[mounts[path]["name"]]
            assert "emptyDir" in volume, path
            assert volume["emptyDir"]["sizeLimit"]
            assert not mounts[path].get("readOnly")
        assert env(main)["HOME"]["value"] == "/tmp"
        artifacts = f"{data_dir}/artifacts"
        if value_set == "s3":
            assert artifacts not in mounts
            assert not any("persistentVolumeClaim" in v for v in volumes.values())
        else:
            claim = volumes[mounts[artifacts]["name"]]["persistentVolumeClaim"]["claimName"]
            expected = "ferry-artifacts-nfs" if value_set == "existing-secrets" else f"{FULLNAME}-artifacts"
            assert claim == expected
            assert not mounts[artifacts].get("readOnly")  # uploads and start-up cleanup write there
    job = find(objects, "Job")
    assert [m["mountPath"] for m in container(job)["volumeMounts"]] == ["/tmp"]


def test_shared_volume_is_read_write_many(rendered: dict[str, list[dict[str, Any]]]) -> None:
    claim = find(rendered["defaults"], "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == f"{FULLNAME}-artifacts"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_environment_is_ferry_settings(
    rendered: dict[str, list[dict[str, Any]]], value_set: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every FERRY_* variable is a Settings field, and the settings a node starts with
    (environment and args together) pass the server's own start-up checks."""
    objects = rendered[value_set]
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    fields = {f"FERRY_{name.upper()}" for name in Settings.model_fields}
    for component in ("inference", "control"):
        main = container(deployment(objects, component))
        variables = env(main)
        unknown = {n for n in variables if n.startswith("FERRY_")} - fields - PENDING_SETTINGS
        assert unknown == set()
        for name in [n for n in os.environ if n.startswith("FERRY_")]:
            monkeypatch.delenv(name)
        for name, var in variables.items():
            if name == "FERRY_BOOTSTRAP_ADMIN_KEY_FILE":
                key_file = tmp_path / "admin-key"
                key_file.write_text(bootstrap_key(objects, secrets, main, name))
                monkeypatch.setenv(name, str(key_file))
            elif "value" in var:
                monkeypatch.setenv(name, var["value"])
            elif name == "FERRY_DATABASE_URL":
                monkeypatch.setenv(name, DATABASE["url"])
            elif name == "FERRY_REDIS_URL":
                monkeypatch.setenv(name, "redis://redis:6379/0")
        if "FERRY_SSL_CERTFILE" in variables:
            # The mounted kubernetes.io/tls Secret, stood in for by two files.
            for name in ("FERRY_SSL_CERTFILE", "FERRY_SSL_KEYFILE"):
                stand_in = tmp_path / Path(variables[name]["value"]).name
                stand_in.write_text("PEM")
                monkeypatch.setenv(name, str(stand_in))
        args = parse_args(main["args"])
        settings = Settings(host=args.host, port=args.port, grpc_port=args.grpc_port, role=args.role, migrate=False)
        assert settings.auth is True
        assert settings.database_url and settings.database_url.startswith("postgresql")
        assert settings.bootstrap_admin_key_file is not None
        check_security(settings)  # raises ConfigError for what the server would refuse
        if value_set == "s3":
            assert variables["FERRY_ARTIFACTS_URL"]["value"] == "s3://ferry-models/prod"


def bootstrap_key(
    objects: list[dict[str, Any]], secrets: dict[str, dict[str, Any]], main: dict[str, Any], name: str
) -> str:
    """The key text the node would read from FERRY_BOOTSTRAP_ADMIN_KEY_FILE."""
    path = Path(env(main)[name]["value"])
    mount = next(m for m in main["volumeMounts"] if m["mountPath"] == str(path.parent))
    workload = next(o for o in objects if o["kind"] == "Deployment" and container(o) is main)
    volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    secret_name = volume["secret"]["secretName"]
    [item] = volume["secret"]["items"]
    assert item["path"] == path.name
    if secret_name not in secrets:  # auth.existingSecret: made by the operator
        return "fy_0123456789ab_" + "A" * 43
    return base64.b64decode(secrets[secret_name]["data"][item["key"]]).decode()


def test_generated_bootstrap_key_is_a_ferry_key(chart: Any) -> None:
    keys = set()
    for _ in range(3):
        secret = find(render(chart, VALUE_SETS["defaults"]), "Secret", f"{FULLNAME}-bootstrap-admin-key")
        key = base64.b64decode(secret["data"]["admin-key"]).decode()
        assert split(key) is not None, key
        keys.add(key)
        # Kept across `helm uninstall`: the database keeps the key it was first given.
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(keys) == 3, "a new random key at each fresh install"


def test_given_bootstrap_key_is_used_as_it_is(chart: Any) -> None:
    key = "fy_0123456789ab_" + "x" * 43
    objects = render(chart, {"database": DATABASE, "auth": {"bootstrapAdminKey": key}})
    secret = find(objects, "Secret", f"{FULLNAME}-bootstrap-admin-key")
    assert base64.b64decode(secret["data"]["admin-key"]).decode() == key


def test_bootstrap_key_is_a_file_on_every_node(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Inference nodes too: whichever node starts first on an empty database makes the
    first key, and without the file it would print a new one to its log."""
    for value_set, secret, key in (
        ("defaults", f"{FULLNAME}-bootstrap-admin-key", "admin-key"),
        ("existing-secrets", "ferry-admin", "key"),
    ):
        for component in ("inference", "control"):
            workload = deployment(rendered[value_set], component)
            main = container(workload)
            assert "FERRY_BOOTSTRAP_ADMIN_KEY" not in env(main)
            path = Path(env(main)["FERRY_BOOTSTRAP_ADMIN_KEY_FILE"]["value"])
            assert path.name == key
            mount = next(m for m in main["volumeMounts"] if m["mountPath"] == str(path.parent))
            assert mount["readOnly"] is True
            volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
            assert volume["secret"]["secretName"] == secret
            assert volume["secret"]["items"] == [{"key": key, "path": key}]
            # root-owned, group-readable: the pod's fsGroup is the group.
            assert volume["secret"]["defaultMode"] == 0o440
            assert workload["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001


def test_database_and_redis_urls_come_from_secrets(rendered: dict[str, list[dict[str, Any]]]) -> None:
    defaults = container(deployment(rendered["defaults"], "inference"))
    assert env(defaults)["FERRY_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULLNAME}-database",
        "key": "url",
    }
    assert "FERRY_REDIS_URL" not in env(defaults)
    secret = find(rendered["defaults"], "Secret", f"{FULLNAME}-database")
    assert secret["stringData"] == {"url": DATABASE["url"]}
    with_redis = container(deployment(rendered["ingress-monitoring"], "control"))
    assert env(with_redis)["FERRY_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULLNAME}-redis",
        "key": "url",
    }
    existing = rendered["existing-secrets"]
    for component in ("inference", "control"):
        variables = env(container(deployment(existing, component)))
        assert variables["FERRY_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "ferry-db", "key": "dsn"}
        assert variables["FERRY_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "ferry-redis", "key": "redis-url"}
    assert not [o for o in existing if o["kind"] == "Secret"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_migration_is_a_pre_install_and_pre_upgrade_hook(
    rendered: dict[str, list[dict[str, Any]]], value_set: str
) -> None:
    objects = rendered[value_set]
    job = find(objects, "Job", f"{FULLNAME}-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    migrate = container(job)
    assert parse_args(migrate["args"]).command == "migrate"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # The Job runs before the release's other objects exist: it uses no ServiceAccount of
    # the chart, and the database Secret, when the chart makes it, is an earlier hook.
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]
    reference = env(migrate)["FERRY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    nodes = env(container(deployment(objects, "inference")))["FERRY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert reference == nodes
    secret = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == reference["name"]]
    if secret:
        hook = secret[0]["metadata"]["annotations"]
        assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(hook["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    else:
        assert value_set == "existing-secrets"


def test_migration_can_be_turned_off(chart: Any) -> None:
    objects = render(chart, {"database": DATABASE, "migration": {"enabled": False}})
    assert not [o for o in objects if o["kind"] == "Job"]


# -- Services, autoscaling, disruption budgets ------------------------------------------------


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_services_reach_the_right_pods(rendered: dict[str, list[dict[str, Any]]], value_set: str) -> None:
    objects = rendered[value_set]
    inference, control = deployment(objects, "inference"), deployment(objects, "control")
    job = find(objects, "Job")
    service = find(objects, "Service", f"{FULLNAME}-inference")
    assert selects(service["spec"]["selector"], pod_labels(inference))
    assert not selects(service["spec"]["selector"], pod_labels(control))
    assert not selects(service["spec"]["selector"], job["spec"]["template"]["metadata"]["labels"])
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert (ports["http"]["port"], ports["http"]["targetPort"]) == (8000, "http")
    assert (ports["grpc"]["port"], ports["grpc"]["targetPort"]) == (8001, "grpc")
    assert ports["grpc"]["appProtocol"] == "grpc"
    container_ports = {p["name"] for p in container(inference)["ports"]}
    assert {p["targetPort"] for p in ports.values()} <= container_ports
    service = find(objects, "Service", f"{FULLNAME}-control")
    assert selects(service["spec"]["selector"], pod_labels(control))
    assert not selects(service["spec"]["selector"], pod_labels(inference))
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [("http", 8000, "http")]


def test_hpa_scales_inference_on_cpu_by_default(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["defaults"]
    hpa = find(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{FULLNAME}-inference",
    }
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    # The HPA owns the count: a replicas field would reset it at every upgrade.
    assert "replicas" not in deployment(objects, "inference")["spec"]
    assert deployment(objects, "control")["spec"]["replicas"] == 2
    # CPU utilisation is measured against the request.
    assert container(deployment(objects, "inference"))["resources"]["requests"]["cpu"]


def test_hpa_on_inflight_requests(rendered: dict[str, list[dict[str, Any]]]) -> None:
    hpa = find(rendered["hpa-inflight"], "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "ferry_inflight_requests"},
                "target": {"type": "AverageValue", "averageValue": "6"},
            },
        }
    ]
    assert hpa["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 300}}
    # The metric is Ferry's own, documented one.
    assert "| `ferry_inflight_requests` | gauge |" in METRICS_DOC.read_text()


def test_fixed_replicas_without_hpa(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["existing-secrets"]
    assert deployment(objects, "inference")["spec"]["replicas"] == 3
    pod = deployment(objects, "inference")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"node-pool": "inference"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "podAntiAffinity" in pod["affinity"]
    assert "nodeSelector" not in deployment(objects, "control")["spec"]["template"]["spec"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_disruption_budgets_select_their_pods(rendered: dict[str, list[dict[str, Any]]], value_set: str) -> None:
    objects = rendered[value_set]
    budgets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodDisruptionBudget"}
    for component in ("inference", "control"):
        budget = budgets.get(f"{FULLNAME}-{component}")
        if budget is None:
            assert (value_set, component) == ("existing-secrets", "control")
            continue
        assert selects(budget["spec"]["selector"]["matchLabels"], pod_labels(deployment(objects, component)))
        assert ("minAvailable" in budget["spec"]) != ("maxUnavailable" in budget["spec"])
    if value_set == "existing-secrets":
        assert budgets[f"{FULLNAME}-inference"]["spec"]["minAvailable"] == "50%"


# -- storage ------------------------------------------------------------------------------


def test_s3_storage(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["s3"]
    for component in ("inference", "control"):
        main = container(deployment(objects, component))
        variables = env(main)
        assert variables["FERRY_ARTIFACTS_URL"]["value"] == "s3://ferry-models/prod"
        assert variables["AWS_REGION"]["value"] == "eu-west-1"
        assert variables["AWS_ENDPOINT_URL"]["value"] == "https://minio.storage:9000"
        assert main["envFrom"] == [{"secretRef": {"name": "ferry-aws"}}]
        assert deployment(objects, component)["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME
    account = find(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ferry"}
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    # The PVC sets carry no S3 variable.
    assert "FERRY_ARTIFACTS_URL" not in env(container(deployment(rendered["defaults"], "inference")))


def test_onnx_memory_is_half_the_memory_limit(chart: Any) -> None:
    def onnx_mb(limit: str) -> str:
        values = {"database": DATABASE, "inference": {"resources": {"limits": {"memory": limit}}}}
        return str(env(container(deployment(render(chart, values), "inference")))["FERRY_ONNX_MEMORY_MB"]["value"])

    assert onnx_mb("4Gi") == "2048"
    assert onnx_mb("3000Mi") == "1500"
    assert onnx_mb("3G") == "1430"  # 3e9 bytes / 2 / 2**20
    assert onnx_mb("1.5Gi") == "768"
    # No memory limit (null deletes the default one): Ferry's own default applies.
    objects = render(chart, {"database": DATABASE, "inference": {"resources": {"limits": None}}})
    assert "limits" not in container(deployment(objects, "inference"))["resources"]
    assert "FERRY_ONNX_MEMORY_MB" not in env(container(deployment(objects, "inference")))


# -- optional objects -----------------------------------------------------------------------


def test_ingress_routes_inference_and_the_rest(rendered: dict[str, list[dict[str, Any]]]) -> None:
    ingress = find(rendered["ingress-monitoring"], "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "ferry.example.com"
    routes = {p["path"]: (p["pathType"], p["backend"]["service"]) for p in rule["http"]["paths"]}
    inference = {"name": f"{FULLNAME}-inference", "port": {"name": "http"}}
    control = {"name": f"{FULLNAME}-control", "port": {"name": "http"}}
    assert routes == {"/v2": ("Prefix", inference), "/v1": ("Prefix", inference), "/": ("Prefix", control)}
    assert ingress["spec"]["tls"] == [{"secretName": "ferry-ingress-tls", "hosts": ["ferry.example.com"]}]


def test_service_monitor(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Structure of monitoring.coreos.com/v1 ServiceMonitor (no schema in kubernetes-validate)."""
    objects = rendered["ingress-monitoring"]
    monitor = find(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == FULLNAME
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert set(monitor["spec"]) == {"selector", "namespaceSelector", "endpoints"}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]
    [expression] = selector["matchExpressions"]
    assert expression["operator"] == "In"
    services = [o for o in objects if o["kind"] == "Service"]
    for service in services:
        labels = service["metadata"]["labels"]
        assert selects(selector["matchLabels"], labels)
        assert labels["app.kubernetes.io/component"] in expression["values"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "authorization"}
    assert endpoint["port"] == "http"
    assert all("http" in {p["name"] for p in s["spec"]["ports"]} for s in services)
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "https"  # ferry.tlsSecret is set in this value set
    assert re.fullmatch(r"\d+s", endpoint["interval"]) and re.fullmatch(r"\d+s", endpoint["scrapeTimeout"])
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "ferry-prometheus-key", "key": "key"},
    }


def test_prometheus_rule_is_the_shipped_alerts(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Structure of monitoring.coreos.com/v1 PrometheusRule, and the rules themselves."""
    rule = find(rendered["ingress-monitoring"], "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    shipped = yaml.safe_load(ALERTS.read_text())
    assert rule["spec"] == shipped
    for group in rule["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
        for alert in group["rules"]:
            assert {"alert", "expr", "for", "labels", "annotations"} == set(alert)
            # Prometheus' own template variables reach it untouched by Helm.
            assert "{{ $labels.model }}" in alert["annotations"]["summary"]


def test_chart_copy_of_the_alert_rules_is_current() -> None:
    """Helm reads only files inside the chart: files/ferry-alerts.yml is a copy."""
    assert (CHART / "files" / "ferry-alerts.yml").read_bytes() == ALERTS.read_bytes(), (
        "cp deploy/prometheus/ferry-alerts.yml deploy/helm/ferry/files/"
    )


def test_tls_serves_https(rendered: dict[str, list[dict[str, Any]]]) -> None:
    workload = deployment(rendered["ingress-monitoring"], "inference")
    main = container(workload)
    assert env(main)["FERRY_SSL_CERTFILE"]["value"] == "/etc/ferry/tls/tls.crt"
    assert env(main)["FERRY_SSL_KEYFILE"]["value"] == "/etc/ferry/tls/tls.key"
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "ferry-tls"
    service = find(rendered["ingress-monitoring"], "Service", f"{FULLNAME}-inference")
    assert {p["name"]: p["appProtocol"] for p in service["spec"]["ports"]} == {"http": "https", "grpc": "grpc"}


# -- what the chart refuses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "give database.url"),
        ({"database": {"url": "sqlite:////var/lib/ferry/registry.db"}}, "SQLite cannot be shared"),
        ({"database": {**DATABASE, "existingSecret": "db"}}, "not both"),
        ({"database": DATABASE, "storage": {"type": "s3"}}, "storage.s3.artifactsUrl"),
        ({"database": DATABASE, "ferry": {"terminationGracePeriodSeconds": 35}}, "must be longer than"),
        (
            {"database": DATABASE, "inference": {"autoscaling": {"targetCPUUtilizationPercentage": None}}},
            "needs a metric",
        ),
        ({"database": DATABASE, "inference": {"resources": {"limits": {"memory": "lots"}}}}, "memory quantity"),
        # values.schema.json
        ({"database": DATABASE, "inferece": {"replicas": 3}}, "additional properties 'inferece'"),
        ({"database": DATABASE, "storage": {"type": "nfs"}}, "/storage/type"),
        ({"database": DATABASE, "auth": {"bootstrapAdminKey": "hunter2"}}, "/auth/bootstrapAdminKey"),
        ({"database": DATABASE, "storage": {"s3": {"artifactsUrl": "gs://bucket"}}}, "/storage/s3/artifactsUrl"),
        ({"database": DATABASE, "inference": {"replicas": "two"}}, "/inference/replicas"),
    ],
)
def test_chart_refuses_values_that_cannot_work(chart: Any, values: dict[str, Any], message: str) -> None:
    assert message in render_error(chart, values)


def test_values_schema_accepts_the_defaults(chart: Any) -> None:
    chart.validate_schema(yaml.safe_load((CHART / "values.yaml").read_text()))
    for values in VALUE_SETS.values():
        chart.validate_schema(values)


def test_every_value_is_in_the_chart_readme() -> None:
    """The README's values table names every value (objects passed to Kubernetes as they
    are, like resources or probes, by their own name)."""
    whole = {"resources", "strategy", "probes", "behavior", "annotations", "labels", "podAnnotations", "podLabels"}
    whole |= {"commonLabels", "nodeSelector", "affinity", "podSecurityContext", "securityContext"}

    def leaves(node: Any, path: str = "") -> Iterator[str]:
        if isinstance(node, dict) and node and path.rsplit(".", 1)[-1] not in whole:
            for key, value in node.items():
                yield from leaves(value, f"{path}.{key}" if path else key)
        else:
            yield path

    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert [leaf for leaf in leaves(values) if f"`{leaf}`" not in readme] == []


# -- KServe ---------------------------------------------------------------------------------


def kserve_runtime() -> dict[str, Any]:
    runtime: dict[str, Any] = yaml.safe_load((KSERVE / "ferry-runtime.yaml").read_text())
    return runtime


def inference_services() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KSERVE / "inferenceservice.yaml").read_text()) if d]


def test_kserve_runtime_structure() -> None:
    """serving.kserve.io/v1alpha1 ClusterServingRuntime, checked by hand (no schema in
    kubernetes-validate): the fields KServe reads to pick and run a runtime."""
    runtime = kserve_runtime()
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert runtime["kind"] == "ClusterServingRuntime"
    assert "namespace" not in runtime["metadata"]  # cluster-scoped
    spec = runtime["spec"]
    assert set(spec) <= {"supportedModelFormats", "protocolVersions", "containers", "volumes", "annotations"}
    formats = {f["name"]: f for f in spec["supportedModelFormats"]}
    assert set(formats) == {"onnx", "sklearn", "pytorch"}
    for fmt in formats.values():
        assert set(fmt) <= {"name", "version", "autoSelect", "priority"}
        assert isinstance(fmt["version"], str)
    assert formats["onnx"]["autoSelect"] is True
    assert formats["onnx"]["priority"] >= 1
    assert formats["sklearn"]["autoSelect"] is False and formats["pytorch"]["autoSelect"] is False
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]
    [main] = spec["containers"]
    assert main["name"] == "kserve-container"  # the container KServe merges the predictor into
    assert "ports" not in main  # Knative allows one port: the InferenceService picks it


def test_kserve_runtime_runs_ferry_serve_on_kserves_ports() -> None:
    [main] = kserve_runtime()["spec"]["containers"]
    args = parse_args(main["args"])
    assert args.command == "serve"
    assert args.paths == [Path("/mnt/models")]  # where the storage initializer puts the model
    assert (args.host, args.port, args.grpc_port) == ("0.0.0.0", 8080, 8081)
    assert args.auth is None  # keys on: see the next test
    assert args.data_dir is not None and str(args.data_dir).startswith("/tmp/")
    assert main["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}


def test_kserve_runtime_keeps_keys_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-auth is refused off loopback, and KServe needs 0.0.0.0: the runtime keeps keys
    on, with the first admin key from a Secret, and passes Ferry's start-up checks."""
    runtime = kserve_runtime()
    [main] = runtime["spec"]["containers"]
    args = parse_args(main["args"])
    with pytest.raises(ConfigError, match="refusing to run without API keys"):
        check_security(Settings(host=args.host, auth=False))
    variables = env(main)
    fields = {f"FERRY_{name.upper()}" for name in Settings.model_fields}
    assert {n for n in variables if n.startswith("FERRY_")} <= fields
    key_path = Path(variables["FERRY_BOOTSTRAP_ADMIN_KEY_FILE"]["value"])
    mount = next(m for m in main["volumeMounts"] if m["mountPath"] == str(key_path.parent))
    volume = next(v for v in runtime["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "ferry-bootstrap-admin-key"
    assert volume["secret"]["items"] == [{"key": "admin-key", "path": key_path.name}]
    # No pod fsGroup in a ServingRuntime: the file must be readable by the image's user.
    assert volume["secret"]["defaultMode"] & 0o004
    key_file = tmp_path / "admin-key"
    key_file.write_text("fy_0123456789ab_" + "A" * 43 + "\n")
    for name, var in variables.items():
        monkeypatch.setenv(name, str(key_file) if name == "FERRY_BOOTSTRAP_ADMIN_KEY_FILE" else var["value"])
    settings = Settings(host=args.host, port=args.port, grpc_port=args.grpc_port)
    assert settings.auth is True
    check_security(settings)
    # FERRY_ONNX_MEMORY_MB is half the memory limit (1024 of 2Gi).
    assert int(variables["FERRY_ONNX_MEMORY_MB"]["value"]) * 2 * 2**20 == 2 * 2**30
    assert main["resources"]["limits"]["memory"] == "2Gi"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kserve_runtime_pod_parts_are_valid_kubernetes(version: str) -> None:
    """The runtime's containers and volumes are core/v1 types: validated strictly as a Pod."""
    spec = kserve_runtime()["spec"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kserve-ferry-check"},
        "spec": {"containers": spec["containers"], "volumes": spec["volumes"]},
    }
    kubernetes_validate.validate(pod, version, strict=True)


def test_inference_service_examples() -> None:
    """serving.kserve.io/v1beta1 InferenceService, checked by hand against the runtime."""
    runtime = kserve_runtime()
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    [main] = runtime["spec"]["containers"]
    grpc_port = parse_args(main["args"]).grpc_port
    services = inference_services()
    assert [s["spec"]["predictor"]["model"]["protocolVersion"] for s in services] == ["v2", "grpc-v2"]
    for service in services:
        assert service["apiVersion"] == "serving.kserve.io/v1beta1"
        assert service["kind"] == "InferenceService"
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", service["metadata"]["name"])
        assert set(service["spec"]) == {"predictor"}
        model = service["spec"]["predictor"]["model"]
        assert model["runtime"] == runtime["metadata"]["name"]
        assert model["modelFormat"]["name"] in formats
        assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
        assert re.fullmatch(r"(s3|gs|https?|pvc)://.+", model["storageUri"])
        if model["protocolVersion"] == "grpc-v2":
            # KServe sends HTTP/2 to the port named h2c: Ferry's gRPC port.
            assert model["ports"] == [{"name": "h2c", "containerPort": grpc_port, "protocol": "TCP"}]
        else:
            assert "ports" not in model
