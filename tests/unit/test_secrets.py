"""Secrets by reference: validated at submit, carried as references only, resolved inside the job.

The value never reaches a request (each adapter's render), the job store, the dry run or a log;
it does reach the job's process. The stores: moto's Secrets Manager server, and the loopback
fakes of Secret Manager and Key Vault in ``helpers.secret_stores`` (which cite the services' docs).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers.net import free_port
from helpers.secret_stores import azure_key_vault, gcp_secret_manager

from multispot import api, jobenv, registry
from multispot.controller import Controller
from multispot.errors import JobSpecError, SecretUnavailable, ValidationFailed
from multispot.job import Job
from multispot.runtime import secrets
from multispot.status import JobState
from multispot.store import JobStore

VALUE = "sk-live-7f3a9c-DO-NOT-LEAK"  # what must never show up outside the job's process
ROOT = Path(__file__).resolve().parents[1]


def job_with(secrets_: dict[str, str], **fields: Any) -> Job:
    return Job.validate_data({"name": "sec", "command": "python train.py", "secrets": secrets_, **fields})


def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(JobSpecError) as info:
        Job.validate_data({"name": "sec", "command": "python train.py", **data})
    return [(p.path, p.message) for p in info.value.problems]


@pytest.fixture(autouse=True)
def _fresh_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_loaded", {})


# --------------------------------------------------------------------------- the spec


def test_valid_references_are_kept_as_written() -> None:
    refs = {
        "A": "aws-secretsmanager://team/wandb",
        "B": "aws-secretsmanager://arn:aws:secretsmanager:eu-west-1:123456789012:secret:wandb-AbCdEf#api_key",
        "C": "gcp-secretmanager://projects/my-project/secrets/wandb",
        "D": "gcp-secretmanager://projects/123456/secrets/wandb/versions/3",
        "E": "azure-keyvault://my-vault/wandb-key",
        "F": "azure-keyvault://my-vault/wandb-key/0123456789abcdef0123456789abcdef",
        "G": "env://MY_TOKEN",
    }
    job = job_with(refs)
    assert job.secrets == refs
    assert job.to_data()["secrets"] == refs  # what the job store keeps: references


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        (VALUE, "never a value"),
        ("vault://x/y", "unknown secret store 'vault'"),
        ("aws-secretsmanager://", "aws-secretsmanager://NAME"),
        ("aws-secretsmanager://arn:aws:s3:::bucket", "aws-secretsmanager://NAME"),
        ("aws-secretsmanager://name#", "key of a JSON secret"),
        ("gcp-secretmanager://my-secret", "projects/PROJECT/secrets/SECRET"),
        ("gcp-secretmanager://projects/p/secrets/s/versions/0", "projects/PROJECT/secrets/SECRET"),
        ("azure-keyvault://v/name", "VAULT"),
        ("azure-keyvault://my--vault/name", "VAULT"),
        ("azure-keyvault://my-vault/name/v1", "32 hex digits"),
        ("env://1BAD", "env://VAR"),
        ("env://A B", "no spaces"),
    ],
)
def test_bad_references_name_the_field(ref: str, words: str) -> None:
    [(path, message)] = problems({"secrets": {"TOKEN": ref}})
    assert path == "secrets.TOKEN"
    assert words in message
    if ref == VALUE:
        assert VALUE not in message  # a pasted value is not echoed back


def test_names_collide_with_neither_env_nor_multispot() -> None:
    [(path, message)] = problems({"env": {"TOKEN": "x"}, "secrets": {"TOKEN": "env://T"}})
    assert path == "secrets.TOKEN" and "also in env" in message
    [(path, message)] = problems({"secrets": {"MULTISPOT_SECRETS": "env://T"}})
    assert path == "secrets.MULTISPOT_SECRETS" and "set by multispot" in message
    [(path, _)] = problems({"secrets": {"9X": "env://T"}})
    assert path == "secrets.9X"


def test_the_yaml_line_is_reported() -> None:
    text = "name: sec\ncommand: python x.py\nsecrets:\n  OK: env://A\n  BAD: nope\n"
    with pytest.raises(JobSpecError) as info:
        Job.from_yaml_text(text)
    [problem] = info.value.problems
    assert (problem.path, problem.line) == ("secrets.BAD", 5)


# --------------------------------------------------------------------------- the request


def _translate_cases(adapter: str) -> ModuleType:
    """The adapter's translate test module (its CASES and ctx()), as the generic suite loads it."""
    name = f"test_{adapter}_translate"
    if name not in sys.modules:
        folder = ROOT / "adapters" / adapter
        sys.path.insert(0, str(folder))
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


REFS = {"TOKEN": "env://MY_TOKEN", "WANDB_API_KEY": "aws-secretsmanager://team/wandb#key"}


@pytest.mark.parametrize("adapter", ["sagemaker", "vertex", "azureml"])
def test_each_adapter_renders_references_not_values(adapter: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", VALUE)  # within reach of the render, were it to look
    cases = _translate_cases(adapter)
    job, placement = next(iter(cases.CASES.values()))()
    job = job.model_copy(update={"secrets": REFS})
    request = registry.get(adapter).render(job, placement, cases.ctx())
    text = json.dumps(request, default=str)
    assert VALUE not in text
    assert json.loads(cases.environment_of(request)[jobenv.SECRETS]) == REFS
    # the job's command starts through the resolver (SageMaker: its shipped entry does it, tested below)
    if adapter != "sagemaker":
        assert "multispot.runtime.secrets --exec --" in text


def test_the_sagemaker_entry_resolves_secrets_before_the_command(tmp_path: Path) -> None:
    """The container entry (run as the service runs it) hands the command the resolved value."""
    entry = Path(__file__).resolve().parents[2] / "adapters" / "multispot_sagemaker" / "entry.py"
    probe = "import os; print('got', os.environ['TOKEN'] == os.environ['EXPECTED'])"
    env = {
        **os.environ,
        "MULTISPOT_SECRETS": json.dumps({"TOKEN": "env://MY_TOKEN"}),
        "MY_TOKEN": VALUE,
        "EXPECTED": VALUE,
    }
    argv = [sys.executable, str(entry), "--code-dir", str(tmp_path / "code"), "--config-dir", str(tmp_path)]
    out = subprocess.run(
        [*argv, "--install", "none", "--", "python", "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "got True" in out.stdout


def test_local_render_and_dry_run_carry_references_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_TOKEN", VALUE)
    (tmp_path / "train.py").write_text("")
    job = Job.validate_data(
        {
            "name": "sec",
            "command": "python train.py",
            "source_dir": ".",
            "secrets": {"TOKEN": "env://MY_TOKEN"},
        },
        base_dir=tmp_path,
    )
    out = api.dry_run(job, provider="local")
    text = json.dumps(out, default=str)
    assert VALUE not in text
    assert json.loads(out["request"]["env"][jobenv.SECRETS]) == {"TOKEN": "env://MY_TOKEN"}


def test_no_secrets_no_variable() -> None:
    from multispot.provider import LaunchContext

    env = jobenv.build(
        Job(name="a", command="python x.py"), LaunchContext("a-1", 1, "file:///c", "file:///o"), "x", 30
    )
    assert jobenv.SECRETS not in env


def test_local_refuses_an_unset_env_reference_at_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_TOKEN", raising=False)
    with pytest.raises(ValidationFailed) as info:
        api.check(job_with({"TOKEN": "env://MY_TOKEN"}), provider="local")
    [problem] = [p for p in info.value.problems if p.path.startswith("secrets")]  # (train.py is absent too)
    assert problem.path == "secrets.TOKEN" and "MY_TOKEN is not set" in problem.message


# --------------------------------------------------------------------------- the runtime


def test_load_exports_values_and_consumes_the_references() -> None:
    env = {jobenv.SECRETS: json.dumps({"TOKEN": "env://SRC"}), "SRC": VALUE, "TOKEN": "stale"}
    assert secrets.load(env) == {"TOKEN": VALUE}
    assert env["TOKEN"] == VALUE and jobenv.SECRETS not in env
    assert secrets.load(env) == {"TOKEN": VALUE}  # again: nothing left to resolve
    assert secrets.get("TOKEN", env) == VALUE


def test_get_of_an_unknown_name_says_so() -> None:
    with pytest.raises(SecretUnavailable, match="no secret 'NOPE'"):
        secrets.get("NOPE", {})


def test_every_failure_is_listed_with_name_and_reference() -> None:
    env = {
        jobenv.SECRETS: json.dumps({"A": "env://MISSING_A", "B": "env://SRC", "C": "nope://x"}),
        "SRC": VALUE,
    }
    with pytest.raises(SecretUnavailable) as info:
        secrets.load(env)
    message = str(info.value)
    assert "secret A (env://MISSING_A): MISSING_A is not set" in message
    assert "secret C (nope://x): no resolver" in message
    assert VALUE not in message
    assert env.get("B") is None and jobenv.SECRETS in env  # all or nothing


def test_detect_resolves_into_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from multispot.runtime import detect

    monkeypatch.setenv(jobenv.SECRETS, json.dumps({"TOKEN": "env://SRC"}))
    monkeypatch.setenv("SRC", VALUE)
    monkeypatch.delenv("TOKEN", raising=False)
    detect()
    assert os.environ["TOKEN"] == VALUE and jobenv.SECRETS not in os.environ


def test_a_broken_variable_is_an_error_not_a_crash() -> None:
    with pytest.raises(SecretUnavailable, match="not a JSON object"):
        secrets.load({jobenv.SECRETS: "[1]"})


# --------------------------------------------------------------------------- AWS (moto's server)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    pytest.importorskip("moto.server", reason="moto[server] is not installed (dev extra)")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return env


def _aws_secret(name: str, value: str) -> str:
    import boto3

    client = boto3.client("secretsmanager", region_name="us-east-1")
    try:
        return str(client.create_secret(Name=name, SecretString=value)["ARN"])
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=value)
        return str(client.describe_secret(SecretId=name)["ARN"])


def test_aws_by_name_arn_and_json_key(aws: dict[str, str]) -> None:
    arn = _aws_secret("team/plain", VALUE)
    _aws_secret("team/json", json.dumps({"key": VALUE, "n": 3}))
    refs = {
        "BY_NAME": "aws-secretsmanager://team/plain",
        "BY_ARN": f"aws-secretsmanager://{arn}",
        "BY_KEY": "aws-secretsmanager://team/json#key",
        "NUMBER": "aws-secretsmanager://team/json#n",
    }
    assert all(secrets.reference_problem(r) is None for r in refs.values())
    assert secrets.resolve(refs, dict(os.environ)) == {
        "BY_NAME": VALUE,
        "BY_ARN": VALUE,
        "BY_KEY": VALUE,
        "NUMBER": "3",
    }


def test_aws_failures_name_the_reference_not_the_value(aws: dict[str, str]) -> None:
    _aws_secret("team/plain", VALUE)
    refs = {
        "GONE": "aws-secretsmanager://team/nothing-here",
        "NOKEY": "aws-secretsmanager://team/plain#key",
    }
    with pytest.raises(SecretUnavailable) as info:
        secrets.resolve(refs, dict(os.environ))
    message = str(info.value)
    assert "secret GONE (aws-secretsmanager://team/nothing-here): ResourceNotFoundException" in message
    assert "secret NOKEY (aws-secretsmanager://team/plain#key): #key asks for a key" in message
    assert VALUE not in message


# --------------------------------------------------------------------------- GCP (fake)


def test_gcp_latest_and_pinned_versions() -> None:
    with gcp_secret_manager() as (fake, env):
        fake.add("my-project", "wandb", "old")
        fake.add("my-project", "wandb", VALUE)
        fake.add("my-project", "wandb", "disabled", enabled=False)
        refs = {
            "LATEST": "gcp-secretmanager://projects/my-project/secrets/wandb",
            "PINNED": "gcp-secretmanager://projects/my-project/secrets/wandb/versions/1",
        }
        assert secrets.resolve(refs, env) == {"LATEST": VALUE, "PINNED": "old"}


@pytest.mark.parametrize(
    ("setup", "ref", "words"),
    [
        ("none", "projects/my-project/secrets/missing", "HTTP 404 NOT_FOUND"),
        ("denied", "projects/my-project/secrets/wandb", "HTTP 403 PERMISSION_DENIED"),
        ("denied", "projects/my-project/secrets/wandb", "roles/secretmanager.secretAccessor"),
        ("disabled", "projects/my-project/secrets/wandb/versions/1", "HTTP 400 FAILED_PRECONDITION"),
    ],
)
def test_gcp_errors(setup: str, ref: str, words: str) -> None:
    with gcp_secret_manager() as (fake, env):
        fake.add("my-project", "wandb", VALUE, enabled=setup != "disabled")
        if setup == "denied":
            fake.denied.add(("my-project", "wandb"))
        with pytest.raises(SecretUnavailable) as info:
            secrets.resolve({"W": f"gcp-secretmanager://{ref}"}, env)
        assert f"secret W (gcp-secretmanager://{ref}): HTTP " in str(info.value)
        assert words in str(info.value)
        assert VALUE not in str(info.value)


def test_gcp_retries_a_hiccup_and_sends_the_metadata_header() -> None:
    with gcp_secret_manager() as (fake, env):
        fake.add("p-12345", "s", VALUE)
        fake.state.fail_next = 1
        assert secrets.resolve({"W": "gcp-secretmanager://projects/p-12345/secrets/s"}, env) == {"W": VALUE}
        assert len(fake.state.requests) == 3  # 503, token, access


def test_gcp_outside_google_cloud_says_so() -> None:
    port = free_port()  # nothing listens: no metadata server here
    env = {"GCE_METADATA_HOST": f"127.0.0.1:{port}"}
    with pytest.raises(SecretUnavailable, match=r"no answer from 127\.0\.0\.1"):
        secrets.resolve({"W": "gcp-secretmanager://projects/p-12345/secrets/s"}, env)


# --------------------------------------------------------------------------- Azure (fake)


def test_azure_current_and_pinned_versions() -> None:
    with azure_key_vault() as (fake, env):
        first = fake.add("my-vault", "wandb-key", "old")
        fake.add("my-vault", "wandb-key", VALUE)
        refs = {
            "CURRENT": "azure-keyvault://my-vault/wandb-key",
            "PINNED": f"azure-keyvault://my-vault/wandb-key/{first}",
        }
        assert secrets.resolve(refs, env) == {"CURRENT": VALUE, "PINNED": "old"}


def test_azure_user_assigned_identity_uses_the_client_id() -> None:
    with azure_key_vault() as (fake, env):
        fake.add("my-vault", "k", VALUE)
        fake.client_ids = {"cid-1"}
        ref = {"K": "azure-keyvault://my-vault/k"}
        with pytest.raises(SecretUnavailable, match="Identity not found"):
            secrets.resolve(ref, env)
        assert secrets.resolve(ref, {**env, "DEFAULT_IDENTITY_CLIENT_ID": "cid-1"}) == {"K": VALUE}


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("missing", "HTTP 404 SecretNotFound"),
        ("denied", "HTTP 403 Forbidden"),
        ("denied", "Key Vault Secrets User role"),
        ("disabled", "HTTP 403 Forbidden: Operation get is not allowed on a disabled secret"),
        ("no-identity", "Identity not found"),
    ],
)
def test_azure_errors(setup: str, words: str) -> None:
    with azure_key_vault() as (fake, env):
        if setup != "missing":
            fake.add("my-vault", "k", VALUE, enabled=setup != "disabled")
        fake.identity = setup != "no-identity"
        if setup == "denied":
            fake.denied.add("my-vault")
        with pytest.raises(SecretUnavailable) as info:
            secrets.resolve({"K": "azure-keyvault://my-vault/k"}, env)
        assert "secret K (azure-keyvault://my-vault/k): " in str(info.value)
        assert words in str(info.value) and VALUE not in str(info.value)


# --------------------------------------------------------------------------- --exec, in a process


CHILD = "import hashlib, os; print(hashlib.sha256((os.environ['G'] + os.environ['A']).encode()).hexdigest(), 'MULTISPOT_SECRETS' in os.environ)"


def _exec(env: dict[str, str], refs: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, jobenv.SECRETS: json.dumps(refs)}
    argv = secrets.exec_argv([sys.executable, "-c", CHILD], python=sys.executable)
    return subprocess.run(argv, env=full, capture_output=True, text=True, timeout=120)


def test_exec_wrapper_hands_values_to_a_script_that_never_imports_multispot() -> None:
    with gcp_secret_manager() as (gfake, genv), azure_key_vault() as (afake, aenv):
        gfake.add("my-project", "g", VALUE)
        afake.add("my-vault", "a", VALUE[::-1])
        done = _exec(
            {**genv, **aenv},
            {"G": "gcp-secretmanager://projects/my-project/secrets/g", "A": "azure-keyvault://my-vault/a"},
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [hashlib.sha256((VALUE + VALUE[::-1]).encode()).hexdigest(), "False"]
    assert done.stderr == ""  # no runpy warning, nothing said
    assert VALUE not in done.stdout


def test_exec_wrapper_fails_before_the_command_starts() -> None:
    with gcp_secret_manager() as (_, genv):
        done = _exec(
            genv, {"G": "gcp-secretmanager://projects/my-project/secrets/gone", "A": "env://NOT_SET_HERE"}
        )
    assert done.returncode == secrets.EXIT_UNRESOLVED and done.stdout == ""
    assert "multispot: the job cannot start" in done.stderr
    assert "secret G (gcp-secretmanager://projects/my-project/secrets/gone): HTTP 404" in done.stderr
    assert "secret A (env://NOT_SET_HERE)" in done.stderr


def test_exec_command_wraps_a_shell_line() -> None:
    line = secrets.exec_command("cd /x && python train.py --lr 1", python="python3")
    assert line == "python3 -m multispot.runtime.secrets --exec -- sh -c 'cd /x && python train.py --lr 1'"


# --------------------------------------------------------------------------- the local provider


SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    from multispot.runtime import secrets
    seen = {name: hashlib.sha256(os.environ[name].encode()).hexdigest() for name in ("TOKEN", "WANDB_API_KEY")}
    seen["get"] = hashlib.sha256(secrets.get("TOKEN").encode()).hexdigest()
    seen["refs_left"] = "MULTISPOT_SECRETS" in os.environ
    with open(sys.argv[1], "w") as f:
        json.dump(seen, f)
    print("checked", len(seen), "values")
    """
)


def _all_bytes(root: Path) -> Iterator[tuple[Path, bytes]]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path, path.read_bytes()


@pytest.mark.slow
def test_local_job_gets_values_and_nothing_on_disk_has_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws: dict[str, str]
) -> None:
    _aws_secret("team/wandb", json.dumps({"key": VALUE[::-1]}))
    home = tmp_path / "home"
    monkeypatch.setenv("MULTISPOT_HOME", str(home))
    monkeypatch.setenv("MY_TOKEN", VALUE)
    monkeypatch.setenv("TOKEN", "the submitter's own TOKEN, which the secret overrides")
    (tmp_path / "check.py").write_text(SCRIPT)
    job = Job.validate_data(
        {
            "name": "sec",
            "command": ["python", "check.py", str(tmp_path / "seen.json")],
            "source_dir": ".",
            "secrets": {"TOKEN": "env://MY_TOKEN", "WANDB_API_KEY": "aws-secretsmanager://team/wandb#key"},
            "output_uri": str(tmp_path / "out"),
        },
        base_dir=tmp_path,
    )
    store = JobStore(home / "jobs.sqlite")
    dry = json.dumps(api.dry_run(job, provider="local"), default=str)
    run = api.submit(job, store=store, start_controller=False)
    Controller(run.id, store, poll_interval=0.05).run()
    assert run.status is JobState.SUCCEEDED, run.record.message
    seen = json.loads((tmp_path / "seen.json").read_text())
    (tmp_path / "seen.json").unlink()
    assert seen == {
        "TOKEN": hashlib.sha256(VALUE.encode()).hexdigest(),
        "WANDB_API_KEY": hashlib.sha256(VALUE[::-1].encode()).hexdigest(),
        "get": hashlib.sha256(VALUE.encode()).hexdigest(),
        "refs_left": False,
    }
    assert VALUE not in dry and VALUE[::-1] not in dry
    logs = "".join(run.logs())
    assert "checked 4 values" in logs
    files = dict(_all_bytes(tmp_path))
    assert any(p.name == "spec.json" for p in files) and any(p.suffix == ".sqlite" for p in files)
    for path, data in files.items():
        for value in (VALUE, VALUE[::-1]):
            assert value.encode() not in data, f"{path} holds a secret's value"


@pytest.mark.slow
def test_local_job_fails_at_start_naming_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws: dict[str, str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MULTISPOT_HOME", str(home))
    (tmp_path / "check.py").write_text("raise SystemExit('must not start')\n")
    job = Job.validate_data(
        {
            "name": "sec",
            "command": "python check.py",
            "source_dir": ".",
            "secrets": {"WANDB_API_KEY": "aws-secretsmanager://team/not-there"},
            "spot": {"max_attempts": 1},
        },
        base_dir=tmp_path,
    )
    store = JobStore(home / "jobs.sqlite")
    run = api.submit(job, store=store, start_controller=False)
    Controller(run.id, store, poll_interval=0.05).run()
    assert run.status is JobState.FAILED
    [attempt] = run.attempts
    assert (
        "secret WANDB_API_KEY (aws-secretsmanager://team/not-there): ResourceNotFoundException"
        in attempt.message
    )
    assert "must not start" not in "".join(run.logs())
