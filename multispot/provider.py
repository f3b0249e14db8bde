"""The Provider protocol every adapter implements.

A provider translates a neutral Job into its service's native request (``render``, pure) and
drives one attempt through the service (``submit``/``status``/``logs``/``cancel``/``usage``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from multispot.status import Handle, Placement, ProviderStatus, Usage

if TYPE_CHECKING:
    from multispot.job import Job


def unknown_options(provider: str, options: Iterable[str], known: Iterable[str]) -> list[tuple[str, str]]:
    """A ValidationFailed problem for each key of ``provider_options.<provider>`` not in ``known``."""
    known = list(known)
    return [
        (f"provider_options.{provider}.{key}", f"unknown option: known are {', '.join(known)}")
        for key in options
        if key not in known
    ]


# --------------------------------------------------------------------------- protocol


@dataclass(frozen=True)
class Capability:
    """Something a provider can or cannot do, with the reason shown before submit."""

    name: str
    supported: bool
    reason: str = ""


@dataclass(frozen=True)
class LaunchContext:
    """What one attempt needs beyond the Job: identity, resolved env, and the storage contract.
    ``multispot.jobenv.build`` turns it into the variables a provider sets inside the job."""

    job_id: str
    attempt: int
    checkpoint_uri: str
    output_uri: str
    env: dict[str, str] = field(default_factory=dict)  # resolved at submit, never stored
    submitted_at: float = 0.0  # when the job (not the attempt) was accepted: trace time starts here
    workdir: str | None = None  # the submitter's directory, for providers that run without source_dir


@dataclass(frozen=True)
class BillingRule:
    """How a provider bills an attempt: the core prices usage with it and never names a cloud.

    ``spot_rate``: the market whose price applies to spot billable time. SageMaker managed spot
    reports shortened billable seconds and bills them at the on-demand rate, so its rule is
    ``"on-demand"``; everyone else bills spot time at the spot rate.
    """

    text: str  # one line for reports: what is billed and at which rate
    spot_rate: str = "spot"
    measured_source: str = ""  # the billing API `cost --measured` asks, if any


@runtime_checkable
class Provider(Protocol):
    """An adapter. Everything the core needs to know about a cloud comes through here (or through
    the adapter's entry points: ``multispot.job_environments`` for the runtime inside a job,
    ``multispot.price_sources`` for catalog refresh), so no core module branches on a cloud's name."""

    name: str
    capabilities: tuple[Capability, ...]
    billing: BillingRule

    def notice_seconds(self, job: Job) -> float:
        """Seconds between the preemption notice and the hard stop, for this job."""
        ...

    def placements(self, job: Job) -> list[Placement]:
        """Every placement this provider offers for the job, in both markets (spot and on-demand),
        cheapest first within a market. Never reads ``spot.policy``: the policy picks the market
        (``multispot.plan``)."""
        ...

    def default_uri(self, kind: str, job_id: str, job: Job) -> str:
        """Where ``kind`` ("checkpoints" or "outputs") lives when the job names no URI."""
        ...

    def validate(self, job: Job, placement: Placement) -> None:
        """Raise ValidationFailed with field paths; nothing may be uploaded before this passes."""
        ...

    def render(self, job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, Any]:
        """The native request, JSON-serialisable, with no side effect."""
        ...

    def submit(self, job: Job, placement: Placement, ctx: LaunchContext) -> Handle:
        """Start the attempt. Idempotent on (job_id, attempt): a retry never starts two."""
        ...

    def status(self, handle: Handle) -> ProviderStatus: ...

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]: ...

    def cancel(self, handle: Handle) -> None: ...

    def usage(self, handle: Handle) -> Usage: ...


@runtime_checkable
class Drainable(Protocol):
    """A provider that can end a running attempt the way a preemption would: the notice (SIGTERM
    and the notice source), then the hard stop. The controller uses it to move a job mid-attempt
    when its policy says so; the runtime saves on the notice, so nothing committed is lost."""

    def drain(self, handle: Handle) -> None: ...
