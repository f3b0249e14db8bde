"""Each framework integration under verify-resume: identical, at least one checkpoint compared,
every planned fault fired, every later attempt resumed from a committed checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "integrations"
MULTISPOT = str(Path(sys.executable).with_name("multispot"))


def verify(tmp_path: Path, job: str, every_steps: int) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = subprocess.run(
        [MULTISPOT, "verify-resume", str(EXAMPLES / job), "--every-steps", str(every_steps), "-o", "json"],
        capture_output=True,
        text=True,
        env=dict(os.environ, MULTISPOT_HOME=str(tmp_path / "home")),
        timeout=400,
        check=False,
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("framework", "job", "every_steps"),
    [("transformers", "trainer.yaml", 10), ("accelerate", "accelerate.yaml", 100)],
)
def test_integration_is_spot_ready(tmp_path: Path, framework: str, job: str, every_steps: int) -> None:
    pytest.importorskip(framework)
    code, report = verify(tmp_path, job, every_steps)
    assert code == 0 and report["outcome"] == "spot-ready", report
    assert report["checkpoints_compared"] >= 1
    assert all(f["fired"] for f in report["exercised"]["faults"]) and len(report["exercised"]["faults"]) == 3
    later = report["interrupted"]["resumed_from"][1:]
    assert later and all(step for step in later), later
