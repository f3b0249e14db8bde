"""Job and attempt states, the provider's handle on an attempt, and what an attempt used."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any


class JobState(str, enum.Enum):
    PENDING = "PENDING"  # accepted by multispot, nothing submitted yet
    SUBMITTED = "SUBMITTED"  # the provider accepted the request
    STARTING = "STARTING"  # waiting for capacity, pulling the image, staging code
    RUNNING = "RUNNING"
    PREEMPTED = "PREEMPTED"  # capacity was reclaimed; the attempt is over
    RECOVERING = "RECOVERING"  # the job (not an attempt) between a preemption and the next attempt running
    NO_CAPACITY = "NO_CAPACITY"  # an attempt outcome: the pool had nothing to give within max_wait
    SWITCHED = "SWITCHED"  # an attempt outcome: the policy moved the job elsewhere (saved on the notice)
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def terminal(self) -> bool:
        """No further change for an attempt in this state."""
        return self in _ATTEMPT_OVER

    @property
    def job_terminal(self) -> bool:
        """No further attempt will be made for a job in this state."""
        return self in _JOB_OVER


_JOB_OVER = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT})
_ATTEMPT_OVER = _JOB_OVER | {JobState.PREEMPTED, JobState.NO_CAPACITY, JobState.SWITCHED}


@dataclass(frozen=True)
class Placement:
    """Where one attempt runs."""

    provider: str
    market: str  # "spot" | "on-demand"
    region: str | None = None
    instance_type: str | None = None
    count: int = 1
    price_per_hour: float | None = None  # per instance, in USD, when known

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Placement:
        return cls(**data)

    def __str__(self) -> str:
        where = "/".join(x for x in (self.region, self.instance_type) if x)
        return f"{self.provider}{':' + where if where else ''} ({self.market})"


@dataclass(frozen=True)
class Handle:
    """The provider's name for one attempt; JSON-serialisable so the job store can keep it."""

    provider: str
    id: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Handle:
        return cls(**data)


@dataclass(frozen=True)
class ProviderStatus:
    """What the provider says of an attempt right now."""

    state: JobState
    message: str = ""
    interruptions: int = 0  # preemptions the service absorbed itself within this attempt
    native_state: str = ""  # the provider's own words, for the user
    started: float | None = None  # when the attempt began running, as the provider saw it (unix time)
    ended: float | None = None


@dataclass(frozen=True)
class Usage:
    """What one attempt used, as the provider reports it."""

    runtime_seconds: float  # wall time the attempt ran
    billable_seconds: float  # per instance, as the provider bills it
    instance_type: str | None
    count: int
    market: str
    region: str | None = None
    source: str = ""  # where the figures came from, e.g. "DescribeTrainingJob"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        return cls(**data)


@dataclass
class Attempt:
    """One try at running the job on one placement, as the job store keeps it."""

    job_id: str
    n: int  # 1, 2, ...
    placement: Placement
    state: JobState = JobState.PENDING
    handle: Handle | None = None
    message: str = ""
    native_state: str = ""
    interruptions: int = 0
    submitted: float | None = None  # unix times
    started: float | None = None
    ended: float | None = None
    usage: Usage | None = None
    last_checkpoint: float | None = None  # unix time of the last checkpoint this attempt committed

    @property
    def outcome(self) -> str | None:
        """How the attempt ended, or None while it runs."""
        return self.state.value if self.state.terminal else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "state": self.state.value,
            "outcome": self.outcome,
            "provider": self.placement.provider,
            "market": self.placement.market,
            "region": self.placement.region,
            "instance_type": self.placement.instance_type,
            "handle": self.handle.id if self.handle else None,
            "message": self.message,
            "interruptions": self.interruptions,
            "submitted": iso_time(self.submitted),
            "started": iso_time(self.started),
            "ended": iso_time(self.ended),
            "usage": self.usage.to_dict() if self.usage else None,
        }


def iso_time(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat(timespec="seconds")
