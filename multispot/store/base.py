"""What every job store offers, whatever it keeps its rows in: the records, and the ``Store`` protocol.

Two backends implement it: SQLite (``multispot.store.sqlite``, the embedded default) and
PostgreSQL (``multispot.store.postgres``, for a team's server and its controller workers). The
contract tests in ``tests/contract/test_store_contract.py`` run the same checks on both.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from multispot.errors import JobNotFound, MultispotError, StoreError
from multispot.status import Attempt, JobState

DEFAULT_TEAM = "default"
# A heartbeat this far in the future (a clock that jumped, or another host's skew) counts as
# stale: otherwise the lease would stay held until the clock caught up.
FUTURE_SLACK = 1.0
# A worker killed outright (kill -9, a lost host) never removes its row. Rows whose heartbeat is
# older than this are deleted when any worker registers: a day is far past any ``stale_after``.
WORKER_ROWS_KEPT_FOR = 86400.0
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_Row = TypeVar("_Row")
# How a backend is asked for rows by a reference (``by_ref``): "id", rows of that id; "name", the
# newest row of that name (one at most); "prefix", at most two rows whose id is LIKE the value,
# with ``\`` as the escape character (the reference's own ``%``, ``_`` and ``\`` come escaped).
RefMatch = Literal["id", "name", "prefix"]
Select = Callable[[RefMatch, str], Sequence[_Row]]


def home_path() -> Path:
    """``$MULTISPOT_HOME``, default ``~/.multispot``, without creating it."""
    return Path(os.environ.get("MULTISPOT_HOME") or Path.home() / ".multispot").expanduser()


def home() -> Path:
    """``$MULTISPOT_HOME``, created on first use readable by its owner only (mode 0700): it holds
    specs, logs and checkpoints."""
    path = home_path()
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass  # another process created it first
        else:
            os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; this is not
    return path


def new_job_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def new_id(prefix: str) -> str:
    """An id for a user, a token or a worker row: a prefix that says which, and 12 random hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def owner_id() -> str:
    """``host:pid:token`` naming this controller process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """False only when ``owner`` (``host:pid:...``) names a process of this host that is gone."""
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return True  # another machine: only the heartbeat can tell
    try:
        pid = int(rest.partition(":")[0])
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Exited but not yet reaped by its parent (a killed controller whose parent is slow to reap,
    or a notebook kernel that never does): it will never heartbeat again. Linux only; elsewhere False."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def lease_free(holder: str | None, beat: float | None, claimant: str, now: float, stale_after: float) -> bool:
    """May ``claimant`` take a lease held by ``holder`` whose last heartbeat was ``beat``?"""
    beat = beat or 0.0
    return (
        holder in (None, claimant)
        or now - beat > stale_after
        or beat > now + FUTURE_SLACK
        or not owner_alive(holder)
    )


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"


def check_token_hash(token_hash: str) -> None:
    """Refuse anything but a sha256 hex digest: a token itself must never reach the store."""
    if not _SHA256_HEX.fullmatch(token_hash):
        raise StoreError(
            "add_token takes the sha256 hex digest of a token (64 lowercase hex digits), never the "
            "token itself: hashlib.sha256(token.encode()).hexdigest()"
        )


def by_ref(ref: str, select: Select[_Row], not_found: MultispotError, ambiguous: MultispotError) -> _Row:
    """The row ``ref`` names, one rule for every backend and table: the row of that id, else the
    newest of that name, else the one whose id starts with ``ref`` (``ambiguous`` if several do);
    ``not_found`` if none. The backend supplies only the queries (``select``, see ``RefMatch``)."""
    rows = select("id", ref)
    if not rows:
        rows = select("name", ref)
    if not rows:
        rows = select("prefix", ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if len(rows) > 1:
            raise ambiguous
    if not rows:
        raise not_found
    return rows[0]


def job_by_ref(ref: str, where: str, select: Select[_Row]) -> _Row:
    """The row of the job ``ref`` names in the store at ``where`` (see ``by_ref``); JobNotFound if
    none, or if several ids start with it."""
    missing = JobNotFound(f"no job {ref!r} in {where}: `multispot list` shows the jobs")
    return by_ref(ref, select, missing, missing)


def group_by_ref(ref: str, select: Select[_Row]) -> _Row:
    """The row of the sweep or array ``ref`` names (see ``by_ref``); GroupNotFound if none or several."""
    return by_ref(
        ref,
        select,
        GroupNotFound(f"no sweep or array {ref!r} (multispot sweeps lists them)"),
        GroupNotFound(f"{ref!r} matches several sweeps/arrays: give more of the id"),
    )


def exists_already(kind: str, id_: str, where: str) -> StoreError:
    """What creating a job or group of an id taken already raises (``kind``: "job", "sweep or array")."""
    return StoreError(f"a {kind} {id_!r} exists already in {where}: {kind} ids are unique")


@dataclass
class JobRecord:
    id: str
    name: str
    spec: dict[str, Any]  # Job.to_data(): env keeps its ${VAR} references
    provider: str
    state: JobState
    checkpoint_uri: str
    output_uri: str
    options: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    ended: float | None = None
    cancel_requested: bool = False
    owner: str | None = None
    heartbeat: float | None = None
    team: str = DEFAULT_TEAM
    submitted_by: str = ""


@dataclass(frozen=True)
class Event:
    job_id: str
    attempt: int | None
    time: float
    kind: str
    message: str


@dataclass(frozen=True)
class User:
    id: str
    name: str
    team: str
    admin: bool
    created: float


@dataclass(frozen=True)
class AuditEntry:
    id: int
    time: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    started: float
    heartbeat: float


class GroupNotFound(MultispotError):
    """No sweep or array of that id or name."""


@dataclass
class Group:
    """A sweep or a job array: its spec, its state, and the lease of the driver that runs it."""

    id: str
    kind: str  # "sweep" or "array"
    name: str
    spec: dict[str, Any]
    created: float
    state: str  # running, done, stopped
    message: str = ""
    ended: float | None = None
    owner: str | None = None
    heartbeat: float | None = None


@dataclass
class Member:
    """Trial or task ``n`` of a group, and the job(s) it ran: a trial restarted from scratch runs
    a new job, so ``jobs`` holds each, newest last."""

    group_id: str
    n: int
    jobs: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""  # '' while open; succeeded, failed, pruned, abandoned, cancelled, stopped
    message: str = ""
    value: float | None = None
    created: float = 0.0

    @property
    def job_id(self) -> str:
        return self.jobs[-1]


@runtime_checkable
class Store(Protocol):
    """A job store: jobs, their attempts and events, the controllers' leases, and who may do what.

    Writes are atomic; an attempt row is inserted (keyed by job and attempt number) *before* the
    provider is asked to start it, so a controller replaced mid-job never starts an attempt twice.
    """

    # ------------------------------------------------------------- jobs
    def create_job(self, record: JobRecord) -> None: ...

    def get_job(self, ref: str) -> JobRecord:
        """By id, by name (the newest job of that name), or by a unique id prefix; JobNotFound if none."""
        ...

    def jobs(
        self, limit: int = 50, team: str | None = None, states: Collection[JobState] | None = None
    ) -> list[JobRecord]:
        """Newest first."""
        ...

    def update_job(self, job_id: str, **fields: Any) -> None: ...

    def request_cancel(self, job_id: str) -> None: ...

    # ------------------------------------------------------------- one job's controller lease
    def acquire(self, job_id: str, owner: str, stale_after: float) -> bool:
        """Become the job's controller if nobody is, or the holder is dead or silent for ``stale_after``."""
        ...

    def heartbeat(self, job_id: str, owner: str) -> bool:
        """Refresh the lease; False if another controller has taken it (the caller is fenced)."""
        ...

    def release(self, job_id: str, owner: str) -> None: ...

    def controller_alive(self, job_id: str, stale_after: float) -> bool: ...

    def lease_jobs(self, worker: str, limit: int, stale_after: float) -> list[str]:
        """Atomically claim up to ``limit`` unfinished jobs that have no owner, a stale one, or are
        ``worker``'s already; each claimed job's owner becomes ``worker`` with a fresh heartbeat."""
        ...

    # ------------------------------------------------------------- attempts
    def add_attempt(self, attempt: Attempt) -> bool:
        """Insert attempt ``n``; False if it already exists (another controller got there first)."""
        ...

    def update_attempt(self, job_id: str, n: int, **fields: Any) -> None: ...

    def attempts(self, job_id: str) -> list[Attempt]: ...

    # ------------------------------------------------------------- events
    def add_event(self, job_id: str, attempt: int | None, kind: str, message: str) -> None: ...

    def events(self, job_id: str, after: int = 0) -> list[tuple[int, Event]]: ...

    def events_of_kind(self, job_id: str, kind: str, attempt: int | None = None) -> list[tuple[int, Event]]:
        """The job's events of one kind, oldest first; only attempt ``attempt``'s when it is given."""
        ...

    # ------------------------------------------------------------- controller workers
    def register_worker(self, worker: str, host: str, pid: int) -> None: ...

    def beat_worker(self, worker: str) -> None: ...

    def workers(self, stale_after: float) -> list[WorkerInfo]:
        """The live workers: a heartbeat within ``stale_after`` s (and, on this host, a live process)."""
        ...

    def remove_worker(self, worker: str) -> None: ...

    # ------------------------------------------------------------- identity
    def create_team(self, name: str) -> None:
        """Idempotent."""
        ...

    def create_user(self, name: str, team: str, admin: bool = False) -> User:
        """A new user (its team is created if missing); StoreError if the name is taken."""
        ...

    def add_token(self, user_id: str, token_hash: str, label: str) -> str:
        """Record the sha256 hex digest of a token for ``user_id``; returns the token's id."""
        ...

    def user_by_token_hash(self, token_hash: str) -> User | None:
        """The user of an unrevoked token, or None."""
        ...

    def revoke_token(self, token_id: str) -> None: ...

    def users(self) -> list[User]: ...

    # ------------------------------------------------------------- audit
    def audit(self, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        """Record who did what to what. The entry's team is ``detail["team"]`` if given, else the
        actor's (a user's name or id), so a team's admin can read its own log."""
        ...

    def audit_log(self, limit: int = 100, team: str | None = None) -> list[AuditEntry]:
        """Newest first."""
        ...

    # ------------------------------------------------------------- sweeps and arrays
    def create_group(self, group: Group) -> None: ...

    def get_group(self, ref: str) -> Group:
        """By id, by name (the newest group of that name), or by a unique id prefix; GroupNotFound if none."""
        ...

    def groups(self, limit: int = 50) -> list[Group]:
        """Newest first."""
        ...

    def finish_group(self, group_id: str, state: str, message: str) -> None:
        """Set the group's final state once; a group already ended keeps its own."""
        ...

    def set_group_message(self, group_id: str, message: str) -> None: ...

    def acquire_group(self, group_id: str, owner: str, stale_after: float) -> bool:
        """Become the group's driver if nobody is, or the holder is dead or silent for ``stale_after``."""
        ...

    def heartbeat_group(self, group_id: str, owner: str) -> bool:
        """Refresh the driver's lease; False if another driver has taken it."""
        ...

    def release_group(self, group_id: str, owner: str) -> None: ...

    def add_member(self, member: Member) -> Member:
        """Insert ``member``; if (group, n) exists already, the stored one is returned unchanged."""
        ...

    def member(self, group_id: str, n: int) -> Member:
        """JobNotFound if the group has no member ``n``."""
        ...

    def members(self, group_id: str) -> list[Member]:
        """By ``n``."""
        ...

    def add_member_job(self, group_id: str, n: int, job_id: str) -> None:
        """Append ``job_id`` to the member's jobs (once), in one transaction."""
        ...

    def set_member_outcome(
        self, group_id: str, n: int, outcome: str, message: str = "", value: float | None = None
    ) -> None: ...

    def library_engine(self, namespace: str) -> tuple[str, dict[str, Any]]:
        """A SQLAlchemy URL and ``create_engine`` keyword arguments for a library that keeps tables
        of its own in this database (Optuna's RDB storage), apart from the store's own tables where
        the backend can (PostgreSQL: the schema ``namespace``). The URL carries the password: pass
        it to the library, never print it."""
        ...

    # ------------------------------------------------------------- upkeep
    def check(self) -> list[str]:
        """Integrity problems, if any (used by the chaos tests and ``multispot doctor``)."""
        ...

    def close(self) -> None: ...
