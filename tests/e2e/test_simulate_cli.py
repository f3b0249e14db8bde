"""`multispot simulate` and the `plan` of `submit --dry-run`, as a user runs them (a subprocess).

The traces are the in-repo copies under examples/traces (a clean clone has them); the checks
are properties every report must have, not figures of one run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from multispot.catalog import load_catalog
from multispot.job import Resources
from multispot.simulation import ALL_POLICIES, Trace

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "examples" / "traces"
EAST = TRACES / "us-east-1c_v100_1.json"  # capacity about half the time: preemptions and gaps
WEST = TRACES / "us-west-2a_v100_1.json"
MULTISPOT = str(Path(sys.executable).with_name("multispot"))
EPS = 1e-9

OUTCOME_FIELDS: dict[str, type | tuple[type, ...]] = {
    "policy": str,
    "cost": float,
    "finish_hours": (float, type(None)),
    "deadline_met": bool,
    "preemptions": int,
    "lost_hours": float,
    "overhead_hours": float,
    "spot_hours": float,
    "on_demand_hours": float,
    "attempts": int,
    "savings_vs_on_demand": float,
    "ratio_to_optimum": float,
}

GPU_JOB = """
    name: sim-gpu
    command: python train.py
    resources: {accelerator: "V100:1"}
    spot: {policy: deadline-aware, work: 20h}
    limits: {deadline: 36h}
"""


def cli(home: Path, *args: str, cwd: Path = ROOT) -> Any:
    env = dict(os.environ, MULTISPOT_HOME=str(home), COLUMNS="200")  # no user catalog copy
    result = subprocess.run(
        [MULTISPOT, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout) if "json" in args else result.stdout


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The same empty MULTISPOT_HOME here and in the CLI: both read the packaged catalog."""
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def gpu_job(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text("print('hi')\n")
    path = tmp_path / "job.yaml"
    path.write_text(textwrap.dedent(GPU_JOB))
    return path


def catalog_offer(market: str, region: str) -> tuple[float, str]:
    cat = load_catalog()
    offer = cat.resolve("sagemaker", Resources(accelerator="V100:1"), region=region, market=market)
    price = offer.price(market)
    assert price is not None
    return price, cat.dates["sagemaker"]


def check_report(report: dict[str, Any], policies: list[str]) -> None:
    """What every report must satisfy, whatever the trace and prices."""
    for key in ("traces", "tick_seconds", "work_hours", "deadline_hours", "prices", "price_source"):
        assert key in report
    assert [o["policy"] for o in report["outcomes"]] == policies
    assert set(report["policies"]) == set(policies)
    best = report["optimum_cost"]
    assert isinstance(best, float) and best > 0 and report["optimum_kind"] == "exact"
    on_demand = report["policies"]["on-demand"]
    tick_h = report["tick_seconds"] / 3600
    for o in report["outcomes"]:
        if o["stopped"] is not None and o["finish_hours"] is None:
            # the policy itself ended the job unfinished (spot only, out of spot.max_attempts):
            # a missed deadline, and no ratio, since its cost bought less than the work
            assert not o["deadline_met"] and o["ratio_to_optimum"] is None, o
            continue
        for name, kind in OUTCOME_FIELDS.items():
            assert isinstance(o[name], kind), (o["policy"], name, o[name])
        # nothing beats the omniscient optimum, and the ratio is what it says
        assert o["ratio_to_optimum"] >= 1 - EPS, o
        assert o["cost"] >= best - EPS
        assert math.isclose(o["ratio_to_optimum"], o["cost"] / best, rel_tol=1e-9)
        assert math.isclose(o["savings_vs_on_demand"], 1 - o["cost"] / on_demand["cost"], abs_tol=1e-9)
        # running time covers the work and the restarts paid, in whole ticks
        ran = o["spot_hours"] + o["on_demand_hours"]
        assert ran >= report["work_hours"] - EPS
        assert math.isclose(ran, report["work_hours"] + o["overhead_hours"] + o["lost_hours"], abs_tol=1e-6)
        assert math.isclose(ran / tick_h, round(ran / tick_h), abs_tol=1e-6)
        if o["deadline_met"]:
            assert o["finish_hours"] is not None and o["finish_hours"] <= report["deadline_hours"] + EPS
    # the policies that keep a safety net on on-demand never miss the deadline
    for name in ("on-demand", "greedy", "uniform-progress", "deadline-aware"):
        if name in report["policies"]:
            assert report["policies"][name]["deadline_met"], name
    assert on_demand["spot_hours"] == 0 and on_demand["preemptions"] == 0


def price(report: dict[str, Any], market: str) -> list[float]:
    return [v for k, v in report["prices"].items() if k.endswith(" " + market)]


def test_quickstart_all_policies_json(tmp_path: Path) -> None:
    report = cli(
        tmp_path,
        *("simulate", "examples/quickstart/job.yaml", "--trace", str(EAST.relative_to(ROOT))),
        *("--deadline", "48h", "--work", "30h", "--start", "3000", "--policy", "all", "--output", "json"),
    )
    check_report(report, list(ALL_POLICIES))
    [od_price], [spot_price] = price(report, "on-demand"), price(report, "spot")
    # the quickstart prices itself (provider_options.local.price_per_hour): those prices, said so
    local = yaml.safe_load((ROOT / "examples/quickstart/job.yaml").read_text())["provider_options"]["local"]
    assert (spot_price, od_price) == (local["price_per_hour"]["spot"], local["price_per_hour"]["on-demand"])
    assert report["price_source"] == "the job's placements"
    assert report["work_source"] == "given" and abs(report["work_hours"] - 30) < 195 / 3600
    # on-demand pays the work and one restart at the on-demand price
    od = report["policies"]["on-demand"]
    expected = (report["work_hours"] + report["restart_overhead_seconds"] / 3600) * od_price
    assert math.isclose(od["cost"], expected, rel_tol=1e-9)
    for o in report["outcomes"]:  # one pool of each market: cost is hours × price
        assert math.isclose(o["cost"], o["spot_hours"] * spot_price + o["on_demand_hours"] * od_price)
    # the trace has spot capacity in that window, so the deadline-aware policy uses it and saves
    aware = report["policies"]["deadline-aware"]
    assert aware["spot_hours"] > 0 and aware["savings_vs_on_demand"] > 0


def test_table_output_names_every_policy(tmp_path: Path) -> None:
    text = cli(
        tmp_path, "simulate", "examples/quickstart/job.yaml", "--trace", str(EAST), "--deadline", "30h"
    )
    for name in ALL_POLICIES:
        assert name in text
    assert "omniscient optimum (exact)" in text and "prices: the job's placements" in text
    assert "slack" in text  # the deadline-risk column


def test_two_pools_priced_from_the_catalog(tmp_path: Path, gpu_job: Path) -> None:
    # deadline and work from the job; one spot pool per trace, priced in the zone's region
    report = cli(
        tmp_path, "simulate", str(gpu_job), "--trace", str(EAST), "--trace", str(WEST), "--output", "json"
    )
    check_report(report, list(ALL_POLICIES))
    assert report["work_source"] == "the job's spot.work"
    tick = Trace.load(EAST).gap / 3600
    assert 20 <= report["work_hours"] < 20 + tick and 36 - tick < report["deadline_hours"] <= 36
    east_spot, date = catalog_offer("spot", "us-east-1")
    west_spot, _ = catalog_offer("spot", "us-west-2")
    east_od, _ = catalog_offer("on-demand", "us-east-1")
    assert sorted(price(report, "spot")) == sorted([east_spot, west_spot])
    assert price(report, "on-demand") == [east_od]
    assert "catalog: sagemaker us-east-1" in report["price_source"]
    assert f"prices of {date}" in report["price_source"] and "snapshot" in report["price_source"]
    assert all(s.startswith("catalog: sagemaker") for s in report["price_sources"].values())
    assert all("http" in s for s in report["price_sources"].values())  # the price page, per pool
    # two pools: each policy's ratio to the (exact, multi-pool) optimum and its deadline risk
    assert report["optimum_kind"] == "exact"
    for o in report["outcomes"]:
        assert o["ratio_to_optimum"] >= 1 - EPS
        assert (o["min_slack_hours"] >= 0) == o["deadline_met"] or o["stopped"]

    # explicit prices win over the catalog
    given = cli(
        tmp_path,
        *("simulate", str(gpu_job), "--trace", str(EAST), "--policy", "deadline-aware", "--output", "json"),
        *("--spot-price", "0.5", "--on-demand-price", "2"),
    )
    assert given["prices"] == {"localhost spot": 0.5, "localhost on-demand": 2.0}
    assert given["price_source"] == "given"
    assert [o["policy"] for o in given["outcomes"]] == ["deadline-aware"]
    assert given["outcomes"][0]["deadline_met"] and given["outcomes"][0]["ratio_to_optimum"] >= 1 - EPS


def test_dry_run_plan(tmp_path: Path, gpu_job: Path) -> None:
    work_h = 20.0
    out = cli(tmp_path, "submit", str(gpu_job), "--dry-run", "--output", "json", cwd=gpu_job.parent)
    plan = out["plan"]
    assert plan["policy"] == "deadline-aware" and plan["work_hours"] == work_h
    pools = plan["pools"]
    markets = [p["market"] for p in pools]
    assert markets == sorted(markets, key=lambda m: m != "spot") and set(markets) == {"spot", "on-demand"}
    spot_prices = [p["price_per_hour"] for p in pools if p["market"] == "spot"]
    assert spot_prices == sorted(spot_prices)  # the deadline-aware policy tries the cheapest first
    # no provider price for a local job: the catalog's, for the cloud it emulates, and said so
    assert all(p["price_source"].startswith("catalog: sagemaker") for p in pools)
    prices = [p["price_per_hour"] * p["count"] for p in pools]
    rng = plan["cost_range"]
    assert math.isclose(rng["low"], min(prices) * work_h) and math.isclose(rng["high"], max(prices) * work_h)
    assert min(prices) == catalog_offer("spot", "us-east-1")[0]
    assert max(prices) == catalog_offer("on-demand", "us-east-1")[0]
    assert rng["price_sources"] and plan["simulated"] is None

    traced = cli(
        tmp_path,
        "submit",
        str(gpu_job),
        "--dry-run",
        "--trace",
        str(EAST),
        "--output",
        "json",
        cwd=gpu_job.parent,
    )["plan"]
    sim = traced["simulated"]
    assert sim["policy"] == "deadline-aware" and sim["deadline_met"] is True
    assert sim["optimum"] <= sim["cost"] + EPS
    # no schedule does the work for less than all of it on the cheapest pool, and the optimum is
    # never dearer than on-demand throughout (the work in whole ticks plus one restart)
    ticks = 2 * Trace.load(EAST).gap / 3600
    assert rng["low"] - EPS <= sim["optimum"] <= rng["high"] + ticks * max(prices) + EPS
    assert "catalog: sagemaker" in sim["price_source"]

    text = cli(tmp_path, "submit", str(gpu_job), "--dry-run", cwd=gpu_job.parent)
    assert "expected cost" in text and f"${rng['low']:.2f}" in text and "nothing submitted" in text


def test_a_job_without_prices_gets_relative_ones_and_is_told(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("name: unpriced\ncommand: python train.py\n")
    report = cli(
        tmp_path, "simulate", str(job), "--trace", str(EAST), "--deadline", "30h", "--output", "json"
    )
    [od_price], [spot_price] = price(report, "on-demand"), price(report, "spot")
    assert "assumed" in report["price_source"] and od_price > spot_price > 0
