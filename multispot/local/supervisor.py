"""One local attempt, supervised like a spot instance: ``python -m multispot.local.supervisor DIR``.

Started detached by the local provider, so it outlives the controller that launched it. It
waits for emulated capacity, runs the job's processes (one per node) in their own process
groups, and, when the plan says the capacity is reclaimed, gives the notice (a notice file,
then SIGTERM), waits the notice period and kills what is left. Every transition is written
to ``state.json`` atomically; ``lock`` is held for the supervisor's whole life, which is how
the provider tells a live attempt from one whose supervisor died.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from multispot import jobenv

TICK = 0.05
# A process that never signals readiness (it does not use the multispot runtime) is preempted
# this long after its command starts: 2 * preempt_after + NO_READY_GRACE.
NO_READY_GRACE = 30.0


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner only, like the home
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=1))
    os.replace(tmp, path)


def open_log(path: Path) -> Any:
    """A log to append to, created readable by its owner only."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")


def marker(directory: Path) -> bytes:
    """What every process of an attempt carries in its environment (``MULTISPOT_NOTICE_FILE``),
    which is how they are found even after leaving the attempt's process group."""
    return f"MULTISPOT_NOTICE_FILE={directory / 'notice.json'}".encode()


def _carries(pid: int, mark: bytes) -> bool | None:
    """Does process ``pid`` carry ``mark``? None when it cannot be told (no /proc, not ours)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return mark in f.read().split(b"\0")
    except FileNotFoundError:
        return None if not Path("/proc/self").exists() else False
    except OSError:
        return None


def end_attempt_processes(directory: Path, pids: list[int] | tuple[int, ...] = ()) -> int:
    """SIGKILL everything the attempt in ``directory`` started: the process group of each of
    ``pids`` (each node runs as a group leader) and, on Linux, every process that still carries the
    attempt's marker in its environment, such as a child that started a new session. A pid is
    only signalled when it is the attempt's own (checked by the marker where /proc exists), so a
    reused pid is never hit. Returns how many were signalled."""
    mark = marker(directory)
    hit = 0
    for pid in pids:
        if _carries(int(pid), mark) is False and Path(f"/proc/{pid}").exists():
            continue  # that pid now belongs to someone else
        try:
            os.killpg(int(pid), signal.SIGKILL)
            hit += 1
        except (ProcessLookupError, PermissionError):
            pass
    proc = Path("/proc")
    if proc.is_dir():
        me = os.getpid()
        for entry in proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            if _carries(int(entry.name), mark):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                    hit += 1
                except (ProcessLookupError, PermissionError):
                    pass
    return hit


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


class Supervisor:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.spec = json.loads((directory / "spec.json").read_text())
        self.state_path = directory / "state.json"
        self.state: dict[str, Any] = read_json(self.state_path) or {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cancelled = False

    def set(self, **fields: Any) -> None:
        self.state.update(fields)
        write_json_atomic(self.state_path, self.state)

    def _on_term(self, signum: int, frame: Any) -> None:
        self.cancelled = True

    def cancel_requested(self) -> bool:
        return self.cancelled or (self.dir / "cancel").exists()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self.set(state="STARTING", supervisor_pid=os.getpid(), message="waiting for capacity")
        plan = self.spec["plan"]
        if plan.get("no_capacity"):
            # Capacity does not come back within max_wait (or ever, in the trace): report it after a
            # short look, as a service does once it gives up waiting.
            if not self._wait(min(self.spec.get("max_wait") or 1.0, 1.0)):
                self.set(state="CANCELLED", ended=time.time(), message="cancelled while waiting for capacity")
                return
            self.set(state="NO_CAPACITY", ended=time.time(), message="no spot capacity in this pool")
            return
        if not self._wait(plan.get("wait_seconds") or 0.0):
            self.set(state="CANCELLED", ended=time.time(), message="cancelled while waiting for capacity")
            return
        if self._start():
            self._supervise(plan.get("preempt_after"))

    def _wait(self, seconds: float) -> bool:
        end = time.time() + seconds
        while time.time() < end:
            if self.cancel_requested():
                return False
            time.sleep(min(TICK, max(0.0, end - time.time())))
        return True

    def _secrets(self, env: dict[str, str]) -> bool:
        """Resolve the job's secret references into ``env`` (the children's environment only: the
        values are never written to spec.json, state.json or a log), as a cloud job's runtime does
        at start. ``env://VAR`` reads this process's environment, inherited from the submitter's.
        False (and the attempt FAILED, naming the secret and its reference) when one fails."""
        if not env.get(jobenv.SECRETS):
            return True
        from multispot.runtime import secrets  # only jobs with secrets pay this import

        try:
            secrets.load(env)  # values into env under their names; MULTISPOT_SECRETS removed
        except secrets.SecretUnavailable as exc:
            self.set(state="FAILED", ended=time.time(), message=f"the job cannot start: {exc}")
            return False
        return True

    def _start(self) -> bool:
        nodes = int(self.spec.get("nodes", 1))
        env = dict(os.environ)
        if not self._secrets(env):
            return False
        env[jobenv.NOTICE_FILE] = str(self.dir / "notice.json")
        env[jobenv.READY_FILE] = str(self.dir / "ready.json")  # the runtime writes it when up
        env[jobenv.SAVED_FILE] = str(self.dir / "saved.json")  # and this after each committed save
        if self.spec["plan"].get("fault"):
            env[jobenv.FAULT] = self.spec["plan"]["fault"]
        if nodes > 1:
            env.update(
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(self.spec["master_port"]), WORLD_SIZE=str(nodes)
            )
        for rank in range(nodes):
            node_env = dict(env, RANK=str(rank), NODE_RANK=str(rank), LOCAL_RANK="0") if nodes > 1 else env
            log = open_log(self.dir / ("output.log" if rank == 0 else f"node-{rank}.log"))
            self.procs.append(
                subprocess.Popen(
                    self.spec["argv"],
                    cwd=self.spec["cwd"],
                    env=node_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: the notice reaches every child
                )
            )
            log.close()
        self.set(state="RUNNING", started=time.time(), pids=[p.pid for p in self.procs], message="running")
        return True

    def _signal_all(self, sig: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass

    def _supervise(self, preempt_after: float | None) -> None:
        started = self.state["started"]
        max_runtime = self.spec.get("max_runtime")
        max_wait = self.spec.get("max_wait")  # waiting plus running, counted from submit
        submitted = float(self.spec.get("submitted") or started)
        fault = self.spec["plan"].get("fault")
        from_ready = self.spec["plan"].get("from_ready", True)
        after_save = self.spec["plan"].get("after_save")
        ready: float | None = None
        while True:
            codes = [p.poll() for p in self.procs]
            if fault and -signal.SIGKILL in codes:
                # The injected fault fired: the job was stopped hard inside a checkpoint save.
                self._reclaimed(f"hard stop inside a checkpoint save (injected {fault})")
                return
            if all(c is not None for c in codes):
                failed = [c for c in codes if c != 0]
                if failed:
                    self.set(
                        state="FAILED",
                        ended=time.time(),
                        exit_codes=codes,
                        message=f"the command exited with status {failed[0]}",
                    )
                else:
                    self.set(state="SUCCEEDED", ended=time.time(), exit_codes=codes, message="completed")
                return
            if any(c not in (None, 0) for c in codes):
                self._stop(grace=self.spec["notice_seconds"])
                codes = [p.poll() for p in self.procs]
                self.set(
                    state="FAILED",
                    ended=time.time(),
                    exit_codes=codes,
                    message="a node failed; the others were stopped",
                )
                return
            elapsed = time.time() - started
            if self.cancel_requested():
                self._stop(grace=self.spec["notice_seconds"])
                self.set(state="CANCELLED", ended=time.time(), message="cancelled")
                return
            if max_runtime and elapsed >= max_runtime:
                self._stop(grace=self.spec["notice_seconds"])
                self.set(
                    state="TIMED_OUT", ended=time.time(), message=f"ran past max_runtime {max_runtime:g}s"
                )
                return
            if max_wait and time.time() - submitted >= max_wait:
                self._stop(grace=self.spec["notice_seconds"])
                self.set(
                    state="TIMED_OUT",
                    ended=time.time(),
                    message=f"waited and ran past max_wait {max_wait:g}s",
                )
                return
            if preempt_after is not None and from_ready and ready is None:
                ready = self._ready_time() if after_save is None else self._saved_time(int(after_save))
            if (
                preempt_after is not None
                and self._due(
                    preempt_after, elapsed, from_ready, ready, waits_for_save=after_save is not None
                )
            ) or (self.dir / "preempt").exists():
                self._preempt()
                return
            time.sleep(TICK)

    def _ready_time(self) -> float | None:
        data = read_json(self.dir / "ready.json")
        if data is None:
            return None
        if "ready" not in self.state:
            self.set(ready=float(data.get("ready") or time.time()))
        return float(self.state["ready"])

    def _saved_time(self, count: int) -> float | None:
        """When the attempt committed its ``count``-th save, once it has."""
        data = read_json(self.dir / "saved.json")
        if data is None or int(data.get("count") or 0) < count:
            return None
        return float(data.get("time") or time.time())

    @staticmethod
    def _due(
        preempt_after: float,
        elapsed: float,
        from_ready: bool,
        ready: float | None,
        waits_for_save: bool = False,
    ) -> bool:
        """Is the planned preemption due? Counted from ``ready``: readiness when the runtime
        signalled it, or, ``waits_for_save``, the N-th committed save (``save:N+T``). A script that
        never signals readiness is preempted late; one that never saves N times is not preempted."""
        if not from_ready:
            return elapsed >= preempt_after
        if ready is not None:
            return time.time() - ready >= preempt_after
        return not waits_for_save and elapsed >= 2 * preempt_after + NO_READY_GRACE

    def _preempt(self) -> None:
        if not self.spec["plan"].get("notice", True):
            self._reclaimed("hard stop without notice")
            return
        notice = float(self.spec["notice_seconds"])
        deadline = time.time() + notice
        write_json_atomic(self.dir / "notice.json", {"deadline": deadline})
        self.set(
            state="RUNNING",
            notice_at=time.time(),
            message=f"preemption notice: {notice:g}s to stop ({self.spec['emulate']})",
        )
        sent = time.time()
        self._signal_all(signal.SIGTERM)
        while time.time() < deadline and any(p.poll() is None for p in self.procs):
            time.sleep(0.01)
        if any(p.poll() is None for p in self.procs):
            self._reclaimed(f"capacity reclaimed after the {notice:g}s notice: the job was still running")
        else:
            took = time.time() - sent
            self._reclaimed(f"capacity reclaimed: the job stopped {took:.1f}s into its {notice:g}s notice")

    def _reclaimed(self, message: str) -> None:
        """The capacity is gone: whatever still runs is killed, and the attempt ends PREEMPTED."""
        self._signal_all(signal.SIGKILL)
        codes = [p.wait() for p in self.procs]
        end_attempt_processes(self.dir, [p.pid for p in self.procs])  # and what left the group
        self.set(state="PREEMPTED", ended=time.time(), exit_codes=codes, message=message)

    def _stop(self, grace: float) -> None:
        self._signal_all(signal.SIGTERM)
        end = time.time() + grace
        while time.time() < end and any(p.poll() is None for p in self.procs):
            time.sleep(TICK)
        self._signal_all(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
        end_attempt_processes(self.dir, [p.pid for p in self.procs])


def main(directory: str) -> int:
    path = Path(directory)
    lock = open(path / "lock", "a")  # noqa: SIM115 - held until exit on purpose
    deadline = time.time() + 5
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.time() > deadline:
                return 0  # another supervisor owns this attempt
            time.sleep(TICK)
    state = read_json(path / "state.json") or {}
    if state.get("state") != "SUBMITTED":
        return 0  # already run (or running) by another supervisor: never start twice
    supervisor = Supervisor(path)
    try:
        supervisor.run()
    except Exception as exc:  # the emulated host failed: say so, stop the children
        supervisor._stop(grace=0)
        supervisor.set(state="FAILED", ended=time.time(), message=f"local supervisor error: {exc}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
