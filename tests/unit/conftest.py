"""Shared fixtures for the unit tests."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest


def reference_digest(data: bytes) -> str:
    """The checkpoint checksum computed the simple way, independent of the streaming code: sha256 of
    the concatenated sha256 digests of consecutive 8 MiB chunks."""
    chunk = 8 * 1024 * 1024
    parts = [hashlib.sha256(data[i : i + chunk]).digest() for i in range(0, len(data), chunk)]
    return hashlib.sha256(b"".join(parts)).hexdigest()


def memory_uri() -> str:
    """A fresh memory:// location: the memory filesystem is process-global, so never share one."""
    return f"memory://multispot-tests/{uuid.uuid4().hex}"


def forget_memory(uri: str) -> None:
    fs = fsspec.filesystem("memory")
    root = uri[len("memory://") :]
    try:
        fs.rm(root, recursive=True)
    except FileNotFoundError:
        pass


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
