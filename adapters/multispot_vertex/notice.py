"""Preemption notice inside Vertex: the GCE metadata server's ``instance/preempted`` flag.

Registered under the entry-point group ``multispot.notice_sources`` as ``vertex``, so the
runtime polls it in a job that runs on Vertex. Standard library only: it must work inside a
training container that has multispot but not the Google SDK.

The address is ``$GCE_METADATA_HOST`` (the variable Google's own libraries honour), else
``metadata.google.internal``.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multispot.runtime.env import JobEnv
    from multispot.runtime.notice import NoticeSource

HOST_ENV = "GCE_METADATA_HOST"
DEFAULT_HOST = "metadata.google.internal"
PATH = "/computeMetadata/v1/instance/preempted"


class MetadataPreemptionSource:
    """Polls ``/computeMetadata/v1/instance/preempted``; ``TRUE`` means the 30 s notice has begun."""

    def __init__(self, notice_seconds: float = 30.0, host: str | None = None, interval: float = 1.0) -> None:
        self.notice_seconds = notice_seconds
        self.interval = interval
        host = host or os.environ.get(HOST_ENV) or DEFAULT_HOST
        self.url = (host if "://" in host else f"http://{host}").rstrip("/") + PATH
        self.timeout = 1.0

    def poll(self) -> float | None:
        request = urllib.request.Request(self.url, headers={"Metadata-Flavor": "Google"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read(64).decode("ascii", "replace").strip()
        except (OSError, urllib.error.URLError, ValueError):
            return None  # no metadata server (not on GCE) or a transient error: no notice
        return self.notice_seconds if body.upper() == "TRUE" else None


def sources(env: JobEnv) -> list[NoticeSource]:
    """Entry point for ``multispot.notice_sources``: the metadata poller with the job's notice budget."""
    return [MetadataPreemptionSource(env.notice_seconds)]
