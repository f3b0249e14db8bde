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
import re
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
from multispot.local.preemptions import PreemptionSpec
from multispot.runtime.checkpointer import resumed_from_step
from multispot.status import JobState
from multispot.store import Store, open_store

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
    messages: list[str] = field(default_factory=list)
    resumed_from: list[int | None] = field(default_factory=list)  # per attempt; None: from scratch


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
    # "spot-ready", "not-spot-ready" or "inconclusive": only a proof that exercised a resume passes.
    outcome: str = "not-spot-ready"
    reason: str = ""
    # What the interrupted run went through: each planned fault and whether it fired, and how
    # many later attempts restored a committed checkpoint.
    exercised: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}

    @property
    def spot_ready(self) -> bool:
        return self.outcome == "spot-ready"

    @property
    def exit_code(self) -> int:
        """0 spot-ready, 1 not spot-ready, 2 inconclusive (nothing proven either way)."""
        return {"spot-ready": 0, "inconclusive": 2}.get(self.outcome, 1)

    @property
    def verdict(self) -> str:
        if self.outcome == "spot-ready":
            return "spot-ready: the interrupted run resumed from its checkpoints and ended exactly like the uninterrupted one"
        if self.outcome == "inconclusive":
            return f"inconclusive: {self.reason or 'nothing was proven'}"
        return (
            f"NOT spot-ready: {self.reason or 'the interrupted run did not end like the uninterrupted one'}"
        )

    def exercised_line(self) -> str:
        """One line counting what the interrupted run exercised."""
        ex = self.exercised
        faults = ex.get("faults", [])
        fired = sum(1 for f in faults if f["fired"])
        resumed, later = ex.get("resumed_attempts", 0), ex.get("later_attempts", 0)
        return (
            f"faults fired: {fired}/{len(faults)}"
            + (
                f" ({', '.join(f['fault'] + ('' if f['fired'] else ' NOT fired') for f in faults)})"
                if faults
                else ""
            )
            + f"; attempts resumed from a checkpoint: {resumed}/{later}; checkpoints compared: {self.checkpoints_compared}"
        )

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
        messages=[a.message or "" for a in attempts],
        resumed_from=[resumed_from_step(record.checkpoint_uri, a.n, record.id) for a in attempts],
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
    """Preempt with notice about a quarter into the work, then kill inside a save, then stop with
    no notice between two saves, each counted in the attempt's own committed saves rather than in
    seconds: ``at=save:Q+0s,save:2,save:1+<half a save interval>!`` with Q a quarter of the
    reference's saves. Counting saves holds however fast or slow this run goes against the
    reference: a job of a few seconds finished its work before a notice timed in seconds arrived
    (attempt 1 of a 96-step Trainer run had saved 9 times when a notice "0.6 s after save 1"
    came: its work took 0.8 s, the reference's start-up 5.7 s), and on a busy machine a time-based
    notice could come before any checkpoint existed. A reference with fewer than two saves gives
    no save interval: the schedule is then timed from its duration."""
    attempt = reference.attempts[-1]
    manifests = _manifests(CheckpointStore(reference.record.checkpoint_uri))
    if len(manifests) >= 2:
        times = sorted(datetime.fromisoformat(m.time).timestamp() for m in manifests.values())
        per_save = (times[-1] - times[0]) / (len(times) - 1)
        quarter = max(1, len(times) // 4)
        return f"at=save:{quarter}+0s,save:2,save:1+{max(per_save / 2, 0.01):.2f}s!"
    total = (attempt.ended or 0) - (attempt.started or 0)
    work = max(total, 1.0)
    return f"at=save:1+{0.25 * work:.1f}s,save:2,{0.2 * work:.1f}s!"


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
    store: Store | None = None,
    show: Callable[[api.Run], object] | None = None,
) -> ResumeReport:
    """Run ``job`` uninterrupted and interrupted on the local provider and compare the outcomes."""
    store = store or open_store()
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


def _planned_faults(schedule: str) -> list[tuple[int, str]]:
    """(attempt, kind) for each fault an ``at=`` schedule plans; kind: notice, hard-stop, kill-in-save."""
    try:
        spec = PreemptionSpec(schedule)
    except ValueError:
        return []
    planned = []
    for n, item in enumerate(spec.items, start=1):
        if item.fault:
            planned.append((n, f"kill-in-save ({item.fault.partition(':')[2]})"))
        elif item.preempt_after is not None:
            kind = "notice" if item.notice else "hard-stop"
            after = f" after save {item.after_save}" if item.after_save else ""
            planned.append((n, f"{kind} ({item.preempt_after:g}s{after})"))
    return planned


def _fired(kind: str, state: str, message: str) -> bool:
    if state != "PREEMPTED":
        return False
    if kind.startswith("kill-in-save"):
        return "inside a checkpoint save" in message
    if kind.startswith("hard-stop"):
        return "without notice" in message
    return "capacity reclaimed" in message


def _exercised(intr: RunSummary, schedule: str) -> dict[str, Any]:
    faults = []
    for n, kind in _planned_faults(schedule):
        fired = n <= intr.attempts and _fired(kind, intr.outcomes[n - 1], intr.messages[n - 1])
        faults.append({"attempt": n, "fault": kind, "fired": fired})
    if not faults:  # every=/rate=/trace=: what happened is what was planned
        faults = [
            {"attempt": n, "fault": "preemption", "fired": True}
            for n, state in enumerate(intr.outcomes, start=1)
            if state == "PREEMPTED"
        ]
    later = intr.resumed_from[1:]
    return {
        "faults": faults,
        "later_attempts": len(later),
        "resumed_attempts": sum(step is not None for step in later),
        "resumed_from": intr.resumed_from,
    }


def compare(reference: api.Run, interrupted: api.Run, schedule: str) -> ResumeReport:
    ref, intr = _summary(reference), _summary(interrupted)
    report = ResumeReport(False, ref, intr, schedule)
    report.exercised = _exercised(intr, schedule)
    if ref.state != "SUCCEEDED":
        report.outcome, report.reason = "inconclusive", f"the uninterrupted run ended {ref.state}"
        report.diagnosis.append(
            f"the uninterrupted run ended {ref.state}: fix that first (`multispot logs {ref.job_id}`)"
        )
        return report
    ref_checkpoints = _manifests(CheckpointStore(reference.record.checkpoint_uri))
    if not ref_checkpoints:
        report.reason = "it restarts from scratch (the uninterrupted run never committed a checkpoint)"
        report.diagnosis.append(
            "the script never saved a checkpoint through the multispot contract, so every preemption "
            "throws away all the work done so far: restore and save with multispot.runtime.Checkpointer "
            "(TrainingState for PyTorch, or an integration: docs/adopt.md)"
        )
        return report
    if intr.state != "SUCCEEDED":
        report.reason = f"the interrupted run ended {intr.state}"
        report.diagnosis.append(
            f"the interrupted run ended {intr.state} after {intr.attempts} attempts ({', '.join(intr.outcomes)}): "
            f"see `multispot logs {intr.job_id}`"
        )
        return report
    if ref.metrics is None or intr.metrics is None:
        report.outcome, report.reason = "inconclusive", f"no {METRICS} to compare"
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
    _diagnose_checkpoints(report, reference, interrupted)
    if report.differences:
        report.reason = "the interrupted run did not end like the uninterrupted one"
        return report
    # The ends match: that proves something only if the run was interrupted and resumed.
    missed = [f["fault"] for f in report.exercised["faults"] if not f["fired"]]
    if intr.preemptions == 0:
        report.outcome, report.reason = "inconclusive", "the interrupted run was never preempted"
        report.diagnosis.append(
            "the interrupted run finished before the schedule: nothing was proven; pass a shorter --schedule"
        )
    elif missed:
        report.outcome = "inconclusive"
        report.reason = f"planned fault(s) never fired: {', '.join(missed)}"
        report.diagnosis.append(
            "the run ended before every planned fault could fire (or they landed differently): pass a "
            "--schedule with earlier times, or more steps"
        )
    elif report.exercised["resumed_attempts"] == 0:
        report.outcome = "inconclusive"
        report.reason = "no attempt restored a committed checkpoint"
        report.diagnosis.append(
            "every attempt after a preemption started from scratch: restore with Checkpointer.restore / "
            "restore_with, TrainingState.restore or an integration, or give the run more time before "
            "its first preemption"
        )
    elif report.checkpoints_compared == 0:
        report.outcome, report.reason = "inconclusive", "no checkpoint could be compared between the runs"
        report.diagnosis.append(
            "the runs saved no checkpoint at the same step: save on step counts (checkpoint.every_steps, "
            "which --every-steps sets) so both runs save at the same steps"
        )
    else:
        report.outcome = "spot-ready"
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
    features = _script_features(reference)
    if divergent is None:
        report.diagnosis.append(
            f"all {len(common)} checkpoints saved at the same steps are identical, yet the final metrics "
            "differ: state that is not in the checkpoint changes the end of the run. Suspects: "
            + _carried_suspects(features)
            + "; or side files the script writes outside the checkpoint (they are not restored)"
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
    report.diagnosis.extend(_torch_components(ref_store, int_store, divergent, files, features))


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


# What a script's source shows it has, by the words it uses: the diagnosis suggests only state
# the script has (no "pass the optimizer" to a script without one).
_FEATURES = {
    "optimizer": r"torch\.optim\.(?!lr_scheduler)|\boptim\.[A-Z]|Optimizer\b",
    "scheduler": r"lr_scheduler|Scheduler\b",
    "scaler": r"GradScaler",
    "rng": r"dropout|Dropout|randperm|shuffle|random\.",
    "hidden": r"nn\.(LSTM|GRU|RNN)\b|\bhidden\b|init_hidden|repackage_hidden",
    "ema": r"\bema\b|\bEMA\b|ExponentialMovingAverage|AveragedModel|swa_utils",
    "accumulator": r"accumulat|running_(loss|mean|sum|avg)|total_loss\s*\+=|moving_average",
    "data": r"DataLoader|\biter\(|\bnext\(|Sampler\b",
}
_CARRIED = {
    "hidden": "the RNN hidden state carried from batch to batch (a resumed attempt restarts it from zeros "
    "mid-epoch): save it in the checkpoint (TrainingState extra) or reset it at points both runs share",
    "ema": "an exponential moving average / averaged model of the weights: save it with the model",
    "accumulator": "accumulators carried across steps (running sums, gradient accumulation): save them or "
    "reset them at checkpoint boundaries",
    "data": "the data position: an iterator or DataLoader resumed at the start of its epoch repeats or "
    "skips batches; restore the batch position and make the order depend only on (seed, epoch)",
}


def _script_features(run: api.Run) -> set[str] | None:
    """Which kinds of state the job's script mentions (None: its source could not be read)."""
    try:
        job = run.job
    except Exception:  # a record from an older version: no suggestions narrowed by source
        return None
    base = Path(job.source_dir or ".")
    scripts = [base / arg for arg in job.command if arg.endswith(".py") and (base / arg).is_file()]
    if not scripts and base.is_dir():
        scripts = sorted(base.glob("*.py"))[:20]
    try:
        text = "\n".join(path.read_text(errors="replace") for path in scripts)
    except OSError:
        return None
    if not text:
        return None
    return {name for name, pattern in _FEATURES.items() if re.search(pattern, text)}


def _carried_suspects(features: set[str] | None) -> str:
    found = [_CARRIED[k] for k in _CARRIED if features is None or k in features]
    if not found:
        found = [_CARRIED["data"], _CARRIED["accumulator"]]
    return "; ".join(found)


def _torch_components(
    ref: CheckpointStore,
    intr: CheckpointStore,
    step: int,
    files: list[str],
    features: set[str] | None = None,
) -> list[str]:
    """For TrainingState checkpoints (state.pt), name the parts that differ and, of the state the
    script has, what the checkpoint never saved."""
    states = _load_states(ref, intr, step) if "state.pt" in files else None
    if states is None:
        if features and features & set(_CARRIED):
            return ["suspects, state carried between steps: " + _carried_suspects(features)]
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
    has = features if features is not None else set(hints)
    # "rng" and "progress" are always the runtime's to save; optimizer/scheduler only if the script has one
    missing = [h for k, h in hints.items() if k not in a and (k in has or k in ("rng", "progress"))]
    out += missing
    if not missing and set(differing) <= {"model", "extra", "rng"}:
        saved = ", ".join(k for k in ("optimizer", "scheduler", "rng", "progress") if k in a)
        out.append(
            f"only the model differs although what the checkpoint holds ({saved}) was restored: state "
            "carried between steps that the checkpoint does not hold is the suspect: "
            + _carried_suspects(features)
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
