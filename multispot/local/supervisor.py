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


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


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
        self._start()
        self._supervise(plan.get("preempt_after"))

    def _wait(self, seconds: float) -> bool:
        end = time.time() + seconds
        while time.time() < end:
            if self.cancel_requested():
                return False
            time.sleep(min(TICK, max(0.0, end - time.time())))
        return True

    def _start(self) -> None:
        nodes = int(self.spec.get("nodes", 1))
        env = dict(os.environ)
        env[jobenv.NOTICE_FILE] = str(self.dir / "notice.json")
        if self.spec["plan"].get("fault"):
            env[jobenv.FAULT] = self.spec["plan"]["fault"]
        if nodes > 1:
            env.update(
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(self.spec["master_port"]), WORLD_SIZE=str(nodes)
            )
        for rank in range(nodes):
            node_env = dict(env, RANK=str(rank), NODE_RANK=str(rank), LOCAL_RANK="0") if nodes > 1 else env
            log = open(self.dir / ("output.log" if rank == 0 else f"node-{rank}.log"), "ab")  # noqa: SIM115
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
            if (preempt_after is not None and elapsed >= preempt_after) or (self.dir / "preempt").exists():
                self._preempt()
                return
            time.sleep(TICK)

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
        self._signal_all(signal.SIGTERM)
        while time.time() < deadline and any(p.poll() is None for p in self.procs):
            time.sleep(TICK)
        self._reclaimed(f"capacity reclaimed after {notice:g}s notice")

    def _reclaimed(self, message: str) -> None:
        """The capacity is gone: whatever still runs is killed, and the attempt ends PREEMPTED."""
        self._signal_all(signal.SIGKILL)
        codes = [p.wait() for p in self.procs]
        self.set(state="PREEMPTED", ended=time.time(), exit_codes=codes, message=message)

    def _stop(self, grace: float) -> None:
        self._signal_all(signal.SIGTERM)
        end = time.time() + grace
        while time.time() < end and any(p.poll() is None for p in self.procs):
            time.sleep(TICK)
        self._signal_all(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()


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
