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

JOB_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
ACCELERATOR = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)(?::(\d+))?$")
# Schemes the checkpoint contract and the adapters understand; a plain path means file://.
URI_SCHEMES = ("file", "memory", "s3", "gs", "gcs", "az", "abfs", "abfss", "azureml")
_URI = re.compile(r"^([a-z][a-z0-9+.-]*)://(.*)$")


# --------------------------------------------------------------------------- errors


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
    value = value.strip()
    match = _URI.match(value)
    if not match:
        if "://" in value or value.startswith(("s3:", "gs:", "az:")):
            raise ValueError(f"{value!r} is not a URI: write scheme://bucket/path, e.g. s3://my-bucket/ckpt")
        return (Path(base_dir or ".") / Path(value).expanduser()).resolve().as_uri()
    scheme, rest = match.groups()
    if scheme not in URI_SCHEMES:
        raise ValueError(f"scheme {scheme!r} is not supported: use one of {', '.join(URI_SCHEMES)}")
    if scheme in ("s3", "gs", "gcs", "az", "abfs", "abfss") and not rest.split("/")[0]:
        raise ValueError(f"{value!r} names no bucket or container: write {scheme}://BUCKET/path")
    return value.rstrip("/") if rest.strip("/") else value


def _base_dir(info: ValidationInfo) -> str:
    """Where relative paths start: the YAML file's folder when loaded from one, else the cwd."""
    return str((info.context or {}).get("base_dir", "."))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Resources(_Model):
    """What to run on: an accelerator such as ``V100:1`` or an explicit instance type."""

    accelerator: str | None = Field(None, description="NAME[:COUNT] per node, e.g. 'A100:8' or 'T4'")
    instance_type: str | None = Field(None, description="explicit instance/machine type; wins")
    cpus: float | None = Field(None, gt=0, description="minimum vCPUs per node")
    memory_gb: float | None = Field(None, gt=0, description="minimum memory per node, GiB")
    nodes: int = Field(1, ge=1, le=512)

    @field_validator("accelerator")
    @classmethod
    def _accelerator(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = ACCELERATOR.match(value.strip())
        if not match or (match.group(2) is not None and int(match.group(2)) < 1):
            raise ValueError(f"{value!r} is not NAME[:COUNT]: write e.g. 'V100:1', 'A100:8' or 'T4'")
        name, count = match.group(1).upper(), int(match.group(2) or 1)
        return f"{name}:{count}"

    @property
    def accelerator_name(self) -> str | None:
        return self.accelerator.split(":")[0] if self.accelerator else None

    @property
    def accelerator_count(self) -> int:
        return int(self.accelerator.split(":")[1]) if self.accelerator else 0


class CheckpointSpec(_Model):
    uri: str | None = Field(None, description="where checkpoints live; default: per provider")
    interval: Duration | None = Field(None, gt=0, description="how often the runtime saves, e.g. '10m'")
    every_steps: int | None = Field(
        None, ge=1, description="also save every N steps (when the script passes its step to should_save)"
    )
    keep: int = Field(3, ge=1, le=100_000, description="how many valid checkpoints to keep")

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
    max_price: float | None = Field(None, ge=0, description="USD per instance-hour never to exceed")
    budget: float | None = Field(None, ge=0, description="USD for the whole job; no attempt starts past it")

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
    def _deadline(cls, value: Any) -> Any:
        if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\d", value.strip()):
            try:
                stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError as exc:
                raise ValueError(f"{value!r} is not an ISO time: write e.g. 2026-12-01T18:00:00Z") from exc
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return _duration(value)


class Target(_Model):
    """One place to run, in the order the user prefers (diversification)."""

    provider: str
    region: str | None = None
    instance_type: str | None = None
    market: Literal["spot", "on-demand"] | None = None


def _env_key(key: str) -> str:
    if not ENV_NAME.match(key):
        raise ValueError(f"{key!r} is not an environment variable name: use letters, digits and '_'")
    if key.startswith("MULTISPOT_"):
        raise ValueError(f"{key!r}: MULTISPOT_* variables are set by multispot; rename yours")
    return key


def _input_name(name: str) -> str:
    if not ENV_NAME.match(name):
        raise ValueError(f"input name {name!r}: use letters, digits and '_' (it becomes an env var)")
    return name


def _input_uri(uri: str, info: ValidationInfo) -> str:
    return check_uri(uri, _base_dir(info))


# Checked per entry, so a problem names inputs.<NAME> (and its YAML line), not just inputs.
InputName = Annotated[str, AfterValidator(_input_name)]
InputUri = Annotated[str, AfterValidator(_input_uri)]

# Checked per key, so a problem names env.<KEY> (and its YAML line), not just env.
EnvKey = Annotated[str, AfterValidator(_env_key)]


def _split_command(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split the command ({exc}): check its quotes") from exc
    return value


def hyperparameter_text(value: str | int | float | bool) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class Job(_Model):
    """A training run described once, for every provider."""

    name: str = Field(description="lowercase letters, digits and '-', at most 40 characters")
    command: Annotated[list[str], BeforeValidator(_split_command)]
    source_dir: str | None = Field(None, description="local folder staged/uploaded as the working dir")
    image: str | None = Field(None, description="container image or framework alias (cloud providers)")
    resources: Resources = Field(default_factory=Resources)
    env: dict[EnvKey, str] = Field(default_factory=dict, description="values may be ${VAR} from the shell")
    hyperparameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    inputs: dict[InputName, InputUri] = Field(default_factory=dict, description="name -> URI of input data")
    output_uri: str | None = None
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    spot: SpotSpec = Field(default_factory=SpotSpec)
    limits: Limits = Field(default_factory=Limits)
    targets: list[Target] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    provider_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not JOB_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a job name: use 1-40 lowercase letters, digits and '-', "
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
        path = (Path(_base_dir(info)) / Path(value).expanduser()).resolve()
        if not path.is_dir():
            raise ValueError(f"{path} is not a directory: point source_dir at the folder with your code")
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
                raise ValueError(f"tag {key!r}: tags starting with 'multispot' are set by multispot")
        return value

    # ----------------------------------------------------------------- loading

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Job:
        """Load and validate a job file; relative paths are relative to the file."""
        file = Path(path)
        try:
            text = file.read_text()
        except OSError as exc:
            raise JobSpecError([Problem("(file)", f"cannot read {file}: {exc.strerror}")], str(file)) from exc
        return cls.from_yaml_text(text, base_dir=file.resolve().parent, source=str(file))

    @classmethod
    def from_yaml_text(
        cls, text: str, base_dir: str | os.PathLike[str] = ".", source: str | None = None
    ) -> Job:
        try:
            node = yaml.compose(text, Loader=_Loader)
            data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else None
            reason = getattr(exc, "problem", None) or str(exc)
            raise JobSpecError(
                [Problem("(yaml)", f"not valid YAML: {reason}; check indentation and quoting", line)], source
            ) from exc
        if not isinstance(data, dict):
            raise JobSpecError(
                [Problem("(top)", "a job file is a YAML mapping: start with 'name:' and 'command:'")], source
            )
        return cls.validate_data(data, base_dir=base_dir, source=source, node=node)

    @classmethod
    def validate_data(
        cls,
        data: dict[str, Any],
        base_dir: str | os.PathLike[str] = ".",
        source: str | None = None,
        node: yaml.Node | None = None,
    ) -> Job:
        try:
            return cls.model_validate(data, context={"base_dir": str(base_dir)})
        except ValidationError as exc:
            raise JobSpecError([_problem(err, node) for err in exc.errors()], source) from exc

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
        """The command with ``--key value`` appended for each hyperparameter, in the spec's order."""
        argv = list(self.command)
        for key, value in self.hyperparameter_strings().items():
            argv += [f"--{key}", value]
        return argv

    def hyperparameters_json(self) -> str:
        """``MULTISPOT_HYPERPARAMETERS``: the same strings as JSON, keys sorted (stable requests)."""
        return json.dumps(self.hyperparameter_strings(), sort_keys=True)

    # ----------------------------------------------------------------- env references

    def env_references(self) -> set[str]:
        """Names of shell variables that ``env`` refers to as ``${VAR}``."""
        return {name for value in self.env.values() for name in ENV_REF.findall(value)}

    def resolve_env(self, environ: typing.Mapping[str, str] | None = None) -> dict[str, str]:
        """``env`` with ``${VAR}`` filled from ``environ``: done at submit, never stored."""
        environ = os.environ if environ is None else environ
        missing = sorted(name for name in self.env_references() if name not in environ)
        if missing:
            raise JobSpecError(
                [
                    Problem(f"env.{key}", f"refers to ${{{name}}}, which is not set: export {name}=... first")
                    for key, value in self.env.items()
                    for name in ENV_REF.findall(value)
                    if name in missing
                ]
            )
        return {key: ENV_REF.sub(lambda m: environ[m.group(1)], value) for key, value in self.env.items()}


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
        message = f"unknown field {loc[-1]!r}: {hint}"
    elif kind == "missing":
        message = "required field is missing: add it"
    elif kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        message = f"{err.get('input')!r} is not allowed: use {expected}"
    elif kind in ("int_parsing", "float_parsing", "int_type", "float_type", "int_from_float"):
        message = f"{err.get('input')!r} is not a number: {message.lower()}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        message = f"{err.get('input')!r}: {message.lower()}"
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
            out += ("." if out else "") + str(part)
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
