"""When the local provider takes capacity away: a schedule, a seeded rate, or a real spot trace.

Spec strings (``--inject-preemptions`` or ``provider_options.local.preemptions``):

- ``none``
- ``at=20s,45s,70s``      attempt k is preempted that long after its runtime is ready; an item
  ``15s!`` is a hard stop with no notice at all, and ``save:N`` kills the job's processes in
  the middle of their N-th checkpoint save (after the files, before the manifest): the two
  ways a spot reclaim can land that the notice does not cover. ``save:N+20s`` (or ``+20s!``)
  counts the 20 s from the attempt's N-th committed save instead of from readiness, so the
  preemption lands after a checkpoint exists however slow the machine is
- ``every=20s[,max=3]``   each attempt after 20 s, at most ``max`` preemptions in all
- ``rate=6/h[,seed=1][,max=5]``  exponential gaps with that mean rate, reproducible by seed
- ``trace=FILE[,offset=N]``  a spot trace (``{"metadata": {"gap_seconds": g}, "data": [n, ...]}``):
  a tick with 0 instances means no capacity, so a running attempt is preempted and a new one
  waits; trace time runs ``time_scale`` times faster than the cloud's (like the notice period)

Schedule and rate times are wall-clock seconds on this machine, counted from when the attempt's
runtime is ready: the multispot runtime signals it (``MULTISPOT_READY_FILE``) once the script's
imports are done and its restore is over, so a machine slow to start a process (a busy CPU, a
cold import of torch) does not preempt an attempt before it could do any work. A script that
never signals (it does not use the runtime) is preempted ``2 * t + 30 s`` after its command
starts. Trace ticks are cloud seconds, on the pool's own clock from the job's submission.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from multispot.units import parse_duration

if TYPE_CHECKING:
    from multispot.job import Job

MAX_TRACE_BYTES = 64 << 20  # a year of one-minute ticks is a few MiB

_RATE = re.compile(r"^(\d+(?:\.\d+)?)/(s|m|h|d)$")


@dataclass(frozen=True)
class AttemptPlan:
    """What the emulated cloud does to one attempt."""

    wait_seconds: float = 0.0  # before capacity is there
    preempt_after: float | None = None  # seconds after the runtime is ready (see from_ready)
    no_capacity: bool = False  # the pool never had capacity within the trace / max_wait
    notice: bool = True  # False: the hard stop comes without SIGTERM or notice file
    fault: str | None = None  # e.g. "kill-in-save:2", passed to the runtime as MULTISPOT_FAULT
    # False: preempt_after counts from the command's start (a trace's clock). Not compared: it
    # says how the supervisor reads preempt_after, not what fate the attempt has.
    from_ready: bool = field(default=True, compare=False)
    # With it, preempt_after counts from the attempt's after_save-th committed save (the runtime
    # writes MULTISPOT_SAVED_FILE after each); an attempt that never saves that often is not preempted.
    after_save: int | None = None


def _read_regular(path: Path, limit: int) -> str:
    """A regular file's text, at most ``limit`` bytes: a FIFO, a device (``/dev/zero``) or a
    folder is refused without blocking on it or reading it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path}: not a regular file; a trace is a JSON file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{path}: larger than {limit >> 20} MiB; a trace is a JSON file of a few MiB")
    return data.decode("utf-8")


@dataclass(frozen=True)
class Trace:
    gap_seconds: float
    data: list[int]

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        try:
            raw = json.loads(_read_regular(Path(path), MAX_TRACE_BYTES))
        except (OSError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(
                f"{path}: cannot read the trace ({getattr(exc, 'strerror', None) or exc})"
            ) from None
        try:
            gap = float((raw.get("metadata") or {}).get("gap_seconds", 0) or raw.get("gap_seconds", 0))
            data = [int(x) for x in raw["data"]]
        except (AttributeError, TypeError, KeyError, OverflowError) as exc:  # not the trace shape
            raise ValueError(f"{path}: not a spot trace ({exc})") from exc
        if gap <= 0 or not data:
            raise ValueError(f"{path}: a trace needs metadata.gap_seconds > 0 and a non-empty data list")
        return cls(gap, data)


class PreemptionSpec:
    def __init__(self, text: str, time_scale: float = 1.0) -> None:
        self.text = text.strip() or "none"
        self.time_scale = time_scale
        self.kind = "none"
        self.times: list[float] = []
        self.items: list[AttemptPlan] = []  # at=: one per attempt
        self.max = 0
        self.seed = 0
        self.rate = 0.0  # per second
        self.trace: Trace | None = None
        self.offset = 0
        self._parse()

    def __repr__(self) -> str:
        return f"PreemptionSpec({self.text!r})"

    def _parse(self) -> None:
        if self.text == "none":
            return
        head, _, rest = self.text.partition("=")
        fields: dict[str, str] = {}
        for part in rest.split(",")[1:]:
            key, _, value = part.partition("=")
            fields[key] = value
        first = rest.split(",")[0]
        try:
            if head == "at":
                self.kind = "at"
                self.items = [_at_item(t) for t in rest.split(",") if t]
                if not self.items:
                    raise ValueError("give at least one time")
            elif head == "every":
                self.kind = "every"
                self.times = [parse_duration(first)]
                self.max = int(fields.get("max", 3))
            elif head == "rate":
                self.kind = "rate"
                match = _RATE.match(first)
                if not match:
                    raise ValueError("write the rate as N/s, N/m, N/h or N/d, e.g. rate=6/h")
                per = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
                self.rate = float(match.group(1)) / per
                self.seed = int(fields.get("seed", 0))
                self.max = int(fields.get("max", 1000))
            elif head == "trace":
                self.kind = "trace"
                self.trace = Trace.load(first)
                self.offset = int(fields.get("offset", 0))
            else:
                raise ValueError("start with none, at=, every=, rate= or trace=")
            unknown = set(fields) - {"max", "seed", "offset"}
            if unknown and head != "at":
                raise ValueError(f"unknown option {sorted(unknown)[0]!r}")
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(
                f"bad preemption spec {self.text!r}: {exc}. Examples: 'at=20s,45s', 'every=30s,max=3', "
                "'rate=6/h,seed=1', 'trace=us-east-1a_v100_1.json'"
            ) from exc

    def mean_time_between(self) -> float | None:
        """Mean seconds an attempt runs before it is preempted, as this spec plays it (None: never)."""
        if self.kind == "at":
            times = [item.preempt_after for item in self.items if item.preempt_after is not None]
            return sum(times) / len(times) if times else None
        if self.kind == "every":
            return self.times[0]
        if self.kind == "rate":
            return 1.0 / self.rate if self.rate > 0 else None
        if self.kind == "trace" and self.trace is not None:
            from multispot.policy.interval import mtbp_from_trace

            mean = mtbp_from_trace(self.trace.data[self.offset :], self.trace.gap_seconds)
            return None if mean is None else mean * self.time_scale
        return None

    def plan(self, attempt: int, elapsed: float) -> AttemptPlan:
        """The fate of attempt ``attempt`` (1-based), submitted ``elapsed`` wall seconds into the job."""
        if self.kind == "at":
            return self.items[attempt - 1] if attempt <= len(self.items) else AttemptPlan()
        if self.kind == "every":
            return AttemptPlan(preempt_after=self.times[0] if attempt <= self.max else None)
        if self.kind == "rate":
            if attempt > self.max or self.rate <= 0:
                return AttemptPlan()
            rng = random.Random(self.seed * 1_000_003 + attempt)
            return AttemptPlan(preempt_after=-math.log(1.0 - rng.random()) / self.rate)
        if self.kind == "trace":
            return self._trace_plan(elapsed)
        return AttemptPlan()

    def _trace_plan(self, elapsed: float) -> AttemptPlan:
        assert self.trace is not None
        tick_wall = self.trace.gap_seconds * self.time_scale
        data = self.trace.data[self.offset :]
        start = int(elapsed // tick_wall)
        # Past the end of the trace, capacity stays as it was on the last tick.
        up = [i for i in range(start, len(data)) if data[i] > 0]
        if start >= len(data):
            return AttemptPlan() if data and data[-1] > 0 else AttemptPlan(no_capacity=True)
        if not up:
            return AttemptPlan(no_capacity=True)
        first_up = up[0]
        wait = max(0.0, first_up * tick_wall - elapsed)
        down = next((i for i in range(first_up, len(data)) if data[i] == 0), None)
        preempt = None if down is None else down * tick_wall - max(elapsed, first_up * tick_wall)
        return AttemptPlan(wait_seconds=wait, preempt_after=preempt, from_ready=False)


def _at_item(text: str) -> AttemptPlan:
    """``20s`` (notice, then stop), ``20s!`` (stop, no notice), ``save:N`` (killed inside save N),
    ``save:N+20s`` / ``save:N+20s!`` (notice / stop 20 s after the N-th committed save)."""
    if text.startswith("save:"):
        count_text, plus, after = text[len("save:") :].partition("+")
        count = int(count_text)
        if count < 1:
            raise ValueError("save:N counts saves from 1")
        if not plus:
            return AttemptPlan(fault=f"kill-in-save:{count}")
        return AttemptPlan(
            preempt_after=parse_duration(after.removesuffix("!")),
            notice=not after.endswith("!"),
            after_save=count,
        )
    if text.endswith("!"):
        return AttemptPlan(preempt_after=parse_duration(text[:-1]), notice=False)
    return AttemptPlan(preempt_after=parse_duration(text))


def with_injection(job: Job, spec: str | None) -> Job:
    """``job`` with ``provider_options.local.preemptions`` set to ``spec`` (``--inject-preemptions``)."""
    from multispot.job import Job  # job.py reads this module's spec parser: import it late

    if spec is None:
        return job
    options = {key: dict(value) for key, value in job.provider_options.items()}
    options.setdefault("local", {})["preemptions"] = spec
    return Job.validate_data({**job.to_data(), "provider_options": options})
