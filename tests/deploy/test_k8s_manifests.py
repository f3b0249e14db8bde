"""deploy/k8s/ against the Kubernetes OpenAPI schemas (kubernetes-validate ships them, offline), and
the references between the manifests that no schema sees: Secret keys, ConfigMap names, the
Service's selector and port, the probes' path."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# The oldest Kubernetes the manifests promise to work on, and the newest schemas shipped.
OLDEST = "1.29.0"
NEWEST = kubernetes_validate.latest_version()


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return data


def resources() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return docs


def one(kind: str, name: str) -> dict[str, Any]:
    found = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(deployment: str) -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment", deployment)["spec"]["template"]["spec"]
    return spec


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_every_manifest_is_valid_against_the_kubernetes_schema(version: str) -> None:
    kinds = set()
    for resource in resources():
        kubernetes_validate.validate(resource, version, strict=True)
        kinds.add(resource["kind"])
    assert {"Deployment", "Service", "Secret", "ConfigMap"} <= kinds


def test_the_validator_refuses_what_the_api_server_would() -> None:
    """The check above can fail: a wrong type and an unknown field are both refused."""
    bad = copy.deepcopy(one("Deployment", "multispot-controller"))
    bad["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, NEWEST, strict=True)
    typo = copy.deepcopy(one("Deployment", "multispot-server"))
    typo["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, NEWEST, strict=True)


def test_controllers_are_several_replicas_running_multispot_controller() -> None:
    deployment = one("Deployment", "multispot-controller")
    assert deployment["spec"]["replicas"] >= 2
    (container,) = pod_spec("multispot-controller")["containers"]
    assert container["args"][0] == "controller"
    # $(VAR) in args is expanded by the kubelet from the container's environment (ConfigMap here)
    concurrency = container["args"][container["args"].index("--concurrency") + 1]
    assert concurrency == "$(MULTISPOT_CONTROLLER_CONCURRENCY)"
    assert "MULTISPOT_CONTROLLER_CONCURRENCY" in one("ConfigMap", "multispot-config")["data"]


def test_server_probes_ask_the_health_endpoint_on_the_port_the_service_targets() -> None:
    (container,) = pod_spec("multispot-server")["containers"]
    assert container["args"][0] == "server"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/api/v1/health"
        assert get["port"] in ports
    service = one("Service", "multispot-server")
    server_labels = one("Deployment", "multispot-server")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= server_labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)


@pytest.mark.parametrize("deployment", ["multispot-server", "multispot-controller"])
def test_pods_run_as_non_root_with_limits_and_a_writable_home(deployment: str) -> None:
    spec = pod_spec(deployment)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    config = one("ConfigMap", "multispot-config")["data"]
    for container in spec["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
        assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
        # a read-only root: multispot's folders and /tmp must be on mounted volumes
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        for path in (config["MULTISPOT_HOME"], config["MULTISPOT_SERVER_CODE"], "/tmp"):
            assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts), path
    assert spec["serviceAccountName"] == one("ServiceAccount", spec["serviceAccountName"])["metadata"]["name"]


@pytest.mark.parametrize("deployment", ["multispot-server", "multispot-controller"])
def test_the_store_url_comes_from_the_secret_and_every_reference_resolves(deployment: str) -> None:
    (container,) = pod_spec(deployment)["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MULTISPOT_DB"]["valueFrom"]["secretKeyRef"]["key"] == "MULTISPOT_DB"
    for entry in container["env"]:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in one("Secret", ref["name"])["stringData"]
        assert "value" not in entry or "postgres" not in entry["value"], "a store URL outside the Secret"
    for source in container["envFrom"]:
        one("ConfigMap", source["configMapRef"]["name"])
    secret = one("Secret", "multispot")["stringData"]
    assert secret["MULTISPOT_DB"].startswith("postgresql")


def test_server_and_controllers_share_the_folder_of_jobs_and_uploaded_code() -> None:
    """The server writes a job's working folder and its uploaded code; a controller pod submits
    the job's attempts from them: one ReadWriteMany claim, mounted by both at the same path."""
    claims = {}
    for deployment in ("multispot-server", "multispot-controller"):
        spec = pod_spec(deployment)
        volumes = {v["name"]: v for v in spec["volumes"]}
        (container,) = spec["containers"]
        config = one("ConfigMap", "multispot-config")["data"]
        for mount in container["volumeMounts"]:
            if config["MULTISPOT_HOME"].startswith(mount["mountPath"]):
                claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
                claims[deployment] = (claim, mount["mountPath"])
                assert config["MULTISPOT_SERVER_CODE"].startswith(mount["mountPath"])
    assert claims["multispot-server"] == claims["multispot-controller"]
    claim = one("PersistentVolumeClaim", claims["multispot-server"][0])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_secret_holds_the_store_url_and_no_token() -> None:
    """API tokens live hashed in the job store (`multispot admin create-token`), never in a manifest."""
    assert set(one("Secret", "multispot")["stringData"]) == {"MULTISPOT_DB"}


def commands() -> list[list[str]]:
    """Each container's multispot arguments, $(VAR) filled from the ConfigMap as the kubelet does,
    and each compose service's command, ${VAR:-default} filled with its default."""
    config = one("ConfigMap", "multispot-config")["data"]
    found = []
    for deployment in ("multispot-server", "multispot-controller"):
        for container in pod_spec(deployment)["containers"]:
            found.append([re.sub(r"\$\((\w+)\)", lambda m: config[m.group(1)], a) for a in container["args"]])
    services = yaml.safe_load((K8S.parent / "compose.yaml").read_text())["services"]
    for service in services.values():
        if service.get("image", "").startswith("multispot"):
            found.append([re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", a) for a in service["command"]])
    return found


@pytest.mark.parametrize("args", commands(), ids=lambda args: " ".join(args))
def test_every_command_the_deployment_runs_is_one_the_cli_accepts(args: list[str]) -> None:
    from multispot.cli import cli

    if args[0] not in cli.commands and args[0] == "controller":
        pytest.skip("`multispot controller` comes with the controller-service branch")
    command = cli.commands[args[0]]
    context = command.make_context(args[0], list(args[1:]))  # raises on an unknown option or a bad value
    assert context.params
