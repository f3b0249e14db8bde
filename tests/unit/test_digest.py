"""The chunked checksum: whatever the write pattern, it equals the simple definition."""

from __future__ import annotations

import hashlib
import io
import itertools

import pytest
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
        hasher = digest.ChunkedDigest()
        bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
        for lo, hi in itertools.pairwise(bounds):
            piece = bytearray(data[lo:hi]) if mutable else data[lo:hi]
            hasher.update(piece, settle=False)
            hasher.settle()
            if mutable:
                piece[:] = b"\0" * len(piece)  # the caller reuses its buffer after settle()
        assert hasher.size == len(data)
        assert hasher.hexdigest() == reference(data, 64)


def test_real_chunk_size_and_stream() -> None:
    data = bytes(range(256)) * (70_000)  # ~17.9 MB: two full 8 MiB chunks and a tail
    assert digest.digest_bytes(data) == reference(data, 8 * 1024 * 1024)
    assert digest.digest_stream(io.BytesIO(data)) == (len(data), reference(data, 8 * 1024 * 1024))
    assert digest.digest_bytes(b"") == hashlib.sha256(b"").hexdigest()
