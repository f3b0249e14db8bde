"""A tiny trial for the sweep example (standard library only, about a second of work).

It minimises (x - 3)^2 by gradient descent with a learning rate ``--lr`` and a momentum
``--momentum``; ``--noise`` adds a deterministic wobble. It reports the loss every step
(``multispot.runtime.report``) and checkpoints its state, so a preempted trial resumes where its
last checkpoint left it.
"""

from __future__ import annotations

import argparse
import json
import math
import time

from multispot.runtime import Checkpointer, report

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--momentum", type=float, default=0.0)
parser.add_argument("--noise", type=int, default=0)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--sleep", type=float, default=0.05)
args = parser.parse_args()

ckpt = Checkpointer()
restored = ckpt.restore()
state = {"step": 0, "x": 0.0, "velocity": 0.0}
if restored is not None:
    state = json.loads(restored.read_bytes("state.json"))
    print(f"resumed from step {state['step']}", flush=True)

while state["step"] < args.steps:
    grad = 2 * (state["x"] - 3.0)
    state["velocity"] = args.momentum * state["velocity"] - args.lr * grad
    state["x"] += state["velocity"]
    state["step"] += 1
    loss = (state["x"] - 3.0) ** 2 + 0.01 * args.noise * abs(math.sin(state["step"]))
    report(state["step"], loss=loss)
    time.sleep(args.sleep)
    if ckpt.should_save(state["step"]) or ckpt.preempted:
        with ckpt.save(state["step"], total_steps=args.steps) as writer:
            writer.write_bytes("state.json", json.dumps(state).encode())
    if ckpt.preempted:
        ckpt.exit_preempted()
print(f"done: loss {loss:.6f}", flush=True)
