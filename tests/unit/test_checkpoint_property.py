"""Property: whatever happens to a checkpoint folder, latest() is the newest step that is committed
and intact, according to a small model kept by the test."""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multispot.checkpoint import LATEST, MANIFEST, CheckpointStore, step_dir
from multispot.errors import CheckpointExists

STEPS = st.integers(min_value=0, max_value=12)
NAMES = st.sampled_from(["model.bin", "opt.bin", "a/b.bin", "rng"])
FILES = st.dictionaries(NAMES, st.binary(min_size=1, max_size=48), min_size=1, max_size=3)

OPS = st.one_of(
    st.tuples(st.just("commit"), STEPS, FILES),
    st.tuples(
        st.just("corrupt"), st.integers(0, 10**6), st.sampled_from(["flip", "truncate", "append", "delete"])
    ),
    st.tuples(st.just("drop_manifest"), st.integers(0, 10**6)),
    st.tuples(st.just("garbage_manifest"), st.integers(0, 10**6), st.binary(max_size=20)),
    st.tuples(st.just("torn"), STEPS, FILES),
    st.tuples(st.just("hint"), STEPS),
    st.tuples(st.just("retain"), st.integers(1, 3)),
)


@dataclass
class StepModel:
    files: dict[str, bytes]  # as written (and, once committed, as the manifest lists them)
    committed: bool  # has a manifest that names it
    current: dict[str, bytes | None] = field(default_factory=dict)  # what the store holds now

    def __post_init__(self) -> None:
        self.current = dict(self.files)

    @property
    def valid(self) -> bool:
        return self.committed and all(self.current.get(n) == data for n, data in self.files.items())


@dataclass
class Model:
    steps: dict[int, StepModel] = field(default_factory=dict)

    def newest_valid(self) -> int | None:
        valid = [s for s, m in self.steps.items() if m.valid]
        return max(valid) if valid else None

    def pick(self, index: int, committed_only: bool = False) -> int | None:
        candidates = sorted(s for s, m in self.steps.items() if m.committed or not committed_only)
        return candidates[index % len(candidates)] if candidates else None


class Raw:
    def __init__(self, uri: str) -> None:
        self.fs, root = fsspec.core.url_to_fs(uri)
        self.root = root.rstrip("/")

    def path(self, step: int, name: str = "") -> str:
        return f"{self.root}/{step_dir(step)}" + (f"/{name}" if name else "")

    def write(self, path: str, data: bytes) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)


def apply(uri: str, model: Model, op: tuple[Any, ...]) -> None:
    raw = Raw(uri)
    kind = op[0]
    if kind == "commit":
        _, step, files = op
        current = model.steps.get(step)
        store = CheckpointStore(uri)
        if current is not None and current.committed:
            with pytest.raises(CheckpointExists):
                store.writer(step)
            return
        with store.writer(step) as writer:
            for name, data in files.items():
                writer.write_bytes(name, data)
        model.steps[step] = StepModel(dict(files), committed=True)
    elif kind == "corrupt":
        _, index, how = op
        step = model.pick(index)
        if step is None:
            return
        entry = model.steps[step]
        name = sorted(entry.files)[index % len(entry.files)]
        data = entry.current[name]
        if data is None:
            return  # already deleted
        path = raw.path(step, name)
        new: bytes | None
        if how == "flip":
            new = bytes([data[0] ^ 0x01]) + data[1:] if data else b"\x01"  # an emptied file: grow it
        elif how == "truncate":
            new = data[:-1]
        elif how == "append":
            new = data + b"\x00"
        else:
            new = None
        if new is None:
            raw.fs.rm_file(path)
        else:
            raw.write(path, new)
        entry.current[name] = new
    elif kind == "drop_manifest":
        step = model.pick(op[1], committed_only=True)
        if step is None:
            return
        raw.fs.rm_file(raw.path(step, MANIFEST))
        model.steps[step].committed = False
    elif kind == "garbage_manifest":
        step = model.pick(op[1])
        if step is None:
            return
        raw.write(raw.path(step, MANIFEST), b"\x00not a manifest" + op[2])
        model.steps[step].committed = False
    elif kind == "torn":
        _, step, files = op
        if step in model.steps:
            return  # only into a new step dir
        for name, data in files.items():
            raw.write(raw.path(step, name), data)
        model.steps[step] = StepModel(dict(files), committed=False)
    elif kind == "hint":
        raw.write(f"{raw.root}/{LATEST}", step_dir(op[1]).encode())
    elif kind == "retain":
        keep = op[1]
        valid = sorted(s for s, m in model.steps.items() if m.valid)
        kept = set(valid[-keep:])
        newest = valid[-1] if valid else -1
        doomed = {s for s in model.steps if s not in kept and s < newest}
        deleted = CheckpointStore(uri).retain(keep)
        assert set(deleted) <= doomed
        assert not set(CheckpointStore(uri).steps()) & doomed
        for step in doomed:
            model.steps.pop(step)


def check(uri: str, model: Model) -> None:
    fresh = CheckpointStore(uri)  # a new process: nothing verified yet
    latest = fresh.latest()
    assert (None if latest is None else latest.step) == model.newest_valid()
    for step, entry in model.steps.items():
        assert fresh.verify(step).ok == entry.valid, (step, entry)
    if latest is not None:
        restored = fresh.restore()
        assert {n: restored.read_bytes(n) for n in restored.files} == model.steps[latest.step].files


def run(uri: str, ops: list[tuple[Any, ...]]) -> None:
    model = Model()
    for op in ops:
        apply(uri, model, op)
        check(uri, model)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, max_size=14))
def test_latest_is_newest_intact_commit_memory(ops: list[tuple[Any, ...]]) -> None:
    uri = f"memory://multispot-prop/{uuid.uuid4().hex}"
    try:
        run(uri, ops)
    finally:
        memory = fsspec.filesystem("memory")
        if memory.exists(uri[len("memory://") :]):
            memory.rm(uri[len("memory://") :], recursive=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, max_size=14))
def test_latest_is_newest_intact_commit_files(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run((Path(tmp) / "ckpt").as_uri(), ops)
