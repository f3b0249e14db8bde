"""The process the checkpoint chaos test kills: saves checkpoints in a loop until SIGKILL.

    python tests/chaos/chaos_ckpt_child.py

It imports only the checkpoint package, prints ``ready`` and waits for one line on stdin,
``go <uri> <seed> <retain-probability>``, so the test can start it ahead of time (warm) and
hand it a checkpoint URI when the trial begins. From then on it saves step after step, each
with several files whose bytes are a function of (step, name) only (``content``), and reports
every phase on stdout, flushed, so the test knows where its SIGKILL landed:

    start S         the first step it will save (above every step directory already there)
    begin N         about to open the writer of step N (files are written after this)
    sealing N       every file is written; ``commit()`` runs (fsync, MANIFEST.json, LATEST)
    commit N        step N is committed
    retain N        ``retain(keep=2)`` runs (verifies, deletes older steps)
    retained N      retention done
    idle N          "training" between saves
"""

from __future__ import annotations

import hashlib
import random
import sys
import time

from multispot.checkpoint import CheckpointStore

CHUNK = 256 * 1024 + 3  # not a multiple of anything the store uses, so flushes land mid-block
LOCAL_NAME = "extra/local.bin"  # the file placed through writer.local_dir
_BLOCK = 4093  # a prime: the repeating block never lines up with chunk or page boundaries


def file_plan(step: int) -> dict[str, int]:
    """The files of ``step`` and their sizes, all decided by the step number."""
    rng = random.Random(f"plan/{step}")
    plan = {
        "model.bin": rng.randint(256 * 1024, 4 * 1024 * 1024),
        "optim/state.bin": rng.randint(4 * 1024, 1024 * 1024),
        "rng.bin": rng.choice([0, 1, 17, rng.randint(0, 4096)]),
        LOCAL_NAME: rng.randint(1024, 512 * 1024),
    }
    for shard in range(rng.randint(0, 3)):
        plan[f"shards/shard-{shard}.bin"] = rng.randint(1, 300 * 1024)
    return plan


def content(step: int, name: str, size: int) -> bytes:
    """The bytes of file ``name`` of ``step``: a header naming both, then a block seeded by both."""
    header = f"{step}/{name}\n".encode()
    block = random.Random(hashlib.sha256(header).digest()).randbytes(_BLOCK)
    data = header + block * (size // _BLOCK + 1)
    return data[:size]


def _say(*words: object) -> None:
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def save(store: CheckpointStore, step: int, rng: random.Random) -> None:
    _say("begin", step)
    writer = store.writer(step, total_steps=10**9, attempt=1, metadata={"chaos": True})
    for name, size in file_plan(step).items():
        data = content(step, name, size)
        if name == LOCAL_NAME:  # as a library that wants a path would (torch.save(obj, path))
            path = writer.local_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                for at in range(0, size, CHUNK):
                    f.write(data[at : at + CHUNK])
                    f.flush()
            continue
        with writer.open(name) as f:
            for at in range(0, size, CHUNK):
                f.write(data[at : at + CHUNK])
                if rng.random() < 0.7:
                    f.flush()  # push it to the file now, so a kill can leave it half written
    _say("sealing", step)
    writer.commit()
    _say("commit", step)


def main() -> int:
    _say("ready")
    line = sys.stdin.readline().split()
    if not line or line[0] != "go":
        return 0  # the test is done with this spare child
    uri, seed, retain_p = line[1], int(line[2]), float(line[3])
    rng = random.Random(seed)
    store = CheckpointStore(uri)
    steps = store.steps()
    step = (steps[-1] if steps else 0) + 1 + rng.randint(0, 2)
    _say("start", step)
    while True:
        save(store, step, rng)
        if rng.random() < retain_p:
            _say("retain", step)
            store.retain(keep=2)
            _say("retained", step)
        _say("idle", step)
        time.sleep(rng.choice([0.0, rng.uniform(0.0, 0.03)]))
        step += 1 + rng.choice([0, 0, 0, 1, 5])  # steps need not be contiguous


if __name__ == "__main__":
    sys.exit(main())
