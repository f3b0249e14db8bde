"""`multispot cost` and `multispot savings` after a real local run with injected preemptions.

The figures are recomputed here from the job store's raw rows (billable seconds, start, end, last
checkpoint of each attempt) and the job's prices, independently of multispot.billing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

MULTISPOT = str(Path(sys.executable).with_name("multispot"))
SPOT, ON_DEMAND = 0.9, 3.0

JOB = textwrap.dedent(f"""
    name: billing-e2e
    command: python -m multispot.testing.worker --steps 80 --step-seconds 0.05
    checkpoint: {{interval: 1s}}
    provider_options:
      local:
        time_scale: 0.02
        preemptions: "at=1s,1.2s"
        price_per_hour: {{spot: {SPOT}, on-demand: {ON_DEMAND}}}
""")


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MULTISPOT_HOME=str(home), COLUMNS="250")
    return subprocess.run(
        [MULTISPOT, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def raw_attempts(home: Path, job_id: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(home / "jobs.sqlite")
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM attempts WHERE job_id = ? ORDER BY n", (job_id,)).fetchall()
    db.close()
    return [dict(row) for row in rows]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("billing")
    home = tmp / "home"
    (tmp / "job.yaml").write_text(JOB)
    result = cli(home, "submit", str(tmp / "job.yaml"), "--output", "json")
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["id"]
    status = json.loads(cli(home, "status", job_id, "--output", "json").stdout)
    assert [a["outcome"] for a in status["attempts"]] == ["PREEMPTED", "PREEMPTED", "SUCCEEDED"]
    return home, job_id


@pytest.mark.slow
def test_cost_is_consistent_with_the_attempts(finished: tuple[Path, str]) -> None:
    home, job_id = finished
    result = cli(home, "cost", job_id, "--output", "json")
    assert result.returncode == 0, result.stderr
    cost = json.loads(result.stdout)

    actual = counterfactual = lost_usd = 0.0
    rows = raw_attempts(home, job_id)
    assert len(rows) == len(cost["attempts"]) == 3
    for row, line in zip(rows, cost["attempts"], strict=True):
        usage = json.loads(row["usage"])
        billable, runtime, count = usage["billable_seconds"], usage["runtime_seconds"], usage["count"]
        assert billable > 0 and count == 1
        lost = 0.0
        if row["state"] == "PREEMPTED":
            since = max(row["last_checkpoint"] or row["started"], row["started"])
            lost = min(runtime, max(0.0, row["ended"] - since))
        line_cost = billable * count / 3600 * SPOT
        line_counterfactual = (runtime - lost) * count / 3600 * ON_DEMAND
        assert line["attempt"] == row["n"]
        assert line["price_per_hour"] == SPOT and line["price_source"] == "local price_per_hour"
        assert line["on_demand_price_per_hour"] == ON_DEMAND
        assert line["billable_seconds"] == pytest.approx(billable)
        assert line["lost_seconds"] == pytest.approx(lost)
        assert line["cost"] == pytest.approx(line_cost)
        assert line["counterfactual_usd"] == pytest.approx(line_counterfactual)
        actual += line_cost
        counterfactual += line_counterfactual
        lost_usd += lost / runtime * line_cost
    assert cost["actual_usd"] == pytest.approx(actual)
    assert cost["actual_basis"] == "estimated"
    assert cost["on_demand_usd"] == pytest.approx(counterfactual)
    assert cost["savings_usd"] == pytest.approx(counterfactual - actual)
    assert cost["savings_fraction"] == pytest.approx((counterfactual - actual) / counterfactual)
    assert cost["savings_usd"] > 0
    assert cost["lost_work_usd"] == pytest.approx(lost_usd)
    # every save of this job took some time, and none of it is more than the job was billed
    assert 0 < cost["checkpointing_usd"] < actual
    assert all(f.startswith("estimated") for k, f in cost["figures"].items() if k != "savings_usd")

    table = cli(home, "cost", job_id, "--wide")  # the price sources are a wide column
    assert table.returncode == 0, table.stderr
    assert "local price_per_hour" in table.stdout and "(estimated)" in table.stdout
    assert f"${actual:,.4f}" in table.stdout

    measured = cli(home, "cost", job_id, "--measured", "--output", "json")
    data = json.loads(measured.stdout)
    assert data["actual_basis"] == "estimated" and data["actual_usd"] == pytest.approx(actual)
    assert any("local has no billing source" in note for note in data["notes"])


@pytest.mark.slow
def test_savings_over_the_job_store(finished: tuple[Path, str]) -> None:
    home, job_id = finished
    cost = json.loads(cli(home, "cost", job_id, "--output", "json").stdout)
    result = cli(home, "savings", "--output", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    [group] = report["groups"]
    assert (group["provider"], group["instance_type"], group["jobs"], group["attempts"]) == (
        "local",
        "local",
        1,
        3,
    )
    assert report["total"]["actual_usd"] == pytest.approx(cost["actual_usd"])
    assert report["total"]["on_demand_usd"] == pytest.approx(cost["on_demand_usd"])
    assert report["total"]["savings_usd"] == pytest.approx(cost["savings_usd"])
    assert report["total"]["instance_hours"] == pytest.approx(cost["billable_instance_seconds"] / 3600)

    assert json.loads(cli(home, "savings", "--since", "1h", "-o", "json").stdout)["total"]["jobs"] == 1
    assert json.loads(cli(home, "savings", "--since", "2099-01-01", "-o", "json").stdout)["groups"] == []
    assert json.loads(cli(home, "savings", "--provider", "vertex", "-o", "json").stdout)["groups"] == []
    bad = cli(home, "savings", "--since", "last tuesday")
    assert bad.returncode == 2 and "--since" in bad.stderr

    table = cli(home, "savings")
    assert table.returncode == 0, table.stderr
    assert "total" in table.stdout and "local" in table.stdout
