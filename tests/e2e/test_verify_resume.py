"""verify-resume on the quickstart: the real script is spot-ready; the one that forgets its optimizer
state is not, and the report says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.verify_resume import verify_resume

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def job_file(tmp_path: Path, checkpoint_optimizer: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(
        f"name: vr\ncommand: python train.py\nsource_dir: {QUICKSTART}\n"
        f"hyperparameters: {{epochs: 25, checkpoint-optimizer: '{checkpoint_optimizer}'}}\n"
        "provider_options: {local: {time_scale: 0.05}}\n"
    )
    return path


def verify(tmp_path: Path, checkpoint_optimizer: str) -> tuple[int, dict[str, Any]]:
    return verify_resume(tmp_path / "home", job_file(tmp_path, checkpoint_optimizer), 50)


@pytest.mark.slow
def test_quickstart_is_spot_ready(tmp_path: Path) -> None:
    code, report = verify(tmp_path, "yes")
    assert report["identical"] is True, report["diagnosis"]
    assert code == 0
    assert report["interrupted"]["preemptions"] == 3
    assert report["interrupted"]["outcomes"] == ["PREEMPTED", "PREEMPTED", "PREEMPTED", "SUCCEEDED"]
    assert "params_sha256" in report["compared_keys"]
    assert report["checkpoints_compared"] >= 3
    assert not (tmp_path / "home" / "checkpoints").exists() or not any(
        p.is_file() for p in (tmp_path / "home" / "checkpoints").rglob("*")
    ), "verify-resume removes its runs' checkpoints unless --keep-runs"


@pytest.mark.slow
def test_forgotten_optimizer_state_is_caught_and_named(tmp_path: Path) -> None:
    code, report = verify(tmp_path, "no")
    assert code == 1 and report["identical"] is False
    assert {d["key"] for d in report["differences"]} >= {"params_sha256"}
    divergence = report["first_divergence"]
    assert divergence["attempt"] >= 2 and divergence["resumed_from"] is not None
    text = " ".join(report["diagnosis"])
    assert "no optimizer state" in text and "model" in text


# ---------------------------------------------------------------- proofs that cannot pass hollow

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def verify_script(tmp_path: Path, command: str, *extra: str) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "job.yaml"
    path.write_text(
        f"name: hollow\ncommand: {command}\nsource_dir: {SCRIPTS}\n"
        "provider_options: {local: {time_scale: 0.05}}\n"
    )
    return verify_resume(tmp_path / "home", path, 20, *extra)


@pytest.mark.slow
def test_a_script_that_never_checkpoints_is_not_spot_ready(tmp_path: Path) -> None:
    code, report = verify_script(tmp_path, "python no_checkpoint.py")
    assert code == 1, report
    assert report["outcome"] == "not-spot-ready"
    assert "restarts from scratch" in report["verdict"]


@pytest.mark.slow
def test_forgotten_hidden_state_is_named_and_no_optimizer_is_suggested(tmp_path: Path) -> None:
    code, report = verify_script(tmp_path, "python forgets_hidden.py --carry-hidden no")
    assert code == 1 and report["outcome"] == "not-spot-ready", report
    text = " ".join(report["diagnosis"])
    assert "hidden state" in text, text
    assert "optimizer" not in text, "the script has no optimizer: never suggest one"
    assert report["exercised"]["resumed_attempts"] >= 1


@pytest.mark.slow
def test_carried_state_saved_is_spot_ready_with_everything_exercised(tmp_path: Path) -> None:
    code, report = verify_script(tmp_path, "python forgets_hidden.py --carry-hidden yes")
    assert code == 0 and report["outcome"] == "spot-ready", report
    assert report["checkpoints_compared"] >= 1
    faults = report["exercised"]["faults"]
    assert len(faults) == 3 and all(f["fired"] for f in faults), faults
    later = report["interrupted"]["resumed_from"][1:]
    assert later and all(step is not None and step > 0 for step in later), later


@pytest.mark.slow
def test_a_fault_that_never_fires_is_inconclusive(tmp_path: Path) -> None:
    code, report = verify_script(
        tmp_path, "python forgets_hidden.py --carry-hidden yes", "--schedule", "at=600s"
    )
    assert code == 2 and report["outcome"] == "inconclusive", report
    assert report["verdict"].startswith("inconclusive")
    assert report["exercised"]["faults"] == [{"attempt": 1, "fault": "notice (600s)", "fired": False}]
