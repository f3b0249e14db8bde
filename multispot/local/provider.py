"""The local provider: runs the job as processes on this machine, with emulated spot behaviour.

Each attempt is a directory under ``$MULTISPOT_HOME/local/<job>/attempt-<n>/`` and a detached
supervisor process (see ``supervisor.py``). The preemptions it injects follow the notice period
of the cloud it emulates (AWS 120 s, GCP 30 s, Azure 30 s), scaled by ``time_scale`` so demos
and tests run fast; the job's checkpoint/resume path is exactly the one it takes on a cloud.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from multispot import jobenv
from multispot.errors import ValidationFailed
from multispot.job import Job, source_dir_problem
from multispot.local.preemptions import PreemptionSpec
from multispot.local.supervisor import end_attempt_processes, open_log, read_json, write_json_atomic
from multispot.provider import BillingRule, Capability, LaunchContext, unknown_options
from multispot.status import Handle, JobState, Placement, ProviderStatus, Usage
from multispot.store import home

# The cloud each ``emulate`` value plays, as a provider of the catalog.
EMULATED_PROVIDER = {"aws": "sagemaker", "gcp": "vertex", "azure": "azureml"}

OPTIONS = {
    "emulate": "which cloud's notice period to use: aws, gcp or azure (default aws)",
    "time_scale": "factor applied to the notice period and trace time, e.g. 0.05 (default 1)",
    "preemptions": "injected preemptions: none, at=20s,45s, every=30s,max=3, rate=6/h,seed=1, trace=FILE",
    "notice_seconds": "override the emulated notice period (seconds, before time_scale)",
    "price_per_hour": "prices to model costs with, USD per instance-hour: {spot: X, on-demand: Y}",
}
_STATES = {
    "SUBMITTED": JobState.SUBMITTED,
    "STARTING": JobState.STARTING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "PREEMPTED": JobState.PREEMPTED,
    "NO_CAPACITY": JobState.NO_CAPACITY,
    "CANCELLED": JobState.CANCELLED,
    "TIMED_OUT": JobState.TIMED_OUT,
}
_PYTHON_NAMES = {"python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}"}
# The notice period of each cloud the local provider emulates: what it emulates, not how a cloud
# adapter works (the adapters state their own). AWS: a Spot Instance interruption notice comes
# two minutes ahead (EC2 docs, "Spot Instance interruption notices"); GCP: a Spot VM gets 30 s
# between the preemption notice and the stop (Compute Engine docs, "Preemption process"); Azure:
# a Spot VM's eviction Scheduled Event comes at least 30 s ahead (Azure docs, "Scheduled Events").
EMULATED_NOTICE_SECONDS = {"aws": 120.0, "gcp": 30.0, "azure": 30.0}
SUBMIT_GRACE = 30.0  # seconds a supervisor may take to start before the attempt counts as lost


class LocalProvider:
    name = "local"
    capabilities = (
        Capability("spot", True, "emulated: preemptions are injected, see provider_options.local"),
        Capability("multi_node", True, "nodes run as local processes with RANK/WORLD_SIZE/MASTER_ADDR"),
        Capability(
            "accelerators", False, "the job runs on this machine's CPUs; accelerators are not provided"
        ),
        Capability("image", False, "no container: the command runs in this Python environment"),
    )
    billing = BillingRule(
        "the local provider bills nothing: costs are modelled with provider_options.local.price_per_hour"
    )

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self._root = Path(root) if root else None

    @property
    def root(self) -> Path:
        return self._root or home() / "local"

    # ----------------------------------------------------------------- options

    def _options(self, job: Job) -> dict[str, Any]:
        return dict(job.provider_options.get("local", {}))

    def priced_as(self, job: Job) -> str | None:
        """The cloud provider a local job stands for when it is priced (the dry-run plan, the
        simulator): the cloud its ``emulate`` option plays, but only when the job says which
        machine it would be (an accelerator or an instance type)."""
        if not (job.resources.accelerator or job.resources.instance_type):
            return None
        return EMULATED_PROVIDER.get(self._emulate(job))

    def _emulate(self, job: Job) -> str:
        return str(self._options(job).get("emulate", "aws"))

    def time_scale(self, job: Job) -> float:
        return float(self._options(job).get("time_scale", 1.0))

    def notice_seconds(self, job: Job) -> float:
        opts = self._options(job)
        base = float(opts.get("notice_seconds", EMULATED_NOTICE_SECONDS[self._emulate(job)]))
        return base * self.time_scale(job)

    def preemptions(self, job: Job) -> PreemptionSpec:
        return PreemptionSpec(str(self._options(job).get("preemptions", "none")), self.time_scale(job))

    # ----------------------------------------------------------------- planning

    def placements(self, job: Job) -> list[Placement]:
        prices = self._options(job).get("price_per_hour") or {}
        return [
            Placement(
                "local",
                market,
                "localhost",
                job.resources.instance_type or "local",
                job.resources.nodes,
                float(prices[market]) if market in prices else None,
            )
            for market in ("spot", "on-demand")
        ]

    def default_uri(self, kind: str, job_id: str, job: Job) -> str:
        return (home() / kind / job_id).resolve().as_uri()

    def validate(self, job: Job, placement: Placement) -> None:
        problems: list[tuple[str, str]] = []
        opts = self._options(job)
        problems += unknown_options("local", opts, OPTIONS)
        if opts.get("emulate", "aws") not in EMULATED_NOTICE_SECONDS:
            problems.append(("provider_options.local.emulate", f"use {', '.join(EMULATED_NOTICE_SECONDS)}"))
        for key in ("time_scale", "notice_seconds"):
            if key in opts:
                try:
                    if float(opts[key]) <= 0:
                        raise ValueError
                except (TypeError, ValueError):
                    problems.append((f"provider_options.local.{key}", "must be a number greater than 0"))
        prices = opts.get("price_per_hour", {})
        if not isinstance(prices, dict) or any(
            k not in ("spot", "on-demand") or not isinstance(v, (int, float)) or v < 0
            for k, v in prices.items()
        ):
            problems.append(("provider_options.local.price_per_hour", "write {spot: 0.92, on-demand: 3.06}"))
        if "preemptions" in opts:
            try:
                self.preemptions(job)
            except ValueError as exc:
                problems.append(("provider_options.local.preemptions", str(exc)))
        problems += _command_problems(job)
        problems += _secret_problems(job)
        for path, uri in (("checkpoint.uri", job.checkpoint.uri), ("output_uri", job.output_uri)):
            if uri and uri.startswith("memory://"):
                problems.append(
                    (path, "memory:// lives inside one process; use a file:// path for local jobs")
                )
        if problems:
            raise ValidationFailed(self.name, problems)

    # ----------------------------------------------------------------- rendering

    def _argv(self, job: Job) -> list[str]:
        argv = job.argv()
        if argv[0] in _PYTHON_NAMES:
            argv[0] = sys.executable  # the interpreter multispot runs in, so the runtime is importable
        return argv

    def render(self, job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, Any]:
        env = jobenv.build(job, ctx, self.name, self.notice_seconds(job))
        return {
            "argv": self._argv(job),
            "cwd": "<staged copy of source_dir>" if job.source_dir else (ctx.workdir or os.getcwd()),
            "nodes": job.resources.nodes,
            "market": placement.market,
            "emulate": self._emulate(job),
            "notice_seconds": self.notice_seconds(job),
            "max_runtime": job.limits.max_runtime,
            "max_wait": job.limits.max_wait,
            "preemptions": self.preemptions(job).text,
            "env": env,
        }

    # ----------------------------------------------------------------- lifecycle

    def _attempt_dir(self, job_id: str, attempt: int) -> Path:
        return self.root / job_id / f"attempt-{attempt}"

    def _stage(self, job: Job, ctx: LaunchContext) -> str:
        """Copy source_dir once per job (like an upload), atomically; without one, run in workdir.

        A staging failure is final (``ValidationFailed`` naming ``source_dir``): retrying the same
        copy cannot succeed."""
        if not job.source_dir:
            return ctx.workdir or os.getcwd()
        target = self.root / ctx.job_id / "code"
        if not target.exists():
            tmp = self.root / ctx.job_id / f".code-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                stage_tree(Path(job.source_dir), tmp, skip=(home(), self.root))
            except (OSError, ValueError) as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                message = str(exc) if isinstance(exc, ValueError) else f"cannot stage {job.source_dir}: {exc}"
                raise ValidationFailed(self.name, [("source_dir", message)]) from None
            try:
                os.rename(tmp, target)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)  # another submit staged it first
        return str(target)

    def submit(self, job: Job, placement: Placement, ctx: LaunchContext) -> Handle:
        directory = self._attempt_dir(ctx.job_id, ctx.attempt)
        handle = Handle(self.name, f"{ctx.job_id}/attempt-{ctx.attempt}", {"dir": str(directory)})
        state = read_json(directory / "state.json")
        if state is not None and state.get("state") != "SUBMITTED":
            return handle  # already started: a retried submit never starts two
        directory.parent.mkdir(parents=True, exist_ok=True)
        if state is None:
            request = self.render(job, placement, ctx)
            cwd = self._stage(job, ctx)
            elapsed = time.time() - (ctx.submitted_at or time.time())
            plan = self.preemptions(job).plan(ctx.attempt, elapsed)
            if placement.market == "on-demand":
                plan = type(plan)()  # on-demand capacity is never reclaimed
            max_wait = job.limits.max_wait  # wall-clock here, like max_runtime: only the cloud's clock scales
            if max_wait is not None and plan.wait_seconds > max_wait:
                plan = type(plan)(no_capacity=True)
            spec = {
                "argv": request["argv"],
                "cwd": cwd,
                "nodes": job.resources.nodes,
                "master_port": _free_port() if job.resources.nodes > 1 else None,
                "notice_seconds": request["notice_seconds"],
                "emulate": request["emulate"],
                "market": placement.market,
                "max_runtime": job.limits.max_runtime,
                "max_wait": max_wait,
                "plan": dataclasses.asdict(plan),
                "submitted": time.time(),
            }
            tmp = directory.with_name(f".{directory.name}.{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            write_json_atomic(tmp / "spec.json", spec)  # no env here: secrets only travel in memory
            write_json_atomic(tmp / "state.json", {"state": "SUBMITTED", "submitted": spec["submitted"]})
            try:
                os.rename(tmp, directory)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)  # a concurrent submit won; start its supervisor
            env = dict(os.environ)
            env.update(request["env"])
        else:
            env = dict(os.environ)
            env.update(self.render(job, placement, ctx)["env"])
        with open_log(directory / "supervisor.log") as log:
            subprocess.Popen(
                [sys.executable, "-m", "multispot.local.supervisor", str(directory)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the controller, like a cloud instance
            )
        return handle

    def _state(self, handle: Handle) -> dict[str, Any]:
        directory = Path(handle.data["dir"])
        state = read_json(directory / "state.json")
        if state is None:
            return {"state": "FAILED", "message": f"attempt directory {directory} is gone"}
        if state["state"] in ("SUBMITTED", "STARTING", "RUNNING") and not _supervised(directory):
            state = read_json(directory / "state.json") or state  # it may have just finished
            if state["state"] in ("SUBMITTED", "STARTING", "RUNNING"):
                age = time.time() - float(state.get("submitted") or state.get("started") or 0)
                if state["state"] != "SUBMITTED" or age > SUBMIT_GRACE:
                    return _lost(directory, state)
        return state

    def status(self, handle: Handle) -> ProviderStatus:
        state = self._state(handle)
        native = str(state["state"])
        if native not in _STATES:
            from multispot.errors import UnknownProviderState

            raise UnknownProviderState(f"local attempt state {native!r} is not in the state table")
        return ProviderStatus(
            _STATES[native],
            str(state.get("message", "")),
            0,
            native,
            state.get("started"),
            state.get("ended"),
        )

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        path = Path(handle.data["dir"]) / "output.log"
        position = 0
        while True:
            if path.exists():
                with open(path, errors="replace") as f:
                    f.seek(position)
                    chunk = f.read()
                    position = f.tell()
                yield from chunk.splitlines(keepends=True)
            if not follow or self.status(handle).state.terminal:
                if follow and path.exists() and path.stat().st_size > position:
                    continue
                return
            time.sleep(0.2)

    def cancel(self, handle: Handle) -> None:
        directory = Path(handle.data["dir"])
        (directory / "cancel").touch()
        state = read_json(directory / "state.json") or {}
        pid = state.get("supervisor_pid")
        if pid:
            try:
                os.kill(int(pid), 15)
            except ProcessLookupError:
                pass
        if state.get("state") == "SUBMITTED" and not _supervised(directory):
            write_json_atomic(
                directory / "state.json",
                dict(state, state="CANCELLED", ended=time.time(), message="cancelled"),
            )

    def preempt(self, handle: Handle) -> None:
        """Take the capacity away now (notice, SIGTERM, hard stop), as a spot reclaim would."""
        (Path(handle.data["dir"]) / "preempt").touch()

    def drain(self, handle: Handle) -> None:
        """End the attempt as a preemption would (the controller moves the job: ``Drainable``): a
        running one gets the notice, one still waiting for capacity is withdrawn."""
        if self._state(handle).get("state") == "RUNNING":
            self.preempt(handle)
        else:
            self.cancel(handle)

    def usage(self, handle: Handle) -> Usage:
        directory = Path(handle.data["dir"])
        state = self._state(handle)
        spec = read_json(directory / "spec.json") or {}
        started = state.get("started")
        ended = state.get("ended") or time.time()
        runtime = max(0.0, float(ended) - float(started)) if started else 0.0
        return Usage(
            runtime_seconds=runtime,
            billable_seconds=runtime,  # like the clouds: waiting for capacity is not billed
            instance_type="local",
            count=int(spec.get("nodes", 1)),
            market=str(spec.get("market", "spot")),
            region="localhost",
            source="local supervisor state.json",
        )


STAGE_SKIP = frozenset(
    {
        "__pycache__",
        ".git",
        ".venv",
        ".tox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
    }
)
STAGE_MAX_BYTES = 2 << 30  # what a source folder may hold; data belongs in inputs
STAGE_MAX_FILES = 100_000


def stage_tree(source: Path, target: Path, skip: tuple[Path, ...] = ()) -> None:
    """Copy the folder ``source`` to ``target`` (which must not exist) as the job's code.

    Nothing outside ``source`` is read: a symlink that stays inside is copied as a link, one that
    leaves it (or dangles) is refused by name. Links are never followed, so a loop cannot explode.
    Caches, VCS data and the folders in ``skip`` (multispot's own home and the provider's root,
    if they lie inside) are left out, and the
    copy is bounded by ``STAGE_MAX_BYTES`` and ``STAGE_MAX_FILES``. Raises ValueError with the fix."""
    source = source.resolve()
    problem = source_dir_problem(source)
    if problem:
        raise ValueError(problem)
    if not source.is_dir():
        raise ValueError(f"{source} is not a directory any more: was it moved before the job started?")
    avoid = {path.resolve() for path in skip}
    total_bytes = total_files = 0
    target.mkdir(parents=True)
    for folder, dirs, files in os.walk(source, followlinks=False):
        here = Path(folder)
        out = target / here.relative_to(source)
        kept = []
        for name in sorted(dirs):
            path = here / name
            if name in STAGE_SKIP or path in avoid:
                continue
            if path.is_symlink():
                files.append(name)  # copied as a link below, never walked into
                continue
            (out / name).mkdir()
            kept.append(name)
        dirs[:] = kept
        for name in files:
            path = here / name
            total_files += 1
            if total_files > STAGE_MAX_FILES:
                raise ValueError(
                    f"{source} holds more than {STAGE_MAX_FILES} files: keep data out of source_dir "
                    "(use inputs) or point source_dir at the code only"
                )
            if path.is_symlink():
                link = os.readlink(path)
                try:
                    resolved = (here / link).resolve(strict=True)
                except (OSError, RuntimeError):  # dangling, or a loop of links
                    resolved = None
                if resolved is None or (resolved != source and source not in resolved.parents):
                    raise ValueError(
                        f"{path} links to {link}, outside {source} (or to nothing, or in a loop): staging copies only "
                        "what is inside source_dir; replace the link with the files it points to"
                    )
                os.symlink(link, out / name)
                continue
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                continue  # sockets, FIFOs, devices: not code, and reading a FIFO would block
            total_bytes += info.st_size
            if total_bytes > STAGE_MAX_BYTES:
                raise ValueError(
                    f"{source} holds more than {STAGE_MAX_BYTES >> 20} MiB: keep data out of source_dir "
                    "(use inputs) or point source_dir at the code only"
                )
            shutil.copy2(path, out / name, follow_symlinks=False)


def _lost(directory: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The supervisor died (its host, emulated, is gone): like a cloud that loses an instance, that
    is lost capacity, so the attempt ends PREEMPTED and the policy starts another; and, as on a
    lost instance, nothing of the attempt goes on running (nor writing checkpoints)."""
    end_attempt_processes(directory, [int(p) for p in state.get("pids") or []])
    lost = dict(
        state,
        state="PREEMPTED",
        ended=state.get("ended") or time.time(),
        message="the local supervisor died: the attempt's capacity is lost (its processes were stopped)",
    )
    if _supervised(directory):  # a supervisor came back to life in between: it decides
        return read_json(directory / "state.json") or state
    write_json_atomic(directory / "state.json", lost)
    return lost


def _supervised(directory: Path) -> bool:
    """Is a supervisor holding this attempt's lock right now?"""
    try:
        with open(directory / "lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


def _secret_problems(job: Job) -> list[tuple[str, str]]:
    """``env://VAR`` is read from the submitter's environment (this process's, and the detached
    controller's, which inherits it); the supervisor hands the value to the job's processes
    through their environment only. Checked here so a missing VAR fails at submit."""
    return [
        (f"secrets.{name}", f"refers to {ref}, but {ref[6:]} is not set: export {ref[6:]}=... first")
        for name, ref in job.secrets.items()
        if ref.startswith("env://") and ref[6:] not in os.environ
    ]


def _command_problems(job: Job) -> list[tuple[str, str]]:
    argv = job.command
    source = Path(job.source_dir) if job.source_dir else Path.cwd()
    exe = argv[0]
    if exe in _PYTHON_NAMES:
        script = next((a for a in argv[1:] if not a.startswith("-")), None)
        if script and script.endswith(".py") and not (source / script).is_file():
            return [("command", f"{script} is not in {source}: check the script name or source_dir")]
        return []
    if "/" in exe:
        path = source / exe
        if not path.is_file():
            return [("command[0]", f"{exe} does not exist in {source}: check the path or source_dir")]
        if not os.access(path, os.X_OK):
            return [("command[0]", f"{exe} is not executable: chmod +x it, or run it with python/bash")]
        return []
    if shutil.which(exe) is None:
        return [("command[0]", f"{exe!r} is not found on PATH: install it or give a path")]
    return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
