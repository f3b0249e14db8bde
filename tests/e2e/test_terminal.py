"""The terminal at 80 columns, as a user runs the CLI (a subprocess with COLUMNS=80): tables read
without truncation (``--wide`` for every column), JSON parses whatever the width, a failed job's
output ends with its reason, boolean hyperparameters arrive as flags ``store_true`` accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from multispot import api

ROOT = Path(__file__).resolve().parents[2]
MULTISPOT = str(Path(sys.executable).with_name("multispot"))
WIDTH = 80

SCRIPT = """\
import argparse, json, os, sys
from pathlib import Path
parser = argparse.ArgumentParser()
parser.add_argument("--tied", action="store_true")
parser.add_argument("--shuffle", action="store_true")
parser.add_argument("--lr", type=float)
parser.add_argument("--fail", action="store_true")
args = parser.parse_args()
print(f"tied={args.tied} shuffle={args.shuffle} lr={args.lr}", flush=True)
if args.fail:
    for i in range(30):
        print(f"noise line {i}")
    sys.exit("error: the reason is the embedding size does not match")
ck = Path(os.environ["MULTISPOT_CHECKPOINT_URI"].removeprefix("file://")) / "step-000000000001"
from multispot.runtime import Checkpointer
with Checkpointer().save(1, total_steps=1) as w:
    w.write_bytes("state.bin", b"x" * 1000)
"""


def cli(home: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MULTISPOT_HOME=str(home), COLUMNS=str(WIDTH), TERM="xterm-256color")
    return subprocess.run(
        [MULTISPOT, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=check
    )


def job(tmp_path: Path, name: str, hyperparameters: str) -> Path:
    (tmp_path / "train.py").write_text(SCRIPT)
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ncommand: python train.py\nsource_dir: .\nhyperparameters: {hyperparameters}\n"
        "provider_options:\n  local: {price_per_hour: {spot: 0.069, on-demand: 0.23}}\n"
    )
    return path


def assert_readable(out: str) -> None:
    for line in out.splitlines():
        assert len(line) <= WIDTH, f"{len(line)} columns: {line!r}"
    assert "…" not in out, out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One succeeded job (checkpointed) and one failed job, in a home of their own."""
    root = tmp_path_factory.mktemp("terminal")
    ok = cli(root / "home", "submit", str(job(root, "flags-ok", "{tied: true, shuffle: false, lr: 0.5}")))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    return root / "home"


def test_boolean_hyperparameters_are_store_true_flags(home: Path) -> None:
    logs = cli(home, "logs", "flags-ok", check=True).stdout
    assert "tied=True shuffle=False lr=0.5" in logs  # --tied, no --shuffle: argparse accepted them
    status = json.loads(cli(home, "status", "flags-ok", "-o", "json", check=True).stdout)
    assert status["state"] == "SUCCEEDED"


def test_failed_job_output_ends_with_its_reason(tmp_path: Path) -> None:
    result = cli(tmp_path / "home", "submit", str(job(tmp_path, "flags-bad", "{fail: true}")))
    assert result.returncode == 1
    tail = result.stdout.rstrip().splitlines()
    assert "the reason is the embedding size does not match" in tail[-1], result.stdout
    assert any("last lines of attempt 1" in line for line in tail[-20:])
    assert "noise line 0" not in result.stdout  # the last lines, not everything
    watched = cli(tmp_path / "home", "watch", "flags-bad")
    assert watched.returncode == 1
    assert "the reason is the embedding size does not match" in watched.stdout.rstrip().splitlines()[-1]


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("status", "flags-ok"),
        ("checkpoints", "flags-ok"),
        ("cost", "flags-ok"),
        ("savings",),
        ("prices", "A100:8"),
        ("prices",),
        (
            "simulate",
            "examples/quickstart/job.yaml",
            "--trace",
            "examples/traces/us-east-1c_v100_1.json",
            "--deadline",
            "30h",
        ),
    ],
)
def test_tables_read_at_80_columns(home: Path, args: tuple[str, ...]) -> None:
    result = cli(home, *args)
    assert result.returncode == 0, result.stderr
    assert_readable(result.stdout)


def test_prices_show_whole_instance_names_and_wide_shows_every_column(home: Path) -> None:
    narrow = cli(home, "prices", "A100:8", check=True).stdout
    assert "Standard_ND96asr_v4" in narrow and "a2-highgpu-8g" in narrow and "ml.p4d.24xlarge" in narrow
    wide = cli(home, "prices", "A100:8", "--wide", check=True).stdout
    assert "accelerators" in wide and "vCPU" in wide and "(est.)" in wide
    cost = cli(home, "cost", "flags-ok", "--wide", check=True).stdout
    assert "price source" in cost and "…" not in cost


@pytest.mark.parametrize(
    "args",
    [
        ("list", "-o", "json"),
        ("status", "flags-ok", "-o", "json"),
        ("checkpoints", "flags-ok", "-o", "json"),
        ("cost", "flags-ok", "-o", "json"),
        ("prices", "A100:8", "-o", "json"),
        ("submit", "examples/pytorch/sagemaker.yaml", "--dry-run", "-o", "json"),
    ],
)
def test_json_parses_at_80_columns(home: Path, args: tuple[str, ...]) -> None:
    json.loads(cli(home, *args, check=True).stdout)


def test_dry_run_request_in_table_mode_is_raw_json(home: Path) -> None:
    out = cli(home, "submit", "examples/pytorch/sagemaker.yaml", "--dry-run", check=True).stdout
    raw = out.split("\nrequest:\n", 1)[1]
    assert max(len(line) for line in raw.splitlines()) > WIDTH  # what a wrap at 80 would have broken
    assert json.loads(raw)["argv"]


def _fake_run(attempts: dict[int, list[str]]) -> api.Run:
    run = api.Run.__new__(api.Run)

    def items(follow: bool, attempt: int | None):  # type: ignore[no-untyped-def]
        for n, lines in attempts.items():
            item = SimpleNamespace(n=n, placement="local:localhost/local (spot)")
            yield item, None
            for line in lines:
                yield item, line

    run._log_items = items  # type: ignore[method-assign]
    return run


def test_log_headers_stand_on_their_own_lines_and_silent_attempts_are_listed() -> None:
    run = _fake_run({1: ["starting\n", "\r 10%|#    |\r 50%|#####  |"], 2: [], 3: ["resumed\n", "done\n"]})
    text = "".join(run.logs())
    assert text.split("\n") == [
        "--- attempt 1 (local:localhost/local (spot)) ---",
        "starting",
        "\r 10%|#    |\r 50%|#####  |",
        "--- attempt 2 (local:localhost/local (spot)) --- (no output)",
        "--- attempt 3 (local:localhost/local (spot)) ---",
        "resumed",
        "done",
        "",
    ]
    last_silent = "".join(_fake_run({1: ["partial"], 2: []}).logs())
    assert last_silent.endswith("partial\n--- attempt 2 (local:localhost/local (spot)) --- (no output)\n")
