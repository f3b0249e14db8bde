"""A team's deployment as docs/team.md sets it up, on loopback: one job store (``MULTISPOT_DB``),
``multispot server``, ``multispot controller --replicas N``, users made with ``multispot admin``,
and a person's CLI with ``MULTISPOT_SERVER`` / ``MULTISPOT_TOKEN``.

Every process is the real command in its own process group, so a test can ``kill -9`` one of
them. The server and the controllers share ``MULTISPOT_HOME`` (the compose file's ``home``
volume: local jobs keep their files there); the client has a home of its own. Jobs leave one
marker per start of their command and then wait for a gate file, so they are still running when
a test breaks something, however fast or slow the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helpers.net import free_port
from helpers.service import MULTISPOT, Service, gated_command, kill_group, spawn, store_env
from multispot.status import JobState
from multispot.store import Store, open_store

# The command (helpers.service's gated job): a marker per start, the test worker (checkpoints
# through the runtime, so an injected preemption lands after it is ready), then the gate.
_JOB = textwrap.dedent("""\
    name: {name}
    command: >-
      {command}
    output_uri: {out}
    spot:
      max_attempts: 4
    provider_options:
      local:
        time_scale: 0.02
""")


@dataclass
class Team:
    root: Path
    db: str
    home: Path = field(init=False)  # the server's and the controllers' (one volume)
    client_home: Path = field(init=False)
    port: int = field(default_factory=free_port)
    token: str = ""
    server: subprocess.Popen[bytes] | None = None
    controllers: Service | None = None

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.client_home = self.root / "client"
        for folder in (self.home, self.client_home, self.starts):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def starts(self) -> Path:
        return self.root / "starts"

    @property
    def gate(self) -> Path:
        return self.root / "gate"

    # ------------------------------------------------------------------ the operator's side

    def env(self) -> dict[str, str]:
        """The deployment's environment (the compose file's): the store's URL and the home."""
        return store_env(self.home, self.db)

    def admin(self, *args: str) -> str:
        """``multispot admin ARGS`` where MULTISPOT_DB is set (docs/team.md); its stdout."""
        done = subprocess.run(
            [MULTISPOT, "admin", *args], capture_output=True, text=True, env=self.env(), timeout=120
        )
        assert done.returncode == 0, f"multispot admin {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def make_user(self, name: str, team: str) -> None:
        self.admin("create-team", team)
        self.admin("create-user", name, "--team", team)
        self.token = self.admin("create-token", name, "--label", "ci").strip()
        assert self.token and "\n" not in self.token

    def start_server(self, ready_within: float = 120) -> None:
        args = ["server", "--host", "127.0.0.1", "--port", str(self.port)]
        self.server = spawn(args, self.env(), self.home, self.root / "server.log")
        deadline = time.monotonic() + ready_within
        while not self.healthy():
            assert self.server.poll() is None, f"the server exited: {self.log('server')}"
            assert time.monotonic() < deadline, f"no /health within {ready_within}s: {self.log('server')}"
            time.sleep(0.2)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/api/v1/health", timeout=5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def kill_server(self) -> None:
        assert self.server is not None
        kill_group(self.server)

    def start_controllers(self, replicas: int) -> None:
        self.controllers = Service(self.env(), self.home, self.root / "controller.log", replicas)

    def stop(self) -> None:
        """Drain the controllers (SIGTERM), stop the server; kill whatever does not stop."""
        for proc in (self.controllers.proc if self.controllers else None, self.server):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                kill_group(proc)

    def log(self, which: str) -> str:
        path = self.root / f"{which}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def store(self) -> Store:
        return open_store(self.db)

    # ------------------------------------------------------------------ a person's side

    def cli(
        self, *args: str, check: bool = True, home: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``multispot ARGS`` on the person's machine: MULTISPOT_SERVER and MULTISPOT_TOKEN set;
        with ``home``, neither (as after ``multispot login``, which keeps them in that home)."""
        env = dict(os.environ, MULTISPOT_HOME=str(home or self.client_home))
        for name in ("MULTISPOT_DB", "MULTISPOT_SERVER", "MULTISPOT_TOKEN"):
            env.pop(name, None)
        if home is None:
            env.update(MULTISPOT_SERVER=self.url, MULTISPOT_TOKEN=self.token)
        done = subprocess.run(
            [MULTISPOT, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=home or self.client_home,
            timeout=120,
        )
        if check:
            assert done.returncode == 0, f"multispot {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def job_yaml(self, name: str, steps: int) -> str:
        work = f'"{sys.executable}" -m multispot.testing.worker --steps {steps} --step-seconds 0.1'
        command = gated_command(self.starts, self.gate, work)
        return _JOB.format(name=name, command=command, out=self.root / "out" / name)

    def post_job(self, name: str, steps: int = 1) -> str:
        """``POST /api/v1/jobs`` as ``import multispot`` sends it (no CLI start-up per job)."""
        body = json.dumps({"spec": yaml.safe_load(self.job_yaml(name, steps)), "provider": "local"}).encode()
        request = urllib.request.Request(self.url + "/api/v1/jobs", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=120) as answer:
            return str(json.loads(answer.read())["id"])

    def submit(self, name: str, steps: int = 5, preempt: str | None = None) -> str:
        path = self.client_home / f"{name}.yaml"
        path.write_text(self.job_yaml(name, steps))
        extra = ["--inject-preemptions", preempt] if preempt else []
        done = self.cli("submit", str(path), "--detach", "-o", "json", *extra)
        answer: dict[str, Any] = json.loads(done.stdout)
        return str(answer["id"])


# ---------------------------------------------------------------------- checks


def chromium() -> str | None:
    """The OS's Chromium (as tests/dashboard finds it): Playwright's own download is unreachable here."""
    explicit = os.environ.get("MULTISPOT_CHROMIUM")
    if explicit:
        return explicit
    return next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)


def replica_pids(team: Team) -> list[int]:
    assert team.controllers is not None
    return team.controllers.replica_pids()


def check_each_job(team: Team, store: Store, job_ids: list[str], preempted: set[str]) -> Counter[str]:
    """Every job SUCCEEDED; its attempts are 1..k with one provider submission each (read from
    the store), k == 1 unless a preemption was injected, and then attempt 1 was PREEMPTED; the
    command started exactly once per attempt. Returns the event kinds seen."""
    starts = Counter(p.name.rsplit(".", 1)[0] for p in team.starts.iterdir())
    kinds: Counter[str] = Counter()
    for job_id in job_ids:
        record = store.get_job(job_id)
        assert record.state is JobState.SUCCEEDED, f"{job_id} is {record.state.value}: {record.message}"
        attempts = store.attempts(job_id)
        numbers = [a.n for a in attempts]
        assert numbers == list(range(1, len(numbers) + 1)), f"{job_id} has attempts {numbers}"
        assert attempts[-1].state is JobState.SUCCEEDED
        if job_id in preempted:
            assert len(attempts) >= 2 and attempts[0].state is JobState.PREEMPTED, (job_id, attempts)
        else:
            assert numbers == [1], f"{job_id}: no preemption was injected, yet attempts {numbers}"
        for n in numbers:
            submitted = store.events_of_kind(job_id, "submitted", attempt=n)
            assert len(submitted) <= 1, f"{job_id} attempt {n} was submitted {len(submitted)} times"
            assert starts[f"{job_id}.{n}"] == 1, (
                f"{job_id} attempt {n} started {starts[f'{job_id}.{n}']} times"
            )
        kinds.update(event.kind for _, event in store.events(job_id))
    assert sum(starts.values()) == sum(len(store.attempts(j)) for j in job_ids), "a stray start"
    assert store.check() == []
    assert not (team.home / "controllers.log").exists(), "a per-job controller was started"
    return kinds
