"""``multispot server`` for real (uvicorn on loopback), driven by CLI subprocesses in client mode.

Users come from ``multispot admin``; each client has its own empty ``MULTISPOT_HOME`` and talks to
the server only through ``MULTISPOT_SERVER``/``MULTISPOT_TOKEN``.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import subprocess
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.multispot_server import MULTISPOT, Server, admin, start

from multispot import api
from multispot.store import open_store

pytestmark = pytest.mark.slow

USERS = {"alice": ("team-a", False), "bob": ("team-b", False), "root": ("ops", True)}

TRAIN = textwrap.dedent("""
    from multispot.testing.worker import main

    print("hello-from-uploaded-code", flush=True)
    raise SystemExit(main(["--steps", "6", "--step-seconds", "0.02"]))
""")

JOB = textwrap.dedent("""
    name: served
    command: python train.py
    source_dir: code
    checkpoint: {interval: 1s}
    provider_options:
      local:
        time_scale: 0.02
        price_per_hour: {spot: 0.1, on-demand: 0.3}
""")

SLEEPER = textwrap.dedent("""
    name: sleeper
    command: python -c "import time; print('sleeper-started', flush=True); time.sleep(600)"
""")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start(tmp_path_factory.mktemp("server") / "home", USERS)
    yield srv
    srv.stop()


def client(
    server: Server, user: str, home: Path, *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    env = dict(server.client_env(user, home), COLUMNS="200")
    return subprocess.run(
        [MULTISPOT, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        cwd=home.parent,
    )


@pytest.fixture(scope="module")
def alice_job(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """alice's job, submitted with the CLI through the server and waited for: its printed JSON."""
    folder = tmp_path_factory.mktemp("alice")
    (folder / "code").mkdir()
    (folder / "code" / "train.py").write_text(TRAIN)
    (folder / "job.yaml").write_text(JOB)
    result = client(server, "alice", folder / "home", "submit", str(folder / "job.yaml"), "-o", "json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def server_view(server: Server, job_id: str) -> dict[str, Any]:
    """What the local API says of the job, read straight from the server's store."""
    store = open_store(f"sqlite:///{server.home / 'jobs.sqlite'}")
    try:
        return api.Run(job_id, store).to_dict()
    finally:
        store.close()


def test_health_and_openapi_need_no_token(server: Server) -> None:
    status, body = server.request("GET", "/api/v1/health")
    assert status == 200 and body["status"] == "ok"
    status, schema = server.request("GET", "/api/v1/openapi.json")
    assert status == 200
    assert {"/api/v1/jobs", "/api/v1/jobs/{ref}/logs", "/api/v1/savings/timeline", "/api/v1/code"} <= set(
        schema["paths"]
    )


def test_submit_through_the_server_prints_the_same_json_as_locally(
    server: Server, alice_job: dict[str, Any], tmp_path: Path
) -> None:
    job_id = alice_job["id"]
    assert alice_job["state"] == "SUCCEEDED"
    assert alice_job == server_view(server, job_id)
    status = client(server, "alice", tmp_path / "h", "status", job_id, "-o", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == server_view(server, job_id)
    listed = client(server, "alice", tmp_path / "h", "list", "-o", "json")
    assert job_id in [row["id"] for row in json.loads(listed.stdout)]
    assert not (tmp_path / "h" / "jobs.sqlite").exists()  # nothing was kept on the client


def test_code_is_staged_by_the_server_and_logs_come_back(
    server: Server, alice_job: dict[str, Any], tmp_path: Path
) -> None:
    job_id = alice_job["id"]
    logs = client(server, "alice", tmp_path / "h", "logs", job_id)
    assert logs.returncode == 0, logs.stderr
    assert "hello-from-uploaded-code" in logs.stdout and "worker: done" in logs.stdout
    as_json = client(server, "alice", tmp_path / "h", "logs", job_id, "-o", "json")
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {"attempt": 1, "line": "hello-from-uploaded-code"} in lines
    record = open_store(f"sqlite:///{server.home / 'jobs.sqlite'}").get_job(job_id)
    assert record.team == "team-a" and record.submitted_by == "alice"
    assert record.spec["source_dir"].startswith(f"{server.home}-code/team-a/")


def test_checkpoints_cost_and_savings_through_the_server(
    server: Server, alice_job: dict[str, Any], tmp_path: Path
) -> None:
    job_id = alice_job["id"]
    listing = json.loads(client(server, "alice", tmp_path / "h", "checkpoints", job_id, "-o", "json").stdout)
    assert listing["uri"] == alice_job["checkpoint_uri"]
    assert listing["checkpoints"] and all(row["valid"] for row in listing["checkpoints"])
    cost = client(server, "alice", tmp_path / "h", "cost", job_id, "-o", "json")
    assert cost.returncode == 0, cost.stderr
    assert json.loads(cost.stdout)["job_id"] == job_id
    table = client(server, "alice", tmp_path / "h", "cost", job_id)
    assert table.returncode == 0 and f"cost of {job_id}" in table.stdout
    summary = client(server, "alice", tmp_path / "h", "savings")
    assert summary.returncode == 0 and "savings (estimated)" in summary.stdout, summary.stderr
    status, by_team = server.request("GET", "/api/v1/savings?group_by=team", server.tokens["root"])
    assert status == 200 and "team-a" in [row["key"] for row in by_team]
    row = next(row for row in by_team if row["key"] == "team-a")
    assert row["on_demand"] > row["cost"] > 0 and row["jobs"] >= 1
    status, bob_view = server.request("GET", "/api/v1/savings?group_by=team", server.tokens["bob"])
    assert status == 200 and "team-a" not in [row["key"] for row in bob_view]
    status, timeline = server.request(
        "GET", "/api/v1/savings/timeline?group_by=provider&bucket=day", server.tokens["alice"]
    )
    assert status == 200 and timeline and all(len(row["bucket"]) == 10 for row in timeline)


def test_logs_follow_streams_until_cancel_ends_the_job(server: Server, tmp_path: Path) -> None:
    (tmp_path / "sleeper.yaml").write_text(SLEEPER)
    home = tmp_path / "h"
    submitted = client(
        server, "alice", home, "submit", str(tmp_path / "sleeper.yaml"), "--detach", "-o", "json"
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    env = dict(server.client_env("alice", home))
    follower = subprocess.Popen(
        [MULTISPOT, "logs", job_id, "--follow"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert follower.stdout is not None
        for line in follower.stdout:  # streamed: the line arrives while the job still runs
            if "sleeper-started" in line:
                break
        else:
            pytest.fail("the follower ended before the job printed")
        cancelled = client(server, "alice", home, "cancel", job_id, "-o", "json")
        assert json.loads(cancelled.stdout)["cancel_requested"] is True
        assert follower.wait(timeout=120) == 0  # the stream ends with the job
    finally:
        follower.kill()
    watched = client(server, "alice", home, "watch", job_id, "-o", "json")
    assert json.loads(watched.stdout)["state"] == "CANCELLED" and watched.returncode == 1


def test_another_team_gets_404_and_an_admin_sees_all(
    server: Server, alice_job: dict[str, Any], tmp_path: Path
) -> None:
    job_id = alice_job["id"]
    bob = server.tokens["bob"]
    for method, path in [
        ("GET", f"/api/v1/jobs/{job_id}"),
        ("GET", f"/api/v1/jobs/{job_id}/logs"),
        ("GET", f"/api/v1/jobs/{job_id}/cost"),
        ("POST", f"/api/v1/jobs/{job_id}/cancel"),
    ]:
        status, body = server.request(method, path, bob, body={} if method == "POST" else None)
        assert status == 404, (path, body)
        assert body["error"]["type"] == "JobNotFound"
    _, entries = server.request("GET", "/api/v1/audit?limit=1000", server.tokens["root"])
    tries = [(e["actor"], e["action"], e["target"], e["detail"].get("outcome")) for e in entries]
    assert ("bob", "cancel", job_id, "JobNotFound") in tries  # the refused try is on record
    shown = client(server, "bob", tmp_path / "b", "status", job_id)
    assert shown.returncode == 2 and "no job" in shown.stderr and "Traceback" not in shown.stderr
    bobs = json.loads(client(server, "bob", tmp_path / "b", "list", "-o", "json").stdout)
    assert job_id not in [row["id"] for row in bobs]
    status, everything = server.request("GET", "/api/v1/jobs?limit=100", server.tokens["root"])
    assert status == 200 and job_id in [row["id"] for row in everything]


def test_tokens_are_stored_hashed_and_never_written(server: Server, alice_job: dict[str, Any]) -> None:
    status, body = server.request("GET", "/api/v1/me")
    assert status == 401 and body["error"]["type"] == "ServerError"
    status, body = server.request("GET", "/api/v1/me", "not-a-token")
    assert status == 401 and "not valid" in body["error"]["message"]
    store = open_store(f"sqlite:///{server.home / 'jobs.sqlite'}")
    user = store.user_by_token_hash(hashlib.sha256(server.tokens["alice"].encode()).hexdigest())
    assert user is not None and user.name == "alice" and user.team == "team-a"
    everything = [server.log, *(p for p in server.home.rglob("*") if p.is_file())]
    for token in server.tokens.values():
        for path in everything:
            assert token.encode() not in path.read_bytes(), path


def test_a_revoked_token_stops_working(server: Server) -> None:
    made = admin(server.home, "create-token", "alice", "--label", "short-lived")
    token, token_id = made.stdout.strip(), made.stderr.split()[1]
    assert server.request("GET", "/api/v1/me", token)[0] == 200
    admin(server.home, "revoke-token", token_id)
    assert server.request("GET", "/api/v1/me", token)[0] == 401


def test_every_change_is_audited_and_the_log_is_for_admins(server: Server, alice_job: dict[str, Any]) -> None:
    bad = {"spec": {"name": "x", "command": "python a.py", "resources": {"nodes": "many"}}}
    assert server.request("POST", "/api/v1/jobs", server.tokens["alice"], body=bad)[0] == 422
    status, entries = server.request("GET", "/api/v1/audit?limit=1000", server.tokens["root"])
    assert status == 200
    mine = [(e["actor"], e["action"], e["target"], e["detail"].get("outcome")) for e in entries]
    assert ("alice", "submit", alice_job["id"], "ok") in mine
    assert any(e[:2] == ("alice", "upload-code") and e[3] == "ok" for e in mine)
    assert ("alice", "submit", "job", "JobSpecError") in mine
    assert any(e[1] == "create-token" and e[0].startswith("admin-cli:") for e in mine)
    status, body = server.request("GET", "/api/v1/audit", server.tokens["alice"])
    assert status == 403 and body["error"]["type"] == "ServerError"


def _tar(members: dict[str, bytes], sizes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    if sizes:  # a header that claims more than the archive holds (a bomb's first member)
        plain = bytearray(_gunzip(raw))
        for name, size in sizes.items():
            at = plain.index(name.encode())
            plain[at + 124 : at + 136] = f"{size:011o}\0".encode()
            plain[at + 148 : at + 156] = b" " * 8
            checksum = sum(plain[at : at + 512])
            plain[at + 148 : at + 156] = f"{checksum:06o}\0 ".encode()
        raw = _gzip(bytes(plain))
    return raw


def _gunzip(data: bytes) -> bytes:
    import gzip

    return gzip.decompress(data)


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (
            {"spec": {"name": "x", "command": "python a.py", "resources": {"nodes": "many"}}},
            422,
            "resources.nodes",
        ),
        ({"spec": {"name": "x", "command": "python a.py"}, "options": {"bogus": 1}}, 422, "options.bogus"),
        ({"spec": {"name": "x", "command": "python a.py", "source_dir": "/etc"}}, 422, "spec.source_dir"),
        ({"spec": {"name": "x", "command": "env", "env": {"K": "${AWS_SECRET_ACCESS_KEY}"}}}, 422, "env.K"),
        ({"spec": {"name": "x", "command": "a"}, "options": {"code_id": "0" * 64}}, 422, "options.code_id"),
        ({"provider": "local"}, 422, "spec"),
    ],
)
def test_bad_submissions_are_4xx_json_with_the_field(
    server: Server, body: dict[str, Any], status: int, field: str
) -> None:
    got, answer = server.request("POST", "/api/v1/jobs", server.tokens["alice"], body=body)
    assert got == status, answer
    assert answer["error"]["field"] == field
    assert "Traceback" not in json.dumps(answer)


def _oversized(server: Server, token: str, chunked: bool) -> tuple[int, Any]:
    """POST /jobs with a body over the 1 MiB limit. The answer is read before the rest of the body
    is sent (a server that answers early and closes would otherwise reset the connection under a
    client still sending): by Content-Length, nothing of the body is sent; chunked, one chunk over
    the limit and no end."""
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest("POST", "/api/v1/jobs")
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", "application/json")
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            chunk = b" " * ((1 << 20) + 1024)
            conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        else:
            conn.putheader("Content-Length", str(2 << 20))
            conn.endheaders()
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def test_hostile_bodies_are_refused(server: Server) -> None:
    token = server.tokens["alice"]
    status, answer = _oversized(server, token, chunked=False)  # refused on its Content-Length
    assert status == 413 and answer["error"]["type"] == "ServerError"
    status, answer = _oversized(server, token, chunked=True)  # no length: counted as it arrives
    assert status == 413 and answer["error"]["type"] == "ServerError"
    status, answer = server.request("POST", "/api/v1/jobs", token, data=b"{not json")
    assert status == 422 and "error" in answer
    status, answer = server.request("POST", "/api/v1/code", token, data=_tar({"../escape.py": b"x"}))
    assert status == 422 and answer["error"]["field"] == "code"
    status, answer = server.request(
        "POST", "/api/v1/code", token, data=_tar({"big.bin": b"x"}, {"big.bin": 8**11 - 1})
    )
    assert status == 413, answer
    status, answer = server.request("POST", "/api/v1/code", token, data=b"not a tarball")
    assert status == 422 and answer["error"]["field"] == "code"
    assert not list(Path(f"{server.home}-code").glob("*/*.tmp"))
    status, answer = server.request("GET", "/api/v1/jobs?limit=0", token)
    assert status == 422 and answer["error"]["field"] == "limit"
    status, answer = server.request("GET", "/api/v1/nowhere", token)
    assert status == 404 and "error" in answer


def test_the_python_api_talks_to_the_server(
    server: Server, alice_job: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multispot as ms
    from multispot.client import RemoteRun

    for key, value in server.client_env("alice", tmp_path / "h").items():
        if key.startswith("MULTISPOT_"):
            monkeypatch.setenv(key, value)
    run = ms.get(alice_job["id"])
    assert isinstance(run, RemoteRun) and run.status.value == "SUCCEEDED"
    assert run.to_dict() == server_view(server, alice_job["id"])
    assert [a.n for a in run.attempts] == [a["n"] for a in alice_job["attempts"]]
    assert alice_job["id"] in [r.id for r in ms.runs(100)]
    assert ms.savings().to_dict()["basis"] == "estimated"


def test_login_keeps_the_token_private_and_logout_forgets_it(server: Server, tmp_path: Path) -> None:
    home = tmp_path / "h"
    env = {k: v for k, v in os.environ.items() if k not in ("MULTISPOT_SERVER", "MULTISPOT_TOKEN")}
    env["MULTISPOT_HOME"] = str(home)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MULTISPOT, *args], capture_output=True, text=True, env=env, timeout=120)

    refused = run("login", server.url, "--token", "wrong")
    assert refused.returncode == 2 and not (home / "credentials.json").exists()
    logged = run("login", server.url, "--token", server.tokens["bob"])
    assert logged.returncode == 0, logged.stderr
    assert (home / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert server.tokens["bob"] not in logged.stdout + logged.stderr
    listed = run("list", "-o", "json")
    assert listed.returncode == 0 and not (home / "jobs.sqlite").exists()
    assert run("logout").returncode == 0 and not (home / "credentials.json").exists()


ARRAY = textwrap.dedent("""
    name: served-array
    command: python -c "import os; print('task', os.environ['MULTISPOT_TASK_INDEX'], flush=True)"
    array: {count: 2, parallelism: 2}
""")


def test_an_array_started_through_the_server_belongs_to_the_team(server: Server, tmp_path: Path) -> None:
    (tmp_path / "array.yaml").write_text(ARRAY)
    started = client(server, "alice", tmp_path / "h", "array", str(tmp_path / "array.yaml"), "-o", "json")
    assert started.returncode == 0, started.stderr
    data = json.loads(started.stdout)
    assert data["state"] == "done" and [m["job_state"] for m in data["members"]] == ["SUCCEEDED"] * 2
    store = open_store(f"sqlite:///{server.home / 'jobs.sqlite'}")
    try:
        assert {store.get_job(m["job"]).team for m in data["members"]} == {"team-a"}
    finally:
        store.close()
    alices = json.loads(client(server, "alice", tmp_path / "h", "sweeps", "-o", "json").stdout)
    assert data["id"] in [row["id"] for row in alices]
    bobs = json.loads(client(server, "bob", tmp_path / "b", "sweeps", "-o", "json").stdout)
    assert data["id"] not in [row["id"] for row in bobs]
    assert server.request("GET", f"/api/v1/sweeps/{data['id']}", server.tokens["bob"])[0] == 404
    _, entries = server.request("GET", "/api/v1/audit?limit=1000", server.tokens["root"])
    assert ("alice", "start-array", data["id"]) in [(e["actor"], e["action"], e["target"]) for e in entries]
