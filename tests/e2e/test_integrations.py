"""Each framework integration under verify-resume: identical, at least one checkpoint compared,
every planned fault fired, every later attempt resumed from a committed checkpoint."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import pytest
from helpers.verify_resume import verify_resume

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "integrations"
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def verify(tmp_path: Path, job: str, every_steps: int) -> tuple[int, dict[str, Any]]:
    return verify_resume(tmp_path / "home", EXAMPLES / job, every_steps)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("framework", "job", "every_steps"),
    [("transformers", "trainer.yaml", 10), ("accelerate", "accelerate.yaml", 25)],
)
def test_integration_is_spot_ready(tmp_path: Path, framework: str, job: str, every_steps: int) -> None:
    pytest.importorskip(framework)
    code, report = verify(tmp_path, job, every_steps)
    assert code == 0 and report["outcome"] == "spot-ready", report
    assert report["checkpoints_compared"] >= 1
    assert all(f["fired"] for f in report["exercised"]["faults"]) and len(report["exercised"]["faults"]) == 3
    later = report["interrupted"]["resumed_from"][1:]
    assert later and all(step for step in later), later


def docs_snippet(framework: str) -> list[str]:
    """The code block under docs/adopt.md's heading for ``framework``."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "adopt.md").read_text()
    section = text.split(f"## {framework}", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0].strip().splitlines()


def adopt_lightning(stock: str) -> str:
    """Adopt a stock Lightning script exactly as docs/adopt.md shows: its import line, its
    callback in the Trainer, its ``ckpt_path`` in ``fit``."""
    snippet = docs_snippet("Lightning")
    imported, trainer_line, fit_line = snippet
    callbacks = re.search(r"callbacks=\[MultispotCheckpoint\(\)\]", trainer_line)
    ckpt_path = re.search(r"ckpt_path=last_checkpoint\(\)", fit_line)
    assert imported.startswith("from multispot.integrations.lightning import") and callbacks and ckpt_path
    lines = stock.splitlines()
    last_import = max(i for i, line in enumerate(lines) if line.startswith(("import ", "from ")))
    lines.insert(last_import + 1, imported)
    adopted = "\n".join(lines) + "\n"
    adopted = adopted.replace("L.Trainer(", f"L.Trainer({callbacks.group(0)}, ", 1)
    adopted = re.sub(r"trainer\.fit\((.*)\)", rf"trainer.fit(\1, {ckpt_path.group(0)})", adopted, count=1)
    return adopted


@pytest.mark.slow
def test_lightning_example_is_spot_ready(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    code, report = verify(tmp_path, "lightning.yaml", 50)
    assert code == 0 and report["outcome"] == "spot-ready", report
    assert report["checkpoints_compared"] >= 1
    assert all(f["fired"] for f in report["exercised"]["faults"]) and len(report["exercised"]["faults"]) == 3
    later = report["interrupted"]["resumed_from"][1:]
    assert later and all(step for step in later), later


@pytest.mark.slow
def test_stock_lightning_script_adopted_as_documented_is_spot_ready(tmp_path: Path) -> None:
    """A script the integration was not written around (DataModule, validation, an LR schedule,
    Lightning's default logger and checkpointing), adopted with the documented lines only; saves
    every 20 steps land on epoch ends (10 batches an epoch), right before validation."""
    pytest.importorskip("lightning")
    stock = (SCRIPTS / "lightning_stock.py").read_text()
    adopted = adopt_lightning(stock)
    added = [
        line for line in difflib.ndiff(stock.splitlines(), adopted.splitlines()) if line.startswith("+ ")
    ]
    assert len(added) <= 5, added
    job = tmp_path / "job"
    job.mkdir()
    (job / "train.py").write_text(adopted)
    (job / "job.yaml").write_text(
        "name: lightning-stock\ncommand: python train.py\nsource_dir: .\n"
        "provider_options:\n  local: {emulate: aws, time_scale: 0.05}\n"
    )
    code, report = verify(tmp_path, str(job / "job.yaml"), 20)
    assert code == 0 and report["outcome"] == "spot-ready", report
    assert report["checkpoints_compared"] >= 1
    assert all(f["fired"] for f in report["exercised"]["faults"]) and len(report["exercised"]["faults"]) == 3
    later = report["interrupted"]["resumed_from"][1:]
    assert later and all(step for step in later), later
