"""`multispot prices` and `multispot catalog` as a user runs them (subprocess, own MULTISPOT_HOME)."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import cli


def test_prices_lists_three_clouds_with_spot_on_demand_and_dates(tmp_path: Path) -> None:
    result = cli(tmp_path / "home", "prices", "V100:1", "--output", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {o["provider"] for o in data["offers"]} == {"sagemaker", "vertex", "azureml"}
    assert set(data["catalog"]) == {"sagemaker", "vertex", "azureml"}
    for provider, info in data["catalog"].items():
        assert info["date"] and info["age_days"] is not None and info["origin"] == "snapshot", provider
    spot = [o["spot"] for o in data["offers"]]
    assert spot == sorted(spot)
    assert all(0 < o["spot"] < o["on_demand"] and o["price_date"] for o in data["offers"])
    table = cli(tmp_path / "home", "prices", "V100:1", "--on-demand", "--provider", "vertex")
    assert table.returncode == 0 and "n1-standard-8" in table.stdout and "prices of" in table.stdout
    assert "Standard_NC6s_v3" not in table.stdout


def test_prices_rejects_a_bad_accelerator(tmp_path: Path) -> None:
    result = cli(tmp_path / "home", "prices", "V100:many", "--output", "json")
    assert result.returncode == 2
    assert json.loads(result.stdout)["problems"][0]["path"] == "accelerator"


def test_refresh_from_a_saved_response_then_prices_use_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    saved = tmp_path / "azure.json"
    item = {
        "currencyCode": "USD",
        "armRegionName": "eastus",
        "armSkuName": "Standard_NC6s_v3",
        "productName": "Virtual Machines NCSv3 Series",
        "unitOfMeasure": "1 Hour",
        "type": "Consumption",
    }
    saved.write_text(
        json.dumps(
            {
                "Items": [
                    {**item, "retailPrice": 2.75, "skuName": "NC6s v3", "meterName": "NC6s v3"},
                    {
                        **item,
                        "retailPrice": 0.55,
                        "skuName": "NC6s v3 Low Priority",
                        "meterName": "NC6s v3 Low Priority",
                    },
                ]
            }
        )
    )
    done = cli(
        home, "catalog", "refresh", "--provider", "azureml", "--from-file", str(saved), "--output", "json"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["azureml"]["refreshed"] is True
    data = json.loads(cli(home, "prices", "V100:1", "--provider", "azureml", "--output", "json").stdout)
    assert [(o["on_demand"], o["spot"]) for o in data["offers"]] == [(2.75, 0.55)]
    assert data["catalog"]["azureml"]["origin"].endswith("azureml.json")
    shown = json.loads(cli(home, "catalog", "show", "--output", "json").stdout)
    assert shown["azureml"]["offers"] == 1 and shown["vertex"]["origin"] == "snapshot"


def test_refresh_that_cannot_run_keeps_the_snapshot_and_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = cli(
        home,
        "catalog",
        "refresh",
        "--provider",
        "vertex",
        "--output",
        "json",
        env={"MULTISPOT_GCP_API_KEY": ""},
    )
    assert result.returncode == 1
    outcome = json.loads(result.stdout)["vertex"]
    assert outcome["refreshed"] is False and "API key" in outcome["error"] and "days old" in outcome["kept"]
    assert not (home / "catalog" / "vertex.json").exists()
