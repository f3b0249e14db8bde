"""Data-parallel training on CPU (gloo), checkpointed with torch.distributed.checkpoint (DCP)
through the multispot contract.

Every rank writes its own shard into the step directory; rank 0 commits the step only after
all ranks have posted theirs, so a rank lost mid-save can never leave a partial step that a
resumed run would load. All ranks agree on when to save (one all-reduce per step), so the
preemption notice, which reaches each rank at a slightly different moment, still leads to one
common checkpoint.

    multispot submit examples/pytorch/ddp.yaml        # 2 ranks as local processes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.nn.parallel import DistributedDataParallel

from multispot.checkpoint import RestoredCheckpoint
from multispot.runtime import Checkpointer
from multispot.runtime.pytorch import agree, rng_state, set_rng_state


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()

    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(2048, 32, generator=generator)
    y = (x @ torch.randn(32, 1, generator=generator)).squeeze(1).gt(0).long()

    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = DistributedDataParallel(
        torch.nn.Sequential(
            torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(128, 2)
        )
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    torch.manual_seed(args.seed + 1 + rank)  # dropout differs per rank, as in real data parallelism
    per_rank = args.batch_size
    steps_per_epoch = math.ceil(len(x) / (per_rank * world))

    def load(restored: RestoredCheckpoint) -> tuple[dict[str, Any], Any, int]:
        # Every file is hashed as it is read (DCP's included): a mismatch anywhere falls back to
        # the next older checkpoint, so nothing here is used before all of it matched.
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optim": optim_state}
        restored.dcp_load(state)
        with restored.open(f"rng-rank{rank}.pt") as f:
            rng = torch.load(f, weights_only=True)
        return state, rng, json.loads(restored.read_bytes("progress.json"))["step"]

    ckpt = Checkpointer()
    step = 0
    found = ckpt.restore_with(load)
    if found is not None:
        state, rng, step = found
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        set_rng_state(rng)
        print(f"rank {rank}: resumed from step {step}", flush=True)

    while step < args.steps:
        epoch, batch = divmod(step, steps_per_epoch)
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed * 7919 + epoch))
        index = perm[(batch * world + rank) * per_rank : (batch * world + rank + 1) * per_rank]
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        preempted = agree(ckpt.preempted)
        if agree(step % args.save_every == 0) or preempted:
            model_state, optim_state = get_state_dict(model, optimizer)
            with ckpt.save(step, total_steps=args.steps) as writer:
                # DCP writes through the writer: each rank's shard hashed as it is written
                writer.dcp_save({"model": model_state, "optim": optim_state})
                with writer.open(f"rng-rank{rank}.pt") as f:
                    torch.save(rng_state(), f)
                if rank == 0:
                    writer.write_bytes("progress.json", json.dumps({"step": step}).encode())
        if preempted:
            print(f"rank {rank}: preempted at step {step}, saved", flush=True)
            dist.destroy_process_group()
            ckpt.exit_preempted()

    if rank == 0:
        digest = hashlib.sha256()
        for name, tensor in sorted(model.module.state_dict().items()):
            digest.update(name.encode() + tensor.contiguous().numpy().tobytes())
        out = ckpt.env.output_dir or Path("outputs")
        out.mkdir(parents=True, exist_ok=True)
        metrics = {"steps": step, "final_loss": loss.item(), "params_sha256": digest.hexdigest()}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(json.dumps(metrics), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
