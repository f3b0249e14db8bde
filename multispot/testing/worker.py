"""A tiny resumable job for the provider contract suite; needs no ML framework.

    python -m multispot.testing.worker --steps 20 --step-seconds 0.05 [--fail-at N]

It sums ``step**2`` over the steps, checkpointing its position and partial sum, so a run that
is preempted and resumed any number of times must end with the same ``result.json`` as one
that is not. Each process start leaves a marker under the output location, so a test can count
how many times the command really started.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import uuid

import fsspec

from multispot.runtime import Checkpointer


def expected_sum(steps: int) -> int:
    return sum(step * step for step in range(steps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    parser.add_argument("--save-every", type=int, default=1)
    parser.add_argument("--fail-at", type=int, default=-1)
    args, _ = parser.parse_known_args(argv)

    ckpt = Checkpointer()
    out = (ckpt.env.output_uri or "file://outputs").rstrip("/")
    fs, root = fsspec.core.url_to_fs(out)
    fs.makedirs(f"{root}/starts", exist_ok=True)
    fs.pipe_file(f"{root}/starts/{ckpt.env.attempt}-{uuid.uuid4().hex[:8]}", b"")

    step, total = 0, 0
    restored = ckpt.restore()
    if restored is not None:
        state = json.loads(restored.read_bytes("state.json"))
        step, total = state["step"], state["total"]
        print(f"worker: resumed from step {step}", flush=True)
    else:
        print("worker: fresh start", flush=True)

    while step < args.steps:
        if step == args.fail_at:
            print(f"worker: failing at step {step} as asked", flush=True)
            return 3
        total += step * step
        step += 1
        time.sleep(args.step_seconds)
        if step % args.save_every == 0 or ckpt.preempted:
            with ckpt.save(step, total_steps=args.steps) as writer:
                writer.write_bytes("state.json", json.dumps({"step": step, "total": total}).encode())
        print(f"worker: step {step}", flush=True)
        if ckpt.preempted:
            print(f"worker: preempted at step {step}, saved", flush=True)
            ckpt.exit_preempted()

    probe = os.environ.get("MULTISPOT_CONTRACT_PROBE")
    result = {
        "steps": step,
        "sum": total,
        "attempt": ckpt.env.attempt,
        "probe_sha256": hashlib.sha256(probe.encode()).hexdigest() if probe is not None else None,
    }
    fs.pipe_file(f"{root}/result.json", json.dumps(result).encode())
    print(f"worker: done {json.dumps(result)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
