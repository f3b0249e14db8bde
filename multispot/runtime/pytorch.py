"""PyTorch helper: everything a resumed run needs to continue exactly where it stopped.

Saves model, optimizer, LR scheduler, grad scaler, every RNG state (Python, NumPy, torch CPU
and CUDA) and the training position (step, epoch, batch within the epoch) as one ``state.pt``
in the checkpoint step. Importing this module imports torch; the rest of multispot does not.
"""

from __future__ import annotations

import copy
import random
import sys
from concurrent.futures import Future
from typing import Any

import torch

from multispot.checkpoint import CheckpointWriter, Manifest, RestoredCheckpoint
from multispot.runtime.checkpointer import Checkpointer

STATE_FILE = "state.pt"


def rng_state() -> dict[str, Any]:
    """Every RNG a training loop is likely to touch, in a form ``torch.load(weights_only=True)`` reads."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"python": [version, list(internal), gauss], "torch": torch.get_rng_state()}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        kind, keys, pos, has_gauss, cached = numpy.random.get_state()
        state["numpy"] = [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    # A checkpoint loaded with map_location="cuda" moves these onto the device: RNG states live on the CPU.
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"].cpu())
    numpy = sys.modules.get("numpy")
    if numpy is not None and "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        numpy.random.set_state((kind, keys.cpu().numpy().astype("uint32"), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class _HostBuffers:
    """Host buffers for snapshots, kept and reused from one snapshot to the next (pinned for device
    tensors): pinning is slow, and copying into fresh memory pays a page fault per page."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def copy(self, obj: Any, path: str = "") -> Any:
        if isinstance(obj, torch.Tensor):
            tensor = obj.detach()
            buffer = self.buffers.get(path)
            if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
                pinned = tensor.device.type != "cpu" and torch.cuda.is_available()
                buffer = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=pinned)
                self.buffers[path] = buffer
            buffer.copy_(tensor, non_blocking=tensor.device.type != "cpu")
            return buffer
        if isinstance(obj, dict):
            return {key: self.copy(value, f"{path}/{key}") for key, value in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.copy(value, f"{path}/{i}") for i, value in enumerate(obj))
        return copy.deepcopy(obj)


class TrainingState:
    """Model, optimizer, scheduler and the loop position, saved and restored as one."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        scaler: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.extra: dict[str, Any] = extra or {}
        self.step = 0  # optimizer steps taken
        self.epoch = 0
        self.position = 0  # batches of ``epoch`` already consumed
        self._host = _HostBuffers()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "progress": {"step": self.step, "epoch": self.epoch, "position": self.position},
            "rng": rng_state(),
            "extra": self.extra,
        }
        for name in ("optimizer", "scheduler", "scaler"):
            part = getattr(self, name)
            if part is not None:
                state[name] = part.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for name in ("optimizer", "scheduler", "scaler"):
            part = getattr(self, name)
            if part is not None and name in state:
                part.load_state_dict(state[name])
        progress = state["progress"]
        self.step, self.epoch, self.position = progress["step"], progress["epoch"], progress["position"]
        self.extra = state.get("extra", {})
        set_rng_state(state["rng"])

    def save(self, ckpt: Checkpointer, total_steps: int | None = None) -> Manifest | None:
        """Commit the current state as checkpoint ``step`` (no-op if that step is already saved).

        After the preemption notice, a save that would not fit in what is left of the notice is
        skipped: the newest committed checkpoint stays the one to resume from.
        """
        if ckpt.last_saved_step == self.step:
            return None
        if ckpt.preempted:
            ckpt.finish_pending(ckpt.budget())
            if not ckpt.can_save_in_time():
                return None
        with ckpt.save(self.step, total_steps=total_steps, metadata={"epoch": self.epoch}) as writer:
            with writer.open(STATE_FILE) as f:
                torch.save(self.state_dict(), f)
        return writer.committed

    def snapshot(self) -> dict[str, Any]:
        """A copy of the full state in host memory that later training steps cannot change.

        Device tensors go to pinned buffers reused across snapshots (asynchronous copies, one
        synchronisation at the end); the caller must not take a new snapshot while a save of the
        previous one is still writing (``save_async`` waits for it first)."""
        copied: dict[str, Any] = self._host.copy(self.state_dict())
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return copied

    def save_async(
        self, ckpt: Checkpointer, total_steps: int | None = None
    ) -> Future[Manifest | None] | None:
        """Snapshot now, write in the background: the loop blocks only for the copy."""
        if ckpt.last_saved_step == self.step:
            return None
        if ckpt.preempted:  # no time for background work: an emergency save is synchronous
            self.save(ckpt, total_steps)
            return None
        ckpt.finish_pending()  # the host buffers are about to be overwritten: the last write must end
        snapshot = self.snapshot()

        def write(writer: CheckpointWriter) -> None:
            with writer.open(STATE_FILE) as f:
                torch.save(snapshot, f)

        return ckpt.save_async(self.step, write, total_steps=total_steps, metadata={"epoch": self.epoch})

    def restore(self, ckpt: Checkpointer, map_location: Any = "cpu") -> bool:
        """Load the newest valid checkpoint (verified while it loads); False on a fresh start."""

        def load(restored: RestoredCheckpoint) -> dict[str, Any]:
            with restored.open(STATE_FILE) as f:
                loaded: dict[str, Any] = torch.load(f, map_location=map_location, weights_only=True)
            return loaded

        state = ckpt.restore_with(load)
        if state is None:
            return False
        self.load_state_dict(state)
        return True


def agree(flag: bool) -> bool:
    """True on every rank when it is true on any: one all-reduce, so all ranks save (or stop) at the
    same step even though each sees the notice or the interval at a slightly different moment.
    Without an initialised ``torch.distributed`` it returns ``flag``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
