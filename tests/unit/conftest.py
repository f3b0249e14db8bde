"""Shared fixtures for the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.checkpoints import forget_memory, memory_uri


@pytest.fixture
def mem_uri() -> Iterator[str]:
    uri = memory_uri()
    yield uri
    forget_memory(uri)


@pytest.fixture
def file_uri(tmp_path: Path) -> str:
    return (tmp_path / "ckpt").as_uri()


@pytest.fixture(params=["file", "memory"])
def ckpt_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same checkpoint test on a local folder and on an object-store-like filesystem."""
    if request.param == "file":
        yield (tmp_path / "ckpt").as_uri()
    else:
        uri = memory_uri()
        yield uri
        forget_memory(uri)


@pytest.fixture
def isolated_notice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh process-wide preemption notice for the test; the SIGTERM handler is restored after."""
    import signal

    from multispot.runtime import checkpointer

    monkeypatch.delenv("MULTISPOT_NOTICE_FILE", raising=False)
    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(checkpointer, "_notice", None)
    yield
    if checkpointer._notice is not None:
        checkpointer._notice.uninstall()
    signal.signal(signal.SIGTERM, previous)
