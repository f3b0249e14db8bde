"""The provider contract, run against the local provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from multispot.job import Job
from multispot.local.provider import LocalProvider
from multispot.status import Handle
from multispot.testing.contract import *  # noqa: F403


class LocalHarness:
    timeout = 30.0

    def __init__(self) -> None:
        self.provider = LocalProvider()

    def job(self, tmp_path: Path, worker_args: list[str], **fields: Any) -> Job:
        data: dict[str, Any] = {
            "name": "contract",
            "command": ["python", "-m", "multispot.testing.worker", *worker_args],
            "provider_options": {"local": {"time_scale": 0.02}},  # 120 s notice -> 2.4 s
        }
        options = fields.pop("provider_options", None)
        if options:
            data["provider_options"] = {"local": {**data["provider_options"]["local"], **options["local"]}}
        data.update(fields)
        return Job.validate_data(data, base_dir=tmp_path)

    def storage(self, tmp_path: Path) -> tuple[str, str]:
        return (tmp_path / "ckpt").as_uri(), (tmp_path / "out").as_uri()

    def preempt(self, handle: Handle) -> None:
        self.provider.preempt(handle)


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalHarness:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    return LocalHarness()
