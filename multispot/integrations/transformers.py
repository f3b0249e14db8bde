"""Hugging Face ``Trainer`` on spot: ``pip install 'multispot[transformers]'``.

    from multispot.integrations.transformers import MultispotCallback, last_checkpoint

    trainer = Trainer(model, args, train_dataset=data, callbacks=[MultispotCallback()])
    trainer.train(resume_from_checkpoint=last_checkpoint())

Every checkpoint the Trainer saves (``checkpoint-N`` under ``args.output_dir``) is committed
into the job's checkpoint contract as step N, then the Trainer's own copy is removed (retention
is the contract's ``keep``). The Trainer also saves when multispot's schedule says so
(``checkpoint.interval`` / ``every_steps``), and on the preemption notice it saves at the end of
the current step and the process exits with status 143 once that save is committed.
``last_checkpoint()`` returns the folder of the newest checkpoint that verifies (None on a fresh
start) and records the resume for ``multispot status``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from multispot.runtime.checkpointer import Checkpointer

PREFIX = "checkpoint-"  # transformers.trainer_utils.PREFIX_CHECKPOINT_DIR


def last_checkpoint(ckpt: Checkpointer | None = None) -> str | None:
    """The newest valid checkpoint as a folder for ``Trainer.train(resume_from_checkpoint=...)``."""
    ckpt = ckpt or _shared()
    restored = ckpt.restore()
    return None if restored is None else str(restored.local_dir)


_checkpointer: Checkpointer | None = None


def _shared() -> Checkpointer:
    global _checkpointer
    if _checkpointer is None:
        _checkpointer = Checkpointer()
    return _checkpointer


class MultispotCallback(TrainerCallback):  # type: ignore[misc,unused-ignore]
    """Commit the Trainer's checkpoints through the contract; save and stop on the notice."""

    def __init__(self, ckpt: Checkpointer | None = None, keep_trainer_copy: bool = False) -> None:
        # Constructed before train(): the SIGTERM handler is in place, and this callback reads it.
        self.ckpt = ckpt or _shared()
        self.keep_trainer_copy = keep_trainer_copy

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if self.ckpt.preempted or self.ckpt.should_save(state.global_step):
            control.should_save = True
        if self.ckpt.preempted:
            control.should_training_stop = True
        return control

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        folder = Path(str(args.output_dir)) / f"{PREFIX}{state.global_step}"
        if state.is_world_process_zero and folder.is_dir() and self.ckpt.last_saved_step != state.global_step:
            with self.ckpt.save(state.global_step, total_steps=state.max_steps or None) as writer:
                for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                    with path.open("rb") as src, writer.open(path.relative_to(folder).as_posix()) as dst:
                        shutil.copyfileobj(src, dst, 8 << 20)
            if not self.keep_trainer_copy and not args.load_best_model_at_end:
                shutil.rmtree(folder, ignore_errors=True)
        if self.ckpt.preempted:
            self.ckpt.exit_preempted()  # the save is committed: leave before code after train() runs
        return control
