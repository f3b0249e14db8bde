"""Time to durable vs the notice: the runtime reports how long a save took to become durable, says
in the job's log when a save cannot finish inside what is left of the notice, and the interval
advice takes that figure."""

from __future__ import annotations

import pytest

from multispot.checkpoint import CheckpointStore
from multispot.policy.interval import save_seconds_from
from multispot.runtime import Checkpointer, JobEnv

pytestmark = pytest.mark.usefixtures("isolated_notice")


def job_env(uri: str) -> JobEnv:
    return JobEnv(
        job_id="durable-1",
        attempt=1,
        provider="local",
        checkpoint_uri=uri,
        output_uri=None,
        notice_seconds=30.0,
        checkpoint_interval=600.0,
        checkpoint_keep=3,
    )


def save(ckpt: Checkpointer, step: int) -> None:
    with ckpt.save(step) as writer:
        writer.write_bytes("state.bin", b"x" * 1000)


def test_the_last_save_time_is_reported_and_recorded_in_the_next_manifest(file_uri: str) -> None:
    ckpt = Checkpointer(file_uri, env=job_env(file_uri))
    assert ckpt.last_save_seconds is None
    save(ckpt, 1)
    first = ckpt.last_save_seconds
    assert first is not None and first > 0
    assert "durable_seconds" not in CheckpointStore(file_uri).manifest(1).metadata  # type: ignore[union-attr]
    save(ckpt, 2)
    metadata = CheckpointStore(file_uri).manifest(2).metadata  # type: ignore[union-attr]
    assert metadata["durable_seconds"] == round(first, 3)


def test_a_save_that_cannot_fit_the_notice_says_so(file_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = Checkpointer(file_uri, env=job_env(file_uri))
    save(ckpt, 1)
    ckpt.save_seconds.append(500.0)  # as if the last save had taken 500 s to become durable
    ckpt.notice.fire(20)
    said = capsys.readouterr().err
    assert "cannot finish inside the preemption notice" in said and "500.0s" in said
    save(ckpt, 2)  # an emergency save anyway: it says so again, naming the step
    assert "saving step 2 cannot finish" in capsys.readouterr().err
    assert not ckpt.can_save_in_time()


def test_a_save_that_fits_says_nothing(file_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = Checkpointer(file_uri, env=job_env(file_uri))
    save(ckpt, 1)
    ckpt.notice.fire(25)
    save(ckpt, 2)
    assert "cannot finish" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"write_seconds": 2.0}, (2.0, "write_seconds")),
        ({"write_seconds": 2.0, "durable_seconds": 3.5}, (3.5, "durable_seconds")),
        ({"write_seconds": 4.0, "durable_seconds": 3.5}, (4.0, "write_seconds")),
        ({"durable_seconds": "soon", "write_seconds": True}, None),
        ({}, None),
    ],
)
def test_interval_advice_takes_the_time_to_durable(metadata: dict[str, object], expected: object) -> None:
    assert save_seconds_from(metadata) == expected
