"""The preemption notice, as one hook with the seconds left.

Sources: SIGTERM (every service sends it before the hard stop, when it forwards it at all) and
pluggable ``NoticeSource`` objects polled in a background thread (the cloud adapters add the
GCE metadata server and Azure Scheduled Events; the local provider writes a notice file).
Whichever fires first wins; hooks run once.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

Hook = Callable[[float], None]


class NoticeSource(Protocol):
    """Polled every ``interval`` seconds; returns the seconds left when a preemption is announced."""

    interval: float

    def poll(self) -> float | None: ...


class FileNoticeSource:
    """The local provider's notice: a JSON file ``{"deadline": unix_time}`` written before SIGTERM."""

    def __init__(self, path: str | os.PathLike[str], interval: float = 0.2) -> None:
        self.path, self.interval = Path(path), interval

    def poll(self) -> float | None:
        try:
            deadline = float(json.loads(self.path.read_text())["deadline"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return max(0.0, deadline - time.time())


class PreemptionNotice:
    """Process-wide: ``received``, ``seconds_left()``, and hooks called once with the budget."""

    def __init__(self, notice_seconds: float) -> None:
        self.notice_seconds = notice_seconds
        self.deadline: float | None = None
        self._hooks: list[Hook] = []
        self._lock = threading.Lock()
        self._previous: Any = None
        self._installed = False
        self._stop = threading.Event()

    @property
    def received(self) -> bool:
        return self.deadline is not None

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.time())

    def on_preemption(self, hook: Hook) -> Hook:
        """Register ``hook(seconds_left)``; called at once if the notice already came."""
        with self._lock:
            self._hooks.append(hook)
            fired = self.deadline is not None
        if fired:
            hook(self.seconds_left() or 0.0)
        return hook

    def fire(self, seconds_left: float | None = None) -> None:
        """Announce the preemption (idempotent: only the first call counts)."""
        with self._lock:
            if self.deadline is not None:
                return
            budget = self.notice_seconds if seconds_left is None else seconds_left
            self.deadline = time.time() + budget
            hooks = list(self._hooks)
        for hook in hooks:
            hook(budget)

    def install(self, sources: list[NoticeSource] | None = None) -> None:
        """SIGTERM handler (main thread only) plus a poller thread for ``sources``."""
        if not self._installed and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
        for source in sources or []:
            threading.Thread(target=self._poll, args=(source,), daemon=True, name="multispot-notice").start()

    def uninstall(self) -> None:
        self._stop.set()
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)
            self._installed = False

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.fire()
        if callable(self._previous):
            self._previous(signum, frame)

    def _poll(self, source: NoticeSource) -> None:
        while not self._stop.is_set() and self.deadline is None:
            left = source.poll()
            if left is not None:
                self.fire(left)
                return
            self._stop.wait(source.interval)
