"""Hostile job specs: each is refused quickly with a JobSpecError that names the field, never a
traceback, a hang, or a value quoted whole. Issue 14; bounds in multispot/job.py."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from multispot.errors import JobSpecError, Problem
from multispot.job import MAX_DEPTH, MAX_SPEC_BYTES, Job

BASE = "name: ok\ncommand: python train.py\n"


def problems_of(text: str, base_dir: str | Path = ".") -> list[Problem]:
    with pytest.raises(JobSpecError) as info:
        Job.from_yaml_text(text, base_dir=base_dir)
    assert info.value.problems
    return info.value.problems


def paths_of(text: str) -> list[str]:
    return [p.path for p in problems_of(text)]


def bomb(levels: int, at: str) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    body = "\n".join("    " + line for line in lines)
    return BASE + f"{at}\n  bomb:\n{body}\n" if at == "provider_options:" else BASE + f"{at}\n{body}\n"


# ---------------------------------------------------------------- bounded loading


@pytest.mark.parametrize("at", ["hyperparameters:", "provider_options:"])
def test_a_ten_level_alias_bomb_is_refused_before_it_expands(at: str) -> None:
    # Bounded by counting, not by timing: the refusal comes from the event scan, before any
    # object is built (a built bomb would be 9**10 values for pydantic and to_data to walk).
    problems = problems_of(bomb(10, at))
    assert len(problems) == 1
    assert "alias" in problems[0].message
    assert problems[0].path.startswith(at.rstrip(":"))


def test_aliases_within_the_bound_still_work() -> None:
    job = Job.from_yaml_text(BASE + "x-env: &e {A: '1'}\n".replace("x-env", "tags") + "env: *e\n")
    assert job.env == {"A": "1"}


def test_a_bomb_built_in_python_is_refused_by_validate_data() -> None:
    leaf: list[object] = ["x"] * 9
    for _ in range(10):
        leaf = [leaf] * 9
    with pytest.raises(JobSpecError) as info:
        Job.validate_data({"name": "ok", "command": ["x"], "provider_options": {"local": {"b": leaf}}})
    assert info.value.problems[0].path.startswith("provider_options")


def test_a_cycle_in_python_data_is_refused() -> None:
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(JobSpecError):
        Job.validate_data({"name": "ok", "command": ["x"], "provider_options": {"local": loop}})


def test_deep_nesting_is_a_field_error_not_a_recursion_error() -> None:
    text = BASE + "provider_options:\n  local:\n    x: " + "[" * 500 + "]" * 500 + "\n"
    [problem] = problems_of(text)
    assert "nested" in problem.message
    assert problem.path.startswith("provider_options.local.x")
    assert f"{MAX_DEPTH}" in problem.message


def test_a_huge_file_is_refused_by_size_without_being_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "w") as f:
        f.write(BASE + "tags:\n")
        for i in range(MAX_SPEC_BYTES // 20 + 10):
            f.write(f"  k{i}: {'v' * 12}\n")
    with pytest.raises(JobSpecError) as info:
        Job.from_yaml(path)
    assert [p.path for p in info.value.problems] == ["(file)"]
    assert "KiB" in str(info.value)


def test_dev_zero_as_a_job_file_is_refused() -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(JobSpecError) as info:
        Job.from_yaml("/dev/zero")
    assert info.value.problems[0].path == "(file)"


def test_invalid_utf8_is_a_file_problem_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(BASE.encode() + b"tags:\n  t: \xff\xfe\n")
    with pytest.raises(JobSpecError) as info:
        Job.from_yaml(path)
    [problem] = info.value.problems
    assert problem.path == "(file)" and "UTF-8" in problem.message and problem.line == 4


def test_a_huge_value_is_quoted_short_in_the_error() -> None:
    huge = "A" * 200_000
    with pytest.raises(JobSpecError) as info:
        Job.validate_data({"name": huge, "command": ["x"]})
    assert len(str(info.value)) < 500
    assert "200000 chars" in str(info.value)


def test_duplicate_keys_are_refused_with_their_line() -> None:
    [problem] = problems_of(BASE + "env:\n  A: '1'\n  A: '2'\n")
    assert problem.path == "env.A" and problem.line == 5 and "twice" in problem.message
    assert paths_of(BASE + "name: other\n") == ["name"]


# ---------------------------------------------------------------- silently accepted nonsense


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"name": "ok\n"}, "name"),
        ({"env": {"A\n": "1"}}, "env.A\n"),
        ({"env": {"A": "x\x00y"}}, "env.A"),
        ({"env": {"A": "$HOME"}}, "env.A"),
        ({"env": {"A": "${HOME:-x}"}}, "env.A"),
        ({"env": {"A": "cost: 5$"}}, "env.A"),
        ({"command": ["python", "a\x00b"]}, "command[1]"),
        ({"provider_options": {"lcoal": {"preemptions": "every=1s"}}}, "provider_options"),
        ({"limits": {"deadline": "2001-01-01T00:00:00Z"}}, "limits.deadline"),
        ({"checkpoint": {"uri": "file://relative/ckpt"}}, "checkpoint.uri"),
        ({"checkpoint": {"uri": "file://"}}, "checkpoint.uri"),
        ({"output_uri": "file://"}, "output_uri"),
        ({"output_uri": ""}, "output_uri"),
        ({"inputs": {"data": "file://host/x"}}, "inputs.data"),
        ({"resources": {"accelerator": "V100:100000000000000000000"}}, "resources.accelerator"),
        ({"resources": {"accelerator": "V100:10^20"}}, "resources.accelerator"),
        ({"resources": {"accelerator": "V100:65"}}, "resources.accelerator"),
        ({"resources": {"memory_gb": float("inf")}}, "resources.memory_gb"),
        ({"resources": {"cpus": float("nan")}}, "resources.cpus"),
        ({"limits": {"budget": float("inf")}}, "limits.budget"),
        ({"hyperparameters": {"": 1}}, "hyperparameters.''"),
        ({"hyperparameters": {"-x": 1}}, "hyperparameters.-x"),
        ({"hyperparameters": {"a b": 1}}, "hyperparameters.a b"),
        ({"tags": {"": "v"}}, "tags.''"),
        ({"tags": {"t": "a\x1bb"}}, "tags.t"),
        ({"checkpoint": {"keep": 1001}}, "checkpoint.keep"),
        ({"image": "img\n:latest"}, "image"),
    ],
)
def test_nonsense_is_refused_with_its_field_path(data: dict[str, object], path: str) -> None:
    spec: dict[str, object] = {"name": "ok", "command": ["python", "train.py"], **data}
    with pytest.raises(JobSpecError) as info:
        Job.validate_data(spec)
    assert path in [p.path for p in info.value.problems], info.value.problems


def test_a_trailing_newline_in_yaml_names_is_refused() -> None:
    assert paths_of('name: "ok\\n"\ncommand: x\n') == ["name"]


def test_a_near_future_deadline_and_escaped_dollars_are_fine() -> None:
    soon = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    job = Job.validate_data(
        {"name": "ok", "command": ["x"], "limits": {"deadline": soon}, "env": {"P": "a$$b"}}
    )
    assert job.resolve_env({}) == {"P": "a$b"}
    assert job.checkpoint.keep == 3


def test_file_uris_that_are_absolute_are_kept() -> None:
    job = Job.validate_data(
        {
            "name": "ok",
            "command": ["x"],
            "checkpoint": {"uri": "file:///tmp/ck"},
            "output_uri": "file://localhost/o",
        }
    )
    assert job.checkpoint.uri == "file:///tmp/ck"


def test_a_known_first_party_provider_needs_no_installed_adapter() -> None:
    job = Job.validate_data(
        {"name": "ok", "command": ["x"], "provider_options": {"sagemaker": {"role": "r"}}}
    )
    assert "sagemaker" in job.provider_options


# ---------------------------------------------------------------- source_dir


@pytest.mark.parametrize("where", ["/", "'~/'"])
def test_source_dir_root_and_home_are_refused(where: str) -> None:
    [problem] = problems_of(BASE + f"source_dir: {where}\n")
    assert problem.path == "source_dir"


def test_source_dir_inside_multispot_home_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "code").mkdir(parents=True)
    [problem] = problems_of(BASE + "source_dir: home/code\n", base_dir=tmp_path)
    assert problem.path == "source_dir" and "home" in problem.message


def test_a_record_is_trusted_for_what_depended_on_submit(tmp_path: Path) -> None:
    code = tmp_path / "src"
    code.mkdir()
    soon = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat()
    job = Job.validate_data(
        {"name": "ok", "command": ["x"], "source_dir": str(code), "limits": {"deadline": soon}}
    )
    data = job.to_data()
    os.rename(code, tmp_path / "renamed")  # after submit: the staged copy is what runs
    data["limits"]["deadline"] = "2001-01-01T00:00:00+00:00"  # and the deadline has since passed
    again = Job.from_record(data)
    assert again.source_dir == str(code)
    with pytest.raises(JobSpecError):
        Job.validate_data(data)  # a new submit still checks both


def test_every_hostile_spec_is_answered_quickly() -> None:
    # A generous bound for a loaded 2-core machine: the unbounded versions took minutes.
    started = time.process_time()
    for text in (bomb(10, "hyperparameters:"), bomb(10, "provider_options:"), BASE + "x: " + "[" * 5000):
        with pytest.raises(JobSpecError):
            Job.from_yaml_text(text)
    assert time.process_time() - started < 20
