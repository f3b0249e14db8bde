"""The Job spec: YAML loading, validation problems with field paths and lines, env references."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from multispot.errors import JobSpecError, Problem
from multispot.job import Job, Resources, check_uri

BASE = "name: train\ncommand: python train.py\n"


def load(text: str, **kwargs: object) -> Job:
    return Job.from_yaml_text(textwrap.dedent(text), **kwargs)  # type: ignore[arg-type]


def problems_of(text: str, **kwargs: object) -> list[Problem]:
    with pytest.raises(JobSpecError) as info:
        load(text, **kwargs)
    assert info.value.problems, "a JobSpecError always names at least one problem"
    return info.value.problems


def only_problem(text: str, **kwargs: object) -> Problem:
    problems = problems_of(text, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of ``text`` (dedented) containing ``needle``."""
    for number, line in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


# --------------------------------------------------------------------------- a valid job


def test_minimal_job_has_neutral_defaults() -> None:
    job = load(BASE)
    assert job.name == "train"
    assert job.command == ["python", "train.py"]
    assert job.spot.policy == "spot"
    assert job.checkpoint.uri is None
    assert job.checkpoint.keep >= 1
    assert job.resources.nodes == 1
    assert job.env == {}


def test_full_job_parses_every_section(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    text = f"""
    name: resnet-50
    command: ["python", "train.py", "--epochs", "3"]
    source_dir: {tmp_path / "src"}
    image: pytorch-2
    resources:
      accelerator: a100:8
      cpus: 8
      memory_gb: 64
      nodes: 2
    env:
      LOG_LEVEL: debug
    hyperparameters:
      lr: 0.1
      epochs: 3
      name: x
      fast: true
    inputs:
      train: s3://bucket/train
    output_uri: gs://out/models
    checkpoint:
      uri: s3://bucket/ckpt/
      interval: 10m
      keep: 5
    spot:
      policy: fallback
      fallback_after: 2
      max_attempts: 7
    limits:
      max_runtime: 2h
      max_wait: 3h
      deadline: 1d
      max_price: 3.5
    targets:
      - provider: local
        market: spot
      - provider: sagemaker
        region: us-east-1
    tags:
      team: vision
    """
    job = load(text)
    assert job.command == ["python", "train.py", "--epochs", "3"]
    assert job.source_dir == str((tmp_path / "src").resolve())
    assert job.resources.accelerator == "A100:8"
    assert job.resources.accelerator_name == "A100"
    assert job.resources.accelerator_count == 8
    assert job.resources.nodes == 2
    assert job.hyperparameters == {"lr": 0.1, "epochs": 3, "name": "x", "fast": True}
    assert job.inputs == {"train": "s3://bucket/train"}
    assert job.checkpoint.uri == "s3://bucket/ckpt"  # trailing slash dropped
    assert job.checkpoint.interval == 600.0
    assert job.checkpoint.keep == 5
    assert (job.spot.policy, job.spot.fallback_after, job.spot.max_attempts) == ("fallback", 2, 7)
    assert job.limits.max_runtime == 7200.0
    assert job.limits.max_wait == 3 * 3600.0
    assert job.limits.deadline == 86400.0
    assert [t.provider for t in job.targets] == ["local", "sagemaker"]
    assert job.targets[1].region == "us-east-1"


def test_to_data_round_trips_through_yaml() -> None:
    job = load(
        """
        name: rt
        command: python -m pkg.train --lr 0.1
        resources: {accelerator: t4}
        spot: fallback
        limits: {max_runtime: 1h, deadline: 2030-01-02T03:04:05Z}
        """
    )
    again = Job.from_yaml_text(job.to_yaml())
    assert again == job
    assert again.to_data() == job.to_data()


# --------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("text", "path", "suggestion"),
    [
        (BASE + "chekpoint:\n  keep: 2\n", "chekpoint", "checkpoint"),
        (BASE + "checkpoint:\n  intervall: 5m\n", "checkpoint.intervall", "interval"),
        (BASE + "resources:\n  acelerator: V100\n", "resources.acelerator", "accelerator"),
        (BASE + "spot:\n  fallback_afer: 2\n", "spot.fallback_afer", "fallback_after"),
        (BASE + "limits:\n  max_runtim: 2h\n", "limits.max_runtim", "max_runtime"),
        (BASE + "targets:\n  - provider: local\n    markt: spot\n", "targets[0].markt", "market"),
    ],
)
def test_unknown_key_suggests_the_field_at_its_own_level(text: str, path: str, suggestion: str) -> None:
    problem = only_problem(text)
    assert problem.path == path
    assert f"did you mean '{suggestion}'" in problem.message
    key = path.rsplit(".", 1)[-1].split("]")[-1]
    assert problem.line == line_of(text, key + ":")


def test_unknown_key_without_a_close_match_lists_known_fields() -> None:
    problem = only_problem(BASE + "checkpoint:\n  zzzzzz: 1\n")
    assert problem.path == "checkpoint.zzzzzz"
    assert "did you mean" not in problem.message
    for known in ("uri", "interval", "keep"):
        assert known in problem.message
    # and not the top-level fields: the suggestion is at the nesting level of the typo
    assert "resources" not in problem.message


def test_unknown_key_whose_name_resembles_a_type_keeps_its_path() -> None:
    # pydantic names union branches "float", "str", ...; a user's key is not such a branch
    problem = only_problem(BASE + "float_x: 1\n")
    assert problem.path == "float_x"
    assert problem.line == 3


# --------------------------------------------------------------------------- field problems name path and line


@pytest.mark.parametrize(
    ("extra", "path", "fragment", "line"),
    [
        ("spot:\n  policy: cheap\n", "spot.policy", "cheap", 4),
        ("spot: cheap\n", "spot.policy", "fallback", 3),
        ("resources:\n  accelerator: 'V100:0'\n", "resources.accelerator", "NAME[:COUNT]", 4),
        ("resources:\n  accelerator: 'V100:x'\n", "resources.accelerator", "V100:x", 4),
        ("resources:\n  accelerator: ':4'\n", "resources.accelerator", "NAME[:COUNT]", 4),
        ("resources:\n  nodes: 0\n", "resources.nodes", "0", 4),
        ("resources:\n  cpus: -2\n", "resources.cpus", "-2", 4),
        ("checkpoint:\n  uri: ftp://x\n", "checkpoint.uri", "ftp", 4),
        ("checkpoint:\n  uri: 's3://'\n", "checkpoint.uri", "bucket", 4),
        ("checkpoint:\n  uri: 's3:/bucket'\n", "checkpoint.uri", "s3://", 4),
        ("checkpoint:\n  interval: often\n", "checkpoint.interval", "often", 4),
        ("checkpoint:\n  keep: 0\n", "checkpoint.keep", "0", 4),
        ("checkpoint:\n  transfer:\n    part_size_mib: 4\n", "checkpoint.transfer.part_size_mib", "5", 5),
        ("checkpoint:\n  transfer:\n    concurrency: 0\n", "checkpoint.transfer.concurrency", "1", 5),
        ("checkpoint:\n  transfer:\n    parts: 8\n", "checkpoint.transfer.parts", "part_size_mib", 5),
        ("limits:\n  max_wait: abc\n", "limits.max_wait", "abc", 4),
        ("limits:\n  max_wait: -5\n", "limits.max_wait", "negative", 4),
        ("limits:\n  max_runtime: 0\n", "limits.max_runtime", "greater than 0", 4),
        ("limits:\n  deadline: soon\n", "limits.deadline", "soon", 4),
        ("limits:\n  deadline: 2026-13-01\n", "limits.deadline", "ISO", 4),
        ("limits:\n  max_price: -1\n", "limits.max_price", "-1", 4),
        ("env:\n  TOKEN: 5\n", "env.TOKEN", "string", 4),
        ("env:\n  MULTISPOT_JOB_ID: x\n", "env.MULTISPOT_JOB_ID", "MULTISPOT_", 4),
        ("env:\n  1BAD: x\n", "env.1BAD", "environment variable", 4),
        ("env:\n  BAD-NAME: x\n", "env.BAD-NAME", "environment variable", 4),
        ("inputs:\n  train: ftp://x/y\n", "inputs.train", "ftp", 4),
        ("output_uri: 'gs://'\n", "output_uri", "bucket", 3),
        ("tags:\n  multispot-id: x\n", "tags", "multispot", 3),
        ("targets:\n  - provider: local\n    market: cheap\n", "targets[0].market", "cheap", 5),
    ],
)
def test_field_problem_names_path_and_line(extra: str, path: str, fragment: str, line: int) -> None:
    text = BASE + extra
    problems = problems_of(text)
    assert [p.path for p in problems] == [path], problems
    problem = problems[0]
    assert fragment in problem.message
    assert problem.line == line
    # and the rendered error shows both
    assert f"{path} (line {line})" in str(JobSpecError(problems))


def test_problem_in_a_list_item_names_the_item_line() -> None:
    text = "name: a\ncommand:\n  - python\n  - train.py\n  - [nested]\n"
    problem = only_problem(text)
    assert problem.path == "command[2]"
    assert problem.line == 5


def test_several_problems_are_reported_together() -> None:
    text = "name: Bad_Name\ncommand: x\nspot:\n  policy: nope\nresources:\n  accelerator: 'A100:0'\n"
    problems = problems_of(text)
    assert {p.path for p in problems} == {"name", "spot.policy", "resources.accelerator"}
    by_path = {p.path: p.line for p in problems}
    assert by_path == {"name": 1, "spot.policy": 4, "resources.accelerator": 6}


def test_missing_required_fields() -> None:
    problems = problems_of("image: x\n")
    assert {p.path for p in problems} == {"name", "command"}
    assert all("missing" in p.message for p in problems)


def test_error_source_is_named(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(BASE + "spot: cheap\n")
    with pytest.raises(JobSpecError) as info:
        Job.from_yaml(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    assert info.value.problems[0].line == 3


def test_unreadable_file_is_a_job_spec_error(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError) as info:
        Job.from_yaml(tmp_path / "nope.yaml")
    assert info.value.problems[0].path == "(file)"


def test_job_spec_error_is_a_value_error() -> None:
    # so callers that catch ValueError (click, pydantic users) see it too
    with pytest.raises(ValueError):
        load(BASE + "spot: cheap\n")


# --------------------------------------------------------------------------- YAML shape


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: a\n  command: [x\n", 2),
        ("name: a\ncommand: [x, y\n", None),
        ("name: 'unterminated\ncommand: x\n", None),
        ("name: a\ncommand: x\n\tspot: spot\n", 3),
    ],
)
def test_malformed_yaml_is_one_problem_with_a_line(text: str, line: int | None) -> None:
    problem = only_problem(text)
    assert problem.path == "(yaml)"
    assert isinstance(problem.line, int) and problem.line >= 1
    if line is not None:
        assert problem.line == line
    assert "YAML" in problem.message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "42\n", "null\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    problem = only_problem(text)
    assert problem.path == "(top)"
    assert "mapping" in problem.message


def test_validate_data_has_paths_but_no_lines() -> None:
    with pytest.raises(JobSpecError) as info:
        Job.validate_data({"name": "a", "command": "x", "spot": {"policy": "cheap"}})
    assert [(p.path, p.line) for p in info.value.problems] == [("spot.policy", None)]


def test_date_like_strings_are_not_turned_into_dates() -> None:
    job = load(BASE + "tags:\n  released: 2026-01-02\nenv:\n  DAY: 2026-01-02\n")
    assert job.tags == {"released": "2026-01-02"}
    assert job.env == {"DAY": "2026-01-02"}


# --------------------------------------------------------------------------- URIs


@pytest.mark.parametrize(
    "uri",
    ["s3://bucket/ckpt", "gs://b/p", "memory://x/y", "file:///tmp/ckpt", "az://container/p", "abfss://c/p"],
)
def test_supported_uris_are_kept(uri: str) -> None:
    assert check_uri(uri) == uri
    assert load(BASE + f"checkpoint:\n  uri: {uri}\n").checkpoint.uri == uri


@pytest.mark.parametrize(
    "uri", ["ftp://x", "http://host/p", "s3://", "gs:///path", "s3:/bucket", "gs:bucket"]
)
def test_bad_uris_are_rejected(uri: str) -> None:
    with pytest.raises(ValueError):
        check_uri(uri)
    assert only_problem(BASE + f"checkpoint:\n  uri: '{uri}'\n").path == "checkpoint.uri"


def test_plain_paths_become_file_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert check_uri(str(tmp_path / "abs")) == (tmp_path / "abs").resolve().as_uri()
    assert check_uri("rel/dir") == (tmp_path / "rel" / "dir").resolve().as_uri()
    job = load(BASE + f"checkpoint:\n  uri: {tmp_path / 'ck'}\noutput_uri: out\n")
    assert job.checkpoint.uri == (tmp_path / "ck").resolve().as_uri()
    assert job.output_uri == (tmp_path / "out").resolve().as_uri()


def test_relative_paths_in_a_job_file_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = project / "job.yaml"
    path.write_text(
        BASE + "source_dir: src\ncheckpoint:\n  uri: ./ckpt\noutput_uri: out\ninputs:\n  data: d\n"
    )
    job = Job.from_yaml(path)
    assert job.source_dir == str((project / "src").resolve())
    assert job.checkpoint.uri == (project / "ckpt").resolve().as_uri()
    assert job.output_uri == (project / "out").resolve().as_uri()
    assert job.inputs == {"data": (project / "d").resolve().as_uri()}


def test_source_dir_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(BASE + "source_dir: missing\n")
    with pytest.raises(JobSpecError) as info:
        Job.from_yaml(path)
    [problem] = info.value.problems
    assert problem.path == "source_dir"
    assert problem.line == 3
    assert str(tmp_path / "missing") in problem.message


def test_source_dir_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file.py").write_text("")
    problem = only_problem(BASE + "source_dir: file.py\n", base_dir=tmp_path)
    assert problem.path == "source_dir"


def test_source_dir_with_base_dir(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    assert load(BASE + "source_dir: code\n", base_dir=tmp_path).source_dir == str(
        (tmp_path / "code").resolve()
    )


# --------------------------------------------------------------------------- resources


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("v100", "V100:1"),
        ("V100:1", "V100:1"),
        ("A100:8", "A100:8"),
        ("a100:8", "A100:8"),
        (" t4 ", "T4:1"),
        ("H100-80gb:2", "H100-80GB:2"),
    ],
)
def test_accelerator_is_normalised(given: str, normal: str) -> None:
    assert Resources(accelerator=given).accelerator == normal


@pytest.mark.parametrize("bad", ["", "V100:", "V100:0", "V100:-1", "V100:two", "V 100", ":1", "a:b:c"])
def test_bad_accelerator_is_rejected(bad: str) -> None:
    problem = only_problem(BASE + f"resources:\n  accelerator: '{bad}'\n")
    assert problem.path == "resources.accelerator"


def test_no_accelerator_counts_zero() -> None:
    resources = Resources()
    assert resources.accelerator is None
    assert resources.accelerator_name is None
    assert resources.accelerator_count == 0


# --------------------------------------------------------------------------- command and name


def test_command_string_is_split_like_a_shell() -> None:
    job = load("name: a\ncommand: python train.py --msg 'hello world' --x=\"a b\"\n")
    assert job.command == ["python", "train.py", "--msg", "hello world", "--x=a b"]


def test_command_list_is_kept_verbatim() -> None:
    job = load("name: a\ncommand: ['python', 'train.py', 'it''s']\n")
    assert job.command == ["python", "train.py", "it's"]


@pytest.mark.parametrize("command", ["python 'unbalanced", 'python "also'])
def test_unbalanced_quotes_are_rejected(command: str) -> None:
    with pytest.raises(JobSpecError) as info:
        Job.validate_data({"name": "a", "command": command})
    [problem] = info.value.problems
    assert problem.path == "command"
    assert "quote" in problem.message


@pytest.mark.parametrize("command", ["", "   ", []])
def test_empty_command_is_rejected(command: object) -> None:
    with pytest.raises(JobSpecError) as info:
        Job.validate_data({"name": "a", "command": command})
    assert [p.path for p in info.value.problems] == ["command"]


@pytest.mark.parametrize("name", ["a", "resnet-50", "x1", "a" * 40, "0abc", "a-b-c"])
def test_good_names(name: str) -> None:
    assert Job(name=name, command=["x"]).name == name


@pytest.mark.parametrize("name", ["", "A", "Train", "-a", "a-", "a_b", "a.b", "a b", "a" * 41, "ü"])
def test_bad_names(name: str) -> None:
    with pytest.raises(JobSpecError) as info:
        Job.validate_data({"name": name, "command": "x"})
    [problem] = info.value.problems
    assert problem.path == "name"
    assert "resnet-finetune" in problem.message  # the error shows a good example


def test_assignment_is_validated() -> None:
    job = Job(name="ok", command=["x"])
    with pytest.raises(ValueError):
        job.name = "Not OK"


# --------------------------------------------------------------------------- env references


def env_job(env: dict[str, str]) -> Job:
    return Job(name="a", command=["x"], env=env)


def test_env_references_are_found() -> None:
    job = env_job({"TOKEN": "${HF_TOKEN}", "URL": "https://${HOST}:${PORT}/x", "PLAIN": "$$HOME and $${X}"})
    assert job.env_references() == {"HF_TOKEN", "HOST", "PORT"}
    # '$$' is a literal '$': never a reference, and resolved to one '$'
    assert job.resolve_env({"HF_TOKEN": "t", "HOST": "h", "PORT": "1"})["PLAIN"] == "$HOME and ${X}"


def test_resolve_env_fills_references_from_the_given_mapping() -> None:
    job = env_job({"TOKEN": "${HF_TOKEN}", "URL": "https://${HOST}:${PORT}/x", "PLAIN": "plain"})
    resolved = job.resolve_env({"HF_TOKEN": "s3cr3t", "HOST": "h", "PORT": "8", "UNUSED": "u"})
    assert resolved == {"TOKEN": "s3cr3t", "URL": "https://h:8/x", "PLAIN": "plain"}
    # the job itself still holds the references
    assert job.env["TOKEN"] == "${HF_TOKEN}"


def test_resolve_env_does_not_re_expand_values() -> None:
    job = env_job({"A": "${X}"})
    assert job.resolve_env({"X": "${Y}", "Y": "no"}) == {"A": "${Y}"}


def test_resolve_env_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTISPOT_TEST_SECRET_VALUE", "v4lue")
    job = env_job({"S": "${MULTISPOT_TEST_SECRET_VALUE}"})
    assert job.resolve_env() == {"S": "v4lue"}


def test_missing_env_reference_names_the_key() -> None:
    job = env_job({"TOKEN": "${HF_TOKEN}", "OTHER": "${SET}", "BOTH": "${HF_TOKEN}-${ALSO_MISSING}"})
    with pytest.raises(JobSpecError) as info:
        job.resolve_env({"SET": "1"})
    paths = sorted(p.path for p in info.value.problems)
    assert paths == ["env.BOTH", "env.BOTH", "env.TOKEN"]
    message = str(info.value)
    assert "HF_TOKEN" in message and "ALSO_MISSING" in message
    assert "export" in message


def test_to_data_keeps_references_never_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "top-secret-value")
    job = load(BASE + "env:\n  TOKEN: ${HF_TOKEN}\n")
    assert job.resolve_env()["TOKEN"] == "top-secret-value"
    data = job.to_data()
    assert data["env"] == {"TOKEN": "${HF_TOKEN}"}
    assert "top-secret-value" not in repr(data)
    assert "top-secret-value" not in job.to_yaml()


# --------------------------------------------------------------------------- limits


def test_max_wait_shorter_than_max_runtime_is_rejected() -> None:
    text = BASE + "limits:\n  max_runtime: 2h\n  max_wait: 1h\n"
    problem = only_problem(text)
    assert problem.path == "limits.max_wait"
    assert problem.line == line_of(text, "max_wait")
    assert "max_runtime" in problem.message


def test_max_wait_equal_or_longer_is_fine() -> None:
    assert load(BASE + "limits:\n  max_runtime: 1h\n  max_wait: 60m\n").limits.max_wait == 3600
    assert load(BASE + "limits:\n  max_runtime: 1h\n  max_wait: 2h\n").limits.max_wait == 7200
    assert load(BASE + "limits:\n  max_wait: 1m\n").limits.max_runtime is None


def test_max_wait_checked_on_assignment_too() -> None:
    job = load(BASE + "limits:\n  max_wait: 1h\n")
    with pytest.raises(ValueError):
        job.limits.max_runtime = 7200


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-06-01T12:00:00Z", datetime(2030, 6, 1, 12, tzinfo=timezone.utc)),
        ("2030-06-01T12:00:00+02:00", datetime(2030, 6, 1, 10, tzinfo=timezone.utc)),
        ("2030-06-01T12:00:00", datetime(2030, 6, 1, 12, tzinfo=timezone.utc)),
        ("2030-06-01", datetime(2030, 6, 1, tzinfo=timezone.utc)),
    ],
)
def test_deadline_as_iso_time_is_timezone_aware(value: str, expected: datetime) -> None:
    for text in (BASE + f"limits:\n  deadline: {value}\n", BASE + f"limits:\n  deadline: '{value}'\n"):
        deadline = load(text).limits.deadline
        assert isinstance(deadline, datetime)
        assert deadline.tzinfo is not None
        assert deadline == expected


def test_deadline_as_python_datetime_gets_utc() -> None:
    naive = datetime(2030, 1, 1, 0, 0)
    job = Job.validate_data({"name": "a", "command": "x", "limits": {"deadline": naive}})
    assert job.limits.deadline == naive.replace(tzinfo=timezone.utc)
    aware = datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    job = Job.validate_data({"name": "a", "command": "x", "limits": {"deadline": aware}})
    assert job.limits.deadline == aware


@pytest.mark.parametrize(("value", "seconds"), [("24h", 86400.0), ("90m", 5400.0), (3600, 3600.0)])
def test_deadline_as_duration(value: object, seconds: float) -> None:
    deadline = load(BASE + f"limits:\n  deadline: {value}\n").limits.deadline
    assert deadline == seconds
    assert not isinstance(deadline, datetime)


# --------------------------------------------------------------------------- spot


@pytest.mark.parametrize("policy", ["spot", "on-demand", "fallback"])
def test_spot_shorthand(policy: str) -> None:
    job = load(BASE + f"spot: {policy}\n")
    assert job.spot.policy == policy
    assert job.spot.fallback_after == 3  # defaults still apply
    assert load(BASE + f"spot:\n  policy: {policy}\n").spot == job.spot


def test_validating_specs_lists_the_installed_providers_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A controller validates its job's spec at every step (``Job.from_record``); listing entry
    points reads every installed package's metadata, so it is done once per process."""
    from multispot import registry

    real, calls = registry.entry_points, []

    def counting(group: str) -> Any:
        calls.append(group)
        return real(group=group)

    monkeypatch.setattr(registry, "entry_points", counting)
    registry.available.cache_clear()
    try:
        spec = {"name": "j", "command": "python -c pass", "provider_options": {"local": {"time_scale": 0.5}}}
        for _ in range(3):
            Job.from_record(Job.validate_data(spec).to_data())
        assert calls == [registry.GROUP]
    finally:
        registry.available.cache_clear()
