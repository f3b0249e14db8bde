"""Measured cost from the Cloud Billing export: google-cloud-bigquery's Client against a local
REST fake of jobs.query, seeded with export rows."""

from __future__ import annotations

import time
from typing import Any

import pytest
from multispot_vertex.provider import VertexProvider

from multispot.billing import BillingSource
from multispot.status import Attempt, Handle, JobState, Placement

TABLE = "billing-proj.billing.gcp_billing_export_v1_0000"


def _attempt(n: int, table: str | None = TABLE) -> Attempt:
    data = {"project": "p", "region": "us-central1"}
    if table:
        data["billing_export_table"] = table
    return Attempt(
        job_id="train-abc123",
        n=n,
        placement=Placement("vertex", "spot", "us-central1", "n1-standard-8"),
        state=JobState.SUCCEEDED,
        handle=Handle("vertex", f"projects/p/locations/us-central1/customJobs/{n}", data),
        submitted=time.time() - 3600,
    )


def _row(
    job: str, attempt: str, cost: float, credits: list[float], service: str = "Vertex AI"
) -> dict[str, Any]:
    now = time.time()
    return {
        "table": TABLE,
        "service": service,
        "labels": {"multispot-job-id": job, "multispot-attempt": attempt},
        "cost": cost,
        "credits": credits,
        "start": now - 1800,
        "end": now - 600,
    }


@pytest.fixture
def seeded(rest: Any) -> Any:
    with rest.lock:
        rest.billing_rows[:] = [
            _row("train-abc123", "1", 0.40, [-0.05]),
            _row("train-abc123", "1", 0.10, []),
            _row("train-abc123", "2", 0.75, [-0.25, -0.05]),
            _row("train-abc123", "2", 9.00, [], service="Compute Engine"),  # another service
            _row("other-job", "1", 5.00, []),  # another job
        ]
    yield rest
    with rest.lock:
        rest.billing_rows.clear()


def test_measured_cost_sums_the_job_rows_with_credits(vertex_env: dict[str, str], seeded: Any) -> None:
    provider = VertexProvider()
    assert isinstance(provider, BillingSource)
    cost = provider.measured_cost("train-abc123", [_attempt(1), _attempt(2)])
    assert cost is not None
    assert cost.amount == pytest.approx(0.40 - 0.05 + 0.10 + 0.75 - 0.30)
    assert cost.per_attempt == pytest.approx({1: 0.45, 2: 0.45})
    assert TABLE in cost.source and "multispot-job-id=train-abc123" in cost.source
    assert cost.start <= cost.end
    body = seeded.queries[-1]
    assert f"`{TABLE}`" in body["query"] and body.get("useLegacySql") is False
    params = {p["name"]: p["parameterValue"]["value"] for p in body["queryParameters"]}
    assert params["job_id"] == "train-abc123" and params["service"] == "Vertex AI"


def test_no_rows_and_no_table_give_none(vertex_env: dict[str, str], seeded: Any) -> None:
    provider = VertexProvider()
    assert provider.measured_cost("never-ran", [_attempt(1)]) is None
    before = len(seeded.queries)
    assert provider.measured_cost("train-abc123", [_attempt(1, table=None)]) is None
    assert len(seeded.queries) == before  # not configured: no query at all
