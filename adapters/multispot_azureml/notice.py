"""The preemption notice inside Azure ML: the instance's Scheduled Events endpoint.

Azure Metadata Service: Scheduled Events for Linux VMs
(https://learn.microsoft.com/azure/virtual-machines/linux/scheduled-events):

- an evicted Spot/low-priority VM gets a ``Preempt`` event with a minimum notice of 30 s;
- one document lists the events of every VM in the availability set or scale set; an event's
  ``Resources`` names the VMs it affects, so a VM acts only on events that name it, by its
  ``compute.name`` from the Instance Metadata Service (``/metadata/instance/compute/name``);
- "Scheduled Events is enabled for your service the first time you make a request for events.
  You should expect a delayed response in your first call of up to two minutes": the first call
  waits up to FIRST_CALL_TIMEOUT, later ones POLL_TIMEOUT.

The endpoints are reachable only from the VM; ``MULTISPOT_AZURE_SCHEDULED_EVENTS_URL`` and
``MULTISPOT_AZURE_INSTANCE_URL`` change their addresses (tests point them at a local fake).
Stdlib only: this runs inside the training job, where the Azure SDK may not be installed.
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
DEFAULT_INSTANCE_URL = "http://169.254.169.254/metadata/instance"
INSTANCE_URL_ENV = "MULTISPOT_AZURE_INSTANCE_URL"
NAME_QUERY = "/compute/name?api-version=2021-02-01&format=text"
DEFAULT_BUDGET = 30.0
POLL_SECONDS = 1.0  # the events appear at least 30 s ahead: once a second leaves the budget intact
FIRST_CALL_TIMEOUT = 120.0  # the documented first-call delay (see above)
POLL_TIMEOUT = 5.0


def _get(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"Metadata": "true"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return bytes(response.read())


class ScheduledEventsSource:
    """Polls Scheduled Events; returns the seconds left when a ``Preempt`` event names this VM."""

    def __init__(
        self,
        url: str | None = None,
        interval: float = POLL_SECONDS,
        timeout: float = POLL_TIMEOUT,
        first_timeout: float = FIRST_CALL_TIMEOUT,
        instance_url: str | None = None,
        vm_name: str | None = None,
    ) -> None:
        self.url = url or os.environ.get(URL_ENV) or DEFAULT_URL
        self.instance_url = instance_url or os.environ.get(INSTANCE_URL_ENV) or DEFAULT_INSTANCE_URL
        self.interval, self.timeout, self.first_timeout = interval, timeout, first_timeout
        self.vm_name = vm_name
        self.answered = False  # the first call (which enables the service) has been answered
        self.failures = 0  # an unreachable endpoint is not a notice; counted for diagnosis

    def name(self) -> str | None:
        """This VM's name (IMDS compute.name), asked once it is needed; None if IMDS won't say."""
        if self.vm_name is None:
            try:
                self.vm_name = _get(self.instance_url + NAME_QUERY, self.timeout).decode().strip() or None
            except (OSError, ValueError):
                return None
        return self.vm_name

    def poll(self) -> float | None:
        try:
            raw = _get(self.url, self.timeout if self.answered else self.first_timeout)
            self.answered = True
            document = json.loads(raw or b"{}")
        except (OSError, ValueError):
            self.failures += 1
            return None
        return seconds_left(document, time.time(), self.name())


def seconds_left(document: Any, now: float, vm_name: str | None = None) -> float | None:
    """The budget a Scheduled Events document gives this VM, or None when it announces no
    preemption of it. ``vm_name`` None (IMDS did not say): every Preempt counts, as saving early
    is cheaper than missing the one meant for this VM."""
    events = document.get("Events") if isinstance(document, dict) else None
    for event in events or []:
        if not isinstance(event, dict) or event.get("EventType") != "Preempt":
            continue
        resources = event.get("Resources")
        if vm_name is not None and isinstance(resources, list) and vm_name not in resources:
            continue  # another VM's eviction
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
