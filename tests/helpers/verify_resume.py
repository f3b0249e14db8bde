"""Run ``multispot verify-resume`` as a user would (the installed CLI, a private MULTISPOT_HOME)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MULTISPOT = str(Path(sys.executable).with_name("multispot"))


def verify_resume(home: Path, job_file: Path, every_steps: int, *extra: str) -> tuple[int, dict[str, Any]]:
    """(exit code, the JSON report) of ``multispot verify-resume JOB --every-steps N -o json``."""
    result = subprocess.run(
        [MULTISPOT, "verify-resume", str(job_file), "--every-steps", str(every_steps), "-o", "json", *extra],
        capture_output=True,
        text=True,
        env=dict(os.environ, MULTISPOT_HOME=str(home)),
        timeout=400,
        check=False,
    )
    assert result.stdout, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, report
