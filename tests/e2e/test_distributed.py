"""Two gloo ranks on the local provider, checkpointed with torch.distributed.checkpoint through the
contract: preempted once, resumed, and bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from multispot import api
from multispot.checkpoint import CheckpointStore
from multispot.controller import Controller
from multispot.job import Job
from multispot.local.provider import LocalProvider
from multispot.status import JobState
from multispot.store import JobStore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pytorch"


def run(store: JobStore, preempt: bool) -> api.Run:
    """Run the DDP example; with ``preempt``, reclaim attempt 1 (with notice) once a checkpoint is in.

    Preempting on a committed checkpoint rather than at a fixed time keeps the test meaningful
    on a loaded machine, where two ranks may take longer to start than any fixed delay.
    """
    job = Job.from_yaml(EXAMPLE / "ddp.yaml")
    data = job.to_data()
    data["hyperparameters"] = {"steps": 600, "save-every": 50}
    data["provider_options"]["local"]["preemptions"] = "none"
    started = api.submit(Job.validate_data(data), "local", store=store, start_controller=False)
    controller = Controller(started.id, store, poll_interval=0.1)
    preempted = not preempt
    deadline = time.time() + 240
    while not controller.step():
        assert time.time() < deadline, [a.to_dict() for a in started.attempts]
        first = started.attempts[0] if started.attempts else None
        running = first is not None and first.state is JobState.RUNNING and first.handle is not None
        if not preempted and running and CheckpointStore(started.record.checkpoint_uri).latest():
            assert first is not None and first.handle is not None
            LocalProvider().preempt(first.handle)
            preempted = True
        time.sleep(0.1)
    return started


@pytest.mark.slow
def test_ddp_with_dcp_resumes_bit_identically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    store = JobStore(tmp_path / "jobs.sqlite")
    interrupted = run(store, preempt=True)
    reference = run(store, preempt=False)
    assert reference.status is JobState.SUCCEEDED and interrupted.status is JobState.SUCCEEDED
    assert [a.state for a in interrupted.attempts] == [JobState.PREEMPTED, JobState.SUCCEEDED]

    def metrics(r: api.Run) -> dict[str, object]:
        return dict(json.loads((Path(urlparse(r.record.output_uri).path) / "metrics.json").read_text()))

    assert metrics(interrupted)["params_sha256"] == metrics(reference)["params_sha256"]
    manifest = CheckpointStore(interrupted.record.checkpoint_uri).latest()
    assert manifest is not None and manifest.metadata["ranks"] == 2
    assert {".metadata", "rng-rank0.pt", "rng-rank1.pt", "progress.json"} <= set(manifest.files)
    assert sum(name.endswith(".distcp") for name in manifest.files) == 2  # one shard per rank
    logs = "".join(interrupted.logs())
    assert "rank 0: resumed from step" in logs
