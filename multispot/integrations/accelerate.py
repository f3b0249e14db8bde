"""Hugging Face Accelerate on spot: ``pip install 'multispot[accelerate]'``.

    from multispot.integrations.accelerate import load_state, save_state

    step = load_state(accelerator) or 0          # newest valid checkpoint, or None on a fresh start
    for batch in ...:
        ...
        step += 1
        save_state(accelerator, step)            # when multispot's schedule or the notice says so

``save_state`` commits ``Accelerator.save_state`` (model, optimizer, scheduler, RNG states,
everything passed to ``register_for_checkpointing``) as checkpoint ``step`` of the contract and,
after the preemption notice, exits the process with status 143 once it is committed.
"""

from __future__ import annotations

from typing import Any

from accelerate import Accelerator

from multispot.runtime.checkpointer import Checkpointer

_checkpointer: Checkpointer | None = None


def checkpointer() -> Checkpointer:
    """The process's Checkpointer (created on first use: the SIGTERM handler goes in then)."""
    global _checkpointer
    if _checkpointer is None:
        _checkpointer = Checkpointer()
    return _checkpointer


def load_state(accelerator: Accelerator, ckpt: Checkpointer | None = None, **kwargs: Any) -> int | None:
    """Load the newest valid checkpoint into ``accelerator``; its step, or None on a fresh start."""
    ckpt = ckpt or checkpointer()
    restored = ckpt.restore()
    if restored is None:
        return None
    accelerator.load_state(str(restored.local_dir), **kwargs)
    return restored.step


def save_state(
    accelerator: Accelerator,
    step: int,
    *,
    total_steps: int | None = None,
    force: bool = False,
    ckpt: Checkpointer | None = None,
) -> bool:
    """Commit ``accelerator.save_state`` as ``step`` when it is time (or ``force``); True if saved.

    After the preemption notice the save is made at once and the process exits (status 143).
    """
    ckpt = ckpt or checkpointer()
    saved = False
    if (force or ckpt.should_save(step)) and ckpt.last_saved_step != step:
        accelerator.wait_for_everyone()
        with ckpt.save(step, total_steps=total_steps) as writer:
            accelerator.save_state(str(writer.local_dir))
        saved = True
    if ckpt.preempted:
        ckpt.exit_preempted()
    return saved
