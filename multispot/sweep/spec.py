"""The ``sweep:`` and ``array:`` sections: what to search or shard, how many at once, under which
budget and deadline.

A sweep (or array) file is either a job file with one more top-level section::

    name: train
    command: python train.py
    sweep: {...}          # or array: {...}

or a file that names a job file (or holds one inline) beside the section::

    job: job.yaml         # relative to this file; or a mapping with the job's fields
    sweep: {...}

Every problem is reported with its field path (``sweep.parameters.lr``) and line, like a job's.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from multispot.errors import JobSpecError, Problem
from multispot.job import (
    MAX_SPEC_BYTES,
    Job,
    _check_size,
    _duplicate_keys,
    _Loader,
    _problem,
    _scan_yaml,
)
from multispot.units import parse_duration

MAX_TRIALS = 10_000
MAX_GRID = 10_000
MAX_SHARDS = 100_000


def _goal(value: Any) -> Any:
    aliases = {"minimise": "minimize", "min": "minimize", "maximise": "maximize", "max": "maximize"}
    return aliases.get(value, value) if isinstance(value, str) else value


def _deadline(value: Any) -> Any:
    """A duration from the sweep's start (``2h``) or an ISO time; kept as given, checked here."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a duration (2h, 90m) nor an ISO time (2026-12-01T18:00)"
        ) from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Parameter(_Model):
    """One search dimension: exactly one of ``choice``, ``uniform``, ``loguniform``, ``int``."""

    choice: list[str | int | float | bool] | None = Field(None, min_length=1, max_length=MAX_GRID)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    int_: tuple[int, int] | None = Field(None, alias="int")
    step: float | None = Field(None, gt=0, description="int: the step (default 1); uniform: a grid step")
    log: bool = Field(False, description="int: sample on a log scale")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        given = [k for k in ("choice", "uniform", "loguniform", "int_") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of choice: [a, b], uniform: [low, high], loguniform: [low, high], "
                f"int: [low, high] (got {len(given)})"
            )
        if self.kind != "int" and self.log:
            raise ValueError("log: true is for int ranges; use loguniform for floats")
        if self.kind == "choice" and self.step is not None:
            raise ValueError("step: is for int and uniform ranges, not choice")
        bounds = self.bounds
        if bounds is not None:
            low, high = bounds
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise ValueError(f"[{low}, {high}] is not a range: write [low, high] with low <= high")
            if self.kind == "loguniform" and low <= 0:
                raise ValueError("loguniform needs low > 0 (it samples log(value))")
            if self.kind == "int":
                if self.step is not None and self.step != int(self.step):
                    raise ValueError("an int range's step is a whole number")
                if self.log and low < 1:
                    raise ValueError("an int range on a log scale needs low >= 1")
        return self

    @property
    def kind(self) -> str:
        if self.choice is not None:
            return "choice"
        if self.uniform is not None:
            return "uniform"
        if self.loguniform is not None:
            return "loguniform"
        return "int"

    @property
    def bounds(self) -> tuple[float, float] | None:
        return self.uniform or self.loguniform or self.int_

    def grid(self) -> list[Any] | None:
        """The values of a discrete dimension (None: continuous, no grid)."""
        if self.choice is not None:
            return list(self.choice)
        if self.int_ is not None and not self.log:
            low, high = self.int_
            step = int(self.step or 1)
            if (high - low) // step + 1 > MAX_GRID:
                return None
            return list(range(low, high + 1, step))
        if self.uniform is not None and self.step is not None:
            start, stop = self.uniform
            count = math.floor((stop - start) / self.step + 1e-9) + 1
            return [start + i * self.step for i in range(min(count, MAX_GRID + 1))]
        return None


class Objective(_Model):
    metric: str = Field(min_length=1, max_length=128, description="a metric the job report()s")
    goal: Annotated[Literal["minimize", "maximize"], BeforeValidator(_goal)] = "minimize"


class Pruner(_Model):
    kind: Literal["none", "median", "hyperband"] = "median"
    startup_trials: int = Field(2, ge=0, le=MAX_TRIALS, description="trials that are never pruned")
    warmup_steps: int = Field(0, ge=0, description="steps of a trial before it may be pruned")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data


class _Limits(_Model):
    parallelism: int = Field(1, ge=1, le=256, description="jobs running at once")
    budget: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="USD over every job: none starts past it"
    )
    deadline: Annotated[datetime | float | None, BeforeValidator(_deadline)] = Field(
        None, description="a duration from the start (2h) or an ISO time: no job starts past it"
    )

    def deadline_at(self, started: float) -> float | None:
        if self.deadline is None:
            return None
        if isinstance(self.deadline, datetime):
            return self.deadline.timestamp()  # a time without a zone is this machine's local time
        return started + float(self.deadline)


class SweepSpec(_Limits):
    name: str | None = Field(None, description="the sweep's name (default: the job's)")
    parameters: dict[str, Parameter] = Field(min_length=1, max_length=256)
    objective: Objective
    trials: int = Field(10, ge=1, le=MAX_TRIALS)
    algorithm: Literal["random", "grid", "tpe"] = "tpe"
    seed: int | None = None
    pruner: Pruner = Field(default_factory=Pruner)
    on_preemption: Literal["resume", "restart", "abandon"] = Field(
        "resume", description="resume from the trial's checkpoint, restart it from scratch, or abandon it"
    )
    max_restarts: int = Field(
        3, ge=0, le=100, description="on_preemption: restart: restarts of one trial before it is abandoned"
    )

    @model_validator(mode="after")
    def _grid(self) -> SweepSpec:
        if self.algorithm != "grid":
            return self
        size = 1
        for name, param in self.parameters.items():
            values = param.grid()
            if values is None:
                raise ValueError(
                    f"parameters.{name}: grid search needs discrete values (choice, an int range, or a "
                    "uniform range with step)"
                )
            size *= len(values)
            if size > MAX_GRID:
                raise ValueError(f"the grid has more than {MAX_GRID} points: narrow it or use tpe/random")
        return self

    def grid_size(self) -> int:
        size = 1
        for param in self.parameters.values():
            size *= len(param.grid() or [])
        return size

    def planned_trials(self) -> int:
        return min(self.trials, self.grid_size()) if self.algorithm == "grid" else self.trials


class ArraySpec(_Limits):
    name: str | None = Field(None, description="the array's name (default: the job's)")
    count: int | None = Field(None, ge=1, le=MAX_SHARDS, description="how many tasks")
    shards: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = Field(
        None, min_length=1, max_length=MAX_SHARDS, description="input shards, dealt out over the tasks"
    )

    @model_validator(mode="after")
    def _count(self) -> ArraySpec:
        if self.count is None and self.shards is None:
            raise ValueError(
                "give count: N (tasks) or shards: [...] (one task per shard unless count is set)"
            )
        if self.shards is not None:
            if len(set(self.shards)) != len(self.shards):
                raise ValueError("shards: a shard is listed twice; each must be unique")
            if self.count is not None and self.count > len(self.shards):
                raise ValueError(
                    f"count: {self.count} tasks for {len(self.shards)} shards; at most one per shard"
                )
        return self

    @property
    def tasks(self) -> int:
        return self.count if self.count is not None else len(self.shards or [])

    def shards_of(self, index: int) -> list[str] | None:
        """Task ``index``'s shards: dealt round-robin (task i gets shards i, i + N, i + 2N, ...)."""
        if self.shards is None:
            return None
        return self.shards[index :: self.tasks]


@dataclass(frozen=True)
class GroupFile:
    """A loaded sweep or array file: the job every member starts from, and the section."""

    kind: Literal["sweep", "array"]
    job: Job
    spec: SweepSpec | ArraySpec
    source: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name or self.job.name


def load(path: str | Path) -> GroupFile:
    file = Path(path)
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise JobSpecError([Problem("(file)", f"cannot read {file}: {exc.strerror}")], str(file)) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise JobSpecError(
            [Problem("(file)", f"{file} is larger than {MAX_SPEC_BYTES >> 10} KiB")], str(file)
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobSpecError([Problem("(file)", f"not UTF-8 text (byte {exc.start})")], str(file)) from None
    return load_text(text, base_dir=file.resolve().parent, source=str(file))


def load_text(text: str, base_dir: str | Path = ".", source: str | None = None) -> GroupFile:
    try:
        _scan_yaml(text)
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except JobSpecError as exc:
        raise JobSpecError(exc.problems, source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise JobSpecError(
            [Problem("(yaml)", f"not valid YAML: {reason}", mark.line + 1 if mark else None)], source
        ) from None
    if not isinstance(data, dict):
        raise JobSpecError([Problem("(top)", "a sweep file is a YAML mapping with sweep: or array:")], source)
    duplicates = _duplicate_keys(node)
    if duplicates:
        raise JobSpecError(duplicates, source)
    return from_data(data, base_dir, source, node)


def from_data(
    data: dict[str, Any], base_dir: str | Path = ".", source: str | None = None, node: yaml.Node | None = None
) -> GroupFile:
    _check_size(data, source)
    kinds = [k for k in ("sweep", "array") if k in data]
    if len(kinds) != 1:
        message = (
            "give either sweep: or array:, not both"
            if kinds
            else "no sweep: or array: section: add one (see docs/sweeps.md)"
        )
        raise JobSpecError([Problem("(top)", message)], source)
    kind: Literal["sweep", "array"] = "sweep" if kinds[0] == "sweep" else "array"
    section = data[kind]
    rest = {k: v for k, v in data.items() if k != kind}
    if "job" in rest:
        others = sorted(k for k in rest if k != "job")
        if others:
            close = difflib.get_close_matches(others[0], ["job", kind], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise JobSpecError(
                [Problem(others[0], f"with job:, the file holds only job: and {kind}:{hint}")], source
            )
        job = _job(rest["job"], Path(base_dir), source)
    else:
        job = Job.validate_data(rest, base_dir=base_dir, source=source, node=node)
    model = SweepSpec if kind == "sweep" else ArraySpec
    if not isinstance(section, dict):
        raise JobSpecError([Problem(kind, f"{kind}: is a mapping of its settings")], source)
    try:
        spec = model.model_validate(section)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            moved = {**err, "loc": (kind, *[("int" if part == "int_" else part) for part in err["loc"]])}
            problems.append(_problem(moved, node))
        raise JobSpecError(problems, source) from None
    return GroupFile(kind, job, spec, source)


def _job(value: Any, base_dir: Path, source: str | None) -> Job:
    if isinstance(value, str):
        path = (base_dir / value).resolve()
        return Job.from_yaml(path)
    if isinstance(value, dict):
        try:
            return Job.validate_data(value, base_dir=base_dir, source=source)
        except JobSpecError as exc:
            raise JobSpecError(
                [Problem(f"job.{p.path}", p.message, p.line) for p in exc.problems], source
            ) from None
    raise JobSpecError([Problem("job", "job: is a job file's path or a mapping of the job's fields")], source)
