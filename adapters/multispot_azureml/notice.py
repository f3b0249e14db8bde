"""The preemption notice inside Azure ML: the instance's Scheduled Events endpoint.

An evicted low-priority/spot VM gets a ``Preempt`` event about 30 s before it goes. The endpoint
is the Azure Instance Metadata Service, reachable only from the VM; its address can be changed
with ``MULTISPOT_AZURE_SCHEDULED_EVENTS_URL`` (tests point it at a local fake). Stdlib only: this
runs inside the training job, where the Azure SDK may not be installed.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from typing import Any

from multispot.runtime.env import JobEnv
from multispot.runtime.notice import NoticeSource

DEFAULT_URL = "http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01"
URL_ENV = "MULTISPOT_AZURE_SCHEDULED_EVENTS_URL"
DEFAULT_BUDGET = 30.0
POLL_SECONDS = 1.0  # the events appear at least 30 s ahead: once a second leaves the budget intact


class ScheduledEventsSource:
    """Polls Scheduled Events; returns the seconds left when a ``Preempt`` event is listed."""

    def __init__(self, url: str | None = None, interval: float = POLL_SECONDS, timeout: float = 2.0) -> None:
        self.url = url or os.environ.get(URL_ENV) or DEFAULT_URL
        self.interval, self.timeout = interval, timeout
        self.failures = 0  # an unreachable endpoint is not a notice; counted for diagnosis

    def poll(self) -> float | None:
        request = urllib.request.Request(self.url, headers={"Metadata": "true"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                document = json.loads(response.read() or b"{}")
        except (OSError, ValueError):
            self.failures += 1
            return None
        return seconds_left(document, time.time())


def seconds_left(document: Any, now: float) -> float | None:
    """The budget a Scheduled Events document gives, or None when it announces no preemption."""
    events = document.get("Events") if isinstance(document, dict) else None
    for event in events or []:
        if not isinstance(event, dict) or event.get("EventType") != "Preempt":
            continue
        if event.get("EventStatus") == "Started":
            return 0.0  # the eviction is under way
        try:
            return max(0.0, parsedate_to_datetime(str(event.get("NotBefore"))).timestamp() - now)
        except (TypeError, ValueError):
            return DEFAULT_BUDGET  # announced without a usable time: Azure's documented minimum
    return None


def sources(env: JobEnv) -> list[NoticeSource]:
    """Entry point ``multispot.notice_sources: azureml``: what the runtime polls inside Azure ML."""
    return [ScheduledEventsSource()]
