"""One-pass verified restore: every byte is hashed as the reader consumes it and checked at the end
of its stream, before the result is returned; a mismatch falls back to the next older step."""

from __future__ import annotations

import os
from typing import Any

import fsspec
import pytest
from helpers.checkpoints import CountingFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multispot.checkpoint import CheckpointStore, step_dir
from multispot.checkpoint import store as store_module
from multispot.errors import ChecksumMismatch, NoCheckpoint


def raw(uri: str) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(uri)
    return fs, root.rstrip("/")


def overwrite(uri: str, rel: str, data: bytes) -> None:
    fs, root = raw(uri)
    with fs.open(f"{root}/{rel}", "wb") as f:
        f.write(data)


def save(uri: str, step: int, files: dict[str, bytes]) -> None:
    with CheckpointStore(uri).writer(step) as writer:
        for name, data in files.items():
            writer.write_bytes(name, data)


def payload(step: int, size: int = 300_000) -> bytes:
    unit = f"step {step} ".encode()
    return (unit * (size // len(unit) + 1))[:size]  # exactly size bytes, whatever the step


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_read_bytes_reads_each_byte_once_and_checks_it(
    ckpt_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    save(ckpt_uri, 1, {"model.bin": data})
    store = CheckpointStore(ckpt_uri)
    counter = [0]
    opened = store.open_read
    monkeypatch.setattr(store, "open_read", lambda path: CountingFile(opened(path), counter))
    restored = store.restore()
    assert restored.read_bytes("model.bin") == data
    assert counter[0] == len(data), "a verified restore reads every byte exactly once"
    assert restored.check().ok
    assert counter[0] == len(data), "a file read to its end is not read again by check()"


def test_a_flipped_byte_raises_before_read_bytes_returns_and_restore_falls_back(ckpt_uri: str) -> None:
    save(ckpt_uri, 1, {"model.bin": payload(1)})
    save(ckpt_uri, 2, {"model.bin": payload(2)})
    overwrite(ckpt_uri, f"{step_dir(2)}/model.bin", flipped(payload(2), 123_456))
    store = CheckpointStore(ckpt_uri)
    restored = store.restore()
    assert restored.step == 2  # chosen on the cheap check: the bytes are checked as they are read
    with pytest.raises(ChecksumMismatch, match=r"model\.bin in checkpoint step 2"):
        restored.read_bytes("model.bin")
    with pytest.raises(ChecksumMismatch):  # and again: the file stays untrusted
        restored.read_bytes("model.bin")
    assert not restored.check().ok
    again = store.restore()
    assert again.step == 1, "the store remembers the corrupt step and falls back"
    assert again.read_bytes("model.bin") == payload(1)
    with pytest.raises(NoCheckpoint):
        store.restore(2)
    # with a loader, the fallback happens in one call, on a fresh store
    found = CheckpointStore(ckpt_uri).restore_with(lambda r: r.read_bytes("model.bin"))
    assert found is not None and found[0].step == 1 and found[1] == payload(1)


def test_open_raises_at_close_when_the_consumer_stops_early(ckpt_uri: str) -> None:
    save(ckpt_uri, 1, {"model.bin": payload(1)})
    overwrite(ckpt_uri, f"{step_dir(1)}/model.bin", flipped(payload(1), len(payload(1)) - 3))
    restored = CheckpointStore(ckpt_uri).restore()
    with pytest.raises(ChecksumMismatch), restored.open("model.bin") as f:
        assert f.read(1000) == payload(1)[:1000]  # the consumer never reaches the damaged tail


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    reads=st.lists(
        st.tuples(st.integers(min_value=0, max_value=299_999), st.integers(min_value=0, max_value=50_000)),
        max_size=12,
    ),
    damage=st.one_of(st.none(), st.integers(min_value=0, max_value=299_999)),
    gap=st.sampled_from([16, 4096, 1 << 20]),
)
def test_any_read_pattern_is_checked_before_close_returns(
    file_uri: str, reads: list[tuple[int, int]], damage: int | None, gap: int
) -> None:
    """A zip reader (torch.load) seeks to the end first and skips padding: whatever the order, a
    damaged byte anywhere is caught by close, and intact bytes always pass."""
    step = len(CheckpointStore(file_uri).steps()) + 1
    data = payload(step)
    save(file_uri, step, {"state.pt": data})
    if damage is not None:
        overwrite(file_uri, f"{step_dir(step)}/state.pt", flipped(data, damage))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_module._VerifyingReader, "GAP", gap)
        restored = CheckpointStore(file_uri).restore(step)
        f = restored.open("state.pt")
        got: list[tuple[int, bytes]] = []
        try:
            for pos, size in reads:
                f.seek(pos)
                got.append((pos, f.read(size)))
        except ChecksumMismatch:
            assert damage is not None  # caught early, at the end of the stream
        if damage is None:
            f.close()
            assert all(chunk == data[pos : pos + len(chunk)] for pos, chunk in got)
        else:
            with pytest.raises(ChecksumMismatch):
                f.close()


def test_restore_with_checks_files_the_loader_never_read(ckpt_uri: str) -> None:
    save(ckpt_uri, 1, {"a.bin": payload(1), "b.bin": payload(11)})
    save(ckpt_uri, 2, {"a.bin": payload(2), "b.bin": payload(22)})
    overwrite(ckpt_uri, f"{step_dir(2)}/b.bin", flipped(payload(22), 5))
    found = CheckpointStore(ckpt_uri).restore_with(lambda r: r.read_bytes("a.bin"))
    assert found is not None
    restored, loaded = found
    assert (restored.step, loaded) == (1, payload(1))


def test_a_loader_error_on_a_corrupt_step_falls_back_not_raises(ckpt_uri: str) -> None:
    save(ckpt_uri, 1, {"a.bin": b"good" * 1000})
    save(ckpt_uri, 2, {"a.bin": b"good" * 1000})
    overwrite(ckpt_uri, f"{step_dir(2)}/a.bin", b"evil" * 1000)

    def picky(restored: Any) -> bytes:
        with restored.open("a.bin") as f:
            head = f.read(4)
            if head != b"good":
                raise ValueError("not a state file")  # a loader tripping on the corrupt bytes
            return head + f.read()

    found = CheckpointStore(ckpt_uri).restore_with(picky)
    assert found is not None and found[0].step == 1


def test_restored_local_dir_checks_every_file_first(file_uri: str) -> None:
    save(file_uri, 1, {"a.bin": payload(1)})
    overwrite(file_uri, f"{step_dir(1)}/a.bin", flipped(payload(1), 77))
    restored = CheckpointStore(file_uri).restore()
    with pytest.raises(ChecksumMismatch, match=r"checksum mismatch in a\.bin"):
        _ = restored.local_dir


def test_a_restore_after_full_verification_does_not_hash_again(ckpt_uri: str) -> None:
    save(ckpt_uri, 1, {"a.bin": payload(1)})
    store = CheckpointStore(ckpt_uri)
    assert store.verify(1).ok
    restored = store.restore()
    assert restored.read_bytes("a.bin") == payload(1)
    assert not restored._readers, "files this store hashed and that did not change are trusted"


def test_torch_load_through_the_reader_and_a_damaged_state_falls_back(file_uri: str) -> None:
    torch = pytest.importorskip("torch")

    def state(step: int) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(step)
        return {f"layer{i}": torch.rand(40_000, generator=generator) for i in range(12)}

    for step in (1, 2):
        with CheckpointStore(file_uri).writer(step) as writer, writer.open("state.pt") as f:
            torch.save(state(step), f)

    def load(restored: Any) -> Any:
        with restored.open("state.pt") as f:
            return torch.load(f, weights_only=True)

    found = CheckpointStore(file_uri).restore_with(load)
    assert found is not None and found[0].step == 2
    assert all(torch.equal(found[1][k], v) for k, v in state(2).items())
    # damage a byte inside one tensor's data (torch.load would not notice): step 1 is loaded instead
    fs, root = raw(file_uri)
    path = f"{root}/{step_dir(2)}/state.pt"
    data = fs.cat_file(path)
    overwrite(file_uri, f"{step_dir(2)}/state.pt", flipped(data, len(data) // 2))
    found = CheckpointStore(file_uri).restore_with(load)
    assert found is not None and found[0].step == 1
    assert all(torch.equal(found[1][k], v) for k, v in state(1).items())


def test_one_large_read_still_catches_one_flipped_byte_and_falls_back(
    ckpt_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of a whole file in one call (the way torch.load reads a tensor, many pieces long); a
    byte flipped in the middle still fails the file, and the good step reads back. Pieces are
    small here so that a piecewise hash (as writes use) would also be exercised."""
    from multispot.checkpoint import digest

    monkeypatch.setattr(digest, "PIECE", 64 * 1024)
    data = os.urandom(1024 * 1024 + 5)
    save(ckpt_uri, 1, {"model.bin": data})
    save(ckpt_uri, 2, {"model.bin": data[::-1]})
    overwrite(ckpt_uri, f"{step_dir(2)}/model.bin", flipped(data[::-1], 5 * 64 * 1024 + 7))
    store = CheckpointStore(ckpt_uri)

    def load(restored: Any) -> bytes:
        buffer = bytearray(len(data))
        with restored.open("model.bin") as f:
            assert f.readinto(buffer) == len(data)  # one call
        return bytes(buffer)

    found = store.restore_with(load)
    assert found is not None and found[0].step == 1 and found[1] == data


@pytest.mark.parametrize(("tensors", "floats"), [(8, 512 * 1024), (1, 256 * 1024), (4, 256 * 1024)])
def test_torch_load_through_the_reader_reads_the_file_about_once(
    file_uri: str, monkeypatch: pytest.MonkeyPatch, tensors: int, floats: int
) -> None:
    """torch.load seeks between records; a read buffer that each seek throws away must stay small,
    or a verified restore reads much more than the file (an 8 MiB buffer read 1.4x the file). It
    also jumps to the zip's directory at the end first: a file under 8 MB (1 and 4 MiB here) was
    read whole at that jump and again by torch (2.1x) while skips of up to 8 MiB were filled."""
    torch = pytest.importorskip("torch")
    state = {f"layer{i}": torch.rand(floats) for i in range(tensors)}  # 2 MiB or 1 MiB each
    with CheckpointStore(file_uri).writer(1) as writer, writer.open("state.pt") as f:
        torch.save(state, f)
    store = CheckpointStore(file_uri)
    counter = [0]
    opened = store.open_read
    monkeypatch.setattr(store, "open_read", lambda path: CountingFile(opened(path), counter))
    restored = store.restore()
    with restored.open("state.pt") as f:
        loaded = torch.load(f, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    size = restored.manifest.files["state.pt"].size
    # each seek may re-fill one read buffer: a few of them on top of a small file
    slack = max(0.1 * size, 4 * store_module.READ_BUFFER)
    assert size <= counter[0] <= size + slack, f"read {counter[0]} bytes of a {size}-byte file"
