"""Per-step cost of the runtime in a training loop: ``ckpt.should_save(step)`` and ``ckpt.preempted``.

A tight loop (a few float operations per iteration) runs bare and with the two calls a training
script makes every step, with the preemption-notice watch installed (SIGTERM handler plus a
notice-file poller thread) and a checkpoint interval so long that no save ever happens. The goal
(≤ 1%) is about a realistic step, so the overhead is also given as a fraction of 1 ms and 100 ms.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from typing import Any

import common


def bare(n: int) -> float:
    x = 0.0
    for _ in range(1, n + 1):
        x = x * 0.5 + 1.0
    return x


def with_runtime(n: int, ckpt: Any) -> float:
    x = 0.0
    for step in range(1, n + 1):
        x = x * 0.5 + 1.0
        if ckpt.should_save(step):
            raise AssertionError("the interval is huge: no save is due")
        if ckpt.preempted:
            raise AssertionError("no notice was sent")
    return x


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    common.banner("runtime_overhead", args.quick)
    common.print_machine()
    n = 200_000 if args.quick else 2_000_000
    repeat = 5 if args.quick else 9
    root = common.bench_dir("overhead")
    try:
        # Phase 1: the bare loop before anything of multispot runs in this process.
        bare(n)
        before_runs = [common.timed(lambda: bare(n))[0] for _ in range(repeat)]
        before = common.median(before_runs)

        # Phase 2: a Checkpointer as a job gets it: the notice watch is installed (SIGTERM handler,
        # and a poller for the local provider's notice file, which never appears here).
        os.environ["MULTISPOT_NOTICE_FILE"] = str(root / "notice.json")
        from multispot.runtime import Checkpointer

        def checkpointer(every_steps: int | None) -> Checkpointer:
            return common.checkpointer(root / "ckpt", every_steps=every_steps, provider="local")

        by_time = checkpointer(None)
        by_steps = checkpointer(10**12)
        watchers = [t.name for t in threading.enumerate() if t.name == "multispot-notice"]
        samples: dict[str, list[float]] = {"bare": [], "interval": [], "every_steps": []}
        for warm in (lambda: bare(n), lambda: with_runtime(n, by_time), lambda: with_runtime(n, by_steps)):
            warm()
        for _ in range(repeat):  # interleaved: drift on a busy machine hits every variant alike
            samples["bare"].append(common.timed(lambda: bare(n))[0])
            samples["interval"].append(common.timed(lambda: with_runtime(n, by_time))[0])
            samples["every_steps"].append(common.timed(lambda: with_runtime(n, by_steps))[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med = {name: common.median(values) for name, values in samples.items()}
    per = {name: s / n * 1e9 for name, s in med.items()}
    print(
        f"loop: {n:,} iterations, median of {repeat} interleaved runs; notice pollers running: {len(watchers)}"
    )
    common.heading("Tight loop")
    common.table(
        ["variant", "ns / iteration", "× bare loop"],
        [
            ("bare loop, before multispot was imported", before / n * 1e9, before / med["bare"]),
            ("bare loop, notice watch installed", per["bare"], 1.0),
            ("+ should_save(step) + preempted (interval)", per["interval"], med["interval"] / med["bare"]),
            (
                "+ should_save(step) + preempted (every_steps)",
                per["every_steps"],
                med["every_steps"] / med["bare"],
            ),
        ],
    )
    rows = []
    for name, label in (("interval", "interval schedule"), ("every_steps", "every_steps schedule")):
        overhead_ns = per[name] - per["bare"]
        rows.append(
            (label, overhead_ns, f"{overhead_ns / 1e6 * 100:.4f}%", f"{overhead_ns / 1e8 * 100:.6f}%")
        )
    common.heading("Runtime overhead per training step")
    common.table(["schedule", "ns / step", "of a 1 ms step", "of a 100 ms step"], rows)
    watch = (min(samples["bare"]) - min(before_runs)) / min(before_runs) * 100
    print(
        f"\nnotice watch (SIGTERM handler + a poller thread waking every 0.2 s) on the bare loop: {watch:+.2f}% "
        "(fastest runs compared; anything within a few % is noise)"
    )
    print()
    worst = max(per["interval"], per["every_steps"]) - per["bare"]
    print(
        f"info: raw tight-loop ratio {max(med['interval'], med['every_steps']) / med['bare']:.2f}× (no goal)"
    )
    common.goal("runtime overhead on a 1 ms step", worst / 1e6 * 100, 1.0, at_most=True, unit="%")
    common.goal("runtime overhead on a 100 ms step", worst / 1e8 * 100, 1.0, at_most=True, unit="%")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
