"""Framework integrations, each an optional extra never imported by the core:

- ``multispot.integrations.transformers``: a Hugging Face ``TrainerCallback`` and the resume helper
- ``multispot.integrations.lightning``: a Lightning ``Callback``
- ``multispot.integrations.accelerate``: ``save_state``/``load_state`` through the contract

Each puts the framework's checkpoints through the checkpoint contract (manifest, verification,
retention, ``keep``; visible to ``multispot checkpoints`` and ``status``), turns the preemption
notice into "save now and stop", and resumes from the newest checkpoint that verifies.
"""

from __future__ import annotations

from pathlib import Path

from multispot.runtime.env import JobEnv


def checkpoint_dir(env: JobEnv) -> Path | None:
    """The checkpoint location as a local folder when it is one (a file:// URI), else None."""
    if env.checkpoint_uri.startswith("file://"):
        return Path(env.checkpoint_uri[len("file://") :])
    return None
