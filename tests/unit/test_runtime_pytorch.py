"""TrainingState: a resumed run continues exactly where the saved one stopped."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from multispot.checkpoint import CheckpointStore  # noqa: E402
from multispot.runtime import Checkpointer, JobEnv  # noqa: E402
from multispot.runtime.pytorch import STATE_FILE, TrainingState, rng_state, set_rng_state  # noqa: E402

pytestmark = pytest.mark.usefixtures("isolated_notice")


def job_env(uri: str) -> JobEnv:
    return JobEnv(
        job_id="j", attempt=1, provider="local", checkpoint_uri=uri, output_uri=None, notice_seconds=30
    )


def build(seed: int) -> tuple[Any, Any, Any]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(16, 2),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer, scheduler


def train(state: TrainingState, steps: int, batches_per_epoch: int = 3) -> list[float]:
    """A loop that touches every RNG: data from torch, noise from numpy, shuffling from random."""
    losses = []
    for _ in range(steps):
        x = torch.randn(8, 6) + float(np.random.normal()) + random.random()
        y = torch.randint(0, 2, (8,))
        loss = torch.nn.functional.cross_entropy(state.model(x), y)
        state.optimizer.zero_grad()
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        losses.append(loss.item())
        state.step += 1
        state.position += 1
        if state.position == batches_per_epoch:
            state.epoch, state.position = state.epoch + 1, 0
    return losses


def draws() -> tuple[float, list[float], list[float]]:
    return random.random(), torch.rand(3).tolist(), np.random.rand(3).tolist()


def assert_same_tensors(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_tensors(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tensors(x, y)
    else:
        assert a == b


def test_save_and_restore_continue_exactly(tmp_path: Path) -> None:
    uri = (tmp_path / "ckpt").as_uri()
    random.seed(1)
    np.random.seed(1)
    model, optimizer, scheduler = build(seed=1)
    original = TrainingState(model, optimizer, scheduler, extra={"best": 0.5})
    train(original, 4)
    assert (original.step, original.epoch, original.position) == (4, 1, 1)

    saved = Checkpointer(uri, env=job_env(uri))
    manifest = original.save(saved, total_steps=10)
    assert manifest is not None and manifest.step == 4
    assert manifest.metadata["epoch"] == 1 and manifest.metadata["write_seconds"] >= 0
    assert list(manifest.files) == [STATE_FILE]
    assert original.save(saved) is None  # the same step twice is a no-op

    expected_model = copy.deepcopy(original.model.state_dict())
    expected_optimizer = copy.deepcopy(original.optimizer.state_dict())  # live tensors change in place
    expected_scheduler = copy.deepcopy(original.scheduler.state_dict())
    # what the original run does next, from this exact point
    continued = train(original, 5)
    final_model = {k: v.clone() for k, v in original.model.state_dict().items()}
    next_draws = draws()

    # another process: other seeds, fresh objects
    random.seed(99)
    np.random.seed(99)
    model2, optimizer2, scheduler2 = build(seed=99)
    resumed = TrainingState(model2, optimizer2, scheduler2)
    assert not torch.equal(next(iter(model2.parameters())), next(iter(model.parameters())))
    assert resumed.restore(Checkpointer(uri, env=job_env(uri))) is True

    assert (resumed.step, resumed.epoch, resumed.position) == (4, 1, 1)
    assert resumed.extra == {"best": 0.5}
    assert_same_tensors(resumed.model.state_dict(), expected_model)
    assert_same_tensors(resumed.optimizer.state_dict(), expected_optimizer)
    assert resumed.scheduler.state_dict() == expected_scheduler
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**2)

    # the RNG streams continue too: the same batches, the same dropout masks, the same losses
    assert train(resumed, 5) == continued
    assert_same_tensors(resumed.model.state_dict(), final_model)
    assert draws() == next_draws


def test_restore_on_a_fresh_start_changes_nothing(tmp_path: Path) -> None:
    uri = (tmp_path / "empty").as_uri()
    model, optimizer, scheduler = build(seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = TrainingState(model, optimizer, scheduler)
    assert state.restore(Checkpointer(uri, env=job_env(uri))) is False
    assert (state.step, state.epoch, state.position) == (0, 0, 0)
    assert_same_tensors(model.state_dict(), before)


def test_rng_state_round_trip() -> None:
    state = rng_state()
    first = draws()
    draws()
    set_rng_state(state)
    assert draws() == first


def test_state_file_loads_with_weights_only(tmp_path: Path) -> None:
    """Nothing but tensors and plain data: loadable without unpickling arbitrary objects."""
    uri = (tmp_path / "ckpt").as_uri()
    model, optimizer, scheduler = build(seed=5)
    state = TrainingState(model, optimizer, scheduler)
    state.step = 7
    state.save(Checkpointer(uri, env=job_env(uri)))
    with CheckpointStore(uri).restore().open(STATE_FILE) as f:
        loaded = torch.load(f, weights_only=True)
    assert loaded["progress"] == {"step": 7, "epoch": 0, "position": 0}
    assert set(loaded) >= {"model", "optimizer", "scheduler", "rng", "progress"}
    assert "numpy" in loaded["rng"]
