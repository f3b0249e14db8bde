"""Every registered policy on every provider: the dry run plans it, and ``ms.plan`` places it.

Each provider was once asked to map ``spot.policy`` to markets with a table of its own, which
knew three of the seven names (``KeyError('deadline-aware')`` on SageMaker and Vertex). Now the
plan asks the policy which markets it buys; this matrix holds every name against every provider,
through the CLI as a user runs it (in-process, so the 28 runs share one import of each SDK).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from multispot import api, policy
from multispot.cli import cli
from multispot.job import Job

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "local": ROOT / "examples" / "quickstart" / "job.yaml",
    "sagemaker": ROOT / "examples" / "pytorch" / "sagemaker.yaml",
    "vertex": ROOT / "examples" / "pytorch" / "vertex.yaml",
    "azureml": ROOT / "examples" / "pytorch" / "azureml.yaml",
}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("provider", sorted(EXAMPLES))
@pytest.mark.parametrize("name", policy.names())
def test_every_policy_plans_on_every_provider(provider: str, name: str) -> None:
    runner = CliRunner()
    args = [
        "submit",
        str(EXAMPLES[provider]),
        "--provider",
        provider,
        "--policy",
        name,
        "--dry-run",
        "-o",
        "json",
    ]
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    pools = data["plan"]["pools"]
    assert data["plan"]["policy"] == name
    assert pools, "the plan lists the placements it would try"
    markets = [p["market"] for p in pools]
    assert set(markets) == set(policy.get(name).markets(Job.from_yaml(EXAMPLES[provider])))
    assert markets == sorted(markets, key=("spot", "on-demand").index), "spot is tried before on-demand"
    assert {p["provider"] for p in pools} == {provider}
    assert data["placements"] == [{k: v for k, v in pool.items() if k != "price_source"} for pool in pools]

    job = api.with_overrides(Job.from_yaml(EXAMPLES[provider]), policy=name)
    placed = api.plan(job, provider)
    assert [p.to_dict() for p in placed] == [
        {k: v for k, v in pool.items() if k != "price_source"} for pool in pools
    ]
