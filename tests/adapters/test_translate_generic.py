"""The three adapters' ``translate`` modules through one suite: the same names, goldens that pass
the service's own strict check, and the in-job contract read back by the runtime's reader.

Each adapter's ``tests/adapters/<name>/test_<name>_translate.py`` exposes the same shape:
``CASES`` (name → () → (Job, Placement)), ``ctx()``, ``strict(request)`` (the service's own
validation: botocore, the proto parse, the SDK's REST model), ``environment_of(request)``,
``native(key)`` (the arguments of ``native_state`` for a state-table key) and ``UNKNOWN_STATE``;
its adapter-specific tests stay there. Goldens live in ``<name>/goldens``; regenerate them with
``MULTISPOT_UPDATE_GOLDENS=1``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from multispot import jobenv
from multispot.errors import UnknownProviderState
from multispot.job import Job
from multispot.status import JobState

HERE = Path(__file__).parent
ADAPTERS = ("sagemaker", "vertex", "azureml")
# The functions every translate module has, with their leading parameters.
SHAPE = {
    "options": ("job",),
    "problems": ("job", "placement"),
    "environment": ("job", "placement", "ctx"),
    "default_uri": ("kind", "job_id", "job"),
    "render": ("job", "placement", "ctx"),
    "native_state": (),
}


def translate(adapter: str) -> ModuleType:
    return importlib.import_module(f"multispot_{adapter}.translate")


def cases(adapter: str) -> ModuleType:
    """The adapter's translate test module, under the name pytest gives it (so it loads once)."""
    name = f"test_{adapter}_translate"
    if name not in sys.modules:
        folder = HERE / adapter
        sys.path.insert(0, str(folder))  # its own helpers (fakes, conftest constants) import by name
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


GOLDEN_CASES = [(adapter, case) for adapter in ADAPTERS for case in sorted(cases(adapter).CASES)]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_same_names_for_the_same_things(adapter: str) -> None:
    t = translate(adapter)
    assert adapter == t.PROVIDER and isinstance(t.NOTICE_SECONDS, float) and t.NOTICE_SECONDS > 0
    assert (
        isinstance(t.OPTIONS, dict) and t.STATES and all(isinstance(s, JobState) for s in t.STATES.values())
    )
    for name, leading in SHAPE.items():
        params = list(inspect.signature(getattr(t, name)).parameters)
        assert tuple(params[: len(leading)]) == leading, f"{adapter}.translate.{name}{tuple(params)}"


@pytest.mark.parametrize(("adapter", "case"), GOLDEN_CASES)
def test_golden_requests_pass_the_service_check(adapter: str, case: str) -> None:
    t, shape = translate(adapter), cases(adapter)
    job, placement = shape.CASES[case]()
    assert t.problems(job, placement) == []
    request = t.render(job, placement, shape.ctx())
    shape.strict(request)
    golden = HERE / adapter / "goldens" / f"{case}.json"
    text = json.dumps(request, indent=2, sort_keys=True) + "\n"
    if os.environ.get("MULTISPOT_UPDATE_GOLDENS") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), (
        f"render changed; regenerate with MULTISPOT_UPDATE_GOLDENS=1 ({golden})"
    )


@pytest.mark.parametrize(("adapter", "case"), GOLDEN_CASES)
def test_the_request_carries_the_contract_the_runtime_reads(adapter: str, case: str) -> None:
    t, shape = translate(adapter), cases(adapter)
    job, placement = shape.CASES[case]()
    ctx = shape.ctx()
    env = shape.environment_of(t.render(job, placement, ctx))
    assert t.environment(job, placement, ctx).items() <= env.items()  # the request may add its own
    seen = jobenv.read(env, known=[])
    assert (seen.job_id, seen.attempt, seen.provider) == (ctx.job_id, ctx.attempt, adapter)
    assert seen.notice_seconds == t.NOTICE_SECONDS
    assert seen.checkpoint_keep == job.checkpoint.keep
    assert seen.checkpoint_every_steps == job.checkpoint.every_steps
    assert seen.hyperparameters == job.hyperparameter_strings()
    for key, value in ctx.env.items():
        assert env[key] == value


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_unknown_option_is_named_by_its_path(adapter: str) -> None:
    t, shape = translate(adapter), cases(adapter)
    job, placement = next(iter(shape.CASES.values()))()
    data = job.to_data()
    data["provider_options"][adapter]["no_such_option"] = 1
    bad = Job.validate_data(data)
    assert f"provider_options.{adapter}.no_such_option" in [path for path, *_ in t.problems(bad, placement)]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_default_uris_name_the_kind_and_the_job(adapter: str) -> None:
    t, shape = translate(adapter), cases(adapter)
    job, _ = next(iter(shape.CASES.values()))()
    uris = {kind: t.default_uri(kind, "job-9", job) for kind in ("checkpoints", "outputs")}
    assert uris["checkpoints"] != uris["outputs"]
    assert all(kind in uri and "job-9" in uri for kind, uri in uris.items())


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_every_native_state_maps_and_an_unknown_one_is_an_error(adapter: str) -> None:
    t, shape = translate(adapter), cases(adapter)
    for key, state in t.STATES.items():
        assert t.native_state(*shape.native(key)) is state, key
    with pytest.raises(UnknownProviderState):
        t.native_state(*shape.native(shape.UNKNOWN_STATE))
