"""Part transfers and store checksums without an emulator: ``PartReader`` over ``memory://`` and
the local computation of S3's CRC32 (whole-object and composite) against a direct computation."""

from __future__ import annotations

import base64
import io
import os
import zlib
from collections.abc import Iterator
from typing import Any

import fsspec
import pytest

from multispot.checkpoint.s3 import Crc32Parts
from multispot.checkpoint.transfer import READ_AHEAD, MiB, PartReader, Spool, Transfer

PART = 5 * MiB


def b64(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


@pytest.fixture
def blob() -> Iterator[tuple[Any, str, bytes]]:
    fs = fsspec.filesystem("memory")
    data = os.urandom(3 * PART + 777)
    path = f"/transfer-tests/{os.urandom(4).hex()}/blob.bin"
    fs.pipe_file(path, data)
    yield fs, path, data
    fs.rm_file(path)


def test_reads_come_back_in_order_whatever_the_read_sizes(blob: tuple[Any, str, bytes]) -> None:
    fs, path, data = blob
    for size in (4093, PART - 1, PART, PART + 1, 8 * MiB):
        reader = PartReader(fs, path, len(data), Transfer(part_size=PART, concurrency=3))
        got = bytearray()
        while piece := reader.read(size):
            got += piece
        assert bytes(got) == data, size
        reader.close()


def test_seeks_and_readinto(blob: tuple[Any, str, bytes]) -> None:
    fs, path, data = blob
    reader = PartReader(fs, path, len(data), Transfer(part_size=PART, concurrency=2))
    assert reader.seek(-10, io.SEEK_END) == len(data) - 10
    assert reader.read() == data[-10:]
    reader.seek(PART - 3)
    buffer = bytearray(100)
    count = reader.readinto(buffer)  # stops at the part boundary: a short read, as raw files may
    assert buffer[:count] == data[PART - 3 : PART - 3 + count] and count == 3
    reader.seek(0)
    assert io.BufferedReader(reader, buffer_size=1000).read() == data
    with pytest.raises(ValueError, match="negative seek"):
        reader.seek(-1)


def test_read_ahead_is_bounded_and_given_back(blob: tuple[Any, str, bytes]) -> None:
    fs, path, data = blob
    held = READ_AHEAD.held
    tight = Transfer(part_size=PART, concurrency=4, read_ahead=PART)  # room for one part ahead
    reader = PartReader(fs, path, len(data), tight)
    reader.read(1)
    assert reader.requests == 2 and READ_AHEAD.held == held + PART  # the part it needs, one ahead
    other = PartReader(fs, path, len(data), tight)
    other.read(1)
    assert other.requests == 1  # the budget is spent: only the part it needs now
    assert reader.read() == data[1:]
    reader.close()
    other.close()
    assert READ_AHEAD.held == held


def test_a_shorter_object_is_an_error(blob: tuple[Any, str, bytes]) -> None:
    fs, path, data = blob
    reader = PartReader(fs, path, len(data) + 10, Transfer(part_size=PART))  # the size it had before
    with pytest.raises(OSError, match="expected"):
        reader.read()
    reader.close()


@pytest.mark.parametrize("size", [0, 1, PART, 2 * PART - 1, 2 * PART, 2 * PART + 1, 3 * PART + 777])
def test_s3_crc32_whole_below_two_parts_composite_above(size: int) -> None:
    data = os.urandom(size)
    crc = Crc32Parts(PART)
    for at in range(0, size, 3 * MiB + 17):  # writes that straddle part boundaries
        crc.update(memoryview(data)[at : at + 3 * MiB + 17])
    result = crc.result(size)
    assert result is not None and result.algorithm == "s3-crc32"
    if size < 2 * PART:  # one PUT: the CRC32 of the whole object
        assert result.value == b64(zlib.crc32(data))
    else:  # multipart: the CRC32 of the parts' CRC32s, and the part count
        parts = [data[i : i + PART] for i in range(0, size, PART)]
        joined = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)
        assert result.value == f"{b64(zlib.crc32(joined))}-{len(parts)}"


def test_spool_stays_in_memory_up_to_its_limit_then_goes_to_disk() -> None:
    spool = Spool("bucket/key", limit=10)
    spool.write(b"0123456789")
    assert spool.in_memory() == b"0123456789"
    spool.write(b"x")
    assert spool.in_memory() is None
    local = spool.local_path()
    with open(local, "rb") as f:
        assert f.read() == b"0123456789x"
    spool.discard()
    assert not os.path.exists(local)
