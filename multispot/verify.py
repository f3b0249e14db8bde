"""``verify-resume``: is this training script safe on spot?

Runs the job twice on the local provider, once uninterrupted and once interrupted at varied
points — a preemption with the cloud's notice, a hard stop inside a checkpoint save, a hard stop
with no notice at all — and compares what both wrote to ``metrics.json`` in their output
location. When they differ it compares the checkpoints both runs saved at the same steps to say
where the runs parted and which part of the state was not carried across the resume.
"""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from multispot import api
from multispot.checkpoint import CheckpointStore, Manifest
from multispot.job import Job
from multispot.status import JobState
from multispot.store import JobStore

METRICS = "metrics.json"
VOLATILE = ("second", "time", "duration", "elapsed", "date", "host", "pid")
DEFAULT_EVERY_STEPS = 100


@dataclass
class RunSummary:
    job_id: str
    state: str
    attempts: int
    preemptions: int
    outcomes: list[str]
    metrics: dict[str, Any] | None
    checkpoint_uri: str
    running_seconds: float


@dataclass
class ResumeReport:
    identical: bool
    reference: RunSummary
    interrupted: RunSummary
    schedule: str
    compared_keys: list[str] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)
    differences: list[dict[str, Any]] = field(default_factory=list)
    checkpoints_compared: int = 0
    first_divergence: dict[str, Any] | None = None
    diagnosis: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def verdict(self) -> str:
        if self.identical:
            return "spot-ready: the interrupted run ended exactly like the uninterrupted one"
        return "NOT spot-ready: the interrupted run did not end like the uninterrupted one"

    def __repr__(self) -> str:
        return f"ResumeReport(identical={self.identical}, {self.interrupted.preemptions} preemptions)"

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(d)}</li>" for d in self.diagnosis)
        return f"<b>{html.escape(self.verdict)}</b>" + (f"<ul>{items}</ul>" if items else "")


def _metrics(output_uri: str) -> dict[str, Any] | None:
    path = Path(urlparse(output_uri).path) / METRICS
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _summary(run: api.Run) -> RunSummary:
    record, attempts = run.record, run.attempts
    running = sum((a.ended or 0) - a.started for a in attempts if a.started and a.ended)
    return RunSummary(
        job_id=record.id,
        state=record.state.value,
        attempts=len(attempts),
        preemptions=sum(a.state is JobState.PREEMPTED for a in attempts),
        outcomes=[a.state.value for a in attempts],
        metrics=_metrics(record.output_uri),
        checkpoint_uri=record.checkpoint_uri,
        running_seconds=running,
    )


def _variant(job: Job, suffix: str, every_steps: int, preemptions: str) -> Job:
    data = job.to_data()
    data["name"] = f"{job.name[:28]}-{suffix}"
    checkpoint = {k: v for k, v in data.get("checkpoint", {}).items() if k != "uri"}  # a fresh one each
    # Saves land on the same steps in both runs and are all kept (up to keep's documented maximum,
    # 1000), so they can be compared.
    data["checkpoint"] = {**checkpoint, "every_steps": every_steps, "interval": "1000d", "keep": 1000}
    data.pop("output_uri", None)
    data["targets"] = []
    options = data.get("provider_options", {})
    data["provider_options"] = {**options, "local": {**options.get("local", {}), "preemptions": preemptions}}
    return Job.validate_data(data, base_dir=job.source_dir or ".")


def default_schedule(reference: api.Run) -> str:
    """Preempt with notice a third into the work, then kill inside a save, then stop with no notice."""
    attempt = reference.attempts[-1]
    total = (attempt.ended or 0) - (attempt.started or 0)
    manifests = _manifests(CheckpointStore(reference.record.checkpoint_uri))
    startup = 0.0
    if len(manifests) >= 2 and attempt.started:
        times = [datetime.fromisoformat(m.time).timestamp() for m in manifests.values()]
        per_save = (max(times) - min(times)) / (len(times) - 1)
        startup = max(0.0, min(times) - attempt.started - per_save)
    work = max(total - startup, 1.0)
    # The hard stop comes early in attempt 3 so it lands before the job ends even when this run
    # goes faster than the reference did (a busy machine makes timings vary).
    return f"at={startup + 0.35 * work:.1f}s,save:2,{startup + 0.2 * work:.1f}s!"


def _manifests(store: CheckpointStore) -> dict[int, Manifest]:
    found = {}
    for step in store.steps():
        if store.verify(step, full=False).ok:
            manifest = store.manifest(step)
            if manifest is not None:
                found[step] = manifest
    return found


def verify_resume(
    job: Job,
    *,
    schedule: str | None = None,
    every_steps: int = DEFAULT_EVERY_STEPS,
    keep_runs: bool = False,
    store: JobStore | None = None,
    show: Callable[[api.Run], object] | None = None,
) -> ResumeReport:
    """Run ``job`` uninterrupted and interrupted on the local provider and compare the outcomes."""
    store = store or JobStore()
    watch = show or (lambda run: run.wait())
    reference = api.submit(_variant(job, "verify-ref", every_steps, "none"), "local", store=store)
    watch(reference)
    plan = schedule or default_schedule(reference)
    interrupted = api.submit(_variant(job, "verify-int", every_steps, plan), "local", store=store)
    watch(interrupted)
    report = compare(reference, interrupted, plan)
    if not keep_runs:
        for run in (reference, interrupted):
            shutil.rmtree(urlparse(run.record.checkpoint_uri).path, ignore_errors=True)
    return report


def compare(reference: api.Run, interrupted: api.Run, schedule: str) -> ResumeReport:
    ref, intr = _summary(reference), _summary(interrupted)
    report = ResumeReport(False, ref, intr, schedule)
    if ref.state != "SUCCEEDED":
        report.diagnosis.append(
            f"the uninterrupted run ended {ref.state}: fix that first (`multispot logs {ref.job_id}`)"
        )
        return report
    if intr.state != "SUCCEEDED":
        report.diagnosis.append(
            f"the interrupted run ended {intr.state} after {intr.attempts} attempts ({', '.join(intr.outcomes)}): "
            f"see `multispot logs {intr.job_id}`"
        )
        return report
    if ref.metrics is None or intr.metrics is None:
        report.diagnosis.append(
            f"no {METRICS} in the output location: the script should write its final metrics and a "
            "checksum of its parameters there (MULTISPOT_OUTPUT_URI; the runtime's env.output_dir)"
        )
        return report
    keys = sorted(set(ref.metrics) | set(intr.metrics))
    report.ignored_keys = [k for k in keys if any(word in k.lower() for word in VOLATILE)]
    report.compared_keys = [k for k in keys if k not in report.ignored_keys]
    report.differences = [
        {"key": k, "reference": ref.metrics.get(k), "interrupted": intr.metrics.get(k)}
        for k in report.compared_keys
        if ref.metrics.get(k) != intr.metrics.get(k)
    ]
    report.identical = not report.differences and intr.preemptions > 0
    if intr.preemptions == 0:
        report.diagnosis.append(
            "the interrupted run was never preempted (it finished before the schedule); "
            "nothing was proven: pass a shorter --schedule"
        )
    _diagnose_checkpoints(report, reference, interrupted)
    return report


def _diagnose_checkpoints(report: ResumeReport, reference: api.Run, interrupted: api.Run) -> None:
    ref_store = CheckpointStore(reference.record.checkpoint_uri)
    int_store = CheckpointStore(interrupted.record.checkpoint_uri)
    ref_m, int_m = _manifests(ref_store), _manifests(int_store)
    common = sorted(set(ref_m) & set(int_m))
    report.checkpoints_compared = len(common)
    if report.identical:
        return
    if not int_m:
        report.diagnosis.append(
            "the interrupted run never committed a checkpoint, so every attempt started from scratch: "
            "save with multispot.runtime.Checkpointer (or TrainingState.save) inside the loop"
        )
        return
    divergent = next((s for s in common if _differing_parts(ref_store, int_store, ref_m[s], int_m[s])), None)
    if divergent is None:
        report.diagnosis.append(
            f"all {len(common)} checkpoints saved at the same steps are identical, yet the final metrics "
            "differ: state that is not in the checkpoint changes the end of the run (e.g. an accumulator, "
            "the data loader's position, or work after the last checkpoint that depends on in-memory state)"
        )
        return
    attempt = int_m[divergent].attempt or 1
    # The checkpoint that attempt resumed from: the newest one an earlier attempt committed.
    restored_from = max(
        (s for s, m in int_m.items() if s < divergent and (m.attempt or 1) < attempt), default=None
    )
    files = _differing_files(ref_m[divergent], int_m[divergent])
    report.first_divergence = {
        "step": divergent,
        "attempt": attempt,
        "resumed_from": restored_from,
        "files": files,
    }
    if attempt == 1:
        report.diagnosis.append(
            f"the runs differ already at step {divergent}, before any preemption: the script is not "
            "deterministic (seed every RNG, fix the thread count, torch.use_deterministic_algorithms), so "
            "resume cannot be checked until it is"
        )
        return
    where = f"after resuming from step {restored_from}" if restored_from is not None else "after a resume"
    report.diagnosis.append(
        f"the first checkpoint that differs is step {divergent}, saved by attempt {attempt} {where}; "
        f"every earlier common checkpoint matched. Differing files: {', '.join(files)}"
    )
    report.diagnosis.extend(_torch_components(ref_store, int_store, divergent, files))


def _differing_files(a: Manifest, b: Manifest) -> list[str]:
    return sorted(name for name in set(a.files) | set(b.files) if a.files.get(name) != b.files.get(name))


def _differing_parts(ref: CheckpointStore, intr: CheckpointStore, a: Manifest, b: Manifest) -> list[str]:
    """Files that differ, except a TrainingState ``state.pt`` that differs only in RNG streams:
    an RNG the script never seeds (NumPy's, Python's) differs between any two processes without
    changing the training, so it alone is no divergence."""
    files = _differing_files(a, b)
    if files != ["state.pt"]:
        return files
    states = _load_states(ref, intr, a.step)
    if states is None:
        return files
    return [] if _state_parts(*states) in ([], ["rng"]) else files


def _load_states(ref: CheckpointStore, intr: CheckpointStore, step: int) -> tuple[Any, Any] | None:
    try:
        import torch
    except ImportError:
        return None
    states = []
    for store in (ref, intr):
        with store.restore(step, full=False).open("state.pt") as f:
            states.append(torch.load(f, map_location="cpu", weights_only=True))
    return states[0], states[1]


def _state_parts(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if not _same(a.get(k), b.get(k)))


def _torch_components(ref: CheckpointStore, intr: CheckpointStore, step: int, files: list[str]) -> list[str]:
    """For TrainingState checkpoints (state.pt), name the parts that differ and the ones never saved."""
    states = _load_states(ref, intr, step) if "state.pt" in files else None
    if states is None:
        return []
    a, b = states
    differing = _state_parts(a, b)
    out = [f"in state.pt the parts that differ are: {', '.join(differing)}"]
    hints = {
        "optimizer": "the checkpoint has no optimizer state: after a resume momentum/Adam moments restart "
        "from zero. Pass the optimizer to TrainingState (or save optimizer.state_dict())",
        "scheduler": "the checkpoint has no LR scheduler state: pass the scheduler to TrainingState if you use one",
        "rng": "the checkpoint has no RNG state: dropout and shuffling draw different numbers after a resume",
        "progress": "the checkpoint has no training position: the resumed run repeats or skips data",
    }
    out += [hint for key, hint in hints.items() if key not in a]
    if differing == ["model"] or set(differing) <= {"model", "extra"}:
        out.append(
            "only the model differs although optimizer, RNG and position match: check that the data order "
            "after a resume depends only on (seed, epoch) and that the batch position is restored"
        )
    return out


def _same(x: Any, y: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - only reached with torch installed
        return bool(x == y)
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
        return x.shape == y.shape and x.dtype == y.dtype and bool(torch.equal(x, y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y, strict=True))
    return bool(x == y)
