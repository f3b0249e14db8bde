"""Secrets by reference, resolved inside the job.

A Job's ``secrets:`` maps a variable name to a *reference* (``aws-secretsmanager://…``,
``gcp-secretmanager://…``, ``azure-keyvault://…``, ``env://VAR``). The request a provider submits
carries only the references, as JSON in ``MULTISPOT_SECRETS``; the job resolves them when it
starts, with its own identity, so no value is ever in the request, the job store or a log.

Three ways in, one resolution:

- ``python -m multispot.runtime.secrets --exec -- CMD ARGS…``: resolves, puts the values into the
  environment, and replaces itself with ``CMD`` (for scripts that never import multispot; an
  adapter wraps the job's command with :func:`exec_argv`). A failure exits with
  :data:`EXIT_UNRESOLVED` and one line per secret on stderr, before ``CMD`` starts.
- ``Checkpointer()`` / ``detect()`` call :func:`load`.
- ``from multispot.runtime import secrets; secrets.get("WANDB_API_KEY")``.

:func:`load` exports every value into ``os.environ`` under its name (frameworks such as wandb
read their keys from there) and then removes ``MULTISPOT_SECRETS``, so children see values and
nothing is resolved twice.

Each scheme is resolved by an object registered under the entry-point group
``multispot.secret_resolvers`` (the entry point's name is the scheme): ``env`` lives here, the
cloud ones in the adapters. Resolvers import nothing heavy at module import.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping, MutableMapping, Sequence
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

from multispot import jobenv
from multispot.errors import SecretUnavailable

__all__ = [
    "EXIT_UNRESOLVED",
    "GROUP",
    "SecretResolver",
    "SecretUnavailable",
    "exec_argv",
    "exec_command",
    "get",
    "load",
    "reference_problem",
    "references",
    "resolve",
]

GROUP = "multispot.secret_resolvers"
EXIT_UNRESOLVED = 78  # sysexits' EX_CONFIG: the job is misconfigured, not the user's code failing
_SCHEME = re.compile(r"([a-z][a-z0-9-]*)://(.*)", re.DOTALL)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_REFERENCE = 2048


@runtime_checkable
class SecretResolver(Protocol):
    """One secret store (entry-point group ``multispot.secret_resolvers``, named by its scheme)."""

    scheme: str

    def check(self, reference: str) -> str | None:
        """Why ``reference`` (the whole ``scheme://…`` text) is malformed, or None. Pure: no I/O."""
        ...

    def resolve(self, reference: str, environ: Mapping[str, str]) -> str:
        """The value, fetched with the job's own identity; raises ``SecretUnavailable`` (whose
        message never holds a value) when it cannot."""
        ...


class EnvResolver:
    """``env://VAR``: the variable VAR of the environment that launches the job. Only the local
    provider can hand a value over without writing it down (the process environment), so on a
    cloud ``env://`` finds only what the service itself put into the container's environment."""

    scheme = "env"

    def check(self, reference: str) -> str | None:
        name = reference[len("env://") :]
        if not _ENV_NAME.fullmatch(name):
            return f"{reference!r}: write env://VAR with VAR an environment variable name"
        return None

    def resolve(self, reference: str, environ: Mapping[str, str]) -> str:
        name = reference[len("env://") :]
        if name not in environ:
            raise SecretUnavailable(f"{name} is not set in the environment that launched the job")
        return environ[name]


ENV = EnvResolver()


def resolvers() -> dict[str, SecretResolver]:
    """The registered resolvers by scheme; one that fails to load is left out with a warning (its
    references then fail with a message naming the scheme)."""
    found: dict[str, SecretResolver] = {}
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            obj = entry.load()
        except Exception as exc:  # an ImportError, or anything the plugin's import raises
            warnings.warn(f"secret resolver {entry.name!r} ({entry.value}) did not load: {exc}", stacklevel=2)
            continue
        if isinstance(obj, type):
            obj = obj()
        if isinstance(obj, SecretResolver):
            found[entry.name] = obj
    found.setdefault(ENV.scheme, ENV)  # the core's own, even from a source checkout without metadata
    return found


def reference_problem(reference: str, known: Mapping[str, SecretResolver] | None = None) -> str | None:
    """Why ``reference`` cannot be used as a secret reference, or None (checked at submit)."""
    if len(reference) > MAX_REFERENCE:
        return f"a secret reference is at most {MAX_REFERENCE} characters"
    if any(ord(c) < 33 or 127 <= ord(c) < 160 for c in reference):
        return "a secret reference has no spaces or control characters"
    known = resolvers() if known is None else known
    match = _SCHEME.fullmatch(reference)
    if not match:
        return (
            "not a secret reference: secrets holds references such as "
            "aws-secretsmanager://NAME, gcp-secretmanager://projects/P/secrets/S, "
            "azure-keyvault://VAULT/NAME or env://VAR, never a value (a value belongs in no file)"
        )
    resolver = known.get(match.group(1))
    if resolver is None:
        return f"unknown secret store {match.group(1)!r}: use one of {', '.join(f'{s}://' for s in sorted(known))}"
    return resolver.check(reference)


def references(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job's secret references (name → reference) from ``MULTISPOT_SECRETS``; {} when none."""
    env = os.environ if environ is None else environ
    text = env.get(jobenv.SECRETS)
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SecretUnavailable(f"{jobenv.SECRETS} is not a JSON object of name -> reference")
    return {str(k): v for k, v in data.items()}


def resolve(
    refs: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
    known: Mapping[str, SecretResolver] | None = None,
) -> dict[str, str]:
    """Every reference's value (name → value). All are tried; the error lists each that failed,
    with its name, reference and reason, never a value."""
    env = os.environ if environ is None else environ
    known = resolvers() if known is None and refs else (known or {})
    values: dict[str, str] = {}
    failures: list[str] = []
    for name, ref in sorted(refs.items()):
        match = _SCHEME.fullmatch(ref)
        resolver = known.get(match.group(1)) if match else None
        if resolver is None:
            failures.append(f"secret {name} ({ref}): no resolver for this scheme is installed here")
            continue
        try:
            values[name] = resolver.resolve(ref, env)
        except SecretUnavailable as exc:
            failures.append(f"secret {name} ({ref}): {exc}")
        except Exception as exc:  # a resolver's bug or an SDK error: reported by type, never by value
            failures.append(f"secret {name} ({ref}): {type(exc).__name__} while resolving it")
    if failures:
        raise SecretUnavailable(
            "cannot resolve the job's secrets:\n" + "\n".join(f"  - {f}" for f in failures)
        )
    return values


_loaded: dict[str, str] = {}


def load(environ: MutableMapping[str, str] | None = None, export: bool = True) -> dict[str, str]:
    """Resolve the job's secrets once (a no-op when there are none or they are resolved already).

    With ``export`` (the default) each value goes into the environment under its name and
    ``MULTISPOT_SECRETS`` is removed, so child processes inherit values, not references. Returns
    the names resolved by this process so far (name → value)."""
    env = os.environ if environ is None else environ
    refs = references(env)
    if refs:
        values = resolve(refs, env)
        _loaded.update(values)
        if export:
            env.update(values)
            env.pop(jobenv.SECRETS, None)
    return dict(_loaded)


def get(name: str, environ: MutableMapping[str, str] | None = None) -> str:
    """The value of the job's secret ``name`` (resolving the job's secrets first if needed)."""
    env = os.environ if environ is None else environ
    load(env)
    if name in _loaded:
        return _loaded[name]
    if name in env:  # resolved by an exec wrapper or the local supervisor before this process started
        return env[name]
    raise SecretUnavailable(f"the job has no secret {name!r}: add it under secrets: in the job spec")


# --------------------------------------------------------------------------- for resolvers

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def http_json(
    url: str,
    headers: Mapping[str, str],
    *,
    direct: bool = False,
    attempts: int = 4,
    backoff: float = 0.5,
    timeout: float = 10.0,
) -> tuple[int, dict[str, object]]:
    """GET ``url`` and parse its JSON body (stdlib only, for resolvers that run in any image).

    Returns (status, body) for any HTTP answer but throttling and 5xx, which are retried with
    backoff, as is an unreachable host (a metadata server can lag a container's start). ``direct``
    bypasses any proxy (metadata servers are link-local). Raises ``SecretUnavailable`` naming the
    host when no answer comes. Bodies are returned to the caller only; nothing is logged."""
    opener = (
        urllib.request.build_opener(urllib.request.ProxyHandler({}))
        if direct
        else urllib.request.build_opener()
    )
    host = urllib.parse.urlsplit(url).netloc
    last = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        request = urllib.request.Request(url, headers=dict(headers), method="GET")
        try:
            with opener.open(request, timeout=timeout) as response:
                return int(response.status), _json_body(response.read())
        except urllib.error.HTTPError as exc:
            status, body = int(exc.code), _json_body(exc.read())
            if status not in RETRY_STATUS:
                return status, body
            last = f"HTTP {status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
    raise SecretUnavailable(f"no answer from {host} after {attempts} tries ({last})")


def _json_body(raw: bytes) -> dict[str, object]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def bearer_token(status: int, body: Mapping[str, object], what: str) -> str:
    """The ``access_token`` of a metadata/IMDS token answer, or ``SecretUnavailable`` saying why."""
    token = body.get("access_token")
    if status == 200 and isinstance(token, str) and token:
        return token
    detail = body.get("error_description") or body.get("error") or body.get("message") or ""
    raise SecretUnavailable(f"{what} gave no access token (HTTP {status}{f': {detail}' if detail else ''})")


def api_refusal(
    status: int, body: Mapping[str, object], code_field: str, hints: Mapping[int, str]
) -> SecretUnavailable:
    """A secret store's non-200 answer as ``SecretUnavailable``: ``HTTP status code: message`` from
    the ``{"error": {code_field: ..., "message": ...}}`` body both Google's and Azure's REST APIs
    use, and the hint for that status (which role to grant, what to check)."""
    error = body.get("error")
    detail = error if isinstance(error, dict) else {}
    code, message = detail.get(code_field, ""), detail.get("message", "")
    text = f"HTTP {status} {code}: {message}".replace(" :", ":")
    return SecretUnavailable(f"{text}{f' ({hints[status]})' if status in hints else ''}")


# --------------------------------------------------------------------------- for adapters


def exec_argv(argv: Sequence[str], python: str = "python3") -> list[str]:
    """``argv`` wrapped so the secrets are resolved before it starts (inside the job)."""
    return [python, "-m", "multispot.runtime.secrets", "--exec", "--", *argv]


def exec_command(command: str, python: str = "python3") -> str:
    """A POSIX shell command line wrapped the same way (run through ``sh -c``)."""
    return shlex.join([python, "-m", "multispot.runtime.secrets", "--exec", "--", "sh", "-c", command])


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:2] != ["--exec", "--"] or len(args) < 3:
        print("usage: python -m multispot.runtime.secrets --exec -- CMD [ARGS...]", file=sys.stderr)
        return 2
    command = args[2:]
    env = dict(os.environ)
    try:
        load(env)
    except SecretUnavailable as exc:
        print(f"multispot: the job cannot start: {exc}", file=sys.stderr, flush=True)
        return EXIT_UNRESOLVED
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"multispot: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr, flush=True)
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
