"""Property-based fuzzing of job specs (issue 14): whatever the input, loading either gives a Job
or raises JobSpecError with field paths, never another exception, and within bounded CPU time and
memory. What is accepted survives the store's round trip (to_data, then Job.from_record)."""

from __future__ import annotations

import math
import time
import tracemalloc
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multispot.errors import JobSpecError
from multispot.job import MAX_VALUES, Job

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text with what hostile input carries: control characters, NUL, newlines, '$', unicode, long runs.
nasty_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "\n",
            "ok\n",
            "\x00",
            "a\x1b[31mb",
            "$HOME",
            "${X:-y}",
            "${X}",
            "$$",
            "file://",
            "file://x/y",
            "s3://",
            "V100:10^20",
            "V100:99999999999999999999",
            "-",
            "--",
            "..",
            "/",
            "~",
            "1e309",
            "nan",
            ".inf",
            "2001-01-01T00:00:00Z",
            "2999-01-01T00:00:00Z",
            "36h",
            "[x]",
            "lcoal",
            "local",
            "A" * 500,
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)),
    max_leaves=20,
)
FIELDS = [
    "name",
    "command",
    "source_dir",
    "image",
    "resources",
    "env",
    "hyperparameters",
    "inputs",
    "output_uri",
    "checkpoint",
    "spot",
    "limits",
    "targets",
    "tags",
    "provider_options",
]
SUBFIELDS = {
    "resources": ["accelerator", "instance_type", "cpus", "memory_gb", "nodes"],
    "checkpoint": ["uri", "interval", "every_steps", "keep"],
    "spot": ["policy", "fallback_after", "max_attempts", "work"],
    "limits": ["max_runtime", "max_wait", "deadline", "max_price", "budget"],
}


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "fuzz", "command": ["python", "train.py"]}
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        if field in SUBFIELDS and draw(st.booleans()):
            keys = draw(st.lists(st.sampled_from(SUBFIELDS[field]), min_size=1, max_size=3, unique=True))
            spec[field] = {key: draw(values) for key in keys}
        elif field in ("env", "hyperparameters", "tags", "inputs", "provider_options") and draw(
            st.booleans()
        ):
            spec[field] = draw(
                st.dictionaries(nasty_text, scalars if field != "provider_options" else values, max_size=3)
            )
        else:
            spec[field] = draw(values)
    return spec


def check_outcome(load: Any) -> Job | None:
    try:
        job = load()
    except JobSpecError as exc:
        assert exc.problems and all(p.path and p.message for p in exc.problems)
        assert len(str(exc)) < 20_000  # values are quoted short
        return None
    assert isinstance(job, Job)
    return job


@FUZZ
@given(specs())
def test_any_spec_validates_or_is_a_job_spec_error(spec: dict[str, Any]) -> None:
    job = check_outcome(lambda: Job.validate_data(spec))
    if job is None:
        return
    data = job.to_data()
    again = Job.from_record(data)  # what the controller does with the stored spec
    assert again.to_data() == data
    for value in (job.resources.cpus, job.resources.memory_gb, job.limits.budget, job.limits.max_price):
        assert value is None or math.isfinite(value)
    assert all(key and not key.startswith("-") for key in job.hyperparameters)
    assert all(key.strip() for key in job.tags)
    assert "\x00" not in "".join(job.env.values()) + "".join(job.argv())


@FUZZ
@given(st.text(max_size=400))
def test_any_text_loads_or_is_a_job_spec_error(text: str) -> None:
    check_outcome(lambda: Job.from_yaml_text("name: fuzz\ncommand: x\n" + text))
    check_outcome(lambda: Job.from_yaml_text(text))


@st.composite
def alias_bombs(draw: st.DrawFn) -> str:
    levels = draw(st.integers(min_value=1, max_value=14))
    fanout = draw(st.integers(min_value=2, max_value=9))
    field = draw(
        st.sampled_from(["hyperparameters", "tags", "env", "provider_options", "resources", "targets"])
    )
    flow = draw(st.booleans())
    lines = [f"  a0: &a0 [{', '.join(['x'] * fanout)}]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * fanout)
        lines.append(
            f"  a{i}: &a{i} [{refs}]"
            if flow
            else f"  a{i}: &a{i}\n" + "".join(f"    - *a{i - 1}\n" for _ in range(fanout)).rstrip("\n")
        )
    return f"name: fuzz\ncommand: x\n{field}:\n" + "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alias_bombs())
def test_alias_bombs_are_bounded_in_cpu_time_and_memory(text: str) -> None:
    tracemalloc.start()
    started = time.process_time()  # CPU time of this process: a busy machine does not inflate it
    try:
        job = check_outcome(lambda: Job.from_yaml_text(text))
        if job is not None:
            job.to_data()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.process_time() - started < 30
    assert peak < 200 * 1024 * 1024, f"peak {peak >> 20} MiB"


def test_the_value_bound_is_what_refuses_a_bomb() -> None:
    # The bound, not luck: a bomb just over MAX_VALUES is refused, one well under it is checked normally.
    fanout = 10
    levels = math.ceil(math.log(MAX_VALUES, fanout)) + 1
    lines = [f"  a0: &a0 [{', '.join(['x'] * fanout)}]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]" for i in range(1, levels)]
    text = "name: fuzz\ncommand: x\ntags:\n" + "\n".join(lines) + "\n"
    try:
        Job.from_yaml_text(text)
    except JobSpecError as exc:
        assert "alias" in str(exc)
    else:
        raise AssertionError("a bomb over MAX_VALUES was accepted")
