"""multispot: ML training on the cheapest interruptible capacity, from one provider-neutral Job.

    import multispot as ms
    job = ms.Job.from_yaml("job.yaml")
    run = ms.submit(job, provider="local")
    run.wait(show=True); run.cost()

Attributes load on first use, so ``import multispot`` stays cheap and never imports a cloud SDK.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Job": "multispot.job",
    "Resources": "multispot.job",
    "CheckpointSpec": "multispot.job",
    "SpotSpec": "multispot.job",
    "Limits": "multispot.job",
    "Target": "multispot.job",
    "JobSpecError": "multispot.job",
    "JobState": "multispot.status",
    "Placement": "multispot.status",
    "Run": "multispot.api",
    "plan": "multispot.api",
    "submit": "multispot.api",
    "dry_run": "multispot.api",
    "simulate": "multispot.api",
    "prices": "multispot.api",
    "get": "multispot.api",
    "runs": "multispot.api",
    "savings": "multispot.api",
    "CostReport": "multispot.billing",
    "SavingsReport": "multispot.billing",
    "MultispotError": "multispot.provider",
}

if TYPE_CHECKING:
    from multispot.api import Run, dry_run, get, plan, prices, runs, savings, simulate, submit
    from multispot.billing import CostReport, SavingsReport
    from multispot.errors import JobSpecError, MultispotError
    from multispot.job import CheckpointSpec, Job, Limits, Resources, SpotSpec, Target
    from multispot.status import JobState, Placement


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'multispot' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*_EXPORTS, "__version__"])


__all__ = [
    "CheckpointSpec",
    "CostReport",
    "Job",
    "JobSpecError",
    "JobState",
    "Limits",
    "MultispotError",
    "Placement",
    "Resources",
    "Run",
    "SavingsReport",
    "SpotSpec",
    "Target",
    "dry_run",
    "get",
    "plan",
    "prices",
    "runs",
    "savings",
    "simulate",
    "submit",
]
