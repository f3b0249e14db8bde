"""The checkpoint checksums: whatever the write pattern, each equals its simple definition."""

from __future__ import annotations

import hashlib
import io
import itertools

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
