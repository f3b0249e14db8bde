"""Chaos: kill -9 the controller at random moments of a real local job's life, and replace it.

The job is the resumable test worker on the local provider with injected preemptions, driven
through the CLI (``submit --detach``) under its own ``MULTISPOT_HOME``. In a loop the test
kills whichever controller holds the job (the pid in the ``owner`` column, ``host:pid:token``)
at a random (seeded) moment, or right after a new attempt row appears (the window between
inserting the attempt and submitting it), then gets a replacement: ``multispot status JOB``
(which respawns a controller) or ``python -m multispot.controller JOB`` started by the test.
At the end ``multispot watch JOB`` finishes the job, and the test asserts that it succeeded,
that attempts are numbered 1..n with one attempt per preemption plus one, that the command
started exactly once per attempt, that the job store is consistent, and that the result is
the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from multispot.status import JobState
from multispot.store import JobRecord, JobStore, owner_id
from multispot.testing.worker import expected_sum

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc")

MULTISPOT = str(Path(sys.executable).with_name("multispot"))
SEED = int(os.environ.get("MULTISPOT_CHAOS_SEED", "20240611"))
PREEMPTIONS = "at=1s,1.5s,1s"  # three preemptions, so four attempts

# The worker runs, then the command waits for the test's gate file before it exits: the job cannot
# end before the test has made its kills, however fast or slow this machine is (a job that ran to
# the end on an idle machine before the kills happened made the test measure speed, not the code).
JOB = textwrap.dedent("""
    name: chaos
    command: >-
      sh -c '"{python}" -m multispot.testing.worker --steps {steps} --step-seconds 0.05; rc=$?;
      while [ ! -e "{gate}" ]; do sleep 0.05; done; exit $rc'
    checkpoint: {{interval: 1s}}
    provider_options:
      local: {{time_scale: 0.02, preemptions: "{preemptions}"}}
""")


def _pids_of_home(home: Path) -> list[int]:
    """Processes started for this MULTISPOT_HOME: controllers, supervisors and their workers."""
    marker = f"MULTISPOT_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def leftovers(home: Path, timeout: float = 180) -> list[int]:
    """Processes of this home still running once the last controller and supervisor had time to exit."""
    deadline = time.time() + timeout
    while (pids := _pids_of_home(home)) and time.time() < deadline:
        time.sleep(0.1)
    return pids


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    for pid in _pids_of_home(path):  # only after a failure: a finished job leaves nothing running
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cli(
    home: Path, *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MULTISPOT_HOME=str(home), COLUMNS="200")
    return subprocess.run(
        [MULTISPOT, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False
    )


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@dataclass
class Chaos:
    kills: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    between_insert_and_submit: int = 0  # killed with the new attempt's row there but no handle yet
    mid_submit: int = 0  # ... of which the local provider had already created the attempt's directory
    respawns: Counter[str] = field(default_factory=Counter)
    takeovers: list[float] = field(default_factory=list)  # seconds from a kill to the next live controller
    jobs: int = 0
    attempts: int = 0
    preemptions: int = 0


class Driver:
    """Kills controllers of one job and replaces them, as a crashing host and a user would."""

    def __init__(self, home: Path, workdir: Path, job_id: str, rng: random.Random, chaos: Chaos) -> None:
        self.home, self.workdir, self.job_id, self.rng, self.chaos = home, workdir, job_id, rng, chaos
        self.db = sqlite3.connect(home / "jobs.sqlite", timeout=30, isolation_level=None)
        self.own: dict[int, subprocess.Popen[bytes]] = {}  # controllers this test started itself
        self.killed: set[int] = set()
        self.killed_at: float | None = None

    def close(self) -> None:
        self.db.close()
        for proc in self.own.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def row(self) -> tuple[str, str | None, int, str | None]:
        """(job state, owner, newest attempt number, its handle)."""
        state, owner = self.db.execute(
            "SELECT state, owner FROM jobs WHERE id = ?", (self.job_id,)
        ).fetchone()
        newest = self.db.execute(
            "SELECT n, handle FROM attempts WHERE job_id = ? ORDER BY n DESC LIMIT 1", (self.job_id,)
        ).fetchone()
        return state, owner, (newest[0] if newest else 0), (newest[1] if newest else None)

    def terminal(self) -> bool:
        return self.row()[0] in ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT")

    def live_controller(self) -> int | None:
        owner = self.row()[1]
        if not owner:
            return None
        pid = int(owner.split(":")[1])
        return pid if pid not in self.killed and alive(pid) else None

    def kill(self, pid: int, kind: str) -> bool:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.killed.add(pid)
        self.killed_at = time.monotonic()
        if pid in self.own:
            self.own.pop(pid).wait()  # reap it at once: a zombie would still look alive
        self.chaos.kills += 1
        self.chaos.kinds[kind] += 1
        return True

    def respawn(self) -> None:
        if self.rng.random() < 0.6:
            self.chaos.respawns["multispot status"] += 1
            result = cli(self.home, "status", self.job_id, cwd=self.workdir)
            assert result.returncode == 0, result.stdout + result.stderr
        else:
            self.chaos.respawns["python -m multispot.controller"] += 1
            proc = subprocess.Popen(
                [sys.executable, "-m", "multispot.controller", self.job_id],
                cwd=self.workdir,
                env=dict(os.environ, MULTISPOT_HOME=str(self.home)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.own[proc.pid] = proc
        for pid, proc in list(self.own.items()):  # reap those that found another controller in charge
            if proc.poll() is not None:
                del self.own[pid]

    def wait_for_controller(self, timeout: float = 180) -> int | None:
        """The live controller's pid, starting one (as a user would) while there is none."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.terminal():
                return None
            pid = self.live_controller()
            if pid is not None:
                if self.killed_at is not None:
                    self.chaos.takeovers.append(time.monotonic() - self.killed_at)
                    self.killed_at = None
                return pid
            if self.rng.random() < 0.5:
                time.sleep(0.1)  # the replacement may still be starting up
            else:
                self.respawn()
        raise AssertionError(f"no controller took over job {self.job_id} within {timeout:g}s")

    def kill_after_new_attempt(self, pid: int, timeout: float = 10) -> bool:
        """Kill ``pid`` the moment the next attempt row appears: before or while it is submitted."""
        start = self.row()[2]
        deadline = time.time() + timeout
        while time.time() < deadline:
            _, owner, newest, _ = self.row()
            if newest > start:
                if not owner or int(owner.split(":")[1]) != pid:
                    return False
                if not self.kill(pid, "right after a new attempt row"):
                    return False
                if self.row()[3] is None:  # the dead controller never recorded a handle
                    self.chaos.between_insert_and_submit += 1
                    attempt_dir = self.home / "local" / self.job_id / f"attempt-{newest}"
                    self.chaos.mid_submit += attempt_dir.exists()  # the provider had staged it
                return True
            if self.terminal() or not alive(pid):
                return False
            time.sleep(0.001)
        return False

    def run(self, kills: int) -> None:
        done = 0
        while done < kills:
            pid = self.wait_for_controller()
            if pid is None:
                break  # the job ended before every kill happened
            more_attempts = self.row()[2] <= len(PREEMPTIONS.split(","))  # the last one is not there yet
            if more_attempts and self.rng.random() < 0.4:
                killed = self.kill_after_new_attempt(pid)
            else:
                time.sleep(self.rng.choice([0.0, self.rng.uniform(0.0, 0.3), self.rng.uniform(0.2, 1.0)]))
                killed = not self.terminal() and self.kill(pid, "at a random moment")
            done += killed
            if killed:
                self.respawn()


def run_job(tmp_path: Path, home: Path, steps: int, kills: int, rng: random.Random, chaos: Chaos) -> None:
    workdir = tmp_path / f"work-{chaos.jobs}"
    workdir.mkdir()
    spec = workdir / "job.yaml"
    gate = workdir / "gate"
    spec.write_text(JOB.format(steps=steps, preemptions=PREEMPTIONS, python=sys.executable, gate=gate))
    submitted = cli(home, "submit", str(spec), "--detach", "--output", "json", cwd=workdir)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    driver = Driver(home, workdir, job_id, rng, chaos)
    try:
        driver.run(kills)
        assert not driver.terminal(), "the job ended before the gate opened"
        gate.touch()  # every kill is made: let the last attempt finish
        watched = cli(home, "watch", job_id, cwd=workdir, timeout=600)
        assert watched.returncode == 0, watched.stdout + watched.stderr
    finally:
        driver.close()
    chaos.jobs += 1

    status = json.loads(cli(home, "status", job_id, "--output", "json").stdout)
    assert status["state"] == "SUCCEEDED", status
    attempts = status["attempts"]
    numbers = [a["n"] for a in attempts]
    assert numbers == list(range(1, len(attempts) + 1)), f"attempts are not 1..n: {numbers}"
    outcomes = [a["outcome"] for a in attempts]
    preempted = outcomes.count("PREEMPTED")
    assert outcomes == ["PREEMPTED"] * preempted + ["SUCCEEDED"], outcomes
    assert len(attempts) == preempted + 1 == status["preemptions"] + 1
    assert preempted == len(PREEMPTIONS.split(",")), f"the schedule preempts 3 times: {outcomes}"
    output = Path(status["output_uri"][len("file://") :])
    starts = sorted(int(p.name.split("-")[0]) for p in (output / "starts").iterdir())
    assert starts == numbers, f"the command must start once per attempt, started for attempts {starts}"
    assert json.loads((output / "result.json").read_text())["sum"] == expected_sum(steps)
    chaos.attempts += len(attempts)
    chaos.preemptions += preempted


def check_store(home: Path) -> None:
    store = JobStore(home / "jobs.sqlite")
    try:
        assert store.check() == []
        for record in store.jobs():
            assert record.state.job_terminal, f"{record.id} is {record.state.value}"
            if record.owner:  # killed after finishing the job, before letting go of it
                assert not alive(int(record.owner.split(":")[1])), f"{record.id}: {record.owner} lives on"
    finally:
        store.close()


def _spread(seconds: list[float]) -> str:
    if not seconds:
        return "n/a"
    ordered = sorted(seconds)
    return f"median {ordered[len(ordered) // 2]:.2f}s, max {ordered[-1]:.2f}s"


def summary(chaos: Chaos, seconds: float, seed: int) -> str:
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(chaos.kinds.items()))
    respawns = ", ".join(f"{n} by {k}" for k, n in sorted(chaos.respawns.items()))
    return (
        f"controller chaos (seed {seed}): {chaos.kills} controller kills over {chaos.jobs} jobs "
        f"({kinds}; "
        f"{chaos.between_insert_and_submit} between inserting an attempt and recording its handle, "
        f"{chaos.mid_submit} of them inside the provider's submit); "
        f"replacements: {respawns}; takeover after a kill {_spread(chaos.takeovers)}; "
        f"{chaos.attempts} attempts for {chaos.preemptions} preemptions, "
        f"none lost or duplicated, store consistent; {seconds:.1f}s"
    )


def test_killed_controllers_lose_and_duplicate_no_attempt(tmp_path: Path, home: Path) -> None:
    start, seed = time.monotonic(), SEED
    rng, chaos = random.Random(seed), Chaos()
    run_job(tmp_path, home, steps=80, kills=5, rng=rng, chaos=chaos)
    assert not leftovers(home)  # a replacement started late may still be letting go of the job
    check_store(home)
    print("\n" + summary(chaos, time.monotonic() - start, seed))
    assert chaos.kills >= 4, f"the job ended after only {chaos.kills} kills"


@pytest.mark.slow
def test_killed_controllers_30_times_over_three_jobs(tmp_path: Path, home: Path) -> None:
    start, seed = time.monotonic(), SEED + 1
    rng, chaos = random.Random(seed), Chaos()
    for _ in range(3):
        run_job(tmp_path, home, steps=250, kills=12, rng=rng, chaos=chaos)
    assert not leftovers(home)
    check_store(home)
    print("\n" + summary(chaos, time.monotonic() - start, seed))
    assert chaos.kills >= 30, f"only {chaos.kills} kills happened before the jobs ended"
    # Whether a random kill lands between inserting an attempt and recording its handle depends on
    # timing; tests/e2e/test_controller.py crashes a controller exactly there, deterministically.


def test_a_killed_controller_not_yet_reaped_is_taken_over_at_once(tmp_path: Path) -> None:
    """Until its parent reaps it, a killed controller is a zombie: signal 0 still reaches it, but it
    will never heartbeat again, so the lease is free without waiting for the heartbeat to go stale."""
    store = JobStore(tmp_path / "jobs.sqlite")
    record = JobRecord("j-1", "j", {}, "local", JobState.RUNNING, "file:///c", "file:///o")
    store.create_job(record)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = f"{socket.gethostname()}:{proc.pid}:00000000"
        assert store.acquire("j-1", dead, stale_after=600)
        assert store.controller_alive("j-1", stale_after=600)
        proc.kill()
        deadline = time.time() + 10
        while alive(proc.pid):  # a zombie now: this process has not reaped it
            assert time.time() < deadline
            time.sleep(0.01)
        assert Path(f"/proc/{proc.pid}").exists()
        assert not store.controller_alive("j-1", stale_after=600)
        assert store.acquire("j-1", owner_id(), stale_after=600)
    finally:
        proc.kill()
        proc.wait()
        store.close()
