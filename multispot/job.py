"""The provider-neutral Job: what a user writes once, in YAML or in Python.

Only neutral vocabulary lives here; what a provider needs beyond it goes under
``provider_options.<provider>`` and is validated by that provider.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from multispot.errors import JobSpecError, Problem
from multispot.units import parse_duration

# Every pattern is used with ``fullmatch``: ``$`` would also match before a trailing newline.
JOB_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# What may follow a '$' in an env value: a ${VAR} reference, or '$$' for a literal '$'.
_ENV_DOLLAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$")
ACCELERATOR = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})(?::(\d{1,3}))?")
HYPERPARAMETER_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_ACCELERATORS = 64  # per node; no machine offered anywhere has more
# Bounds on what a spec may be, checked before anything expands it (YAML aliases share nodes,
# so a few hundred bytes can stand for billions of values).
MAX_SPEC_BYTES = 1 << 20  # a job file; real ones are a few KiB
MAX_DEPTH = 32  # nesting of mappings and lists
MAX_VALUES = 100_000  # scalars, mappings and lists, with every alias expanded
MAX_QUOTE = 60  # characters of a user's value quoted in an error message
# Schemes the checkpoint contract and the adapters understand; a plain path means file://.
URI_SCHEMES = ("file", "memory", "s3", "gs", "gcs", "az", "abfs", "abfss", "azureml")
_URI = re.compile(r"^([a-z][a-z0-9+.-]*)://(.*)$")


# --------------------------------------------------------------------------- errors


def _quote(value: Any, limit: int = MAX_QUOTE) -> str:
    """A user's value for an error message: short, whatever its size (never ``repr`` of all of it)."""
    if isinstance(value, str):
        text = repr(value[: limit + 1])
        return text if len(value) <= limit else repr(value[:limit])[:-1] + f"...' ({len(value)} chars)"
    if isinstance(value, (bool, int, float)) or value is None:
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "..."
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _control(text: str, allow: str = "") -> str | None:
    """The first control character in ``text`` (other than those in ``allow``), as an escape."""
    for char in text:
        if (ord(char) < 32 or 127 <= ord(char) < 160) and char not in allow:
            return repr(char)[1:-1]
    return None


def _no_control(text: str, what: str, allow: str = "") -> str:
    bad = _control(text, allow)
    if bad is not None:
        raise ValueError(f"{what} {_quote(text)} contains the control character {bad}: remove it")
    return text


class _Loader(yaml.SafeLoader):
    """SafeLoader without implicit timestamps: ``2026-12-01`` stays a string, so a date in a str
    field is no type error and an impossible date (``2026-13-01``) is a field problem, not a crash."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


# --------------------------------------------------------------------------- field types


def _duration(value: Any) -> float | None:
    if value is None:
        return None
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration)]


def check_uri(value: str, base_dir: str | os.PathLike[str] | None = None) -> str:
    """A storage URI multispot can use, or a local path (relative to ``base_dir``) turned into ``file://``."""
    value = _no_control(value.strip(), "the URI")
    if not value:
        raise ValueError("the URI is empty: write a path or scheme://bucket/path")
    match = _URI.fullmatch(value)
    if not match:
        if "://" in value or value.startswith(("s3:", "gs:", "az:")):
            raise ValueError(
                f"{_quote(value)} is not a URI: write scheme://bucket/path, e.g. s3://my-bucket/ckpt"
            )
        return (Path(base_dir or ".") / Path(value).expanduser()).resolve().as_uri()
    scheme, rest = match.groups()
    if scheme not in URI_SCHEMES:
        raise ValueError(f"scheme {_quote(scheme)} is not supported: use one of {', '.join(URI_SCHEMES)}")
    if scheme in ("s3", "gs", "gcs", "az", "abfs", "abfss") and not rest.split("/")[0]:
        raise ValueError(f"{_quote(value)} names no bucket or container: write {scheme}://BUCKET/path")
    if scheme == "file":
        # file://HOST/path: only an empty host (file:///abs) or localhost; 'file://ckpt' is not a
        # relative path but a host named ckpt, so it is refused rather than guessed.
        host, slash, path = rest.partition("/")
        if host not in ("", "localhost") or not slash or not path.strip("/"):
            raise ValueError(
                f"{_quote(value)} is not an absolute file URI: write file:///absolute/path, "
                "or a plain path (relative to the job file)"
            )
    return value.rstrip("/") if rest.strip("/") else value


def _trusted(info: ValidationInfo) -> bool:
    """Loading a spec accepted at submit (``Job.from_record``): what depended on that moment (the
    deadline still ahead, source_dir still there) was checked then and is not checked again."""
    return bool((info.context or {}).get("trusted"))


def _base_dir(info: ValidationInfo) -> str:
    """Where relative paths start: the YAML file's folder when loaded from one, else the cwd."""
    return str((info.context or {}).get("base_dir", "."))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Resources(_Model):
    """What to run on: an accelerator such as ``V100:1`` or an explicit instance type."""

    accelerator: str | None = Field(None, description="NAME[:COUNT] per node, e.g. 'A100:8' or 'T4'")
    instance_type: Line = Field(None, description="explicit instance/machine type; wins")
    cpus: float | None = Field(
        None, gt=0, le=100_000, allow_inf_nan=False, description="minimum vCPUs per node"
    )
    memory_gb: float | None = Field(
        None, gt=0, le=1_000_000, allow_inf_nan=False, description="minimum memory per node, GiB"
    )
    nodes: int = Field(1, ge=1, le=512)

    @field_validator("accelerator")
    @classmethod
    def _accelerator(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = ACCELERATOR.fullmatch(value.strip())
        count = int(match.group(2)) if match and match.group(2) is not None else 1
        if not match or not 1 <= count <= MAX_ACCELERATORS:
            raise ValueError(
                f"{_quote(value)} is not NAME[:COUNT] with COUNT 1-{MAX_ACCELERATORS}: "
                "write e.g. 'V100:1', 'A100:8' or 'T4'"
            )
        name, count = match.group(1).upper(), int(match.group(2) or 1)
        return f"{name}:{count}"

    @property
    def accelerator_name(self) -> str | None:
        return self.accelerator.split(":")[0] if self.accelerator else None

    @property
    def accelerator_count(self) -> int:
        return int(self.accelerator.split(":")[1]) if self.accelerator else 0


class CheckpointTransferSpec(_Model):
    """How checkpoint files move to and from an object store (``multispot.checkpoint.Transfer``)."""

    part_size_mib: int = Field(
        32, ge=5, le=5 * 1024, description="MiB per part, up and down (S3: at least 5, at most 5120)"
    )
    concurrency: int = Field(8, ge=1, le=64, description="parts in flight per file")
    read_ahead_mib: int = Field(
        256, ge=0, le=1024 * 1024, description="MiB of parts fetched ahead of the readers, per process"
    )


class CheckpointSpec(_Model):
    uri: str | None = Field(None, description="where checkpoints live; default: per provider")
    interval: Duration | None = Field(None, gt=0, description="how often the runtime saves, e.g. '10m'")
    every_steps: int | None = Field(
        None, ge=1, description="also save every N steps (when the script passes its step to should_save)"
    )
    keep: int = Field(3, ge=1, le=1000, description="how many valid checkpoints to keep")
    transfer: CheckpointTransferSpec | None = Field(
        None, description="part size and concurrency of object-store transfers; default: 32 MiB × 8"
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_uri(value, _base_dir(info))


class SpotSpec(_Model):
    """Which market to buy and when to give up on spot.

    ``policy`` is a name from the policy registry (``multispot.policy.names()``): ``spot``: spot
    only; ``on-demand``: never spot; ``fallback``: spot, then on-demand after ``fallback_after``
    preemptions or when spot has no capacity; and the deadline-oriented ones (``greedy``,
    ``diversified``, ``uniform-progress``, ``deadline-aware``).
    """

    policy: str = "spot"
    fallback_after: int = Field(3, ge=0, le=1000, description="preemptions before falling back")
    max_attempts: int = Field(20, ge=1, le=1000, description="attempts in all before the job fails")
    work: Duration | None = Field(
        None, gt=0, description="how long the job runs uninterrupted, e.g. '20h' (deadline-aware policies)"
    )
    restart_overhead: Duration = Field(
        180.0,
        ge=0,
        le=86400,
        description="from starting an attempt to useful progress (image, data, restore): what a switch costs",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"policy": data} if isinstance(data, str) else data

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        from multispot.policy.registry import names  # the registry imports no policy code for this

        if value not in names():
            raise ValueError(f"unknown policy {value!r}: use one of {', '.join(names())}")
        return value


class Limits(_Model):
    max_runtime: Duration | None = Field(None, gt=0, description="per attempt, running time")
    max_wait: Duration | None = Field(
        None, gt=0, description="per attempt, waiting for capacity plus running (SageMaker's MaxWait)"
    )
    deadline: datetime | Duration | None = Field(
        None, description="when the whole job must be done: ISO time, or a duration after submit"
    )
    max_price: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="USD per instance-hour never to exceed"
    )
    budget: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="USD for the whole job; no attempt starts past it"
    )

    @field_validator("max_runtime", "max_wait")
    @classmethod
    def _wait_covers_runtime(cls, value: float | None, info: ValidationInfo) -> float | None:
        # Checked on the field itself (not on the Job) so the problem names limits.max_wait and its line.
        if info.field_name == "max_wait":
            runtime, wait = info.data.get("max_runtime"), value
        else:
            runtime, wait = value, info.data.get("max_wait")
        if runtime and wait and wait < runtime:
            raise ValueError(
                "limits.max_wait is shorter than limits.max_runtime: max_wait covers waiting plus "
                "running, so make it at least max_runtime"
            )
        return value

    @field_validator("deadline", mode="before")
    @classmethod
    def _deadline(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and re.match(r"\d{4}-\d\d-\d\d", value.strip()):
            try:
                stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError as exc:
                raise ValueError(
                    f"{_quote(value)} is not an ISO time: write e.g. 2026-12-01T18:00:00Z"
                ) from exc
            value = stamp
        if isinstance(value, datetime):
            value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
            if not _trusted(info) and value <= datetime.now(timezone.utc):
                raise ValueError(
                    f"{value.isoformat()} has already passed: give a future time, or a duration such as 36h"
                )
            return value
        return _duration(value)


class Target(_Model):
    """One place to run, in the order the user prefers (diversification)."""

    provider: Annotated[str, AfterValidator(_no_control_value)]
    region: Line = None
    instance_type: Line = None
    market: Literal["spot", "on-demand"] | None = None


def _env_key(key: str) -> str:
    if not ENV_NAME.fullmatch(key):
        raise ValueError(
            f"{_quote(key)} is not an environment variable name: use letters, digits and '_' "
            "(at most 128), not starting with a digit"
        )
    if key.startswith("MULTISPOT_"):
        raise ValueError(f"{_quote(key)}: MULTISPOT_* variables are set by multispot; rename yours")
    return key


def _env_value(value: str) -> str:
    if "\0" in value:
        raise ValueError("contains a NUL character, which no environment variable can hold: remove it")
    for match in _ENV_DOLLAR.finditer(value):
        if match.group(0) == "$":
            raise ValueError(
                f"{_quote(value)}: a '$' must start a ${{VAR}} reference (only that form is resolved; "
                "$VAR and ${VAR:-default} are not), or be written '$$' for a literal '$'"
            )
    return value


def _secret_name(key: str, info: ValidationInfo) -> str:
    _env_key(key)
    if key in (info.data.get("env") or {}):
        raise ValueError(
            f"{_quote(key)} is also in env: a variable is either a plain env value or a secret; "
            "remove one of them"
        )
    return key


def _secret_reference(value: str) -> str:
    from multispot.runtime.secrets import reference_problem  # only jobs with secrets pay the import

    problem = reference_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _hyperparameter_key(key: str) -> str:
    if not HYPERPARAMETER_KEY.fullmatch(key):
        raise ValueError(
            f"hyperparameter name {_quote(key)}: use letters, digits, '_', '.' and '-' (1-128), "
            "not starting with '-' or '.' (it becomes --NAME on the command line)"
        )
    return key


def _hyperparameter_value(value: Any) -> Any:
    if isinstance(value, str) and "\0" in value:
        raise ValueError("contains a NUL character, which no command-line argument can hold: remove it")
    return value


def _tag_key(key: str) -> str:
    if not key.strip():
        raise ValueError("a tag key cannot be empty")
    if len(key) > 128:
        raise ValueError(f"tag key {_quote(key)} is longer than 128 characters")
    return _no_control(key, "tag key")


def _tag_value(value: str) -> str:
    if len(value) > 256:
        raise ValueError(f"tag value {_quote(value)} is longer than 256 characters")
    return _no_control(value, "tag value")


def _argument(value: str) -> str:
    if "\0" in value:
        raise ValueError("contains a NUL character, which no command-line argument can hold: remove it")
    return value


def _no_control_value(value: str) -> str:
    return _no_control(value, "the value")


def _single_line(value: str | None) -> str | None:
    return None if value is None else _no_control(value, "the value")


def _input_name(name: str) -> str:
    if not ENV_NAME.fullmatch(name):
        raise ValueError(f"input name {_quote(name)}: use letters, digits and '_' (it becomes an env var)")
    return name


def _input_uri(uri: str, info: ValidationInfo) -> str:
    return check_uri(uri, _base_dir(info))


# Checked per entry, so a problem names inputs.<NAME> (and its YAML line), not just inputs.
InputName = Annotated[str, AfterValidator(_input_name)]
InputUri = Annotated[str, AfterValidator(_input_uri)]

# Checked per key, so a problem names env.<KEY> (and its YAML line), not just env.
EnvKey = Annotated[str, AfterValidator(_env_key)]
EnvValue = Annotated[str, AfterValidator(_env_value)]
# secrets.<NAME>: a reference to a secret store (resolved inside the job), never the value.
SecretName = Annotated[str, AfterValidator(_secret_name)]
SecretReference = Annotated[str, AfterValidator(_secret_reference)]
HyperparameterKey = Annotated[str, AfterValidator(_hyperparameter_key)]
HyperparameterValue = Annotated[str | int | float | bool, AfterValidator(_hyperparameter_value)]
TagKey = Annotated[str, AfterValidator(_tag_key)]
TagValue = Annotated[str, AfterValidator(_tag_value)]
Argument = Annotated[str, AfterValidator(_argument)]
Line = Annotated[str | None, AfterValidator(_single_line)]


def _split_command(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split the command ({exc}): check its quotes") from exc
    return value


class ArrayTask(_Model):
    """This job is task ``index`` of ``count`` of a job array (``multispot array`` sets it)."""

    index: int = Field(ge=0, le=100_000)
    count: int = Field(ge=1, le=100_000)
    shards: list[Annotated[str, AfterValidator(_no_control_value)]] | None = Field(None, max_length=100_000)

    @model_validator(mode="after")
    def _index(self) -> ArrayTask:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} is not below count {self.count}")
        return self


def hyperparameter_text(value: str | int | float | bool) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class Job(_Model):
    """A training run described once, for every provider."""

    name: str = Field(description="lowercase letters, digits and '-', at most 40 characters")
    command: Annotated[list[Argument], BeforeValidator(_split_command)]
    source_dir: str | None = Field(None, description="local folder staged/uploaded as the working dir")
    image: Line = Field(None, description="container image or framework alias (cloud providers)")
    resources: Resources = Field(default_factory=Resources)
    env: dict[EnvKey, EnvValue] = Field(
        default_factory=dict, description="values may be ${VAR} from the shell; '$$' is a literal '$'"
    )
    secrets: dict[SecretName, SecretReference] = Field(
        default_factory=dict,
        description="name -> secret reference (aws-secretsmanager://, gcp-secretmanager://, "
        "azure-keyvault://, env://), resolved inside the job: the request carries only the reference",
    )
    hyperparameters: dict[HyperparameterKey, HyperparameterValue] = Field(default_factory=dict)
    inputs: dict[InputName, InputUri] = Field(default_factory=dict, description="name -> URI of input data")
    output_uri: str | None = None
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    spot: SpotSpec = Field(default_factory=SpotSpec)
    limits: Limits = Field(default_factory=Limits)
    targets: list[Target] = Field(default_factory=list)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    provider_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    task: ArrayTask | None = Field(
        None, description="set by multispot array: the task's MULTISPOT_TASK_* variables inside the job"
    )

    @field_validator("provider_options")
    @classmethod
    def _provider_options(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        known = known_providers()
        for name in value:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known providers: {', '.join(known)}"
                raise ValueError(f"{_quote(name)} is not a provider, so its options would be ignored: {hint}")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not JOB_NAME.fullmatch(value):
            raise ValueError(
                f"{_quote(value)} is not a job name: use 1-40 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, e.g. 'resnet-finetune'"
            )
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        if not value or not value[0].strip():
            raise ValueError("the command is empty: write what to run, e.g. 'python train.py'")
        return value

    @field_validator("source_dir")
    @classmethod
    def _source_dir(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not value.strip() or _control(value) is not None:
            raise ValueError(
                f"{_quote(value)} is not a folder name: point source_dir at the folder with your code"
            )
        path = (Path(_base_dir(info)) / Path(value).expanduser()).resolve()
        if _trusted(info):
            return str(path)  # checked at submit; staged then, so a later rename does not matter
        if not path.is_dir():
            raise ValueError(
                f"{_quote(str(path), 300)} is not a directory: point source_dir at the folder with your code"
            )
        problem = source_dir_problem(path)
        if problem:
            raise ValueError(problem)
        return str(path)

    @field_validator("output_uri")
    @classmethod
    def _output_uri(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_uri(value, _base_dir(info))

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith("multispot"):
                raise ValueError(f"tag {_quote(key)}: tags starting with 'multispot' are set by multispot")
        return value

    # ----------------------------------------------------------------- loading

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Job:
        """Load and validate a job file; relative paths are relative to the file."""
        file = Path(path)
        try:
            with open(file, "rb") as f:
                raw = f.read(MAX_SPEC_BYTES + 1)  # never more: /dev/zero or a huge file is refused
        except OSError as exc:
            raise JobSpecError([Problem("(file)", f"cannot read {file}: {exc.strerror}")], str(file)) from exc
        if len(raw) > MAX_SPEC_BYTES:
            raise JobSpecError(
                [
                    Problem(
                        "(file)", f"{file} is larger than {MAX_SPEC_BYTES >> 10} KiB: a job file is a few KiB"
                    )
                ],
                str(file),
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise JobSpecError(
                [Problem("(file)", f"not UTF-8 text (byte {exc.start}): save the file as UTF-8", line)],
                str(file),
            ) from exc
        return cls.from_yaml_text(text, base_dir=file.resolve().parent, source=str(file))

    @classmethod
    def from_yaml_text(
        cls, text: str, base_dir: str | os.PathLike[str] = ".", source: str | None = None
    ) -> Job:
        if len(text) > MAX_SPEC_BYTES:
            raise JobSpecError(
                [
                    Problem(
                        "(file)",
                        f"the spec is larger than {MAX_SPEC_BYTES >> 10} KiB: a job file is a few KiB",
                    )
                ],
                source,
            )
        try:
            _scan_yaml(text)  # depth and alias expansion bounded before anything is built
            node = yaml.compose(text, Loader=_Loader)
            data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
        except JobSpecError as exc:
            raise JobSpecError(exc.problems, source) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else None
            reason = getattr(exc, "problem", None) or str(exc)
            raise JobSpecError(
                [Problem("(yaml)", f"not valid YAML: {reason}; check indentation and quoting", line)], source
            ) from exc
        except (RecursionError, MemoryError, ValueError, OverflowError) as exc:  # belt and braces
            raise JobSpecError(
                [Problem("(yaml)", f"cannot load this YAML ({type(exc).__name__})")], source
            ) from None
        if not isinstance(data, dict):
            raise JobSpecError(
                [Problem("(top)", "a job file is a YAML mapping: start with 'name:' and 'command:'")], source
            )
        duplicates = _duplicate_keys(node)
        if duplicates:
            raise JobSpecError(duplicates, source)
        return cls.validate_data(data, base_dir=base_dir, source=source, node=node)

    @classmethod
    def validate_data(
        cls,
        data: dict[str, Any],
        base_dir: str | os.PathLike[str] = ".",
        source: str | None = None,
        node: yaml.Node | None = None,
    ) -> Job:
        return cls._validate(data, {"base_dir": str(base_dir)}, source, node)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Job:
        """A spec the job store holds, accepted at submit: validated again for its types, but what
        depended on the moment of submit (a deadline still ahead, source_dir still on disk) is not
        re-checked, so a job is never failed later by a check it passed then."""
        return cls._validate(data, {"base_dir": ".", "trusted": True}, None, None)

    @classmethod
    def _validate(cls, data: Any, context: dict[str, Any], source: str | None, node: yaml.Node | None) -> Job:
        _check_size(data, source)
        try:
            return cls.model_validate(data, context=context)
        except ValidationError as exc:
            raise JobSpecError([_problem(err, node) for err in exc.errors()], source) from None
        except RecursionError:
            raise JobSpecError([Problem("(top)", "nested too deeply")], source) from None

    def to_data(self) -> dict[str, Any]:
        """JSON-safe form; env keeps its ``${VAR}`` references, never their values."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_data(), sort_keys=False)

    # ----------------------------------------------------------------- what every provider runs

    def hyperparameter_strings(self) -> dict[str, str]:
        """Hyperparameters as the strings a command line (and SageMaker) takes: booleans lowercase."""
        return {key: hyperparameter_text(value) for key, value in self.hyperparameters.items()}

    def argv(self) -> list[str]:
        """The command with each hyperparameter appended in the spec's order: ``--key value``; a
        boolean as a flag, the form argparse ``store_true`` takes (``True``: ``--key``;
        ``False``: left out, so the script's default applies)."""
        argv = list(self.command)
        for key, value in self.hyperparameters.items():
            if value is True:
                argv.append(f"--{key}")
            elif value is not False:
                argv += [f"--{key}", hyperparameter_text(value)]
        return argv

    def hyperparameters_json(self) -> str:
        """``MULTISPOT_HYPERPARAMETERS``: the same strings as JSON, keys sorted (stable requests)."""
        return json.dumps(self.hyperparameter_strings(), sort_keys=True)

    # ----------------------------------------------------------------- env references

    def env_references(self) -> set[str]:
        """Names of shell variables that ``env`` refers to as ``${VAR}`` (``$${X}`` is literal)."""
        return {name for value in self.env.values() for name in _references(value)}

    def resolve_env(self, environ: typing.Mapping[str, str] | None = None) -> dict[str, str]:
        """``env`` with ``${VAR}`` filled from ``environ``: done at submit, never stored."""
        environ = os.environ if environ is None else environ
        missing = sorted(name for name in self.env_references() if name not in environ)
        if missing:
            raise JobSpecError(
                [
                    Problem(f"env.{key}", f"refers to ${{{name}}}, which is not set: export {name}=... first")
                    for key, value in self.env.items()
                    for name in _references(value)
                    if name in missing
                ]
            )

        def fill(match: re.Match[str]) -> str:
            return "$" if match.group(0) == "$$" else environ[match.group(1)]

        resolved = {key: _ENV_DOLLAR.sub(fill, value) for key, value in self.env.items()}
        if self.task is not None:  # a job array's task: the names live with their reader
            from multispot.runtime.shards import task_env

            resolved.update(task_env(self.task.index, self.task.count, self.task.shards))
        return resolved


def _references(value: str) -> list[str]:
    return [m.group(1) for m in _ENV_DOLLAR.finditer(value) if m.group(1)]


# --------------------------------------------------------------------------- bounds


def known_providers() -> list[str]:
    """Provider names ``provider_options`` may use: the registered ones and the first-party
    adapters (whose options a portable spec may carry even where that adapter is not installed)."""
    from multispot import registry

    return sorted({*registry.available(), *registry.INSTALL_HINTS})


def source_dir_problem(path: Path) -> str | None:
    """Why ``path`` (resolved) cannot be staged as a job's code, or None."""
    from multispot.store import home_path

    if path == Path(path.anchor):
        return f"{path} is the root of the file system: point source_dir at the folder with your code"
    if path == Path.home().resolve():
        return f"{path} is your home folder: point source_dir at the folder with your code"
    ms_home = home_path().resolve()
    if path == ms_home or ms_home in path.parents:
        return f"{path} is inside multispot's home ({ms_home}): keep your code elsewhere"
    return None


def _scan_yaml(text: str) -> None:
    """Refuse YAML nested deeper than MAX_DEPTH or standing for more than MAX_VALUES values once its
    aliases are expanded, from the event stream (the parser is not recursive, and nothing is built)."""
    sizes: dict[str, int] = {}
    # One frame per open mapping/list: [anchor, values so far, is mapping, path, key expected, key]
    stack: list[list[Any]] = []
    total = 0

    def path() -> str:
        parts = [str(frame[5]) for frame in stack if frame[5] is not None]
        return ".".join(parts) or "(top)"

    def add(size: int, counted: int, event: yaml.Event, scalar: str | None) -> None:
        """A value of ``size`` values ends; ``counted`` of them were counted already (its children)."""
        nonlocal total
        total += size - counted
        if total > MAX_VALUES:
            line = event.start_mark.line + 1 if event.start_mark else None
            raise JobSpecError(
                [
                    Problem(
                        path(),
                        f"the spec stands for more than {MAX_VALUES} values once its YAML aliases are "
                        "expanded: write it out without '*' aliases",
                        line,
                    )
                ]
            )
        if stack:
            frame = stack[-1]
            frame[1] += size
            if frame[2]:
                if frame[4]:
                    frame[5] = scalar if scalar is not None else "?"
                frame[4] = not frame[4]

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
            add(1, 0, event, event.value)
        elif isinstance(event, yaml.AliasEvent):
            add(sizes.get(str(event.anchor), 1), 0, event, None)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(stack) >= MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else None
                raise JobSpecError(
                    [Problem(path(), f"nested more than {MAX_DEPTH} levels deep: a job spec is flat", line)]
                )
            stack.append([event.anchor, 0, isinstance(event, yaml.MappingStartEvent), None, True, None])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, size = stack.pop()[:2]
            if anchor:
                sizes[anchor] = size + 1
            add(size + 1, size, event, None)


def _check_size(data: Any, source: str | None) -> None:
    """The same bounds on data given in Python (or from JSON): shared or cyclic references are
    walked as if expanded, and the walk stops at the first bound, so it is cheap whatever ``data`` is."""
    stack: list[tuple[Any, int, str]] = [(data, 0, "")]
    seen = 0
    while stack:
        value, depth, path = stack.pop()
        seen += 1
        where = path or "(top)"
        if seen > MAX_VALUES:
            raise JobSpecError(
                [
                    Problem(
                        where,
                        f"the spec holds more than {MAX_VALUES} values (shared references count each time)",
                    )
                ],
                source,
            )
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                raise JobSpecError([Problem(where, f"nested more than {MAX_DEPTH} levels deep")], source)
            for key, item in value.items():
                stack.append((item, depth + 1, f"{path}.{key}" if path else str(key)))
        elif isinstance(value, (list, tuple)):
            if depth >= MAX_DEPTH:
                raise JobSpecError([Problem(where, f"nested more than {MAX_DEPTH} levels deep")], source)
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str) and len(value) > MAX_SPEC_BYTES:
            raise JobSpecError([Problem(where, f"a value longer than {MAX_SPEC_BYTES >> 10} KiB")], source)


def _duplicate_keys(root: yaml.Node | None) -> list[Problem]:
    """Keys given twice in one mapping (YAML would silently keep the last), each node visited once."""
    problems: list[Problem] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")] if root is not None else []
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                here = f"{path}.{name}" if path else name
                if isinstance(key, yaml.ScalarNode) and name != "<<":
                    if name in keys:
                        problems.append(
                            Problem(
                                here,
                                f"the key {_quote(name)} is given twice in this mapping: keep one",
                                key.start_mark.line + 1,
                            )
                        )
                    keys.add(name)
                stack.append((value, here))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
    return problems


# --------------------------------------------------------------------------- error formatting


def _problem(err: Any, node: yaml.Node | None) -> Problem:
    loc = tuple(err["loc"])
    kind, message = err["type"], err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "extra_forbidden":
        options = _fields_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), options, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known fields here: {', '.join(options)}"
        message = f"unknown field {_quote(str(loc[-1]))}: {hint}"
    elif kind == "missing":
        message = "required field is missing: add it"
    elif kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        message = f"{_quote(err.get('input'))} is not allowed: use {expected}"
    elif kind in ("int_parsing", "float_parsing", "int_type", "float_type", "int_from_float"):
        message = f"{_quote(err.get('input'))} is not a number: {message.lower()}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        message = f"{_quote(err.get('input'))}: {message.lower()}"
    return Problem(_dotted(loc), message, _line(node, loc))


# What pydantic puts in a loc that is not a user's field or key: union branches, dict-key errors.
# Matched exactly, so a user's key such as ``float_x`` or ``strategy`` still shows in the path.
_BRANCH_TAGS = frozenset({"str", "int", "float", "bool", "datetime", "date", "[key]"})


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _BRANCH_TAGS or str(part).startswith(("function-", "constrained-")):
            continue  # pydantic names the union branch (or "[key]"); users know the field only
        else:
            out += ("." if out else "") + (str(part) or "''")  # an empty key still shows
    return out or "(top)"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Job
    for part in loc:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            model = _unwrap(model)
            continue
        field = model.model_fields.get(str(part))
        model = _unwrap(field.annotation) if field else None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    for arg in typing.get_args(annotation) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def _line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    best = None
    for part in loc:
        if node is None:
            break
        best = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(part)]
            if not match:
                break
            best = match[0][0].start_mark.line + 1
            node = match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            best = node.start_mark.line + 1  # the item's own line, not the list's
        else:
            break
    return best
