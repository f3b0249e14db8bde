"""The container entry multispot ships next to the user's code (standard library only).

    python3 /opt/ml/input/data/code/multispot_entry.py --code-dir DIR --config-dir DIR \
        --nproc-per-node N --install SPEC -- COMMAND...

It runs in the code directory, installs ``requirements.txt`` and multispot when the image lacks
them, sets the node's rank from SageMaker's ``resourceconfig.json`` (and launches through
torchrun when ``--nproc-per-node`` > 0), forwards SIGTERM to the command and exits with its code.
The MULTISPOT_* contract itself arrives in the job's Environment.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

MASTER_PORT = "29500"
PYTHON_NAMES = ("python", "python3")


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("--nproc-per-node", type=int, default=0)
    parser.add_argument("--install", default="none")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = [c for c in args.command]
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("multispot entry: no command", file=sys.stderr)
        return 2

    code = Path(args.code_dir)
    code.mkdir(parents=True, exist_ok=True)
    os.chdir(code)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH", "")) if p)
    if (code / "requirements.txt").is_file():
        _pip("-r", str(code / "requirements.txt"))
    if args.install != "none" and importlib.util.find_spec("multispot") is None:
        _pip(args.install)

    hosts, current = ["algo-1"], "algo-1"
    config = Path(args.config_dir) / "resourceconfig.json"
    if config.is_file():
        data = json.loads(config.read_text())
        hosts, current = sorted(data.get("hosts") or hosts), str(data.get("current_host", current))
    rank = hosts.index(current) if current in hosts else 0
    env.update(NODE_RANK=str(rank), NNODES=str(len(hosts)), MASTER_ADDR=hosts[0], MASTER_PORT=MASTER_PORT)

    if command[0] in PYTHON_NAMES:
        command[0] = sys.executable
    if args.nproc_per_node > 0 and command[0] == sys.executable:
        script = command[1:]
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nnodes={len(hosts)}",
            f"--node_rank={rank}",
            f"--nproc_per_node={args.nproc_per_node}",
            f"--master_addr={hosts[0]}",
            f"--master_port={MASTER_PORT}",
            *script,
        ]
    elif len(hosts) == 1:
        env.setdefault("RANK", "0")
        env.setdefault("WORLD_SIZE", "1")

    child = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
