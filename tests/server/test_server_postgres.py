"""The same server over PostgreSQL (the tests' own server from the OS's binaries): a job submitted
through the CLI is driven to the end by the controller the server starts, in the same store."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from helpers.multispot_server import MULTISPOT, start

from multispot.store import open_store

pytestmark = pytest.mark.slow

JOB = textwrap.dedent("""
    name: on-postgres
    command: python -c "print('hello-from-postgres', flush=True)"
""")


def test_a_job_through_a_server_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    server = start(tmp_path / "home", {"alice": ("team-a", False), "bob": ("team-b", False)}, db=postgres_url)
    try:
        (tmp_path / "job.yaml").write_text(JOB)

        def run(user: str, *args: str) -> subprocess.CompletedProcess[str]:
            env = server.client_env(user, tmp_path / f"client-{user}")
            env.pop("MULTISPOT_DB", None)
            return subprocess.run([MULTISPOT, *args], capture_output=True, text=True, env=env, timeout=240)

        submitted = run("alice", "submit", str(tmp_path / "job.yaml"), "-o", "json")
        assert submitted.returncode == 0, submitted.stderr + server.log.read_text()[-2000:]
        job = json.loads(submitted.stdout)
        assert job["state"] == "SUCCEEDED"
        assert "hello-from-postgres" in run("alice", "logs", job["id"]).stdout
        assert run("bob", "status", job["id"]).returncode == 2  # another team: not found
        store = open_store(postgres_url)
        try:
            assert store.get_job(job["id"]).team == "team-a"
            assert any(e.action == "submit" and e.target == job["id"] for e in store.audit_log(100))
        finally:
            store.close()
        assert not (server.home / "jobs.sqlite").exists()  # nothing went to a SQLite file
    finally:
        server.stop()
