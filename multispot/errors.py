"""Every error multispot raises on purpose, in one tree; the message of each is meant for the user.

::

    MultispotError
    ├── JobSpecError (ValueError)     the job spec cannot be used: Problems with field paths and fixes
    ├── JobNotFound                   no such job in the job store (a user's typo, not a cloud's doing)
    ├── StoreError                    the job store cannot be used (locked, corrupt, emptied, unwritable)
    ├── ProviderError                 something between multispot and a provider
    │   ├── ProviderNotFound          not installed / not registered: the message has the install command
    │   ├── ValidationFailed          this provider cannot run the job as written: Problems
    │   ├── CapacityError             no capacity or quota for this placement now: the policy decides
    │   ├── AttemptLost               the cloud lost this attempt (its job is gone at the service)
    │   ├── TransientProviderError    throttling / 5xx that outlived the adapter's retries
    │   └── UnknownProviderState      a native state the adapter's table does not know: never guessed
    ├── CheckpointError
    │   ├── NoCheckpoint              nothing committed to restore
    │   ├── CheckpointExists          that step is committed already (steps are never overwritten)
    │   ├── SaveAbandoned             a save cancelled before it committed (the notice ran out)
    │   ├── ChecksumMismatch          a restored file's bytes do not match its manifest: not trusted
    │   └── ManifestError (ValueError) a MANIFEST.json that is not a valid manifest: a torn step
    ├── SecretUnavailable             a job's secret reference could not be resolved inside the job
    ├── CatalogError
    │   ├── UserEditedCatalog         refresh would overwrite a catalog file edited by hand
    │   └── NoMatchingInstance        nothing in the catalog meets the job's resources
    ├── MissingExtra (ImportError)    an optional extra is needed: the message has the install command
    └── ServerError                   the multispot server refused a request (no or a bad token, too
                                      large, malformed) or cannot be reached: its HTTP status and why

Adapters map their SDK's exceptions onto this tree at their seam (``provider.py``): throttling and
5xx are retried with backoff there, and only what survives the retries becomes
``TransientProviderError``; lost capacity is ``CapacityError``; nothing else is taken as either.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable


class Problem(typing.NamedTuple):
    """One thing wrong with a job: the field path, what is wrong and the fix, and the YAML line."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path}{where}: {self.message}"


def problems_of(items: Iterable[Problem | tuple[str, str]]) -> list[Problem]:
    """Problems from Problems or (path, message) pairs."""
    return [item if isinstance(item, Problem) else Problem(*item) for item in items]


class MultispotError(Exception):
    """Base of every error multispot raises on purpose; the message is meant for the user."""


class JobSpecError(MultispotError, ValueError):
    """A job spec that cannot be used; every problem names its field path and the fix."""

    def __init__(self, problems: Iterable[Problem | tuple[str, str]], source: str | None = None) -> None:
        self.problems = problems_of(problems)
        self.source = source
        head = f"invalid job spec{f' in {source}' if source else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class JobNotFound(MultispotError):
    """No job of that id or name in the job store."""


class StoreError(MultispotError):
    """The job store cannot be used as it is; the message says why and what to do."""


class ProviderError(MultispotError):
    pass


class ProviderNotFound(ProviderError):
    pass


class ValidationFailed(ProviderError):
    """The provider cannot run this job as written; ``problems`` name field paths and fixes."""

    def __init__(self, provider: str, problems: Iterable[Problem | tuple[str, str]]) -> None:
        self.provider = provider
        self.problems = problems_of(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{provider} cannot run this job:\n{lines}")


class CapacityError(ProviderError):
    """No capacity (or quota) for this placement right now; the policy decides what next."""


class AttemptLost(ProviderError):
    """The service has no record of an attempt it accepted: the attempt is lost capacity."""


class TransientProviderError(ProviderError):
    """Throttling or a server error that outlived the adapter's retries; the controller retries later."""


class UnknownProviderState(ProviderError):
    """The service reported a state the adapter's table does not know: never guessed."""


class CheckpointError(MultispotError):
    pass


class NoCheckpoint(CheckpointError):
    pass


class CheckpointExists(CheckpointError):
    pass


class SaveAbandoned(CheckpointError):
    """A save was cancelled before it committed (e.g. the preemption notice left too little time)."""


class ChecksumMismatch(CheckpointError):
    """A file read from a restored checkpoint does not match its manifest (raised at the end of the
    stream, before its bytes are returned or trusted)."""


class ManifestError(CheckpointError, ValueError):
    """A MANIFEST.json that does not parse as a manifest: its step counts as torn."""


class SecretUnavailable(MultispotError):
    """A secret reference (``Job.secrets``) could not be resolved where the job runs; the message
    names the secret and its reference, never a value."""


class CatalogError(MultispotError):
    pass


class UserEditedCatalog(CatalogError):
    """Refresh would overwrite a catalog file the user changed by hand."""


class NoMatchingInstance(CatalogError):
    """Nothing in the catalog meets the job's resources; the message lists the closest offers."""

    def __init__(self, message: str, closest: list[typing.Any]) -> None:
        self.closest = closest
        lines = [message]
        if closest:
            lines.append("closest options:")
            lines += [
                f"  - {o.provider} {o.region} {o.instance_type} ({o.accelerators}, {_fmt(o.vcpus)} vCPU, "
                f"{_fmt(o.memory_gb)} GiB)"
                for o in closest
            ]
        super().__init__("\n".join(lines))


class MissingExtra(MultispotError, ImportError):
    """An optional extra is not installed; the message says which ``pip install`` brings it."""


class ServerError(MultispotError):
    """The multispot server refused a request or cannot be reached; ``status`` is the HTTP status
    (0: no answer) and ``field`` the request field at fault, when one is."""

    def __init__(self, message: str, status: int = 0, field: str | None = None) -> None:
        self.status = status
        self.field = field
        super().__init__(message)


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"
