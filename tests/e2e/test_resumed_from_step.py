"""An attempt counts as resumed only when its runtime restored a committed checkpoint, and the
local provider's preemption schedule counts from when the runtime is ready: a slow start (a busy
machine, a cold import) cannot eat the time before the first checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multispot import api
from multispot.checkpoint import CheckpointStore
from multispot.controller import Controller
from multispot.job import Job
from multispot.status import JobState
from multispot.store import JobStore
from multispot.testing.worker import expected_sum

# A worker that takes 2 s before it touches the runtime: like a script importing torch on a busy machine.
SLOW_START = "import sys, time; time.sleep(2); from multispot.testing.worker import main; sys.exit(main())"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    return JobStore(tmp_path / "jobs.sqlite")


def drive(tmp_path: Path, store: JobStore, command: list[str], preemptions: str) -> api.Run:
    job = Job.validate_data(
        {
            "name": "ready",
            "command": command,
            "output_uri": str(tmp_path / "out"),
            "spot": {"max_attempts": 6},
            "provider_options": {"local": {"time_scale": 0.02, "preemptions": preemptions}},
        },
        base_dir=tmp_path,
    )
    run = api.submit(job, store=store, start_controller=False)
    Controller(run.id, store, poll_interval=0.05).run()
    return run


@pytest.mark.slow
def test_preemptions_count_from_readiness_and_every_later_attempt_resumes(
    tmp_path: Path, store: JobStore
) -> None:
    # Counted from the command's start, 1 s would land inside the 2 s start-up of every attempt and
    # no attempt would ever restore anything.
    run = drive(
        tmp_path, store, ["python", "-c", SLOW_START, "--steps", "60", "--step-seconds", "0.05"], "at=1s,1s"
    )
    assert run.status is JobState.SUCCEEDED
    attempts = run.to_dict()["attempts"]
    assert [a["state"] for a in attempts] == ["PREEMPTED", "PREEMPTED", "SUCCEEDED"]
    assert attempts[0]["resumed_from_step"] is None
    assert all(a["resumed_from_step"] and a["resumed_from_step"] > 0 for a in attempts[1:]), attempts
    assert json.loads((tmp_path / "out" / "result.json").read_text())["sum"] == expected_sum(60)
    # The stop is reported as it happened: the worker saves and exits well inside its notice.
    assert all("stopped" in a["message"] and "into its" in a["message"] for a in attempts[:2])
    # The records live beside the checkpoints and are no step: listing and retention skip them.
    store_ = CheckpointStore(run.record.checkpoint_uri)
    assert (Path(store_.root) / ".multispot" / "attempt-2.json").is_file()
    assert all(isinstance(step, int) for step in store_.steps())
    resumed = [e.message for _, e in run.events() if e.kind == "resumed"]
    assert len(resumed) == 2


def test_an_attempt_that_never_restores_has_no_resumed_step(tmp_path: Path, store: JobStore) -> None:
    # A command that ignores the runtime: its attempts are never "resumed", whatever was committed.
    run = drive(tmp_path, store, ["python", "-c", "print('hello')"], "none")
    assert run.status is JobState.SUCCEEDED
    assert [a["resumed_from_step"] for a in run.to_dict()["attempts"]] == [None]


@pytest.mark.slow
def test_a_preemption_counted_from_a_committed_save_lands_after_it(tmp_path: Path, store: JobStore) -> None:
    # save:2+0.2s: attempt 1 gets its notice 0.2 s after its 2nd committed save (steps 10 and 20),
    # however slowly this machine starts or runs it; attempt 2 therefore resumes from step 20 or later.
    run = drive(
        tmp_path,
        store,
        ["python", "-c", SLOW_START, "--steps", "60", "--step-seconds", "0.05", "--save-every", "10"],
        "at=save:2+0.2s",
    )
    assert run.status is JobState.SUCCEEDED
    attempts = run.to_dict()["attempts"]
    assert [a["state"] for a in attempts] == ["PREEMPTED", "SUCCEEDED"], attempts
    assert attempts[1]["resumed_from_step"] is not None and attempts[1]["resumed_from_step"] >= 20, attempts
    assert json.loads((tmp_path / "out" / "result.json").read_text())["sum"] == expected_sum(60)
