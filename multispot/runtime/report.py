"""Intermediate metrics from inside the job: ``report(step, loss=0.4, accuracy=0.9)``.

Each report is one small record beside the job's checkpoints, at
``<checkpoint-uri>/.multispot/reports/step-<12 digits>.json``: a whole-object write per step, so
it works on every storage the checkpoint contract does (a local folder, a folder a service syncs
or mounts, an object store) and needs no append. A resumed attempt that reports a step again
replaces that step's record. The sweep driver reads them for pruning and for the objective; the
sweep table shows the newest.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from multispot.checkpoint import CheckpointStore
from multispot.runtime.checkpointer import RECORD_DIR
from multispot.runtime.env import JobEnv, detect

REPORT_DIR = f"{RECORD_DIR}/reports"
REPORT_LIMIT = 64 * 1024  # one step's metrics; more is not a report
MAX_METRICS = 256
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,127}")
_FILE = re.compile(r"step-(\d{12})\.json")

_stores: dict[str, CheckpointStore] = {}


@dataclass(frozen=True)
class Report:
    step: int
    metrics: dict[str, float]
    time: float
    attempt: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "metrics": dict(self.metrics), "time": self.time, "attempt": self.attempt}


def report_path(step: int) -> str:
    return f"{REPORT_DIR}/step-{step:012d}.json"


def _check(step: Any, metrics: dict[str, Any]) -> dict[str, float]:
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 10**12:
        raise ValueError(f"report(step=...): {step!r} is not a step (an int from 0 to 10**12 - 1)")
    if not metrics:
        raise ValueError("report(step, **metrics): give at least one metric, e.g. report(step, loss=0.3)")
    if len(metrics) > MAX_METRICS:
        raise ValueError(f"report(): {len(metrics)} metrics; at most {MAX_METRICS} per step")
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"report(): {name!r} is not a metric name (letters, digits, _ . : / -)")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:  # numpy and torch scalars
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"report(): metric {name!r} is {type(value).__name__}, not a number"
                ) from None
        if not math.isfinite(value):
            raise ValueError(f"report(): metric {name!r} is {value!r}; report finite numbers only")
        out[name] = float(value)
    return out


def report(step: int, *, env: JobEnv | None = None, **metrics: Any) -> None:
    """Record ``metrics`` (numbers) at ``step`` beside this job's checkpoints.

    Only rank 0 writes (every rank may call it). A storage error is not raised into the training
    loop: the report is skipped, as a metrics logger would.
    """
    values = _check(step, metrics)
    env = env or detect()
    if env.rank != 0:
        return
    store = _stores.get(env.checkpoint_uri)
    if store is None:
        store = _stores[env.checkpoint_uri] = CheckpointStore(env.checkpoint_uri)
    record = {"step": step, "metrics": values, "time": time.time(), "attempt": env.attempt}
    with contextlib.suppress(OSError):
        store.write_record(report_path(step), json.dumps(record).encode())


def read_reports(uri: str, storage_options: dict[str, Any] | None = None) -> list[Report]:
    """Every readable report under the checkpoint ``uri``, by step. Unreadable or foreign files
    are skipped, never raised: a report is advice, not state."""
    store = CheckpointStore(uri, storage_options)
    try:
        files = store.storage.find(store.path(REPORT_DIR))
    except (FileNotFoundError, NotADirectoryError):
        return []
    reports: list[Report] = []
    for path in sorted(files):
        match = _FILE.fullmatch(path.rsplit("/", 1)[-1])
        if not match:
            continue
        raw = store.read_record(f"{REPORT_DIR}/{match.group(0)}", REPORT_LIMIT)
        if raw is None:
            continue
        try:
            data = json.loads(raw)
            step = int(data["step"])
            metrics = {
                str(k): float(v)
                for k, v in dict(data["metrics"]).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            }
        except (ValueError, KeyError, TypeError):
            continue
        if step != int(match.group(1)):
            continue
        attempt = data.get("attempt")
        reports.append(
            Report(
                step, metrics, float(data.get("time") or 0.0), attempt if isinstance(attempt, int) else None
            )
        )
    return reports


def last_value(reports: list[Report], metric: str) -> tuple[int, float] | None:
    """(step, value) of ``metric`` at the highest step that reported it."""
    for item in reversed(reports):
        if metric in item.metrics:
            return item.step, item.metrics[metric]
    return None
