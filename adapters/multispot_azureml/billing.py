"""Measured cost of an Azure ML job from Azure Cost Management (``query.usage``), when it can be had.

Azure ML job tags are not ARM resource tags, so Cost Management cannot see a job by itself. It can
see a compute cluster: when the job ran on a cluster dedicated to it (``cost_filter: resource``)
or on a cluster tagged ``multispot-job-id`` (``cost_filter: tag``, as ``create_compute`` does), the
cluster's actual cost over the job's dates is the job's cost. Serverless attempts cannot be
attributed; then (and when ``cost_filter`` is not set) this returns None and the report uses the
estimate (node-hours × catalog price).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from multispot.billing import MeasuredCost
from multispot.status import Attempt
from multispot_azureml import translate as t

if TYPE_CHECKING:
    from azure.mgmt.costmanagement.models import QueryFilter

    from multispot_azureml.provider import AzureMLProvider

COST_COLUMNS = ("Cost", "PreTaxCost", "CostUSD", "totalCost")


def cluster_resource_id(data: dict[str, Any]) -> str:
    return (
        f"/subscriptions/{data['subscription_id']}/resourceGroups/{data['resource_group']}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{data['workspace']}"
        f"/computes/{data['compute']}"
    )


def query_filter(job_id: str, attempts: list[Attempt]) -> tuple[str, QueryFilter, str] | None:
    """(scope, filter, description) for the job's attempts, or None when they cannot be attributed."""
    from azure.mgmt.costmanagement.models import QueryComparisonExpression, QueryFilter

    handles = [a.handle for a in attempts if a.handle is not None and a.handle.provider == t.PROVIDER]
    configured = [h for h in handles if h.data.get("cost_filter") and h.data.get("compute")]
    if not configured or len(configured) != len(handles):
        return None  # not configured, or some attempt ran serverless: a partial figure would mislead
    first = configured[0].data
    scope = f"/subscriptions/{first['subscription_id']}/resourceGroups/{first['resource_group']}"
    if first["cost_filter"] == "tag":
        expression = QueryComparisonExpression(name=t.JOB_ID_TAG, operator="In", values_property=[job_id])
        return scope, QueryFilter(tags=expression), f"tag {t.JOB_ID_TAG}={job_id}"
    resources = sorted({cluster_resource_id(h.data) for h in configured})
    expression = QueryComparisonExpression(name="ResourceId", operator="In", values_property=resources)
    names = ", ".join(r.rsplit("/", 1)[-1] for r in resources)
    return scope, QueryFilter(dimensions=expression), f"resource {names}"


def date_range(attempts: list[Attempt]) -> tuple[datetime, datetime] | None:
    """Whole UTC days from the first attempt's start to the day after the last one's end."""
    starts = [a.started or a.submitted for a in attempts if (a.started or a.submitted)]
    if not starts:
        return None
    ends = [a.ended or datetime.now(timezone.utc).timestamp() for a in attempts]
    first = datetime.fromtimestamp(min(s for s in starts if s), tz=timezone.utc)
    last = datetime.fromtimestamp(max(ends), tz=timezone.utc)
    start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    end = last.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return start, end


def total_cost(columns: list[str], rows: list[list[Any]]) -> float:
    """Sum the cost column of a query result (its name depends on the query type)."""
    index = next((i for i, name in enumerate(columns) if name in COST_COLUMNS), None)
    if index is None:
        raise ValueError(f"no cost column in the Cost Management result: {columns}")
    return float(sum(float(row[index]) for row in rows))


def measured_cost(provider: AzureMLProvider, job_id: str, attempts: list[Attempt]) -> MeasuredCost | None:
    chosen = query_filter(job_id, attempts)
    period = date_range(attempts)
    if chosen is None or period is None:
        return None
    from azure.mgmt.costmanagement import CostManagementClient
    from azure.mgmt.costmanagement.models import (
        QueryAggregation,
        QueryDataset,
        QueryDefinition,
        QueryTimePeriod,
    )

    scope, where, described = chosen
    client = CostManagementClient(
        provider.credential, base_url=provider.management_url, **provider.client_kwargs()
    )
    definition = QueryDefinition(
        type="ActualCost",
        timeframe="Custom",
        time_period=QueryTimePeriod(from_property=period[0], to=period[1]),
        dataset=QueryDataset(
            aggregation={"totalCost": QueryAggregation(name="Cost", function="Sum")},
            filter=where,
        ),
    )
    result = client.query.usage(scope, definition)
    properties = result.properties if result is not None else None
    columns = [str(c.name) for c in (properties.columns or [])] if properties else []
    rows = list(properties.rows or []) if properties else []
    amount = total_cost(columns, rows) if rows else 0.0
    per_attempt = {attempts[0].n: amount} if len(attempts) == 1 else {}
    return MeasuredCost(
        amount=amount,
        source=f"Azure Cost Management query, {described}, ActualCost",
        start=period[0].date().isoformat(),
        end=period[1].date().isoformat(),
        per_attempt=per_attempt,
    )
