"""Inside Azure ML: environment detection, the Scheduled Events notice source, measured billing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fake_azure import FakeAzureML
from helpers.azureml_setup import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, make_provider
from multispot_azureml.notice import ScheduledEventsSource, seconds_left

from multispot.runtime.checkpointer import _default_sources
from multispot.runtime.env import detect
from multispot.status import Attempt, Handle, Placement


class _Events:
    document: ClassVar[dict[str, Any]] = {"DocumentIncarnation": 1, "Events": []}
    headers: ClassVar[list[str | None]] = []
    first_delay: ClassVar[float] = 0.0  # the documented slow first call, shortened
    vm_name: ClassVar[str] = "vm_3"


@pytest.fixture
def events() -> Iterator[tuple[str, type[_Events]]]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            _Events.headers.append(self.headers.get("Metadata"))
            if "/metadata/instance/compute/name" in self.path:
                data = _Events.vm_name.encode()
            else:
                if _Events.first_delay:
                    time.sleep(_Events.first_delay)
                    _Events.first_delay = 0.0
                data = json.dumps(_Events.document).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Events.document, _Events.headers = {"DocumentIncarnation": 1, "Events": []}, []
    _Events.first_delay, _Events.vm_name = 0.0, "vm_3"
    yield (
        f"http://127.0.0.1:{server.server_address[1]}/metadata/scheduledevents?api-version=2020-07-01",
        _Events,
    )
    server.shutdown()
    server.server_close()


def test_scheduled_events_source_sees_a_preempt(events: tuple[str, type[_Events]]) -> None:
    url, state = events
    source = ScheduledEventsSource(url)
    assert source.poll() is None
    state.document = {
        "Events": [
            {"EventType": "Freeze", "NotBefore": formatdate(time.time() + 5, usegmt=True)},
            {
                "EventType": "Preempt",
                "EventStatus": "Scheduled",
                "NotBefore": formatdate(time.time() + 25, usegmt=True),
            },
        ]
    }
    left = source.poll()
    assert left is not None and 20 < left <= 25
    assert state.headers and all(h == "true" for h in state.headers)
    assert seconds_left({"Events": [{"EventType": "Preempt", "EventStatus": "Started"}]}, 0) == 0.0
    assert seconds_left({"Events": [{"EventType": "Reboot"}]}, 0) is None


def _preempt(*resources: str) -> dict[str, Any]:
    return {
        "EventType": "Preempt",
        "EventStatus": "Scheduled",
        "Resources": list(resources),
        "NotBefore": formatdate(time.time() + 25, usegmt=True),
    }


def test_only_this_vms_preempt_is_a_notice(events: tuple[str, type[_Events]]) -> None:
    """One document lists every VM's events; Resources says whose (IMDS compute.name)."""
    url, state = events
    base = url.split("/metadata/")[0]
    source = ScheduledEventsSource(url, instance_url=f"{base}/metadata/instance")
    state.document = {"Events": [_preempt("vm_1", "vm_2")]}
    assert source.poll() is None and source.vm_name == "vm_3"  # another node's eviction
    state.document = {"Events": [_preempt("vm_1"), _preempt("vm_3")]}
    left = source.poll()
    assert left is not None and 20 < left <= 25
    assert seconds_left({"Events": [_preempt("vm_1")]}, 0, None) is not None  # name unknown: counts


def test_the_first_call_may_be_slow(events: tuple[str, type[_Events]]) -> None:
    """ "You should expect a delayed response in your first call of up to two minutes": the first
    call waits longer than the regular poll timeout (here 1.5 s against 0.5 s)."""
    url, state = events
    state.first_delay = 1.5
    state.document = {"Events": [_preempt("vm_3")]}
    source = ScheduledEventsSource(url, timeout=0.5, first_timeout=10.0, vm_name="vm_3")
    assert source.poll() is not None and source.failures == 0
    hasty = ScheduledEventsSource(url, timeout=0.5, first_timeout=0.5, vm_name="vm_3")
    state.first_delay = 1.5
    assert hasty.poll() is None and hasty.failures == 1  # what the old 2 s timeout did, scaled


def test_unreachable_endpoint_is_no_notice() -> None:
    source = ScheduledEventsSource("http://127.0.0.1:9/metadata/scheduledevents", timeout=0.5)
    assert source.poll() is None and source.failures == 1


def test_runtime_registers_the_source_and_finds_the_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTISPOT_AZURE_SCHEDULED_EVENTS_URL", "http://127.0.0.1:9/x")
    env = detect({"AZUREML_RUN_ID": "run-7", "AZURE_ML_OUTPUT_checkpoints": str(tmp_path / "mnt")})
    assert env.provider == "azureml" and env.job_id == "run-7"
    assert env.checkpoint_uri == (tmp_path / "mnt").as_uri()
    assert env.notice_seconds == 30.0
    sources = _default_sources(env)
    assert [type(s).__name__ for s in sources] == ["ScheduledEventsSource"]
    assert sources[0].url == "http://127.0.0.1:9/x"  # type: ignore[attr-defined]


def _attempt(n: int, compute: str | None, cost_filter: str | None) -> Attempt:
    data = {
        "subscription_id": SUBSCRIPTION,
        "resource_group": RESOURCE_GROUP,
        "workspace": WORKSPACE,
        "compute": compute,
        "cost_filter": cost_filter,
    }
    start = 1_795_000_000.0
    return Attempt(
        "job-9", n, Placement("azureml", "spot"), handle=Handle("azureml", f"ms-job-9-a{n}", data),
        started=start + n * 3600, ended=start + n * 3600 + 1800,
    )  # fmt: skip


def test_measured_cost_from_cost_management(fake_aml: FakeAzureML) -> None:
    provider = make_provider(fake_aml)
    assert provider.measured_cost("job-9", [_attempt(1, "gpu", None)]) is None  # not configured
    assert provider.measured_cost("job-9", [_attempt(1, None, "resource")]) is None  # serverless
    fake_aml.cost_rows = [[1.25, "USD"], [0.5, "USD"]]
    fake_aml.cost_queries.clear()
    cost = provider.measured_cost("job-9", [_attempt(1, "gpu", "resource"), _attempt(2, "gpu", "resource")])
    assert cost is not None and cost.amount == pytest.approx(1.75)
    assert "resource gpu" in cost.source and cost.start < cost.end
    [(path, body)] = fake_aml.cost_queries
    assert (
        path
        == f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.CostManagement/query"
    )
    assert body["type"] == "ActualCost" and body["timeframe"] == "Custom"
    dims = body["dataset"]["filter"]["dimensions"]
    assert dims["name"] == "ResourceId" and dims["values"][0].endswith(
        f"/workspaces/{WORKSPACE}/computes/gpu"
    )
    fake_aml.cost_rows = [[2.0, "USD"]]
    tagged = provider.measured_cost("job-9", [_attempt(1, "gpu", "tag")])
    assert tagged is not None and tagged.amount == 2.0 and tagged.per_attempt == {1: 2.0}
    assert fake_aml.cost_queries[-1][1]["dataset"]["filter"]["tags"] == {
        "name": "multispot-job-id",
        "operator": "In",
        "values": ["job-9"],
    }
