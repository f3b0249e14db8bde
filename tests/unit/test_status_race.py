"""`multispot status` of a live job reads the job twice (its summary, then its attempts): an
attempt that starts in between must not crash the command (it did: a strict zip of the two)."""

from __future__ import annotations

from typing import Any

import pytest

from multispot import cli
from multispot.status import Attempt, JobState, Placement

SPOT = Placement("local", "spot", "local", "cpu")


class RacingRun:
    """A run whose attempts list grew after its summary was read."""

    def __init__(self) -> None:
        self.attempts = [
            Attempt("j", 1, SPOT, JobState.PREEMPTED, started=1.0, ended=2.0),
            Attempt("j", 2, SPOT, JobState.RUNNING, started=3.0),
        ]

    def to_dict(self) -> dict[str, Any]:
        first = {**self.attempts[0].to_dict(), "resumed_from_step": None}
        return {
            "id": "j",
            "state": "RECOVERING",
            "progress": None,
            "preemptions": 1,
            "message": "",
            "checkpoint_uri": "file:///c",
            "output_uri": "file:///o",
            "attempts": [first],
        }


def test_status_of_an_attempt_started_between_two_reads(capsys: pytest.CaptureFixture[str]) -> None:
    cli._print_status(RacingRun(), wide=True)
    out = capsys.readouterr().out
    assert "PREEMPTED" in out and "RUNNING" in out
