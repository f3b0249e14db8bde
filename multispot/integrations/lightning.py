"""Lightning on spot: ``pip install 'multispot[lightning]'``.

    from multispot.integrations.lightning import MultispotCheckpoint, last_checkpoint

    trainer = L.Trainer(max_epochs=3, callbacks=[MultispotCheckpoint()])
    trainer.fit(model, data, ckpt_path=last_checkpoint())

The callback saves ``trainer.save_checkpoint`` into the job's checkpoint contract (step =
``trainer.global_step``) when multispot's schedule says so (``checkpoint.interval`` /
``every_steps``) and on the preemption notice, then exits with status 143 once that save is
committed (before Lightning's own SIGTERM handling stops the loop without saving).
``last_checkpoint()`` returns the newest valid checkpoint's file for ``ckpt_path`` (None on a
fresh start) and records the resume for ``multispot status``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from multispot.runtime.checkpointer import Checkpointer

CKPT_FILE = "lightning.ckpt"
_checkpointer: Checkpointer | None = None


def _shared() -> Checkpointer:
    global _checkpointer
    if _checkpointer is None:
        _checkpointer = Checkpointer()
    return _checkpointer


def last_checkpoint(ckpt: Checkpointer | None = None) -> str | None:
    """The newest valid checkpoint's file, for ``Trainer.fit(..., ckpt_path=...)``."""
    restored = (ckpt or _shared()).restore()
    return None if restored is None else str(restored.local_dir / CKPT_FILE)


class MultispotCheckpoint(pl.Callback):  # type: ignore[misc,unused-ignore]
    """Save through the contract on multispot's schedule and on the notice."""

    def __init__(self, ckpt: Checkpointer | None = None) -> None:
        # Constructed before fit(): Lightning chains the SIGTERM handler installed here.
        self.ckpt = ckpt or _shared()

    def _save(self, trainer: pl.Trainer) -> None:
        step = trainer.global_step
        if self.ckpt.last_saved_step == step:
            return
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        if trainer.is_global_zero:
            with self.ckpt.save(step, total_steps=total) as writer:
                trainer.save_checkpoint(str(writer.local_dir / CKPT_FILE))
        else:
            trainer.save_checkpoint(CKPT_FILE)  # a collective call: every rank takes part

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.ckpt.preempted or self.ckpt.should_save(trainer.global_step):
            self._save(trainer)
        if self.ckpt.preempted:
            self.ckpt.exit_preempted()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)  # the final state is a checkpoint too
