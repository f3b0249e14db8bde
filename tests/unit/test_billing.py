"""Usage → CostReport: actual cost, the on-demand counterfactual minus lost work, and savings."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from multispot import registry
from multispot.billing import (
    BillingSource,
    CostReport,
    MeasuredCost,
    MissingPlotExtra,
    checkpoint_save_seconds,
    cost_report,
    measure,
    parse_since,
    report_for_job,
    savings,
)
from multispot.catalog import Catalog, Offer, load_catalog
from multispot.checkpoint import CheckpointStore
from multispot.job import Job
from multispot.status import Attempt, JobState, Placement, Usage
from multispot.store import JobRecord, JobStore

T0 = 1_700_000_000.0


def attempt(
    n: int,
    state: JobState,
    billable: float,
    price: float | None,
    count: int = 1,
    started: float | None = T0,
    ended: float | None = None,
    market: str = "spot",
    instance: str = "p3.2xlarge",
    provider: str = "vertex",
    runtime: float | None = None,
) -> Attempt:
    return Attempt(
        job_id="job-1",
        n=n,
        placement=Placement(
            provider=provider,
            market=market,
            region="us-east-1",
            instance_type=instance,
            count=count,
            price_per_hour=price,
        ),
        state=state,
        started=started,
        ended=ended if ended is not None else (None if started is None else started + (runtime or billable)),
        usage=Usage(
            runtime_seconds=billable if runtime is None else runtime,
            billable_seconds=billable,
            instance_type=instance,
            count=count,
            market=market,
        ),
    )


def test_report_with_prices() -> None:
    attempts = [
        # an hour on spot at $1/h, preempted 10 minutes after its last checkpoint
        attempt(1, JobState.PREEMPTED, 3600, 1.0),
        # 30 minutes on spot, finished
        attempt(2, JobState.SUCCEEDED, 1800, 1.0, started=T0 + 4000),
    ]
    report = cost_report("job-1", attempts, on_demand_price_per_hour=3.0, checkpoint_times={1: T0 + 3000})
    first, second = report.lines
    assert (first.lost_seconds, second.lost_seconds) == (600.0, 0.0)
    assert first.cost == pytest.approx(1.0)
    assert second.cost == pytest.approx(0.5)
    assert report.actual == pytest.approx(1.5)
    assert report.billable_seconds == 5400
    assert report.lost_seconds == 600
    # useful work: 5400 - 600 s = 80 minutes at $3/h
    assert report.on_demand == pytest.approx(4.0)
    assert report.savings == pytest.approx(2.5)
    assert report.savings_fraction == pytest.approx(0.625)
    assert not [n for n in report.notes if "unknown" in n or "n/a" in n]
    assert (first.outcome, second.outcome) == ("PREEMPTED", "SUCCEEDED")
    assert first.market == "spot" and first.instance_type == "p3.2xlarge" and first.provider == "vertex"


def test_instance_count_multiplies_cost_and_time() -> None:
    attempts = [
        attempt(1, JobState.PREEMPTED, 1800, 2.0, count=4),  # no checkpoint: all 30 min lost
        attempt(2, JobState.SUCCEEDED, 3600, 2.0, count=4, started=T0 + 2000),
    ]
    report = cost_report("job-1", attempts, on_demand_price_per_hour=5.0)
    assert report.lines[0].lost_seconds == 1800
    assert report.lines[0].instance_seconds == 4 * 1800
    assert report.billable_seconds == 4 * 5400
    assert report.lost_seconds == 4 * 1800
    assert report.actual == pytest.approx(4 * 1.5 * 2.0)
    assert report.on_demand == pytest.approx(4 * 1.0 * 5.0)
    assert report.savings == pytest.approx(20.0 - 12.0)
    assert report.savings_fraction == pytest.approx(0.4)


def test_lost_work_is_capped_by_what_was_billed() -> None:
    # ran 2 h of wall time but the provider billed 1 h (e.g. waiting was free)
    a = attempt(1, JobState.PREEMPTED, 3600, 1.0, ended=T0 + 7200)
    report = cost_report("job-1", [a], on_demand_price_per_hour=3.0)
    assert report.lines[0].lost_seconds == 3600
    assert report.on_demand == 0.0
    assert report.savings == pytest.approx(-1.0)
    assert report.savings_fraction is None  # no useful work: no fraction to show


def test_a_checkpoint_from_before_the_attempt_started_does_not_count() -> None:
    a = attempt(1, JobState.PREEMPTED, 600, 1.0)
    report = cost_report("job-1", [a], 3.0, checkpoint_times={1: T0 - 10_000})
    assert report.lines[0].lost_seconds == 600


def test_only_preempted_attempts_lose_work() -> None:
    attempts = [
        attempt(1, JobState.FAILED, 100, 1.0),
        attempt(2, JobState.CANCELLED, 100, 1.0, started=T0 + 200),
        attempt(3, JobState.RUNNING, 100, 1.0, started=T0 + 400, ended=None),
    ]
    attempts[2].ended = None
    report = cost_report("job-1", attempts, 3.0)
    assert [line.lost_seconds for line in report.lines] == [0.0, 0.0, 0.0]
    assert report.lines[2].outcome is None
    assert "running" in report.rows()[2]


def test_an_attempt_without_usage_costs_nothing_yet() -> None:
    a = Attempt("job-1", 1, Placement(provider="local", market="spot", price_per_hour=1.0, count=2))
    report = cost_report("job-1", [a], 1.0)
    [line] = report.lines
    assert (line.billable_seconds, line.cost, line.count) == (0.0, 0.0, 2)
    assert report.actual == 0.0
    assert report.savings == 0.0


def test_unknown_instance_price() -> None:
    attempts = [attempt(1, JobState.SUCCEEDED, 3600, None), attempt(2, JobState.SUCCEEDED, 3600, 1.0)]
    report = cost_report("job-1", attempts, on_demand_price_per_hour=3.0)
    assert report.lines[0].cost is None
    assert report.actual is None
    assert report.on_demand == pytest.approx(6.0)
    assert report.savings is None
    assert report.savings_fraction is None
    assert report.notes and "unknown" in report.notes[0]
    assert report.lines[0].price_source == "unknown"
    assert "n/a" in report.summary()
    assert report.to_dict()["actual_usd"] is None


def test_unknown_on_demand_price() -> None:
    report = cost_report("job-1", [attempt(1, JobState.SUCCEEDED, 3600, 1.0)], on_demand_price_per_hour=None)
    assert report.actual == pytest.approx(1.0)
    assert report.on_demand is None
    assert report.savings is None
    assert report.savings_fraction is None
    assert report.notes


def test_report_renders() -> None:
    attempts = [
        attempt(1, JobState.PREEMPTED, 3600, 1.0),
        attempt(2, JobState.SUCCEEDED, 1800, 1.0, started=T0 + 4000),
    ]
    report = cost_report("job-<1>", attempts, 3.0, checkpoint_times={1: T0 + 3000})
    data = report.to_dict()
    json.dumps(data)  # JSON-safe for --output json
    assert data["savings_usd"] == pytest.approx(2.5)
    assert data["lost_instance_seconds"] == 600
    assert [a["attempt"] for a in data["attempts"]] == [1, 2]
    assert "saved" in report.summary() and "62%" in report.summary()
    assert "job-<1>" in repr(report)
    html = report._repr_html_()
    assert "job-&lt;1&gt;" in html and "job-<1>" not in html
    assert html.count("<tr>") == 3
    rows = report.rows()
    assert len(rows) == 2 and all(len(r) == len(CostReport.HEADERS) for r in rows)
    assert rows[0][-1] == "$1.0000"


# --------------------------------------------------------------------------- prices and their sources


def offer(provider: str, instance: str, on_demand: float, spot: float, **kw: object) -> Offer:
    fields: dict[str, object] = {
        "provider": provider,
        "region": "us-east-1",
        "instance_type": instance,
        "on_demand": on_demand,
        "spot": spot,
        "price_date": "2026-11-20",
        "source": "test",
    }
    fields.update(kw)
    return Offer(**fields)  # type: ignore[arg-type]


def test_sagemaker_spot_bills_its_billable_time_at_the_on_demand_rate() -> None:
    # SageMaker reports BillableTimeInSeconds (20 min) < TrainingTimeInSeconds (60 min): the discount
    # is the shorter billable time, billed at the on-demand rate, never at the (estimated) spot price.
    cat = Catalog([offer("sagemaker", "ml.p3.2xlarge", 3.0, 0.9, spot_estimated=True)])
    a = attempt(
        1, JobState.SUCCEEDED, 1200, 0.9, provider="sagemaker", instance="ml.p3.2xlarge", runtime=3600
    )
    report = cost_report("job-1", [a], catalog=cat)
    [line] = report.lines
    assert registry.get("sagemaker").billing.spot_rate == "on-demand"
    assert line.price_per_hour == 3.0
    assert "on-demand rate" in line.price_source
    assert line.cost == pytest.approx(1200 / 3600 * 3.0)
    # the counterfactual is the hour of training on demand
    assert line.counterfactual == pytest.approx(3.0)
    assert report.savings == pytest.approx(2.0)
    assert report.savings_fraction == pytest.approx(2 / 3)
    assert any("BillableTimeInSeconds" in n for n in report.notes)


def test_sagemaker_spot_without_a_catalog_price_uses_the_on_demand_placement_or_nothing() -> None:
    a = attempt(1, JobState.SUCCEEDED, 1800, 0.9, provider="sagemaker", instance="ml.custom", runtime=3600)
    fallback: dict[tuple[str, str | None], float] = {("sagemaker", "ml.custom"): 4.0}
    line = cost_report("job-1", [a], fallback, catalog=Catalog([])).lines[0]
    assert line.price_per_hour == 4.0 and line.cost == pytest.approx(2.0)
    # no on-demand price anywhere: unknown, not the placement's spot figure
    line = cost_report("job-1", [a], catalog=Catalog([])).lines[0]
    assert line.price_per_hour is None and line.cost is None


class _EntryPoint:
    """An installed plugin's entry point, as ``importlib.metadata`` lists it (name, value, load)."""

    def __init__(self, name: str, factory: object) -> None:
        self.name, self.value, self._factory = name, f"acme_plugin:{name}", factory

    def load(self) -> object:
        return self._factory


@pytest.fixture
def acme_installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A third-party provider "acme" registered under multispot.providers, whose spot time is billed
    at the on-demand rate (as SageMaker's is): billing must honour it with no change in the core."""
    from multispot.local.provider import LocalProvider
    from multispot.provider import BillingRule

    class AcmeProvider(LocalProvider):
        name = "acme"
        billing = BillingRule("Acme bills metered seconds at the on-demand rate", spot_rate="on-demand")

    from importlib.metadata import entry_points as installed

    def entry_points(group: str) -> list[object]:
        found: list[object] = list(installed(group=group))
        return [*found, _EntryPoint("acme", AcmeProvider)] if group == registry.GROUP else found

    monkeypatch.setattr(registry, "entry_points", entry_points)
    registry.get.cache_clear()
    registry.available.cache_clear()
    yield
    registry.get.cache_clear()
    registry.available.cache_clear()


def test_a_third_party_providers_billing_rule_is_honoured(acme_installed: None) -> None:
    cat = Catalog([offer("acme", "a1.big", 3.0, 0.9), offer("vertex", "a1.big", 3.0, 0.9)])
    acme = attempt(1, JobState.SUCCEEDED, 1200, 0.9, provider="acme", instance="a1.big", runtime=3600)
    report = cost_report("job-1", [acme], catalog=cat)
    [line] = report.lines
    assert line.price_per_hour == 3.0 and "on-demand rate" in line.price_source
    assert line.cost == pytest.approx(1200 / 3600 * 3.0)
    assert "Acme bills metered seconds at the on-demand rate" in report.notes
    # the same attempt on a provider billed at the spot rate
    other = attempt(1, JobState.SUCCEEDED, 1200, 0.9, provider="vertex", instance="a1.big", runtime=3600)
    assert cost_report("job-1", [other], catalog=cat).lines[0].price_per_hour == 0.9


def test_a_provider_no_longer_installed_is_priced_at_the_spot_rate_and_says_so() -> None:
    cat = Catalog([offer("gone", "g1.big", 3.0, 0.9)])
    a = attempt(1, JobState.SUCCEEDED, 3600, 0.9, provider="gone", instance="g1.big")
    report = cost_report("job-1", [a], catalog=cat)
    assert report.lines[0].price_per_hour == 0.9 and report.lines[0].cost == pytest.approx(0.9)
    [note] = [n for n in report.notes if n.startswith("gone:")]
    assert "no installed provider states how it bills" in note and "spot rate" in note


def test_other_providers_bill_spot_at_the_spot_price_of_the_catalog() -> None:
    cat = Catalog(
        [
            offer("azureml", "Standard_NC6s_v3", 3.0, 0.6, region="eastus"),
            offer("sagemaker", "ml.p3.2xlarge", 3.0, 0.9),
        ]
    )
    a = attempt(1, JobState.SUCCEEDED, 3600, 0.5, provider="azureml", instance="Standard_NC6s_v3")
    a.placement = Placement("azureml", "spot", "eastus", "Standard_NC6s_v3", 2, 0.5)
    a.usage = Usage(3600, 3600, "Standard_NC6s_v3", 2, "spot", "eastus")
    [line] = cost_report("job-1", [a], catalog=cat).lines
    assert line.price_per_hour == 0.6  # the catalog wins over the placement's recorded price
    assert line.price_source == "catalog eastus 2026-11-20"
    assert line.cost == pytest.approx(2 * 0.6)
    assert line.counterfactual == pytest.approx(2 * 3.0)
    assert line.on_demand_source == "catalog eastus 2026-11-20"


def test_vertex_prices_the_machine_with_the_jobs_accelerator() -> None:
    cat = Catalog(
        [
            offer("vertex", "n1-standard-8", 0.4, 0.1, region="us-central1"),
            offer(
                "vertex",
                "n1-standard-8",
                3.3,
                0.95,
                region="us-central1",
                accelerator="V100",
                accelerator_count=1,
            ),
            offer(
                "vertex",
                "n1-standard-8",
                6.2,
                1.8,
                region="us-central1",
                accelerator="V100",
                accelerator_count=2,
            ),
        ]
    )
    a = attempt(1, JobState.SUCCEEDED, 3600, None, provider="vertex", instance="n1-standard-8")
    a.placement = Placement("vertex", "spot", "us-central1", "n1-standard-8")
    a.usage = Usage(3600, 3600, "n1-standard-8", 1, "spot", "us-central1")
    assert cost_report("j", [a], catalog=cat, accelerator="V100:2").lines[0].price_per_hour == 1.8
    assert cost_report("j", [a], catalog=cat, accelerator="V100:1").lines[0].counterfactual == 3.3
    assert (
        cost_report("j", [a], catalog=cat).lines[0].price_per_hour == 0.1
    )  # no accelerator: the bare machine


def test_placement_and_local_prices_when_the_catalog_has_none() -> None:
    cat = Catalog([])
    local = Attempt("j", 1, Placement("local", "spot", "localhost", "local", 1, 0.5), JobState.SUCCEEDED)
    local.usage = Usage(7200, 7200, "local", 1, "spot", "localhost")
    [line] = cost_report("j", [local], {("local", "local"): 2.0}, catalog=cat).lines
    assert (line.price_per_hour, line.price_source) == (0.5, "local price_per_hour")
    assert (line.on_demand_price_per_hour, line.on_demand_source) == (2.0, "local price_per_hour")
    assert report_total(cost_report("j", [local], {("local", "local"): 2.0}, catalog=cat)) == (1.0, 4.0)
    # an on-demand attempt is its own counterfactual price
    od = Attempt("j", 1, Placement("vertex", "on-demand", "r", "m", 1, 2.5), JobState.SUCCEEDED)
    od.usage = Usage(3600, 3600, "m", 1, "on-demand", "r")
    [line] = cost_report("j", [od], catalog=cat).lines
    assert (line.cost, line.counterfactual, line.price_source) == (2.5, 2.5, "placement")


def report_total(report: CostReport) -> tuple[float | None, float | None]:
    return report.actual, report.on_demand


def test_snapshot_prices_a_sagemaker_spot_attempt_at_its_on_demand_price() -> None:
    cat = load_catalog()
    od = cat.lookup("sagemaker", "ml.p3.2xlarge", "us-east-1")
    assert od is not None and od.on_demand is not None and od.spot is not None and od.spot < od.on_demand
    a = attempt(
        1, JobState.SUCCEEDED, 900, None, provider="sagemaker", instance="ml.p3.2xlarge", runtime=3600
    )
    a.placement = Placement("sagemaker", "spot", "us-east-1", "ml.p3.2xlarge", 1, od.spot)
    a.usage = Usage(3600, 900, "ml.p3.2xlarge", 1, "spot", "us-east-1")
    [line] = cost_report("j", [a], catalog=cat).lines
    assert line.price_per_hour == od.on_demand
    assert line.cost == pytest.approx(0.25 * od.on_demand)


# --------------------------------------------------------------------------- lost work and checkpointing


def test_lost_work_and_checkpointing_cost_their_share_of_the_attempt() -> None:
    attempts = [
        attempt(1, JobState.PREEMPTED, 3600, 2.0),  # 600 s after the last checkpoint lost
        attempt(2, JobState.SUCCEEDED, 1800, 2.0, started=T0 + 4000),
    ]
    report = cost_report("j", attempts, 6.0, {1: T0 + 3000}, checkpoint_seconds={1: (36.0, 4), 2: (18.0, 2)})
    first, second = report.lines
    assert first.lost_cost == pytest.approx(600 / 3600 * 2.0)
    assert first.checkpoint_cost == pytest.approx(36 / 3600 * 2.0)
    assert (first.checkpoints, second.checkpoints) == (4, 2)
    assert report.lost_cost == pytest.approx(600 / 3600 * 2.0)
    assert report.checkpoint_cost == pytest.approx(54 / 3600 * 2.0)
    assert report.checkpoint_seconds == 54
    data = report.to_dict()
    assert data["lost_work_usd"] == pytest.approx(report.lost_cost)
    assert data["checkpointing_usd"] == pytest.approx(report.checkpoint_cost)
    assert data["attempts"][0]["lost_work_usd"] == pytest.approx(first.lost_cost)


def test_sagemaker_lost_work_is_billed_compressed_like_the_rest() -> None:
    # 1 h of training billed as 15 min: losing the last 20 min of training lost a third of the bill
    cat = Catalog([offer("sagemaker", "ml.p3.2xlarge", 4.0, 1.2)])
    a = attempt(
        1, JobState.PREEMPTED, 900, None, provider="sagemaker", instance="ml.p3.2xlarge", runtime=3600
    )
    report = cost_report("j", [a], catalog=cat, checkpoint_times={1: T0 + 2400})
    [line] = report.lines
    assert line.lost_seconds == 1200
    assert line.cost == pytest.approx(1.0)
    assert line.lost_cost == pytest.approx(1.0 / 3)
    assert line.counterfactual == pytest.approx(2400 / 3600 * 4.0)


def test_checkpoint_save_seconds_from_the_manifests(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path.as_uri())
    for step, n in ((10, 1), (20, 1), (30, 2)):
        with store.writer(step, attempt=n) as writer:
            writer.write_bytes("w.bin", b"x" * 1000)
    found = {s: store.manifest(s) for s in store.steps()}
    write = {s: float(m.metadata["write_seconds"]) for s, m in found.items() if m is not None}
    seconds = checkpoint_save_seconds(tmp_path.as_uri())
    assert seconds[1][0] == pytest.approx(write[10] + write[20]) and seconds[1][1] == 2
    assert seconds[2][0] == pytest.approx(write[30]) and seconds[2][1] == 1
    # retention deleted older saves: with the interval, attempt 1 saved every 10 s for 60 s
    seconds = checkpoint_save_seconds(tmp_path.as_uri(), interval=10.0, runtimes={1: 60.0, 2: 5.0})
    assert seconds[1][0] == pytest.approx((write[10] + write[20]) / 2 * 6) and seconds[1][1] == 6
    assert seconds[2][0] == pytest.approx(write[30]) and seconds[2][1] == 1
    assert checkpoint_save_seconds((tmp_path / "none").as_uri()) == {}


# --------------------------------------------------------------------------- measured vs estimated


class FakeBilling:
    """A provider with a billing API: records what it was asked, returns a fixed figure."""

    def __init__(self, figure: MeasuredCost | None) -> None:
        self.figure = figure
        self.asked: list[tuple[str, list[int]]] = []

    def measured_cost(self, job_id: str, attempts: list[Attempt]) -> MeasuredCost | None:
        self.asked.append((job_id, [a.n for a in attempts]))
        return self.figure


class Broken:
    def measured_cost(self, job_id: str, attempts: list[Attempt]) -> MeasuredCost | None:
        raise RuntimeError("AccessDenied")


def test_measured_cost_replaces_the_estimate_and_says_so() -> None:
    attempts = [
        attempt(1, JobState.PREEMPTED, 3600, 1.0),
        attempt(2, JobState.SUCCEEDED, 1800, 1.0, started=T0 + 4000),
    ]
    figure = MeasuredCost(
        1.42,
        "GCP billing export p.d.t, label multispot-job-id=job-1",
        "2026-11-20",
        "2026-11-22",
        {1: 0.95, 2: 0.47},
    )
    source = FakeBilling(figure)
    assert isinstance(source, BillingSource) and not isinstance(object(), BillingSource)
    measured, notes = measure("job-1", attempts, {"vertex": source}.__getitem__)
    assert source.asked == [("job-1", [1, 2])] and notes == []
    report = cost_report("job-1", attempts, 3.0, {1: T0 + 3000}, measured=measured)
    assert report.actual_basis == "measured"
    assert report.actual == pytest.approx(1.42)
    assert report.estimated == pytest.approx(1.5)
    assert report.savings == pytest.approx(4.0 - 1.42)
    figures = report.figures()
    assert figures["actual_usd"].startswith("measured") and "2026-11-20..2026-11-22" in figures["actual_usd"]
    assert "GCP billing export" in figures["actual_usd"]
    assert figures["on_demand_usd"].startswith("estimated")
    data = report.to_dict()
    assert data["actual_basis"] == "measured" and data["measured"]["vertex"]["amount"] == 1.42
    assert data["estimated_usd"] == pytest.approx(1.5)
    assert [line.measured_cost for line in report.lines] == [0.95, 0.47]
    assert report.headers()[-1] == "measured" and report.rows()[0][-1] == "$0.9500"
    assert "(measured)" in report.summary() and "estimate was $1.5000" in report.summary()
    assert any("GCP billing export" in d for d in report.details())


def test_without_a_measured_figure_everything_is_labelled_estimated() -> None:
    attempts = [attempt(1, JobState.SUCCEEDED, 3600, 1.0)]
    for get in (
        {"vertex": FakeBilling(None)}.__getitem__,  # source not configured
        {"vertex": object()}.__getitem__,  # provider without measured_cost
        {"vertex": Broken()}.__getitem__,  # the billing API failed
    ):
        measured, notes = measure("job-1", attempts, get)
        report = cost_report("job-1", attempts, 3.0, measured=measured, notes=notes)
        assert measured == {} and len(notes) == 1
        assert report.actual_basis == "estimated"
        assert report.actual == pytest.approx(1.0)
        assert all(v.startswith("estimated") for k, v in report.figures().items() if k != "savings_usd")
        assert report.to_dict()["measured"] is None
        assert "(estimated)" in report.summary()
        assert report.headers() == CostReport.HEADERS
    assert "AccessDenied" in measure("job-1", attempts, {"vertex": Broken()}.__getitem__)[1][0]


def test_a_job_measured_on_one_provider_only_is_partly_measured() -> None:
    first = attempt(1, JobState.PREEMPTED, 3600, 1.0, provider="azureml")
    second = attempt(2, JobState.SUCCEEDED, 1800, 1.0, started=T0 + 4000)
    figure = MeasuredCost(0.8, "Azure Cost Management", "2026-11-20", "2026-11-21")
    measured, notes = measure(
        "j", [first, second], {"azureml": FakeBilling(figure), "vertex": object()}.__getitem__
    )
    report = cost_report("j", [first, second], 3.0, measured=measured, notes=notes)
    assert report.actual_basis == "partly measured"
    assert report.actual == pytest.approx(0.8 + 0.5)  # measured azureml + estimated vertex
    assert any("vertex has no billing source" in n for n in report.notes)


# --------------------------------------------------------------------------- from the job store


def local_job(name: str = "train", instance: str | None = None) -> dict[str, object]:
    spec = {
        "name": name,
        "command": "python train.py",
        "resources": {"instance_type": instance} if instance else {},
        "provider_options": {"local": {"price_per_hour": {"spot": 0.5, "on-demand": 2.0}}},
    }
    return Job.validate_data(spec).to_data()


def add_job(
    store: JobStore,
    job_id: str,
    created: float,
    attempts: list[tuple[JobState, float, float | None]],
    uri: str = "file:///nonexistent/ckpt",
    provider: str = "local",
    instance: str = "local",
) -> None:
    store.create_job(
        JobRecord(
            job_id,
            "train",
            local_job(instance=None if instance == "local" else instance),
            "local",
            JobState.SUCCEEDED,
            uri,
            "file:///o",
            created=created,
        )
    )
    start = created
    for n, (state, seconds, last_checkpoint) in enumerate(attempts, start=1):
        store.add_attempt(Attempt(job_id, n, Placement(provider, "spot", "localhost", instance, 1, 0.5)))
        store.update_attempt(
            job_id,
            n,
            state=state,
            started=start,
            ended=start + seconds,
            last_checkpoint=last_checkpoint,
            # the local provider reports its instance as "local" whatever the job asked for
            usage=Usage(
                seconds, seconds, "local" if provider == "local" else instance, 1, "spot", "localhost"
            ),
        )
        start += seconds + 5


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    s = JobStore(tmp_path / "jobs.sqlite")
    yield s
    s.close()


def test_report_for_a_job_in_the_store(store: JobStore, tmp_path: Path) -> None:
    ckpt = CheckpointStore((tmp_path / "ckpt").as_uri())
    with ckpt.writer(5, attempt=1) as writer:
        writer.write_bytes("w", b"1")
    write = float(ckpt.manifest(5).metadata["write_seconds"])  # type: ignore[union-attr]
    add_job(
        store,
        "a-1",
        T0,
        [(JobState.PREEMPTED, 3600, T0 + 3000), (JobState.SUCCEEDED, 1800, None)],
        uri=ckpt.uri,
    )
    report = report_for_job(store, "a-1", catalog=Catalog([]))
    first, second = report.lines
    assert first.lost_seconds == 600  # from Attempt.last_checkpoint
    assert (first.price_per_hour, first.on_demand_price_per_hour) == (0.5, 2.0)  # the job's local prices
    assert report.actual == pytest.approx(1.5 * 0.5)
    assert report.on_demand == pytest.approx((5400 - 600) / 3600 * 2.0)
    assert first.checkpoint_seconds == pytest.approx(write) and second.checkpoint_seconds == 0
    assert report.name == "train"
    assert report.actual_basis == "estimated"


def test_report_for_job_asks_the_provider_only_when_measured(store: JobStore) -> None:
    add_job(store, "a-1", T0, [(JobState.SUCCEEDED, 3600, None)])
    source = FakeBilling(MeasuredCost(0.42, "fake billing API", "2023-11-14", "2023-11-15"))
    report = report_for_job(store, "a-1", catalog=Catalog([]), get_provider={"local": source}.__getitem__)
    assert source.asked == [] and report.actual == pytest.approx(0.5)
    report = report_for_job(
        store, "a-1", catalog=Catalog([]), measured=True, get_provider={"local": source}.__getitem__
    )
    assert source.asked == [("a-1", [1])]
    assert report.actual == 0.42 and report.actual_basis == "measured"
    assert report.to_dict()["figures"]["actual_usd"].startswith(
        "measured (local: fake billing API, 2023-11-14.."
    )


def test_savings_groups_every_job_by_provider_and_instance(store: JobStore) -> None:
    now = time.time()
    add_job(store, "old-1", now - 10 * 86400, [(JobState.SUCCEEDED, 3600, None)])
    add_job(store, "new-1", now - 3600, [(JobState.PREEMPTED, 1800, None), (JobState.SUCCEEDED, 1800, None)])
    add_job(store, "new-2", now - 60, [(JobState.SUCCEEDED, 7200, None)], instance="big")
    report = savings(store, catalog=Catalog([]))
    by_key = {(g.provider, g.instance_type): g for g in report.groups}
    assert set(by_key) == {("local", "local"), ("local", "big")}
    small = by_key["local", "local"]
    assert (len(small.jobs), small.attempts) == (2, 3)
    assert small.actual == pytest.approx((3600 + 3600) / 3600 * 0.5)
    # the preempted attempt had no checkpoint: its 30 minutes are lost, not useful
    assert small.on_demand == pytest.approx((3600 + 1800) / 3600 * 2.0)
    assert small.lost == pytest.approx(0.25)
    total = report.total
    assert total.actual == pytest.approx(sum(r.actual or 0 for r in report.reports))
    assert total.on_demand == pytest.approx(sum(r.on_demand or 0 for r in report.reports))
    assert total.savings == pytest.approx(total.on_demand - total.actual)
    data = report.to_dict()
    json.dumps(data)
    assert data["total"]["jobs"] == 3 and len(data["groups"]) == 2 and data["basis"] == "estimated"
    assert report.rows()[-1][0] == "total" and len(report.rows()) == 3

    recent = savings(store, since="1d", catalog=Catalog([]))
    assert {r.job_id for r in recent.reports} == {"new-1", "new-2"}
    assert savings(store, provider="vertex", catalog=Catalog([])).groups == []
    assert "total" in savings(store, catalog=Catalog([]))._repr_html_()


def test_savings_leaves_out_attempts_it_cannot_price(store: JobStore) -> None:
    add_job(
        store, "a-1", T0, [(JobState.SUCCEEDED, 3600, None)], provider="vertex", instance="unknown-machine"
    )
    store.create_job(
        JobRecord("b-1", "x", {"broken": True}, "local", JobState.SUCCEEDED, "file:///n", "file:///o")
    )
    report = savings(store, catalog=Catalog([]))
    assert report.unpriced == [("a-1", 1)]
    assert report.groups == []
    assert "price unknown" in " ".join(report.details())


def test_parse_since() -> None:
    now = 1_800_000_000.0
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("90m", now) == now - 5400
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp()
    assert (
        parse_since("2026-11-01T12:00:00+01:00", now)
        == datetime(2026, 11, 1, 11, tzinfo=timezone.utc).timestamp()
    )
    assert parse_since(None, now) is None
    with pytest.raises(ValueError, match="duration back from now"):
        parse_since("last tuesday", now)


# --------------------------------------------------------------------------- rendering


def test_plot_shows_cumulative_actual_and_counterfactual() -> None:
    pytest.importorskip("matplotlib")
    attempts = [
        attempt(1, JobState.PREEMPTED, 3600, 1.0),
        attempt(2, JobState.SUCCEEDED, 1800, 1.0, started=T0 + 4000),
    ]
    report = cost_report("job-1", attempts, 3.0, {1: T0 + 3000})
    ax = report.plot()
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert lines["actual (estimated)"] == pytest.approx([0.0, 1.0, 1.5])
    assert lines["on-demand counterfactual"] == pytest.approx([0.0, 2.5, 4.0])


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = cost_report("job-1", [attempt(1, JobState.SUCCEEDED, 60, 1.0)], 3.0)
    with pytest.raises(MissingPlotExtra, match=r"multispot\[plot\]"):
        report.plot()
