"""GPU checkpoint benchmark: how long a training loop on a GPU is held by a checkpoint.

A model of ~N parameters with AdamW (state = parameters + two moments, fp32) trains on random data
on the GPU. In the same process it measures, for the same state:

- baseline: ``torch.save(state_dict)`` to a file + fsync (torch copies device tensors itself);
- multispot sync: ``TrainingState.save`` through the checkpoint contract (sha256 on write, fsync,
  manifest);
- multispot async: ``TrainingState.save_async``: the loop is held only for the device-to-host
  snapshot, the write and hash run in a background thread while training goes on;
- restore: ``TrainingState.restore`` (full verification) vs ``torch.load``.

Prints ratios. Skips (exit 0) without CUDA. ``--params`` sets the model size (default 0.5e9).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=float, default=0.5e9)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--dir", default=os.environ.get("BENCH_DIR") or tempfile.gettempdir())
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu_checkpoint: torch is not installed: skipped")
        return 0
    if not torch.cuda.is_available():
        print("gpu_checkpoint: no CUDA device: skipped")
        return 0

    import common

    from multispot.runtime import Checkpointer
    from multispot.runtime.pytorch import TrainingState

    device = torch.device("cuda")
    width = 8192
    layers = max(1, round(args.params / (width * width)))
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width, bias=False) for _ in range(layers)]).to(
        device
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randn(512, width, device=device)

    def step() -> None:
        loss = model(batch).float().pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    state = TrainingState(model, optimizer)
    state_bytes = sum(t.numel() * t.element_size() for t in model.parameters()) * 3
    gb = state_bytes / 1e9
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, cpus {os.cpu_count()}")
    print(
        f"model: {layers} x Linear({width}, {width}) = {layers * width * width / 1e9:.2f} B params; "
        f"checkpoint state {gb:.1f} GB (params + AdamW moments, fp32)"
    )

    def timed_steps(n: int) -> list[float]:
        out = []
        for _ in range(n):
            start = time.perf_counter()
            step()
            torch.cuda.synchronize()
            out.append(time.perf_counter() - start)
        return out

    step_time = statistics.median(timed_steps(args.steps))
    print(f"training step: {step_time * 1000:.1f} ms")

    root = Path(tempfile.mkdtemp(prefix="multispot-gpu-bench-", dir=args.dir))
    try:
        # Baseline: torch.save of the live (device) state dict, then fsync.
        path = root / "plain.pt"
        start = time.perf_counter()
        with open(path, "wb") as f:
            torch.save(state.state_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        plain_save = time.perf_counter() - start
        start = time.perf_counter()
        with open(path, "rb") as f:
            torch.load(f, map_location=device, weights_only=True)
        torch.cuda.synchronize()
        plain_load = time.perf_counter() - start
        path.unlink()

        def checkpointer(name: str) -> Checkpointer:
            return common.checkpointer(root / name, keep=1)

        print(f"torch.save + fsync: {plain_save:.2f}s; torch.load to GPU: {plain_load:.2f}s", flush=True)
        # multispot sync save
        sync = checkpointer("sync")
        state.step = 1
        start = time.perf_counter()
        state.save(sync)
        sync_save = time.perf_counter() - start

        print(f"multispot sync save: {sync_save:.2f}s", flush=True)
        # restore through the contract (full sha256 verification) into the live model
        start = time.perf_counter()
        fresh = checkpointer("sync")
        state.restore(fresh, map_location=device)
        torch.cuda.synchronize()
        restore = time.perf_counter() - start

        # multispot async saves during training: the loop's extra time is what a save costs it.
        # The first pins its host buffers; later ones reuse them (the steady state).
        async_ckpt = checkpointer("async")
        results = []
        for step_number in (2, 3):
            state.step = step_number
            start = time.perf_counter()
            future = state.save_async(async_ckpt)
            snapshot_block = time.perf_counter() - start
            steps_during: list[float] = []
            while future is not None and not future.done() and len(steps_during) < 5000:
                steps_during += timed_steps(1)  # train on while the background write runs
            async_ckpt.finish_pending()
            slowed = sum(steps_during) - step_time * len(steps_during)
            results.append((snapshot_block, snapshot_block + max(0.0, slowed), async_ckpt.save_seconds[-1]))
            print(
                f"async save {step_number - 1}: loop held {results[-1][1]:.2f}s "
                f"({len(steps_during)} steps ran during the write)",
                flush=True,
            )
        (_, first_total, _), (snapshot_block, blocked, write_total) = results

        print()
        print(f"{'measure':44} {'seconds':>9} {'GB/s':>7} {'ratio':>8}")
        rows = [
            ("torch.save + fsync (baseline)", plain_save, "1.00x"),
            ("multispot sync save (sha256, fsync, manifest)", sync_save, f"{plain_save / sync_save:.2f}x"),
            ("async, first save: loop held (pins buffers)", first_total, f"{first_total / sync_save:.1%}"),
            ("async, steady: loop held for snapshot", snapshot_block, f"{snapshot_block / sync_save:.1%}"),
            ("async, steady: snapshot + slower steps", blocked, f"{blocked / sync_save:.1%}"),
            ("async, steady: background write", write_total, ""),
            ("torch.load to GPU (baseline)", plain_load, "1.00x"),
            ("multispot restore (full verify) to GPU", restore, f"{plain_load / restore:.2f}x"),
        ]
        for name, seconds, ratio in rows:
            print(f"{name:44} {seconds:9.2f} {gb / seconds:7.2f} {ratio:>8}")
        print()
        print(
            f"goal: async save holds the loop <= 5% of a sync save: {blocked / sync_save:.1%} -> "
            f"{'MET' if blocked <= 0.05 * sync_save else 'NOT MET'}"
        )
        print(
            f"goal: sync save >= 0.9x torch.save: {plain_save / sync_save:.2f}x -> "
            f"{'MET' if plain_save / sync_save >= 0.9 else 'NOT MET'}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
