"""Recovery policies on the real spot traces: cost as a ratio to the omniscient optimum.

For every trace in ``../shared/data/spot-traces`` (or ``--traces DIR``), a grid of job lengths
(10, 20, 40 h of work) × deadline slacks (deadline = 1.3, 1.6, 2.2 × the work) × two start
points (10% and 40% into the trace), one V100 pool at AWS p3.2xlarge prices (spot $0.918/h,
on-demand $3.06/h), a 3-minute restart overhead, preemptions saved on the notice. Each policy's
cost is divided by the exact optimum of the same scenario (``multispot.policy.optimum``).
``--quick``: 10 and 20 h, slacks 1.3 and 2.2, one start. Runs on all cores (a process each).

*In sample vs leave one trace out.* ``deadline-aware`` has no constant fitted to these traces:
it learns each pool as the job runs (from the trace before the start and so far), and every other
quantity is the job's own (work, deadline, restart overhead, prices). Leave-one-trace-out
therefore re-fits nothing: each fold holds one trace out, the policy is the same object, and the
fold's figure is the policy's figure on that trace alone. The script prints both: in sample (every
scenario of every trace pooled) and leave one trace out (the mean of the folds' means, the worst
fold, and the worst scenario of any fold). The out-of-sample stress set (synthetic pools, other
starts and slacks, two pools) is ``bench/stress.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, goal, parse_args, print_machine, table

POLICIES = ("on-demand", "spot", "fallback", "greedy", "diversified", "uniform-progress", "deadline-aware")
SPOT, ON_DEMAND, OVERHEAD = 0.918, 3.06, 180.0


def one_trace(args: tuple[str, list[float], list[float], list[float]]) -> list[dict[str, Any]]:
    from multispot.job import Job
    from multispot.policy import get
    from multispot.policy.optimum import optimum
    from multispot.simulation import Trace, build_scenario, run_policy

    path, works, slacks, starts = args
    job = Job.validate_data({"name": "bench", "command": "python -c pass"})
    trace = Trace.load(path)
    rows = []
    for work in works:
        for slack in slacks:
            for fraction in starts:
                start = int(len(trace.data) * fraction)
                try:
                    sc, _ = build_scenario(
                        job,
                        [trace],
                        work * slack * 3600,
                        work * 3600,
                        restart_overhead=OVERHEAD,
                        start=start,
                        spot_prices=[SPOT],
                        on_demand_price=ON_DEMAND,
                    )
                except ValueError:
                    continue  # the deadline does not fit in the trace from there
                best = optimum(sc).cost
                assert best is not None
                for name in POLICIES:
                    out = run_policy(sc, get(name), job, name)
                    rows.append(
                        {
                            "trace": f"{Path(path).parent.parent.parent.name}/{trace.name}",
                            "work": work,
                            "slack": slack,
                            "policy": name,
                            "ratio": out.cost / best,
                            "missed": not out.deadline_met,
                        }
                    )
    return rows


def held_out(rows: list[dict[str, Any]], name: str) -> list[str]:
    """In sample (all scenarios pooled: mean, worst) and leave one trace out (each fold is one
    held-out trace: the mean of the folds' means, the worst fold's mean, the worst scenario)."""
    mine = [r for r in rows if r["policy"] == name]
    folds = [[r["ratio"] for r in mine if r["trace"] == t] for t in sorted({r["trace"] for r in mine})]
    means = [statistics.mean(f) for f in folds if f]
    return [
        f"{statistics.mean(r['ratio'] for r in mine):.3f}",
        f"{max(r['ratio'] for r in mine):.3f}",
        f"{statistics.mean(means):.3f}",
        f"{max(means):.3f}",
        f"{max(max(f) for f in folds if f):.3f}",
    ]


def main() -> None:
    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--traces", default=None)

    args = parse_args((__doc__ or "").splitlines()[0], options)
    # the project's shared data beside the clone (or beside the worktrees' folder)
    shared = (
        next(
            (d for d in (REPO.parent / "shared", REPO.parent.parent / "shared") if (d / "data").is_dir()),
            REPO.parent / "shared",
        )
        / "data"
        / "spot-traces"
    )
    # every shared trace where the project's data sits beside the clone; else the two in the repo
    root = Path(args.traces) if args.traces else shared if shared.is_dir() else REPO / "examples" / "traces"
    paths = sorted(str(p) for p in root.rglob("*.json"))
    if not paths:
        print(f"no traces under {root}: nothing to measure")
        return
    print_machine()
    works = [10.0, 20.0] if args.quick else [10.0, 20.0, 40.0]
    slacks = [1.3, 2.2] if args.quick else [1.3, 1.6, 2.2]
    starts = [0.1] if args.quick else [0.1, 0.4]
    began = time.perf_counter()
    with ProcessPoolExecutor() as pool:
        rows = [
            r for chunk in pool.map(one_trace, [(p, works, slacks, starts) for p in paths]) for r in chunk
        ]
    scenarios = len(rows) // len(POLICIES)
    print(
        f"{len(paths)} traces, {scenarios} scenarios (work {works} h × slack {slacks} × starts {starts}), "
        f"{time.perf_counter() - began:.0f}s\n"
    )

    def summary(subset: list[dict[str, Any]]) -> list[Any]:
        ratios = [r["ratio"] for r in subset]
        return [
            f"{statistics.mean(ratios):.3f}",
            f"{statistics.median(ratios):.3f}",
            f"{max(ratios):.3f}",
            sum(r["missed"] for r in subset),
        ]

    table(
        ["policy", "mean × optimum", "median", "worst", "missed deadlines"],
        [[name, *summary([r for r in rows if r["policy"] == name])] for name in POLICIES],
    )
    print()
    headers = ["slack (deadline / work)", *POLICIES]
    lines = []
    for slack in slacks:
        part = [r for r in rows if r["slack"] == slack]
        lines.append(
            [
                f"{slack:g}",
                *(f"{statistics.mean(r['ratio'] for r in part if r['policy'] == n):.3f}" for n in POLICIES),
            ]
        )
    for kind in ("availability", "preemption"):
        part = [r for r in rows if r["trace"].startswith(kind)]
        if part:
            lines.append(
                [
                    f"{kind} traces",
                    *(
                        f"{statistics.mean(r['ratio'] for r in part if r['policy'] == n):.3f}"
                        for n in POLICIES
                    ),
                ]
            )
    table(headers, lines)
    print()
    print(
        "per trace (leave one trace out: deadline-aware tunes nothing on the other traces, so each\n"
        "row is also its held-out figure):"
    )
    per = []
    for trace in sorted({r["trace"] for r in rows}):
        part = [r for r in rows if r["trace"] == trace]
        per.append(
            [
                trace,
                *(
                    f"{statistics.mean(r['ratio'] for r in part if r['policy'] == n):.3f}"
                    for n in ("greedy", "uniform-progress", "deadline-aware")
                ),
                f"{max(r['ratio'] for r in part if r['policy'] == 'deadline-aware'):.3f}",
            ]
        )
    table(["trace", "greedy", "uniform-progress", "deadline-aware", "deadline-aware worst"], per)
    print()
    print("in sample vs leave one trace out (nothing is fitted, so no fold re-fits anything):")
    table(
        [
            "policy",
            "in sample mean",
            "in sample worst",
            "LOTO mean of folds",
            "LOTO worst fold",
            "LOTO worst",
        ],
        [[name, *held_out(rows, name)] for name in ("greedy", "uniform-progress", "deadline-aware")],
    )
    print()
    da = [r for r in rows if r["policy"] == "deadline-aware"]
    up = [r for r in rows if r["policy"] == "uniform-progress"]
    mean_da = statistics.mean(r["ratio"] for r in da)
    goal("deadline-aware missed deadlines", sum(r["missed"] for r in da), 0, at_most=True, unit="")
    goal("deadline-aware mean cost / optimum", mean_da, 1.05, at_most=True)
    goal(
        "deadline-aware mean / uniform-progress mean",
        mean_da / statistics.mean(r["ratio"] for r in up),
        1.0,
        at_most=True,
    )


if __name__ == "__main__":
    main()
