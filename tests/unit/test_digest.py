"""The checkpoint checksums: whatever the write pattern, each equals its simple definition."""

from __future__ import annotations

import hashlib
import io
import itertools
import threading
from typing import Any

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from multispot.checkpoint import digest


def reference(data: bytes, chunk: int) -> str:
    parts = [hashlib.sha256(data[i : i + chunk]).digest() for i in range(0, len(data), chunk)]
    return hashlib.sha256(b"".join(parts)).hexdigest()


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=700),
    cuts=st.lists(st.integers(min_value=0, max_value=700), max_size=12),
    mutable=st.booleans(),
)
def test_any_split_of_the_bytes_gives_the_reference_digest(
    data: bytes, cuts: list[int], mutable: bool
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digest, "CHUNK", 64)
        legacy = digest.ChunkedDigest()
        fast = digest.hasher()
        bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
        for lo, hi in itertools.pairwise(bounds):
            piece = bytearray(data[lo:hi]) if mutable else data[lo:hi]
            legacy.update(piece, settle=False)
            legacy.settle()
            fast.update(piece)
            if mutable:
                piece[:] = b"\0" * len(piece)  # the caller reuses its buffer after update()/settle()
        assert legacy.size == fast.size == len(data)
        assert legacy.hexdigest() == reference(data, 64)
        assert fast.hexdigest() == xxhash.xxh3_128(data).hexdigest()


def test_real_chunk_size_and_stream() -> None:
    data = bytes(range(256)) * (70_000)  # ~17.9 MB: two full 8 MiB chunks and a tail
    legacy = digest.LEGACY_ALGORITHM
    assert digest.digest_bytes(data, legacy) == reference(data, 8 * 1024 * 1024)
    assert digest.digest_stream(io.BytesIO(data), legacy) == (len(data), reference(data, 8 * 1024 * 1024))
    assert digest.digest_bytes(b"", legacy) == hashlib.sha256(b"").hexdigest()


def test_default_is_xxh3_128() -> None:
    data = bytes(range(256)) * 70_000
    assert digest.ALGORITHM == "xxh3-128"
    assert digest.digest_bytes(data) == xxhash.xxh3_128(data).hexdigest()
    assert digest.digest_stream(io.BytesIO(data)) == (len(data), xxhash.xxh3_128(data).hexdigest())
    assert len(digest.digest_bytes(b"")) == 32  # 128 bits, hex


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown checkpoint checksum 'md4'"):
        digest.hasher("md4")


class _Recording:
    """A hasher that records the pieces it is fed, in order, and on which thread."""

    def __init__(self) -> None:
        self.size = 0
        self.pieces: list[bytes] = []
        self.threads: set[str] = set()

    def update(self, data: Any) -> None:
        self.pieces.append(bytes(data))
        self.size += len(data)
        self.threads.add(threading.current_thread().name)

    def hexdigest(self) -> str:
        return xxhash.xxh3_128(b"".join(self.pieces)).hexdigest()


class _Sink:
    """A file that records what is written to it and on which thread."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.data = bytearray()
        self.threads: set[str] = set()
        self.fail_after = fail_after

    def write(self, view: memoryview) -> int:
        self.threads.add(threading.current_thread().name)
        if self.fail_after is not None and len(self.data) + len(view) > self.fail_after:
            raise OSError(28, "No space left on device")
        self.data += view
        return len(view)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=20))
def test_write_hashed_writes_and_hashes_every_byte_in_order(sizes: list[int]) -> None:
    """Writes below and above the piece size, one after another: the file and the checksum see
    the same bytes in the same order; every write stays on the caller's thread, and from a piece
    up the helper thread hashes while it writes."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digest, "PIECE", 64)
        source = bytes(range(256)) * 24
        sink, recording, offset = _Sink(), _Recording(), 0
        for size in sizes:
            digest.write_hashed(recording, memoryview(source[offset : offset + size]), sink.write)
            offset += size
        assert bytes(sink.data) == source[:offset]
        assert b"".join(recording.pieces) == source[:offset], "hashed exactly what was written, in order"
        caller = threading.current_thread().name
        assert sink.threads <= {caller}, "the file is written on the caller's thread"
        big = any(size >= 64 for size in sizes)
        assert any(name.startswith("multispot-hash-pipe") for name in recording.threads) == big
        assert (caller in recording.threads) == any(size < 64 for size in sizes)


def test_write_hashed_raises_the_write_error_once_both_are_done() -> None:
    """A write that fails (a full disk) while the helper thread hashes fails the caller's write,
    once the hash is done: the save is not committed with a checksum of bytes that never reached
    the file."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digest, "PIECE", 64)
        sink, recording = _Sink(fail_after=100), _Recording()
        digest.write_hashed(recording, memoryview(b"a" * 80), sink.write)
        with pytest.raises(OSError, match="No space left"):
            digest.write_hashed(recording, memoryview(b"b" * 80), sink.write)
        assert bytes(sink.data) == b"a" * 80
