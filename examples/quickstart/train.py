"""Quickstart: a small MLP on scikit-learn's handwritten digits, written to survive preemptions.

It runs as-is on a laptop (`python train.py`), on the local provider, or on a cloud: the
multispot runtime finds where checkpoints live, restores the newest valid one, saves on a
schedule and when the preemption notice comes. Data order, dropout and the optimizer are all
resumed exactly, so an interrupted run ends with the same parameters, bit for bit, as an
uninterrupted one with the same seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits

from multispot.runtime import Checkpointer
from multispot.runtime.pytorch import TrainingState


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint-optimizer",
        choices=["yes", "no"],
        default="yes",
        help="'no' leaves the optimizer out of the checkpoint: the classic resume bug verify-resume catches",
    )
    return parser.parse_args()


def parameters_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # one thread: the same arithmetic in every attempt
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
    test, train = order[:300], order[300:]

    model = torch.nn.Sequential(
        torch.nn.Linear(64, args.hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(args.hidden, args.hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(args.hidden, 10),
    )
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    state = TrainingState(model, optimizer if args.checkpoint_optimizer == "yes" else None, scheduler)

    ckpt = Checkpointer()
    if state.restore(ckpt):
        print(f"resumed from step {state.step} (epoch {state.epoch}, batch {state.position})", flush=True)
    else:
        print(f"fresh start: {total_steps} steps, checkpoints in {ckpt.store.uri}", flush=True)

    started, loss = time.time(), torch.tensor(float("nan"))
    while state.epoch < args.epochs:
        # The epoch's order depends only on (seed, epoch): a resumed run sees the same batches.
        perm = train[
            torch.randperm(
                len(train), generator=torch.Generator().manual_seed(args.seed * 100_003 + state.epoch)
            )
        ]
        model.train()
        for batch in range(state.position, steps_per_epoch):
            index = perm[batch * args.batch_size : (batch + 1) * args.batch_size]
            loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            state.step, state.position = state.step + 1, batch + 1
            if ckpt.should_save(state.step):
                state.save(ckpt, total_steps)
            if ckpt.preempted:
                print(
                    f"preemption notice at step {state.step}: saved, exiting "
                    f"({ckpt.seconds_left():.1f}s of notice left)",
                    flush=True,
                )
                ckpt.exit_preempted()
        state.epoch, state.position = state.epoch + 1, 0
        if state.epoch % 10 == 0:
            print(f"epoch {state.epoch}/{args.epochs} loss {loss.item():.4f}", flush=True)
    state.save(ckpt, total_steps)

    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
        test_loss = torch.nn.functional.cross_entropy(model(x[test]), y[test]).item()
    metrics = {
        "final_loss": test_loss,
        "accuracy": accuracy,
        "params_sha256": parameters_sha256(model),
        "steps": state.step,
        "seconds_this_attempt": round(time.time() - started, 2),
    }
    out = ckpt.env.output_dir or Path("outputs")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics), flush=True)


if __name__ == "__main__":
    main()
