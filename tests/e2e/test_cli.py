"""The CLI as a user runs it: a subprocess, its own MULTISPOT_HOME, real local jobs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from multispot.testing.worker import expected_sum

MULTISPOT = str(Path(sys.executable).with_name("multispot"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def cli(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, MULTISPOT_HOME=str(home), COLUMNS="200", **(env or {}))
    return subprocess.run(
        [MULTISPOT, *args], capture_output=True, text=True, env=full_env, timeout=timeout, check=False
    )


def write_job(tmp_path: Path, body: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


WORKER_JOB = textwrap.dedent("""
    name: e2e
    command: python -m multispot.testing.worker --steps {steps} --step-seconds 0.05
    checkpoint: {{interval: 1s}}
    provider_options:
      local: {{time_scale: 0.02, preemptions: "{preemptions}"}}
""")


def nothing_started(home: Path) -> bool:
    local = home / "local"
    jobs = home / "jobs.sqlite"
    no_rows = (
        not jobs.exists() or sqlite3.connect(jobs).execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    )
    return no_rows and (not local.exists() or not any(local.iterdir()))


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys, contextlib, io\n"
        "sys.argv = ['multispot', '--help']\n"
        "import multispot.cli as c\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: c.main()\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('pydantic', 'yaml', 'fsspec', 'rich', 'torch', 'boto3', 'sagemaker',"
        " 'google.cloud.aiplatform', 'azure.ai.ml', 'multispot.job') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_dry_run_prints_the_request_and_submits_nothing(tmp_path: Path, home: Path) -> None:
    job = write_job(tmp_path, WORKER_JOB.format(steps=5, preemptions="none"))
    result = cli(home, "submit", str(job), "--dry-run", "--output", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["provider"] == "local"
    assert data["request"]["argv"][1:3] == ["-m", "multispot.testing.worker"]
    assert data["request"]["env"]["MULTISPOT_PROVIDER"] == "local"
    assert nothing_started(home)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("name: x\ncommand: [python\n", "(yaml)"),
        ("name: bad-job\ncommand: python t.py\nchekpoint: {keep: 2}\n", "did you mean 'checkpoint'"),
        ("name: bad-job\ncommand: python t.py\ncheckpoint: {uri: 'ftp://host/x'}\n", "checkpoint.uri"),
        ("name: bad-job\ncommand: no-such-binary-xyz --flag\n", "command[0]"),
        ("name: bad-job\ncommand: python missing_script.py\n", "missing_script.py"),
        ("name: Bad_Name\ncommand: python t.py\n", "name"),
        ("name: bad-job\ncommand: python -c pass\nspot: {policy: sometimes}\n", "spot.policy"),
        (
            "name: bad-job\ncommand: python -c pass\nprovider_options: {local: {time_scale: -1}}\n",
            "time_scale",
        ),
        ("name: bad-job\ncommand: python -c pass\nenv: {TOKEN: '${MS_E2E_UNSET_VAR}'}\n", "env.TOKEN"),
    ],
)
def test_bad_input_is_rejected_with_the_field_and_starts_nothing(
    tmp_path: Path, home: Path, body: str, expected: str
) -> None:
    job = write_job(tmp_path, body)
    env = {k: v for k, v in os.environ.items() if k != "MS_E2E_UNSET_VAR"}
    result = subprocess.run(
        [MULTISPOT, "submit", str(job)],
        capture_output=True,
        text=True,
        env=dict(env, MULTISPOT_HOME=str(home), COLUMNS="200"),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert nothing_started(home)


def test_bad_input_as_json(tmp_path: Path, home: Path) -> None:
    job = write_job(tmp_path, "name: bad-job\ncommand: python -c pass\nresources: {nodes: 0}\n")
    result = cli(home, "submit", str(job), "--output", "json")
    assert result.returncode == 2
    problems = json.loads(result.stdout)["problems"]
    assert problems[0]["path"] == "resources.nodes" and problems[0]["line"] == 3


def test_missing_file(home: Path) -> None:
    result = cli(home, "submit", "/nonexistent/job.yaml")
    assert result.returncode == 2 and "cannot read" in result.stderr


@pytest.mark.slow
def test_submit_with_preemptions_resumes_and_status_shows_it(tmp_path: Path, home: Path) -> None:
    job = write_job(tmp_path, WORKER_JOB.format(steps=80, preemptions="at=1s,1.2s"))  # 4 s: both land
    result = cli(home, "submit", str(job), "--output", "json")
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["id"]
    status = json.loads(cli(home, "status", job_id, "--output", "json").stdout)
    assert status["state"] == "SUCCEEDED"
    assert status["preemptions"] == 2
    assert [a["outcome"] for a in status["attempts"]] == ["PREEMPTED", "PREEMPTED", "SUCCEEDED"]
    for attempt in status["attempts"]:
        assert attempt["market"] == "spot" and attempt["started"] and attempt["ended"]
    assert status["checkpoint_uri"].startswith("file://") and status["output_uri"].startswith("file://")
    assert status["progress"] == {"step": 80, "total_steps": 80}
    output = Path(status["output_uri"][len("file://") :])
    assert json.loads((output / "result.json").read_text())["sum"] == expected_sum(80)
    logs = cli(home, "logs", job_id).stdout
    assert logs.count("worker: resumed from step") == 2
    assert "--- attempt 3" in logs
    records = [json.loads(line) for line in cli(home, "logs", job_id, "-o", "json").stdout.splitlines()]
    assert {r["attempt"] for r in records} == {1, 2, 3}
    assert [r["line"] for r in records if r["attempt"] == 3][-1].startswith("worker: done")
    assert len(records) == len([line for line in logs.splitlines() if not line.startswith("--- attempt")])
    watched = json.loads(cli(home, "watch", job_id, "-o", "json").stdout)
    assert watched["state"] == "SUCCEEDED" and watched["id"] == job_id
    ended = json.loads(cli(home, "cancel", job_id, "-o", "json").stdout)
    assert ended == {"id": job_id, "state": "SUCCEEDED", "cancel_requested": False}
    listing = cli(home, "list", "--output", "json")
    assert [j["id"] for j in json.loads(listing.stdout)] == [job_id]
    checkpoints = json.loads(cli(home, "checkpoints", job_id, "--output", "json").stdout)
    assert checkpoints["checkpoints"][0]["step"] == 80 and checkpoints["checkpoints"][0]["valid"]
    cost = json.loads(cli(home, "cost", job_id, "--output", "json").stdout)
    assert len(cost["attempts"]) == 3 and cost["billable_instance_seconds"] > 0
    table = cli(home, "status", job_id)
    assert "SUCCEEDED" in table.stdout and "PREEMPTED" in table.stdout


@pytest.mark.slow
def test_secrets_reach_the_job_but_are_never_stored(tmp_path: Path, home: Path) -> None:
    secret = "s3cr3t-value-9f8e7d"
    body = (
        WORKER_JOB.format(steps=3, preemptions="none") + "env: {MULTISPOT_CONTRACT_PROBE_X: '${MS_SECRET}'}\n"
    )
    job = write_job(tmp_path, body.replace("MULTISPOT_CONTRACT_PROBE_X", "API_TOKEN"))
    result = cli(home, "submit", str(job), "--output", "json", env={"MS_SECRET": secret})
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout
    job_id = json.loads(result.stdout)["id"]
    assert secret not in cli(home, "status", job_id, "--output", "json").stdout
    for path in home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"secret written to {path}"
    dry = cli(home, "submit", str(job), "--dry-run", "--output", "json", env={"MS_SECRET": secret})
    assert secret not in dry.stdout and "${MS_SECRET}" in dry.stdout


@pytest.mark.slow
def test_secret_reaches_the_process(tmp_path: Path, home: Path) -> None:
    body = (
        WORKER_JOB.format(steps=2, preemptions="none") + "env: {MULTISPOT_CONTRACT_PROBE: '${MS_SECRET}'}\n"
    )
    job = write_job(tmp_path, body)
    result = cli(home, "submit", str(job), "--output", "json", env={"MS_SECRET": "abc"})
    assert result.returncode == 2 and "MULTISPOT_" in result.stderr  # reserved prefix is refused
    job = write_job(tmp_path, body.replace("MULTISPOT_CONTRACT_PROBE", "PROBE"))
    assert cli(home, "submit", str(job), "--output", "json", env={"MS_SECRET": "abc"}).returncode == 0


@pytest.mark.slow
def test_cancel_stops_a_running_job(tmp_path: Path, home: Path) -> None:
    job = write_job(tmp_path, WORKER_JOB.format(steps=2000, preemptions="none"))
    result = cli(home, "submit", str(job), "--detach", "--output", "json")
    job_id = json.loads(result.stdout)["id"]
    deadline = time.time() + 60
    while json.loads(cli(home, "status", job_id, "--output", "json").stdout)["state"] != "RUNNING":
        assert time.time() < deadline
        time.sleep(0.3)
    cancelled = cli(home, "cancel", job_id, "--output", "json")
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["cancel_requested"] is True
    while (
        state := json.loads(cli(home, "status", job_id, "--output", "json").stdout)["state"]
    ) != "CANCELLED":
        assert time.time() < deadline, state
        time.sleep(0.3)
    status = json.loads(cli(home, "status", job_id, "--output", "json").stdout)
    assert status["attempts"][-1]["outcome"] == "CANCELLED"


@pytest.mark.slow
def test_killed_controller_is_replaced_without_duplicate_attempts(tmp_path: Path, home: Path) -> None:
    job = write_job(tmp_path, WORKER_JOB.format(steps=60, preemptions="at=1s,1s"))
    job_id = json.loads(cli(home, "submit", str(job), "--detach", "--output", "json").stdout)["id"]
    db = sqlite3.connect(home / "jobs.sqlite")
    killed = 0
    deadline = time.time() + 120
    while killed < 3 and time.time() < deadline:
        owner = db.execute("SELECT owner FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        if owner:
            pid = int(owner.split(":")[1])
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
            cli(home, "status", job_id)  # any command notices the dead controller and starts one
        time.sleep(0.7)
    assert killed == 3
    result = cli(home, "watch", job_id, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(cli(home, "status", job_id, "--output", "json").stdout)
    assert status["state"] == "SUCCEEDED"
    assert [a["n"] for a in status["attempts"]] == list(range(1, len(status["attempts"]) + 1))
    assert [a["outcome"] for a in status["attempts"]] == ["PREEMPTED", "PREEMPTED", "SUCCEEDED"]
    starts = list((Path(status["output_uri"][len("file://") :]) / "starts").iterdir())
    assert len(starts) == 3, "each attempt's command started exactly once"


@pytest.mark.slow
def test_logs_follow_streams_every_attempt_until_the_end(tmp_path: Path, home: Path) -> None:
    job = write_job(tmp_path, WORKER_JOB.format(steps=30, preemptions="at=1s"))
    job_id = json.loads(cli(home, "submit", str(job), "--detach", "--output", "json").stdout)["id"]
    followed = cli(home, "logs", job_id, "--follow", timeout=120)
    assert followed.returncode == 0, followed.stderr
    out = followed.stdout
    assert out.index("--- attempt 1") < out.index("worker: preempted") < out.index("--- attempt 2")
    assert out.rstrip().splitlines()[-1].startswith("worker: done")
    assert json.loads(cli(home, "status", job_id, "--output", "json").stdout)["state"] == "SUCCEEDED"
