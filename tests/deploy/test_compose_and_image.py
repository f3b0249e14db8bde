"""deploy/compose.yaml's structure (no Docker here: what `docker compose config` would need and what
the services need from each other) and the Dockerfile's promises the Kubernetes manifests rely on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
# Top-level keys of the Compose specification (compose-spec.io, "The Compose file").
COMPOSE_TOP_LEVEL = {"version", "name", "services", "networks", "volumes", "configs", "secrets", "include"}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_top_level_keys_are_the_specifications_or_extensions() -> None:
    for key in compose():
        assert key in COMPOSE_TOP_LEVEL or key.startswith("x-"), key


def test_postgres_server_and_controller_on_one_host() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "server", "controller"}
    assert "healthcheck" in services["postgres"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["server"]["command"][0] == "server"
    assert services["controller"]["command"][0] == "controller"
    assert "8400:8400" in services["server"]["ports"]


def test_server_and_controller_wait_for_a_healthy_postgres() -> None:
    services = compose()["services"]
    for name in ("server", "controller"):
        depends = services[name]["depends_on"]
        for dependency, condition in depends.items():
            assert condition["condition"] == "service_healthy"
            assert "healthcheck" in services[dependency], (
                f"{name} waits on {dependency}'s missing healthcheck"
            )
        assert "postgres" in depends
    assert "/api/v1/health" in " ".join(services["server"]["healthcheck"]["test"])


def test_both_use_the_same_store_url_pointing_at_the_postgres_service() -> None:
    services = compose()["services"]
    postgres = services["postgres"]["environment"]
    urls = {services[name]["environment"]["MULTISPOT_DB"] for name in ("server", "controller")}
    (url,) = urls
    match = re.fullmatch(
        r"postgresql\+psycopg://(\w+):(\$\{POSTGRES_PASSWORD[^}]*\})@postgres:5432/(\w+)", url
    )
    assert match, url
    assert match.group(1) == postgres["POSTGRES_USER"]
    assert match.group(2) == postgres["POSTGRES_PASSWORD"]
    assert match.group(3) == postgres["POSTGRES_DB"]
    # the password comes from the environment of `docker compose up`, never from the file
    assert postgres["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_server_and_controller_share_one_volume_for_multispots_folders() -> None:
    services = compose()["services"]
    volumes = {}
    for name in ("server", "controller"):
        env = services[name]["environment"]
        (mount,) = services[name]["volumes"]
        source, target = mount.split(":")
        assert env["MULTISPOT_HOME"].startswith(target + "/")
        assert env["MULTISPOT_SERVER_CODE"].startswith(target + "/")
        volumes[name] = source
    assert volumes["server"] == volumes["controller"]


def test_named_volumes_are_declared() -> None:
    data = compose()
    for service in data["services"].values():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in data["volumes"], source


def test_the_image_runs_multispot_as_the_non_root_user_the_manifests_expect() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and re.search(r"^FROM python:3\.\d+-slim$", dockerfile, re.M)
    assert re.search(r"""pip install "\.\[\$\{EXTRAS\}\]\"""", dockerfile)
    assert re.search(r"^ARG EXTRAS=server\b", dockerfile, re.M)
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    # the folders the deployments mount over exist, owned by that user, for a volume that copies them
    assert re.search(r"install -d -o 10001 -g 10001 -m 0700 /data /data/home /data/code", dockerfile)
    assert re.search(r'^ENTRYPOINT \["multispot"\]$', dockerfile, re.M)
    # what the image copies must exist (a renamed folder breaks the build)
    for source in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", dockerfile, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
