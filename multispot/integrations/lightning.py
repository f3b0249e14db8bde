"""Lightning on spot: ``pip install 'multispot[lightning]'``.

    from multispot.integrations.lightning import MultispotCheckpoint, last_checkpoint

    trainer = L.Trainer(max_epochs=3, callbacks=[MultispotCheckpoint()])
    trainer.fit(model, data, ckpt_path=last_checkpoint())

The callback saves ``trainer.save_checkpoint`` into the job's checkpoint contract as step
``trainer.global_step`` (manifest, verification, retention by ``checkpoint.keep``; listed by
``multispot checkpoints``, progress in ``multispot status``) when multispot's schedule says so
(``checkpoint.interval`` / ``every_steps``), at the end of training, and on the preemption notice;
after the notice's save is committed the process exits with status 143.
``last_checkpoint()`` returns the newest checkpoint that verifies (None on a fresh start) and
records the resume for ``multispot status``.

Two things a Lightning checkpoint does not hold are added so a run stopped mid-epoch continues
exactly as it would have: the position in the training data (Lightning resumes a plain
``DataLoader`` from the start of the epoch, and warns about it) and the random number generators
(torch, CUDA, NumPy, Python) that shuffling and dropout draw from.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from multispot.runtime.checkpointer import EXIT_PREEMPTED, Checkpointer

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


# ---------------------------------------------------------------------------- random generators


def _rng_state() -> dict[str, Any]:
    """Every generator shuffling and dropout draw from, as tensors and plain values (so
    ``torch.load(weights_only=True)`` reads them back)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - Lightning depends on NumPy
        return state
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state["numpy"] = (kind, torch.from_numpy(np.asarray(keys).astype(np.int64)), pos, has_gauss, gauss)
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, *rest = state["python"]
    random.setstate((kind, tuple(rest[0]), rest[1]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


class _ResumableLoader:
    """A training loader Lightning can resume mid-epoch: it has ``state_dict``/``load_state_dict``,
    so Lightning stores its state in each checkpoint (``loops.fit_loop.state_dict.combined_loader``)
    and gives it back on restore. On resume it replays the epoch's start (the generators as they
    were when the epoch began, so a shuffling sampler draws the same order), skips the batches
    already trained on, then puts the generators back as they were at the save."""

    def __init__(self, loader: Any, trainer: pl.Trainer) -> None:
        self.loader = loader
        self._trainer = trainer
        self._epoch_rng: dict[str, Any] | None = None
        self._resume: dict[str, Any] | None = None
        self._last: tuple[int, dict[str, Any]] | None = None  # batches started then, what it replayed

    def __getattr__(self, name: str) -> Any:  # sampler, dataset, batch_size, ...: the loader's
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        started = self._trainer.fit_loop.epoch_loop.batch_progress.total.ready
        resume, self._resume = self._resume, None
        if resume is None and self._last is not None and self._last[0] == started:
            # The iterator before was dropped before any batch ran (Lightning restarting at an
            # epoch's end makes one, then the next epoch's): draw exactly what it drew.
            resume = self._last[1]
        if resume is not None:
            self._last = (started, resume)
            skip = int(resume["batches"])
            try:
                size: int | None = len(self.loader)
            except TypeError:
                size = None
            if resume["epoch_rng"] is not None and skip > 0 and (size is None or skip < size):
                _set_rng_state(resume["epoch_rng"])
                self._epoch_rng = resume["epoch_rng"]
                iterator: Iterator[Any] = iter(self.loader)
                for _ in range(skip):
                    next(iterator)
                _set_rng_state(resume["rng"])
                return iterator
            _set_rng_state(resume["rng"])  # saved at an epoch's end: the next one starts afresh
        self._epoch_rng = _rng_state()
        self._last = (started, {"batches": 0, "epoch_rng": self._epoch_rng, "rng": self._epoch_rng})
        fresh: Iterator[Any] = iter(self.loader)
        return fresh

    def state_dict(self) -> dict[str, Any]:
        progress = self._trainer.fit_loop.epoch_loop.batch_progress.current
        return {"batches": progress.ready, "epoch_rng": self._epoch_rng, "rng": _rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = state


def _is_stateful(loader: Any) -> bool:
    return callable(getattr(loader, "state_dict", None)) and callable(
        getattr(loader, "load_state_dict", None)
    )


def _make_loaders_resumable(trainer: pl.Trainer, callback: MultispotCheckpoint) -> None:
    """Wrap the training loaders once Lightning has prepared them (samplers injected), just before
    it hands them their saved state. ``_load_combined_loader_states`` is where Lightning 2.x does
    that (``FitLoop.setup_data``); without it resuming mid-epoch keeps Lightning's own behaviour.

    Lightning gives loaders their state only when it resumes inside an epoch; the callback's own
    state (``MultispotCheckpoint.state_dict``, restored in every case) covers a checkpoint saved at
    an epoch's end, whose generators the next epoch's shuffle draws from."""
    loop = trainer.fit_loop
    original = getattr(loop, "_load_combined_loader_states", None)
    if original is None or getattr(original, "_multispot", False):
        return

    def load_states() -> None:
        combined = loop._combined_loader
        if combined is not None:
            wrapped = [dl if _is_stateful(dl) else _ResumableLoader(dl, trainer) for dl in combined.flattened]
            combined.flattened = wrapped
            callback._loaders = [dl for dl in wrapped if isinstance(dl, _ResumableLoader)]
            saved, callback._loaded = callback._loaded, []
            if len(saved) == len(callback._loaders):
                for loader, state in zip(callback._loaders, saved, strict=True):
                    loader.load_state_dict(state)
        original()

    load_states._multispot = True  # type: ignore[attr-defined]
    loop._load_combined_loader_states = load_states  # type: ignore[method-assign]


# ---------------------------------------------------------------------------- the callback


class MultispotCheckpoint(pl.Callback):  # type: ignore[misc,unused-ignore]
    """Save through the contract on multispot's schedule and on the notice; resume exactly."""

    def __init__(self, ckpt: Checkpointer | None = None) -> None:
        # Constructed before fit(): the SIGTERM handler installed here is the one Lightning chains
        # to its own when fit() starts, so the notice reaches this callback.
        self.ckpt = ckpt or _shared()
        self._seen_step: int | None = None
        self._loaders: list[_ResumableLoader] = []
        self._loaded: list[dict[str, Any]] = []  # their states from the checkpoint resumed from

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            _make_loaders_resumable(trainer, self)

    def state_dict(self) -> dict[str, Any]:
        return {"loaders": [loader.state_dict() for loader in self._loaders]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = list(state_dict.get("loaders", []))

    def _total_steps(self, trainer: pl.Trainer) -> int | None:
        if trainer.max_steps and trainer.max_steps > 0:
            return int(trainer.max_steps)
        try:
            total = trainer.estimated_stepping_batches
        except Exception:  # an unsized loader: no total to show
            return None
        return int(total) if total != float("inf") else None

    def _save(self, trainer: pl.Trainer) -> None:
        step = trainer.global_step
        if self.ckpt.last_saved_step == step:
            return
        # A collective call: every rank enters the save and calls save_checkpoint (Lightning
        # writes the file on rank 0 for single-device and DDP strategies).
        with self.ckpt.save(step, total_steps=self._total_steps(trainer)) as writer:
            trainer.save_checkpoint(str(writer.local_dir / CKPT_FILE))

    def _due(self, trainer: pl.Trainer) -> None:
        if self.ckpt.preempted or self.ckpt.should_save(trainer.global_step):
            self._save(trainer)
        if self.ckpt.preempted and self.ckpt.last_saved_step == trainer.global_step:
            self.ckpt.exit_preempted()  # the save is committed: leave before code after fit() runs

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Save only after a batch that stepped the optimizer (mid-accumulation gradients are in no
        # checkpoint), and not at an epoch's last batch: the epoch-end validation still to come
        # would be skipped on resume, so that save waits for the epoch's end.
        stepped = trainer.global_step != self._seen_step
        self._seen_step = trainer.global_step
        if stepped and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._due(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._due(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SystemExit) and exception.code == EXIT_PREEMPTED:
            return  # this callback's own exit, after its save
        if isinstance(exception, SIGTERMException):
            # Lightning stopped on the SIGTERM before this callback saw the notice (between
            # batches, in validation): save where it stopped, then leave with the preempted
            # status (Lightning's own exit would read as a success, before any save).
            self._save(trainer)
            self.ckpt.exit_preempted()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)  # the final state is a checkpoint too
