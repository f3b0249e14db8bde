"""Imported inside the running job: where checkpoints live, restore/save, the preemption notice.

    from multispot.runtime import Checkpointer
    ckpt = Checkpointer()

``report(step, **metrics)`` records intermediate metrics for sweeps; ``shards.pending()`` walks
the work a job-array task has not finished yet. The PyTorch helper lives in
``multispot.runtime.pytorch`` (it imports torch).
"""

from multispot.runtime import shards
from multispot.runtime.checkpointer import (
    EXIT_PREEMPTED,
    Checkpointer,
    add_notice_source,
    notice,
    on_preemption,
)
from multispot.runtime.env import JobEnv, detect
from multispot.runtime.notice import FileNoticeSource, NoticeSource, PreemptionNotice
from multispot.runtime.report import read_reports, report

__all__ = [
    "EXIT_PREEMPTED",
    "Checkpointer",
    "FileNoticeSource",
    "JobEnv",
    "NoticeSource",
    "PreemptionNotice",
    "add_notice_source",
    "detect",
    "notice",
    "on_preemption",
    "read_reports",
    "report",
    "shards",
]
