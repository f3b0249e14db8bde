"""How long a training loop is blocked by checkpoint saves: async (save_async) vs sync (save).

A simulated loop (each step a fixed amount of matmul work, ~30 ms) over a model of float32
parameters (256 MB; 64 MB with --quick) saves every M steps, three ways in the same process:
no saves (the baseline), ``TrainingState.save`` (sync) and ``TrainingState.save_async`` (snapshot,
then a background writer). Goal: the time async saves block the loop ≤ 5% of what sync saves do.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import sys
import time
from typing import Any

import common

STEP_SECONDS = 0.03  # target duration of one simulated training step
SAVES_PER_RUN = 6
LAYER = 2048  # Linear(2048, 2048): 16 MB of float32 weights per layer


def main() -> None:
    def setup(parser: Any) -> None:
        parser.add_argument("--model-mb", type=int, help="model size in MB (default 256; 64 with --quick)")
        parser.add_argument("--repeat", type=int, help="rounds of the three variants (median counts)")
        parser.add_argument(
            "--threads", type=int, help="torch threads for the loop (default: torch's; 1 leaves a core free)"
        )

    args = common.parse_args(__doc__.splitlines()[0], setup)
    common.banner("async_save", args.quick)
    root = common.bench_dir("async")
    common.print_machine(root)
    try:
        import torch
    except ImportError:
        print("skipped: torch is not installed (pip install 'multispot[torch]')")
        return
    os.environ.pop("MULTISPOT_NOTICE_FILE", None)  # no notice poller: this measures saves only

    from multispot.runtime import Checkpointer
    from multispot.runtime.pytorch import TrainingState

    if args.threads:
        torch.set_num_threads(args.threads)
    model_mb = args.model_mb or (64 if args.quick else 256)
    repeat = args.repeat or (1 if args.quick else 3)
    layers = max(1, model_mb // 16)
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(LAYER, LAYER) for _ in range(layers)))
    params_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / common.MB
    state = TrainingState(model)
    snapshots: list[float] = []  # instrumentation only: how long each TrainingState.snapshot takes
    take_snapshot = state.snapshot

    faults: list[int] = []  # minor page faults while snapshotting: fresh memory the kernel maps in

    def timed_snapshot() -> dict[str, Any]:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        seconds, copied = common.timed(take_snapshot)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        snapshots.append(seconds)
        return copied  # type: ignore[no-any-return]

    state.snapshot = timed_snapshot  # type: ignore[method-assign]

    # One step: a fixed number of 512×512 matmuls, calibrated once to take about STEP_SECONDS.
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    one = common.median_time(lambda: a @ b, repeat=20, warmup=5)
    matmuls = max(1, round(STEP_SECONDS / one))
    bias = model[0].bias

    def train_step() -> None:
        for _ in range(matmuls):
            a @ b
        with torch.no_grad():
            bias.add_(1e-6)  # the state changes every step: a snapshot must be a real copy

    step_s = common.median_time(train_step, repeat=10, warmup=3)

    count = 0

    def checkpointer() -> Checkpointer:
        nonlocal count
        count += 1
        return common.checkpointer(root / f"run{count}", keep=2)

    # How long one sync save takes here (a warm-up too), to space saves so an async one can finish
    # in between.
    probe = checkpointer()
    state.step = 1
    save_s = common.timed(lambda: state.save(probe))[0]
    state.step = 2
    state.save_async(probe)  # and one async save, so both variants start warm
    probe.finish_pending()
    every = max(10, math.ceil(2.0 * save_s / step_s))
    steps = every * SAVES_PER_RUN
    print(
        f"model: {layers} × Linear({LAYER}, {LAYER}) = {params_mb:.0f} MB of float32; one step = {matmuls} "
        f"matmuls 512×512 ≈ {step_s * 1000:.1f} ms (torch threads: {torch.get_num_threads()})"
    )
    print(
        f"loop: {steps} steps, a save every {every} steps ({SAVES_PER_RUN} saves; one sync save ≈ "
        f"{save_s * 1000:.0f} ms, so saves are spaced ≥ 2 save durations apart); {repeat} round(s)"
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"note: {cores} cores; the background writer (torch.save + sha256 + write) competes with the loop's "
        "matmuls for CPU, which shows as a slower loop rather than as blocked time."
    )
    sys.stdout.flush()

    def run(variant: str) -> dict[str, float]:
        ckpt = checkpointer()
        blocked = waited = 0.0
        snapshots.clear()
        faults.clear()
        started = time.perf_counter()
        for step in range(1, steps + 1):
            train_step()
            state.step = step
            if variant != "none" and step % every == 0:
                t0 = time.perf_counter()
                if variant == "sync":
                    state.save(ckpt, total_steps=steps)
                else:
                    # save_async first waits for the save in flight; doing it here (same effect)
                    # splits the blocked time into that wait and the snapshot + hand-off.
                    ckpt.finish_pending()
                    waited += time.perf_counter() - t0
                    state.save_async(ckpt, total_steps=steps)
                blocked += time.perf_counter() - t0
        loop = time.perf_counter() - started
        drain = common.timed(lambda: ckpt.finish_pending())[0]  # the last async save, after the loop
        if variant != "none":
            latest = ckpt.store.latest()
            assert latest is not None and latest.step == steps, f"{variant}: last save not committed"
        return {
            "loop": loop,
            "blocked": blocked,
            "waited": waited,
            "snapshot": sum(snapshots),
            "faults": sum(faults) / max(1, len(faults)),
            "drain": drain,
        }

    rounds: dict[str, list[dict[str, float]]] = {"none": [], "sync": [], "async": []}
    try:
        for i in range(repeat):
            for variant in rounds:
                rounds[variant].append(run(variant))
            print(
                f"round {i + 1}/{repeat}: "
                + "; ".join(
                    f"{v} loop {rs[-1]['loop']:.2f} s, blocked {rs[-1]['blocked']:.3f} s"
                    for v, rs in rounds.items()
                )
            )
            sys.stdout.flush()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med = {v: {k: common.median([r[k] for r in rs]) for k in rs[0]} for v, rs in rounds.items()}
    base = med["none"]["loop"]
    rows = []
    for variant, label in (
        ("none", "no saves (baseline)"),
        ("sync", "TrainingState.save"),
        ("async", "save_async"),
    ):
        m = med[variant]
        rows.append(
            (
                label,
                m["loop"],
                m["loop"] / base,
                m["blocked"],
                m["blocked"] / SAVES_PER_RUN * 1000 if variant != "none" else 0.0,
                m["drain"],
            )
        )
    common.heading(f"Loop of {steps} steps with {SAVES_PER_RUN} saves of a {params_mb:.0f} MB model (median)")
    common.table(
        ["variant", "loop s", "× baseline loop", "blocked s", "blocked ms / save", "drain after loop s"], rows
    )
    sync, asy = med["sync"], med["async"]
    handoff = asy["blocked"] - asy["waited"] - asy["snapshot"]
    print(
        f"\nasync blocked time over {SAVES_PER_RUN} saves = snapshot (copy of the state) "
        f"{asy['snapshot'] * 1000:.0f} ms + hand-off to the writer thread {handoff * 1000:.0f} ms + waiting "
        f"for the previous save {asy['waited'] * 1000:.0f} ms; {asy['faults']:.0f} minor page faults per snapshot "
        f"(~{asy['faults'] * 4 / 1024:.0f} MB of fresh pages at 4 KB each)"
    )
    extra_sync, extra_async = sync["loop"] - base, asy["loop"] - base
    print(
        f"loop time added by saves: sync {extra_sync:.2f} s, async {extra_async:.2f} s "
        f"(async: {extra_async - asy['blocked']:.2f} s of it is the loop running slower beside the writer)"
    )
    print()
    common.goal(
        "time blocked by async saves / by sync saves",
        asy["blocked"] / sync["blocked"] * 100,
        5,
        at_most=True,
        unit="%",
    )
    print(
        f"info: loop time added by async saves / by sync saves: {extra_async / extra_sync * 100:.0f}% "
        "(includes CPU contention; no goal)"
    )


if __name__ == "__main__":
    main()
