"""Measured cost of a Vertex job from the Cloud Billing export in BigQuery, by label.

Enable it with ``provider_options.vertex.billing_export_table: project.dataset.gcp_billing_export_v1_XXXX``
(the standard usage cost export). Rows of service ``Vertex AI`` carrying the label
``multispot-job-id`` are summed, credits included, and split per ``multispot-attempt`` label.
Whether custom-job labels reach the export is not documented for every SKU; when nothing
matches, the figure is 0 rows → None and the report keeps its estimate.

``MULTISPOT_VERTEX_BIGQUERY_ENDPOINT`` points the BigQuery client at another endpoint with
anonymous credentials (the tests' local REST fake); never used against Google.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone
from typing import Any

from multispot.billing import MeasuredCost
from multispot.status import Attempt
from multispot_vertex.translate import ATTEMPT_LABEL, JOB_LABEL, label_value

ENDPOINT_ENV = "MULTISPOT_VERTEX_BIGQUERY_ENDPOINT"
SERVICE = "Vertex AI"

QUERY = """
SELECT
  (SELECT l.value FROM UNNEST(labels) AS l WHERE l.key = @attempt_label) AS attempt,
  SUM(cost) + SUM(IFNULL((SELECT SUM(c.amount) FROM UNNEST(credits) AS c), 0)) AS amount,
  MIN(usage_start_time) AS start,
  MAX(usage_end_time) AS `end`
FROM `{table}`
WHERE service.description = @service
  AND usage_start_time >= TIMESTAMP(@since)
  AND EXISTS(SELECT 1 FROM UNNEST(labels) AS l WHERE l.key = @job_label AND l.value = @job_id)
GROUP BY attempt
"""


def table_of(attempts: list[Attempt]) -> str | None:
    for attempt in attempts:
        if attempt.handle is not None and attempt.handle.data.get("billing_export_table"):
            return str(attempt.handle.data["billing_export_table"])
    return None


def _client(project: str) -> Any:
    import google.cloud.bigquery as bigquery

    endpoint = os.environ.get(ENDPOINT_ENV)
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
    return bigquery.Client(project=project)


def measured_cost(job_id: str, attempts: list[Attempt], table: str | None = None) -> MeasuredCost | None:
    """The billed cost of ``job_id`` from the export table; None when no table is configured or no row matches."""
    table = table or table_of(attempts)
    if not table:
        return None
    import google.cloud.bigquery as bigquery

    submitted = [a.submitted for a in attempts if a.submitted is not None]
    since = (
        datetime.fromtimestamp(min(submitted), tz=timezone.utc).date() - timedelta(days=1)
        if submitted
        else date(1970, 1, 1)
    )
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("attempt_label", "STRING", ATTEMPT_LABEL),
            bigquery.ScalarQueryParameter("job_label", "STRING", JOB_LABEL),
            bigquery.ScalarQueryParameter("job_id", "STRING", label_value(job_id)),
            bigquery.ScalarQueryParameter("service", "STRING", SERVICE),
            bigquery.ScalarQueryParameter("since", "STRING", since.isoformat()),
        ]
    )
    client = _client(table.split(".")[0])
    rows = list(client.query_and_wait(QUERY.format(table=table), job_config=config))
    if not rows:
        return None
    per_attempt: dict[int, float] = {}
    total = 0.0
    starts: list[datetime] = []
    ends: list[datetime] = []
    for row in rows:
        amount = float(row["amount"] or 0.0)
        total += amount
        if row["attempt"] is not None and str(row["attempt"]).isdigit():
            per_attempt[int(row["attempt"])] = per_attempt.get(int(row["attempt"]), 0.0) + amount
        if row["start"] is not None:
            starts.append(row["start"])
        if row["end"] is not None:
            ends.append(row["end"])
    start = min(starts).date().isoformat() if starts else since.isoformat()
    end = (max(ends).date() + timedelta(days=1)).isoformat() if ends else start
    return MeasuredCost(
        amount=round(total, 6),
        source=f"GCP billing export {table}, service {SERVICE!r}, label {JOB_LABEL}={label_value(job_id)}",
        start=start,
        end=end,
        per_attempt=per_attempt,
    )
