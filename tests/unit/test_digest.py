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


@settings(max_examples=40, deadline=None)
@given(short_reads=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=30))
def test_hash_while_moving_feeds_every_byte_moved_in_order_with_short_reads(short_reads: list[int]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digest, "PIECE", 64)
        source = io.BytesIO(bytes(range(256)) * 8)  # 2048 bytes, read into a 1500-byte buffer
        sizes = itertools.cycle(short_reads)

        def move(piece: memoryview) -> int:  # a reader that may return fewer bytes than asked
            return source.readinto(piece[: next(sizes)])

        buffer = bytearray(1500)
        recording = _Recording()
        moved = digest.hash_while_moving(recording, memoryview(buffer), move)
        assert moved == 1500 and bytes(buffer) == (bytes(range(256)) * 8)[:1500]
        assert b"".join(recording.pieces) == bytes(buffer), "hashed exactly what was moved, in order"
        assert any(name.startswith("multispot-hash-pipe") for name in recording.threads)


def test_hash_while_moving_stops_at_the_end_of_a_file_and_hashes_small_views_inline() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digest, "PIECE", 64)
        source = io.BytesIO(b"x" * 300)
        recording = _Recording()
        assert digest.hash_while_moving(recording, memoryview(bytearray(1000)), source.readinto) == 300
        assert recording.size == 300
        small = _Recording()
        assert (
            digest.hash_while_moving(small, memoryview(bytearray(100)), io.BytesIO(b"y" * 100).readinto)
            == 100
        )
        assert small.pieces == [b"y" * 100] and small.threads == {threading.current_thread().name}
