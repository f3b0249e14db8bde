"""Out-of-sample stress set for the deadline policies: cost / optimum, misses, excess over greedy.

Nothing in a policy is tuned on these scenarios (``deadline-aware`` has no tuned constant at all);
they are built from simple generative models and from the shared traces at start offsets and
slacks the policies were never looked at with:

- *synthetic*: two-state Markov pools (``bench/synthetic.py``: availability 10–90 %, mean
  up-time 10 min–10 h, and 8-node pools that need all nodes up), 60-second ticks, three days of
  the same pool seen before the job starts;
- *shared*: every trace under ``../shared/data/spot-traces`` (or ``--traces DIR``) at several
  start offsets;
- *two pools*: pairs of synthetic pools (the second 15 % cheaper), and pairs of shared traces of
  the same collection started together.

Jobs of 8 h and 20 h, deadline slack (deadline / work) 1.1–2.0, spot $0.918/h, on-demand
$3.06/h, 3-minute restart, preemptions saved on the notice. Each policy's cost is divided by the
exact optimum of the same scenario (``multispot.policy.optimum``, exact for several pools too)
and by greedy's. ``--quick``: fewer seeds, starts and slacks. Runs on all cores (a process each).
``--before FILE``: also replay ``DeadlineAware`` from an older ``deadline.py`` (e.g.
``git show REV:multispot/policy/deadline.py > /tmp/old.py``) as ``deadline-aware (before)``.

``--held-out DIR``: instead of all that, the issue's check on traces nobody tuned on: every trace
under DIR whose path is not also under the shared data (e.g. a clone of the Can't Be Late
study's ``spot-traces`` repository: its 2022 K80/V100 pools, 16- and 4-node pools, CPU
preemption traces), jobs of 8 h and 20 h, slack 1.3, 1.5, 1.75 and 2.0, starting at the
trace's first tick (nothing seen before) and a quarter and half way in, and pairs of traces of
one collection as two pools; a table per collection. The traces are not part of this repository.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, goal, parse_args, print_machine, table
from synthetic import Model, generate, models

POLICIES = ["greedy", "uniform-progress", "deadline-aware"]
SPOT, ON_DEMAND, OVERHEAD, TICK = 0.918, 3.06, 180.0, 60.0
HISTORY = 3 * 86400.0  # seconds of the pool seen before the job starts (synthetic)


@dataclass(frozen=True)
class Case:
    group: str  # synthetic, 8-node, shared, two pools
    label: str
    work: float  # hours
    slack: float  # deadline / work
    models: tuple[Model, ...] = ()
    seed: int = 0
    paths: tuple[str, ...] = ()
    start: float = 0.0  # fraction into the shared traces


def cases(quick: bool, root: Path | None) -> list[Case]:
    out: list[Case] = []
    works = (8.0, 20.0)
    slacks = (1.1, 1.3, 2.0) if quick else (1.1, 1.3, 1.6, 2.0)
    seeds = (0,) if quick else (0, 1)
    for m in models():
        for seed in seeds:
            for work in works if not quick else (8.0,):
                for slack in slacks:
                    group = "8-node" if m.nodes > 1 else "synthetic"
                    out.append(Case(group, m.label, work, slack, models=(m,), seed=seed))
    pairs = [
        (Model(0.25, 3600.0), Model(0.5, 4 * 3600.0)),
        (Model(0.1, 600.0), Model(0.75, 3600.0)),
        (Model(0.5, 10 * 3600.0), Model(0.5, 600.0)),
        (Model(0.25, 4 * 3600.0), Model(0.25, 4 * 3600.0)),
    ]
    for a, b in pairs:
        for seed in seeds:
            for slack in slacks:
                out.append(Case("two pools", f"{a.label} + {b.label}", 8.0, slack, models=(a, b), seed=seed))
    if root is not None:
        paths = sorted(str(p) for p in root.rglob("*.json"))
        starts = (0.3, 0.7) if quick else (0.2, 0.45, 0.7, 0.85)
        for path in paths:
            for start in starts:
                for work in works if not quick else (8.0,):
                    for slack in slacks:
                        out.append(Case("shared", Path(path).stem, work, slack, paths=(path,), start=start))
        for a, b in collection_pairs(paths):
            for start in starts[:1]:
                for slack in slacks:
                    label = f"{Path(a).stem} + {Path(b).stem}"
                    out.append(Case("two pools", label, 8.0, slack, paths=(a, b), start=start))
    return out


def collection_pairs(paths: list[str]) -> list[tuple[str, str]]:
    """Traces of one collection (one folder) paired off in order, as two pools started together."""
    by_dir: dict[str, list[str]] = {}
    for p in paths:
        by_dir.setdefault(str(Path(p).parent), []).append(p)
    return [pair for group in by_dir.values() for pair in zip(group[::2], group[1::2], strict=False)]


def held_out_cases(root: Path, shared: Path) -> list[Case]:
    """The issue's held-out protocol (``--held-out``): the traces under ``root`` not in ``shared``."""
    seen = {str(p.relative_to(shared)) for p in shared.rglob("*.json")} if shared.is_dir() else set()
    paths = sorted(str(p) for p in root.rglob("*.json") if str(p.relative_to(root)) not in seen)
    out: list[Case] = []
    for path in paths:
        label = str(Path(path).relative_to(root))
        for start in (0.0, 0.25, 0.5):
            for work in (8.0, 20.0):
                for slack in (1.3, 1.5, 1.75, 2.0):
                    out.append(Case("held-out", label, work, slack, paths=(path,), start=start))
    for a, b in collection_pairs(paths):
        for slack in (1.3, 1.5, 2.0):
            label = f"{Path(a).parent.relative_to(root)}: {Path(a).stem} + {Path(b).stem}"
            out.append(Case("held-out, two pools", label, 8.0, slack, paths=(a, b)))
    return out


def collection(case: Case) -> str:
    """A held-out case's collection: the trace's folder (``availability/1-node/aws-10-26-2022``)."""
    return case.label.split(":")[0] if ":" in case.label else str(Path(case.label).parent)


def traces_for(case: Case) -> tuple[list[Any], int]:
    from multispot.simulation import Trace

    if case.paths:
        loaded = [Trace.load(p) for p in case.paths]
        tick = min(t.gap for t in loaded)
        length = min(int(t.seconds // tick) for t in loaded)
        return loaded, int(length * case.start)
    deadline = case.work * case.slack * 3600
    n = int((HISTORY + deadline + 86400) // TICK)
    made = [
        Trace(f"{m.label}#{case.seed}.{i}", TICK, tuple(generate(m, n, TICK, seed=case.seed * 10 + i)))
        for i, m in enumerate(case.models)
    ]
    return made, int(HISTORY // TICK)


def run_case(case: Case, before: str | None = None) -> dict[str, Any] | None:
    from multispot.job import Job
    from multispot.policy import get
    from multispot.policy.optimum import optimum
    from multispot.simulation import build_scenario, run_policy

    job = Job.validate_data({"name": "stress", "command": "python -c pass"})
    traces, start = traces_for(case)
    prices = [SPOT * (1.0 - 0.15 * i) for i in range(len(traces))]
    try:
        sc, _ = build_scenario(
            job,
            traces,
            case.work * case.slack * 3600,
            case.work * 3600,
            restart_overhead=OVERHEAD,
            start=start,
            spot_prices=prices,
            on_demand_price=ON_DEMAND,
        )
    except ValueError:
        return None  # the deadline does not fit in the trace from there
    best = optimum(sc).cost
    if best is None:
        return None
    row: dict[str, Any] = {"case": case, "optimum": best}
    for name in POLICIES:
        out = run_policy(sc, get(name), job, name)
        row[name] = (out.cost, out.deadline_met)
    for name, pol in older(before).items():
        out = run_policy(sc, pol, job, name)
        row[name] = (out.cost, out.deadline_met)
    return row


def older(path: str | None) -> dict[str, Any]:
    """``DeadlineAware`` of an older ``deadline.py`` (``--before``), by name; empty without one."""
    if not path:
        return {}
    spec = importlib.util.spec_from_file_location("deadline_before", path)
    assert spec and spec.loader
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return {"deadline-aware (before)": module.DeadlineAware()}


def summarize(rows: list[dict[str, Any]], names: list[str]) -> list[list[Any]]:
    lines = []
    for name in names:
        ratios = [r[name][0] / r["optimum"] for r in rows]
        excess = [r[name][0] / r["greedy"][0] - 1.0 for r in rows]
        lines.append(
            [
                name,
                len(rows),
                f"{statistics.mean(ratios):.3f}",
                f"{max(ratios):.3f}",
                sum(not r[name][1] for r in rows),
                f"{max(excess):+.1%}",
                sum(e > 0.02 for e in excess),
            ]
        )
    return lines


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        lambda p: (
            p.add_argument("--traces", default=None),
            p.add_argument("--before", default=None),
            p.add_argument("--held-out", default=None, metavar="DIR"),
        ),
    )
    # the project's shared data beside the clone (or beside the worktrees' folder)
    shared = (
        next(
            (d for d in (REPO.parent / "shared", REPO.parent.parent / "shared") if (d / "data").is_dir()),
            REPO.parent / "shared",
        )
        / "data"
        / "spot-traces"
    )
    root = Path(args.traces) if args.traces else shared if shared.is_dir() else None
    extra = older(args.before)
    names = [*POLICIES, *extra]
    print_machine()
    began = time.perf_counter()
    todo = held_out_cases(Path(args.held_out), shared) if args.held_out else cases(args.quick, root)
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        done = pool.map(run_case, todo, repeat(args.before), chunksize=4)
        rows = [r for r in done if r is not None]
    print(f"{len(rows)} scenarios, {time.perf_counter() - began:.0f}s\n")
    headers = ["policy", "scenarios", "mean × optimum", "worst", "missed", "max over greedy", "> greedy + 2%"]
    group_of = collection if args.held_out else (lambda case: case.group)
    groups = sorted({group_of(r["case"]) for r in rows}) if args.held_out else []
    for group in groups or ["synthetic", "8-node", "shared", "two pools"]:
        part = [r for r in rows if group_of(r["case"]) == group]
        if part:
            print(f"{group}:")
            table(headers, summarize(part, names))
            print()
    print("all:")
    table(headers, summarize(rows, names))
    print()
    print("slack 1.3-2.0 (the range of the issue's held-out set):")
    table(headers, summarize([r for r in rows if r["case"].slack >= 1.3], names))
    print()
    da = [r for r in rows]
    worst = sorted(da, key=lambda r: r["deadline-aware"][0] / r["optimum"])[-5:]
    print("deadline-aware's worst scenarios:")
    for r in reversed(worst):
        c = r["case"]
        print(
            f"  {c.group} {c.label} work {c.work:g}h slack {c.slack:g} start {c.start:g} seed {c.seed}: "
            + ", ".join(f"{n} {r[n][0] / r['optimum']:.3f}" for n in names)
        )
    ratios = [r["deadline-aware"][0] / r["optimum"] for r in rows]
    goal("deadline-aware mean cost / optimum", statistics.mean(ratios), 1.03, at_most=True)
    goal("deadline-aware worst cost / optimum", max(ratios), 1.25, at_most=True)
    goal(
        "deadline-aware missed deadlines",
        sum(not r["deadline-aware"][1] for r in rows),
        0,
        at_most=True,
        unit="",
    )
    excess = max(r["deadline-aware"][0] / r["greedy"][0] - 1 for r in rows)
    goal("deadline-aware max excess over greedy", excess, 0.02, at_most=True, unit="")


if __name__ == "__main__":
    main()
