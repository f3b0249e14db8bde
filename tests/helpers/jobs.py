"""A job-store row for tests that need jobs in a store without submitting them."""

from __future__ import annotations

import time

from multispot.status import JobState
from multispot.store import JobRecord


def job_record(job_id: str, name: str = "train", created: float | None = None, **fields: object) -> JobRecord:
    """A PENDING local job named ``name`` (a secret reference in its env, as real specs have),
    created ``created`` (default now); ``fields`` override any column."""
    now = time.time() if created is None else created
    values: dict[str, object] = {
        "id": job_id,
        "name": name,
        "spec": {"name": name, "command": ["python", "train.py"], "env": {"TOKEN": "${HF_TOKEN}"}},
        "provider": "local",
        "state": JobState.PENDING,
        "checkpoint_uri": "file:///tmp/ckpt",
        "output_uri": "file:///tmp/out",
        "created": now,
        "updated": now,
    }
    values.update(fields)
    return JobRecord(**values)  # type: ignore[arg-type]
