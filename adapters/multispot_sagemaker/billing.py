"""Measured cost from AWS Cost Explorer, by the cost-allocation tags every training job carries.

Each CreateTrainingJob carries ``multispot-job-id`` and ``multispot-attempt`` tags. Once the
account's owner activates them as cost-allocation tags (Billing console → Cost allocation tags),
Cost Explorer reports the job's unblended cost per day, grouped by attempt. Cost Explorer data
lag by up to a day, and an unactivated tag simply matches nothing: then this returns None and
the CostReport keeps its estimate.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from multispot.billing import MeasuredCost
from multispot.status import Attempt
from multispot_sagemaker.translate import TAG_ATTEMPT, TAG_JOB_ID

METRIC = "UnblendedCost"


def period(attempts: list[Attempt], now: float | None = None) -> tuple[str, str]:
    """[start, end) in whole UTC days covering every attempt (Cost Explorer's end is exclusive)."""
    stamps = [s for a in attempts for s in (a.submitted, a.started, a.ended) if s is not None]
    now = now if now is not None else datetime.now(timezone.utc).timestamp()
    first = min(stamps) if stamps else now
    last = max(stamps) if stamps else now
    start = datetime.fromtimestamp(first, tz=timezone.utc).date()
    end = datetime.fromtimestamp(last, tz=timezone.utc).date() + timedelta(days=1)
    return start.isoformat(), end.isoformat()


def cost_query(job_id: str, attempts: list[Attempt], now: float | None = None) -> dict[str, Any]:
    """GetCostAndUsage parameters exactly as boto3's ``ce`` client takes them."""
    start, end = period(attempts, now)
    return {
        "TimePeriod": {"Start": start, "End": end},
        "Granularity": "DAILY",
        "Metrics": [METRIC],
        "Filter": {"Tags": {"Key": TAG_JOB_ID, "Values": [job_id], "MatchOptions": ["EQUALS"]}},
        "GroupBy": [{"Type": "TAG", "Key": TAG_ATTEMPT}],
    }


def parse(job_id: str, query: dict[str, Any], pages: list[dict[str, Any]]) -> MeasuredCost | None:
    """Sum the pages; None when Cost Explorer has nothing for the tag (not activated, or too early)."""
    total, seen = 0.0, False
    per_attempt: dict[int, float] = {}
    for page in pages:
        for day in page.get("ResultsByTime", []):
            groups = day.get("Groups") or []
            for group in groups:
                amount = float(group.get("Metrics", {}).get(METRIC, {}).get("Amount", 0.0))
                seen = True
                total += amount
                key = str((group.get("Keys") or [""])[0])
                # Tag group keys read "multispot-attempt$2"; an empty value means untagged spend.
                value = key.split("$", 1)[1] if "$" in key else key
                if value.isdigit():
                    per_attempt[int(value)] = per_attempt.get(int(value), 0.0) + amount
            if not groups and METRIC in (day.get("Total") or {}):
                seen = True
                total += float(day["Total"][METRIC].get("Amount", 0.0))
    if not seen:
        return None
    return MeasuredCost(
        amount=round(total, 10),
        source=f"AWS Cost Explorer, tag {TAG_JOB_ID}={job_id}, {METRIC}",
        start=query["TimePeriod"]["Start"],
        end=query["TimePeriod"]["End"],
        per_attempt=per_attempt,
    )


def measured_cost(ce: Any, job_id: str, attempts: list[Attempt]) -> MeasuredCost | None:
    """Ask Cost Explorer (a boto3 ``ce`` client) what the job's tagged resources cost."""
    from botocore.exceptions import ClientError

    if not attempts:
        return None
    query = cost_query(job_id, attempts)
    pages: list[dict[str, Any]] = []
    token: str | None = None
    try:
        while True:
            page = ce.get_cost_and_usage(**query, **({"NextPageToken": token} if token else {}))
            pages.append(page)
            token = page.get("NextPageToken")
            if not token:
                break
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("AccessDeniedException", "DataUnavailableException", "BillingViewNotFound"):
            return None  # Cost Explorer not enabled or not allowed: keep the estimate
        raise
    return parse(job_id, query, pages)
