"""Chaos: SIGKILL the saving process at random points of a checkpoint save, then restore.

A child (``chaos_ckpt_child.py``) saves checkpoints in a loop through ``CheckpointStore``:
several files per step, some of a few MB written in flushed chunks, one placed through
``writer.local_dir``, and every so often ``retain(keep=2)``. The test kills it with SIGKILL
after a random (seeded) delay and restores with a fresh store. It asserts that

- no restore returns bytes other than the ones the child wrote for that step (0 corrupt restores);
- the restored step is at least the newest step the child reported committed, and it is the
  newest step that an independent scan (our own JSON parsing and SHA-256 of every file) finds
  valid; ``store.latest()`` agrees with that scan;
- the next child copes with whatever the last one left behind (it must never crash).

Most trials share one checkpoint directory, so torn steps and half-deleted ones pile up for the
next child and the next restore; some start on a fresh directory. The child reports each phase
on stdout, so the test knows whether a kill landed while files were written, during the commit,
during retention, or between saves, and requires a real share of kills inside a save.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from chaos_ckpt_child import content, file_plan

from multispot.checkpoint import CheckpointStore
from multispot.errors import NoCheckpoint

CHILD = Path(__file__).with_name("chaos_ckpt_child.py")
_STEP = re.compile(r"^step-(\d{12})$")
SEED = int(os.environ.get("MULTISPOT_CHAOS_SEED", "20240611"))

# Where a kill landed, from the child's last line (see chaos_ckpt_child.py).
PHASES = {
    "begin": "writing files",
    "sealing": "committing",
    "retain": "retention",
}
IN_SAVE = ("writing files", "committing")
# The child's reports after which a kill is sent (weighted towards the inside of a save).
TRIGGERS = ("start", "begin", "begin", "begin", "sealing", "sealing", "commit", "retain", "idle")
MAX_LINES = 200  # a trigger that never comes (e.g. no retention) still ends the trial


def read_until(proc: subprocess.Popen[str], trigger: str, nth: int) -> tuple[str, int | None]:
    """The child's lines up to and including its ``nth`` line starting with ``trigger`` (or
    MAX_LINES lines); the exit status if it ended by itself before that (it never should)."""
    assert proc.stdout is not None
    seen: list[str] = []
    count = 0
    while len(seen) < MAX_LINES:
        line = proc.stdout.readline()
        if not line:
            return "".join(seen), proc.wait()
        seen.append(line)
        if line.split()[:1] == [trigger]:
            count += 1
            if count >= nth:
                break
    return "".join(seen), None


class WarmChildren:
    """Children started one trial ahead, so Python's start-up overlaps the previous trial."""

    def __init__(self) -> None:
        self._spare: subprocess.Popen[str] | None = None
        self._live: list[subprocess.Popen[str]] = []

    def _start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._live.append(proc)
        return proc

    def take(self) -> subprocess.Popen[str]:
        proc = self._spare or self._start()
        self._spare = self._start()
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        if ready.strip() != "ready":
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"the checkpoint child did not start: {ready!r} {err}")
        return proc

    def close(self) -> None:
        for proc in self._live:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._live.clear()


@dataclass
class Tally:
    trials: int = 0
    fresh_dirs: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    restores: int = 0
    empty_restores: int = 0  # nothing committed yet in that directory
    corrupt: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def in_save(self) -> int:
        return sum(self.phases[p] for p in IN_SAVE)


def _chunked_sha256(data: bytes) -> str:
    """The contract's checksum, computed the plain way: sha256 of the 8 MiB chunks' sha256 digests."""
    chunk = 8 * 1024 * 1024
    return hashlib.sha256(
        b"".join(hashlib.sha256(data[i : i + chunk]).digest() for i in range(0, len(data), chunk))
    ).hexdigest()


def _xxh3_128(data: bytes) -> str:
    """The contract's checksum since issue 18 (``"hash": "xxh3-128"``), computed in one call."""
    import xxhash

    return str(xxhash.xxh3_128(data).hexdigest())


def _read_all(stream: IO[str] | None) -> str:
    if stream is None:
        return ""
    try:
        return stream.read()
    finally:
        stream.close()


def independent_scan(root: Path, cache: dict[int, object]) -> tuple[set[int], list[str]]:
    """Every committed step, found without CheckpointStore: our own JSON parsing and SHA-256.

    Also checks that every committed step holds exactly the child's files and bytes (a step
    whose manifest matches wrong bytes would be a corrupt commit). A step already checked whose
    manifest and file stats are unchanged is not re-read.
    """
    valid: set[int] = set()
    problems: list[str] = []
    if not root.is_dir():
        return valid, problems
    for entry in root.iterdir():
        match = _STEP.match(entry.name)
        if not match or not entry.is_dir():
            continue
        step = int(match.group(1))
        try:
            raw = (entry / "MANIFEST.json").read_bytes()
            data = json.loads(raw)
            files = {str(k): (int(v["size"]), str(v["digest"])) for k, v in data["files"].items()}
            if int(data["step"]) != step:
                problems.append(f"{entry.name}: manifest names step {data['step']}")
                continue
        except FileNotFoundError:
            continue  # never committed, or uncommitted by retention
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{entry.name}: unreadable MANIFEST.json ({exc})")  # must be atomic
            continue
        try:
            stats = tuple(
                sorted((n, os.stat(entry / n).st_size, os.stat(entry / n).st_mtime_ns) for n in files)
            )
        except FileNotFoundError:
            continue  # a file is gone: not a checkpoint (a delete in progress when it was killed)
        key = (raw, stats)
        if cache.get(step) == key:
            valid.add(step)
            continue
        ok = True
        for name, (size, digest) in files.items():
            try:
                data_bytes = (entry / name).read_bytes()
            except FileNotFoundError:
                ok = False
                break
            checksum = _chunked_sha256 if data.get("hash") == "sha256-chunked-8MiB" else _xxh3_128
            if len(data_bytes) != size or checksum(data_bytes) != digest:
                ok = False
                break
        if not ok:
            continue
        valid.add(step)
        cache[step] = key
        plan = file_plan(step)
        if set(files) != set(plan):
            problems.append(f"{entry.name} committed with files {sorted(files)}, expected {sorted(plan)}")
        for name, size in plan.items():
            if name in files and (entry / name).read_bytes() != content(step, name, size):
                problems.append(f"{entry.name}/{name} committed with bytes the child never wrote")
    return valid, problems


def check_restore(
    uri: str, root: Path, newest_reported: int | None, cache: dict[int, object]
) -> dict[str, object]:
    """Restore with a fresh store and compare it with the independent scan."""
    valid, problems = independent_scan(root, cache)
    newest_valid = max(valid) if valid else None
    store = CheckpointStore(uri)
    try:
        restored = store.restore()
    except NoCheckpoint:
        restored = None
    got = restored.step if restored is not None else None
    corrupt = []
    if restored is not None:
        plan = file_plan(restored.step)
        if set(restored.files) != set(plan):
            corrupt.append(f"restored step {got} has files {sorted(restored.files)}, expected {sorted(plan)}")
        for name in restored.files:
            try:
                same = name in plan and restored.read_bytes(name) == content(restored.step, name, plan[name])
            except OSError as exc:
                same, name = False, f"{name} ({exc})"
            if not same:
                corrupt.append(f"restored step {got}: {name} differs from what was saved")
    latest = CheckpointStore(uri).latest()
    if got != newest_valid:
        problems.append(f"restore chose step {got}, the newest valid step is {newest_valid}")
    if (latest.step if latest else None) != newest_valid:
        problems.append(f"latest() says {latest and latest.step}, the newest valid step is {newest_valid}")
    if newest_reported is not None and (got is None or got < newest_reported):
        problems.append(f"restored {got}, but step {newest_reported} was reported committed")
    return {"step": got, "corrupt": corrupt, "problems": problems}


def run_trials(tmp_path: Path, trials: int, seed: int, fresh_every: int = 5) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    shared = tmp_path / "shared"
    newest: dict[Path, int | None] = {}  # newest step reported committed, per directory
    caches: dict[Path, dict[int, object]] = {}
    children = WarmChildren()
    try:
        for i in range(trials):
            fresh = i % fresh_every == fresh_every - 1
            root = tmp_path / f"fresh-{i}" if fresh else shared
            tally.fresh_dirs += fresh
            uri = root.as_uri()
            proc = children.take()
            assert proc.stdin is not None
            retain_p = rng.choice([0.0, 0.5, 0.5, 1.0])
            proc.stdin.write(f"go {uri} {rng.randrange(2**31)} {retain_p}\n")
            proc.stdin.flush()
            # Where to kill is chosen by the child's own reports, not by a clock: right after its
            # n-th "begin" (writing files), "sealing" (committing), "retain" or "idle" line, so
            # where kills land does not depend on how fast this machine is (a busy 2-core machine
            # slows the child and a wall-clock delay alike, but not the order of its phases).
            trigger = rng.choice(TRIGGERS)
            if trigger == "retain" and retain_p == 0.0:
                trigger = "begin"
            nth = 1 if trigger == "start" else rng.randint(1, 3)
            seen, crashed = read_until(proc, trigger, nth)
            if crashed is None and rng.random() < 0.5:
                time.sleep(rng.uniform(0.0, 0.002))  # a little further into that phase, sometimes
            crashed = proc.poll() if crashed is None else crashed
            proc.kill()
            out, err = seen + _read_all(proc.stdout), _read_all(proc.stderr)
            proc.wait()
            with contextlib.suppress(OSError):
                proc.stdin.close()
            delay = f"{trigger} #{nth}"
            tally.trials += 1
            if crashed is not None:
                tally.failures.append(f"trial {i}: the child exited by itself ({crashed}): {err[-2000:]}")
                continue
            lines = [line.split() for line in out.splitlines() if line.strip()]
            for words in lines:
                if words[0] == "commit":
                    newest[root] = max(int(words[1]), newest.get(root) or 0)
            last = lines[-1][0] if lines else "before"
            tally.phases[PHASES.get(last, "outside a save")] += 1
            result = check_restore(uri, root, newest.get(root), caches.setdefault(root, {}))
            tally.restores += 1
            tally.empty_restores += result["step"] is None
            corrupt = result["corrupt"]
            problems = result["problems"]
            assert isinstance(corrupt, list) and isinstance(problems, list)
            tally.corrupt += bool(corrupt)
            for problem in corrupt + problems:
                tally.failures.append(f"trial {i} (killed after {last!r}, asked at {delay}): {problem}")
    finally:
        children.close()
    return tally


def summary(tally: Tally, seconds: float, seed: int) -> str:
    kills = ", ".join(f"{tally.phases[p]} {p}" for p in (*IN_SAVE, "retention", "outside a save"))
    return (
        f"checkpoint chaos (seed {seed}): {tally.trials} SIGKILL trials on file:// "
        f"({tally.fresh_dirs} on fresh dirs); kills: {kills} "
        f"({tally.in_save / max(tally.trials, 1):.0%} inside a save); {tally.restores} restores "
        f"({tally.empty_restores} with nothing committed yet); corrupt={tally.corrupt}; "
        f"other failures={len(tally.failures) - tally.corrupt}; {seconds:.1f}s"
    )


def _check(tally: Tally, trials: int) -> None:
    assert tally.trials == trials
    assert tally.corrupt == 0, "\n".join(tally.failures[:20])
    assert not tally.failures, "\n".join(tally.failures[:20])
    assert tally.restores == trials
    assert tally.in_save >= 0.2 * trials, f"only {tally.in_save} of {trials} kills landed inside a save"
    assert tally.restores - tally.empty_restores >= trials // 2  # most restores found a checkpoint


def test_sigkill_during_checkpoint_saves_never_corrupts_a_restore(tmp_path: Path) -> None:
    start, seed = time.monotonic(), SEED
    tally = run_trials(tmp_path, trials=25, seed=seed)
    print("\n" + summary(tally, time.monotonic() - start, seed))
    _check(tally, 25)


@pytest.mark.slow
def test_sigkill_during_checkpoint_saves_200_trials(tmp_path: Path) -> None:
    start, seed = time.monotonic(), SEED + 1
    tally = run_trials(tmp_path, trials=200, seed=seed)
    print("\n" + summary(tally, time.monotonic() - start, seed))
    _check(tally, 200)
