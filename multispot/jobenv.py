"""The in-job environment contract: the MULTISPOT_* names, the one builder, the one reader.

A provider launches an attempt with the variables ``build`` returns (every provider, the local
one included, calls it: nothing else spells these names). Inside the job, ``read`` turns them
back into a ``JobEnv``. A script started by hand on a service (or on a laptop) still works: a
service's own variables are recognised by the objects registered under the entry-point group
``multispot.job_environments`` (each adapter registers one, exactly as a third party would), and
with none at all checkpoints go to ``./checkpoints``. This module imports no provider and no SDK.

Precedence, per field: a MULTISPOT_* variable, then what the recognised service says, then the
default (``manual``: ``./checkpoints``, ``./outputs``, a 30 s notice).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from multispot.job import Job
    from multispot.provider import LaunchContext

# --------------------------------------------------------------------------- the names

PREFIX = "MULTISPOT_"
JOB_ID = "MULTISPOT_JOB_ID"
ATTEMPT = "MULTISPOT_ATTEMPT"
PROVIDER = "MULTISPOT_PROVIDER"
CHECKPOINT_URI = "MULTISPOT_CHECKPOINT_URI"
CHECKPOINT_DIR = "MULTISPOT_CHECKPOINT_DIR"  # a local folder the service syncs or mounts: wins over the URI
OUTPUT_URI = "MULTISPOT_OUTPUT_URI"
NOTICE_SECONDS = "MULTISPOT_NOTICE_SECONDS"
CHECKPOINT_INTERVAL = "MULTISPOT_CHECKPOINT_INTERVAL"
CHECKPOINT_KEEP = "MULTISPOT_CHECKPOINT_KEEP"
CHECKPOINT_EVERY_STEPS = "MULTISPOT_CHECKPOINT_EVERY_STEPS"
# JSON of the job's checkpoint.transfer ({"part_size_mib": 64, "concurrency": 16, ...}), when set.
CHECKPOINT_TRANSFER = "MULTISPOT_CHECKPOINT_TRANSFER"
HYPERPARAMETERS = "MULTISPOT_HYPERPARAMETERS"
# JSON {name: reference} of Job.secrets: references only, resolved inside the job by
# multispot.runtime.secrets (which removes this variable once the values are in the environment).
SECRETS = "MULTISPOT_SECRETS"
INPUT_PREFIX = "MULTISPOT_INPUT_"
# Set by the local provider's supervisor, not by ``build``.
NOTICE_FILE = "MULTISPOT_NOTICE_FILE"  # a JSON file the supervisor writes when it sends the notice
READY_FILE = "MULTISPOT_READY_FILE"  # the runtime writes it once imports and restore are done
SAVED_FILE = "MULTISPOT_SAVED_FILE"  # the runtime rewrites it after each committed save (local provider)
FAULT = "MULTISPOT_FAULT"  # testing hook: ``kill-in-save:N`` (see multispot.runtime.checkpointer)
# The torchrun convention, read when set (process-level: wins over a service's node-level rank).
RANK = "RANK"
WORLD_SIZE = "WORLD_SIZE"

GROUP = "multispot.job_environments"
MANUAL = "manual"  # the provider name of a job no service and no MULTISPOT_PROVIDER claims
DEFAULT_INTERVAL = 600.0
DEFAULT_KEEP = 3
DEFAULT_NOTICE_SECONDS = 30.0  # assumed when nothing says: the shortest notice of the clouds we know


def input_var(name: str) -> str:
    """The variable carrying input ``name``: ``MULTISPOT_INPUT_<NAME>``."""
    return INPUT_PREFIX + name.upper()


# --------------------------------------------------------------------------- the builder


def build(
    job: Job,
    ctx: LaunchContext,
    provider: str,
    notice_seconds: float,
    *,
    checkpoint_uri: str | None = None,
    checkpoint_dir: str | None = None,
    output_uri: str | None = None,
    inputs: Mapping[str, str] | None = None,
    in_command: Collection[str] = (),
) -> dict[str, str]:
    """The variables a provider sets inside the job, then the job's own (``ctx.env``).

    ``checkpoint_uri``/``output_uri`` default to the context's, ``inputs`` (name → URI as the job
    sees it) to the job's. ``checkpoint_dir``: a local folder the service keeps in step with the
    checkpoint URI. ``in_command``: names the service binds in the command line instead (Azure ML
    knows its mount paths only there); they are left out here.
    """
    env: dict[str, str] = {
        JOB_ID: ctx.job_id,
        ATTEMPT: str(ctx.attempt),
        PROVIDER: provider,
        CHECKPOINT_URI: ctx.checkpoint_uri if checkpoint_uri is None else checkpoint_uri,
        OUTPUT_URI: ctx.output_uri if output_uri is None else output_uri,
        NOTICE_SECONDS: f"{notice_seconds:g}",
    }
    if checkpoint_dir is not None:
        env[CHECKPOINT_DIR] = checkpoint_dir
    env[CHECKPOINT_KEEP] = str(job.checkpoint.keep)
    env[HYPERPARAMETERS] = job.hyperparameters_json()
    if job.secrets:
        env[SECRETS] = json.dumps(dict(job.secrets), sort_keys=True)
    if job.checkpoint.every_steps is not None:
        env[CHECKPOINT_EVERY_STEPS] = str(job.checkpoint.every_steps)
    if job.checkpoint.interval is not None:
        env[CHECKPOINT_INTERVAL] = f"{job.checkpoint.interval:g}"
    if job.checkpoint.transfer is not None:
        env[CHECKPOINT_TRANSFER] = job.checkpoint.transfer.model_dump_json()
    for name, uri in (job.inputs if inputs is None else inputs).items():
        env[input_var(name)] = uri
    for name in in_command:
        env.pop(name, None)
    env.update(ctx.env)
    return env


# --------------------------------------------------------------------------- what a service says


@dataclass(frozen=True)
class ServiceEnv:
    """What a service's own variables say about the job; None where they say nothing."""

    provider: str
    notice_seconds: float
    job_id: str | None = None
    checkpoint_uri: str | None = None  # a file:// URI when the service gives a local folder
    output_uri: str | None = None
    rank: int | None = None
    world_size: int | None = None
    hyperparameters: Mapping[str, object] | None = None


@runtime_checkable
class JobEnvironment(Protocol):
    """One service, seen from inside its job, without its SDK (entry-point group
    ``multispot.job_environments``; the entry point's name is the provider's name and its
    object has these members)."""

    name: str  # the provider name, as in MULTISPOT_PROVIDER
    notice_seconds: float

    def recognises(self, environ: Mapping[str, str]) -> bool:
        """Whether these variables are this service's (a job started without multispot)."""
        ...

    def describe(self, environ: Mapping[str, str]) -> ServiceEnv:
        """What the variables say; called when recognised or when MULTISPOT_PROVIDER names it."""
        ...


def job_environments() -> list[JobEnvironment]:
    """Every registered job environment, by name. One that fails to load is left out with a
    warning: a broken plugin must not stop a training script from finding its checkpoints."""
    found: list[JobEnvironment] = []
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            obj = entry.load()
        except Exception as exc:  # an ImportError, or anything the plugin's import raises
            warnings.warn(f"job environment {entry.name!r} ({entry.value}) did not load: {exc}", stacklevel=2)
            continue
        if isinstance(obj, type):
            obj = obj()
        if not isinstance(obj, JobEnvironment):
            warnings.warn(
                f"job environment {entry.name!r} ({entry.value}) lacks name/notice_seconds/"
                "recognises/describe: left out",
                stacklevel=2,
            )
            continue
        found.append(obj)
    return found


def _service(env: Mapping[str, str], named: str | None, known: Iterable[JobEnvironment]) -> ServiceEnv | None:
    for candidate in known:
        if (candidate.name == named) if named else candidate.recognises(env):
            return candidate.describe(env)
    return None


# --------------------------------------------------------------------------- the reader


def file_uri(path: str) -> str:
    """A local path as an absolute file:// URI."""
    return Path(path).expanduser().resolve().as_uri()


def local_path(uri: str | None) -> Path | None:
    """The folder a file:// URI names, or None for any other URI."""
    if not uri or not uri.startswith("file://"):
        return None
    return Path(unquote(urlparse(uri).path))


@dataclass(frozen=True)
class JobEnv:
    job_id: str | None
    attempt: int
    provider: str  # the provider's name ("local", an adapter's), or "manual"
    checkpoint_uri: str  # where the contract lives (a file:// URI when the service mounts/syncs a dir)
    output_uri: str | None
    notice_seconds: float
    checkpoint_interval: float = DEFAULT_INTERVAL
    checkpoint_keep: int = DEFAULT_KEEP
    checkpoint_every_steps: int | None = None
    checkpoint_transfer: dict[str, int] = field(default_factory=dict)  # MULTISPOT_CHECKPOINT_TRANSFER
    rank: int = 0
    world_size: int = 1
    hyperparameters: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(
        default_factory=dict
    )  # name (lowercase) -> URI, from MULTISPOT_INPUT_<NAME>

    @property
    def checkpoint_dir(self) -> Path | None:
        """The checkpoint location as a local folder, for frameworks that want one (None when
        checkpoints live behind a non-file URI)."""
        return local_path(self.checkpoint_uri)

    @property
    def output_dir(self) -> Path | None:
        """The output location as a local folder, when it is one."""
        return local_path(self.output_uri)

    @property
    def resumed(self) -> bool:
        return self.attempt > 1


def _hyperparameters(text: str | None, service: Mapping[str, object] | None) -> dict[str, str]:
    hyper: object = service or {}
    if text:
        try:
            hyper = json.loads(text)
        except json.JSONDecodeError:
            hyper = {}
    if not isinstance(hyper, dict):  # valid JSON but not an object: ignore it like unreadable JSON
        hyper = {}
    return {str(k): str(v) for k, v in hyper.items()}


def _transfer(raw: str | None) -> dict[str, int]:
    """MULTISPOT_CHECKPOINT_TRANSFER as {setting: integer}; ValueError naming the variable if not."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in data.values()):
            raise TypeError
        return {str(k): int(v) for k, v in data.items()}
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{CHECKPOINT_TRANSFER} must be a JSON object of integers, e.g. "
            f'{{"part_size_mib": 64, "concurrency": 16}}; got {raw[:200]!r}'
        ) from exc


def read(environ: Mapping[str, str] | None = None, known: Iterable[JobEnvironment] | None = None) -> JobEnv:
    """The running job's view of itself. ``known``: the job environments to consult (default:
    those registered under ``multispot.job_environments``)."""
    env = os.environ if environ is None else environ
    named = env.get(PROVIDER) or None
    service = _service(env, named, job_environments() if known is None else known)
    provider = named or (service.provider if service else MANUAL)
    # A local dir the service syncs or mounts wins over the URI: writes go at local-disk speed.
    if env.get(CHECKPOINT_DIR):
        ckpt = file_uri(env[CHECKPOINT_DIR])
    else:
        ckpt = env.get(CHECKPOINT_URI) or (service and service.checkpoint_uri) or file_uri("checkpoints")
    output = env.get(OUTPUT_URI) or (service.output_uri if service else None)
    if output is None and provider == MANUAL:
        output = file_uri("outputs")
    notice = env.get(NOTICE_SECONDS)
    rank, world = env.get(RANK), env.get(WORLD_SIZE)
    return JobEnv(
        job_id=env.get(JOB_ID) or (service.job_id if service else None),
        attempt=int(env.get(ATTEMPT) or "1"),
        provider=provider,
        checkpoint_uri=ckpt,
        output_uri=output,
        notice_seconds=float(notice)
        if notice
        else service.notice_seconds
        if service
        else DEFAULT_NOTICE_SECONDS,
        checkpoint_interval=float(env.get(CHECKPOINT_INTERVAL) or DEFAULT_INTERVAL),
        checkpoint_keep=int(env.get(CHECKPOINT_KEEP) or DEFAULT_KEEP),
        checkpoint_every_steps=int(env[CHECKPOINT_EVERY_STEPS]) if env.get(CHECKPOINT_EVERY_STEPS) else None,
        checkpoint_transfer=_transfer(env.get(CHECKPOINT_TRANSFER)),
        rank=int(rank) if rank else (service.rank if service and service.rank is not None else 0),
        world_size=int(world)
        if world
        else (service.world_size if service and service.world_size is not None else 1),
        hyperparameters=_hyperparameters(
            env.get(HYPERPARAMETERS), service.hyperparameters if service else None
        ),
        inputs={
            key[len(INPUT_PREFIX) :].lower(): value
            for key, value in env.items()
            if key.startswith(INPUT_PREFIX)
        },
    )
