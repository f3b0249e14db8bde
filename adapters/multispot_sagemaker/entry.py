"""The container entry multispot ships next to the user's code (standard library only).

    python3 /opt/ml/input/data/code/multispot_entry.py --code-dir DIR --config-dir DIR \
        --nproc-per-node N --install shipped|none|index:SPEC -- COMMAND...

In the code directory it installs ``requirements.txt`` (this reaches the image's package index)
and multispot: ``shipped`` runs ``multispot-wheels/install.sh``, written at submit by
``multispot.ship.install_command`` — the submitting multispot's wheels, installed offline;
``none`` installs nothing; ``index:SPEC`` pip-installs SPEC. It then hands the command the
service's facts: MULTISPOT_HYPERPARAMETERS from ``hyperparameters.json``, the node's rank from
``resourceconfig.json`` (RANK/WORLD_SIZE per node when it does not launch torchrun; torchrun
sets them per process), NCCL/EFA variables as the SageMaker training drivers set them; launches
through torchrun when ``--nproc-per-node`` > 0 and the command is Python; forwards SIGTERM to the
command and exits with its code. The rest of the MULTISPOT_* contract arrives in Environment.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

MASTER_PORT = "29500"
PYTHON_NAMES = ("python", "python3")
WHEEL_DIR = "multispot-wheels"  # multispot.ship.WHEEL_DIR (this file imports nothing of multispot)
INSTALL_SCRIPT = "install.sh"
HYPERPARAMETERS = "MULTISPOT_HYPERPARAMETERS"
# The instance types the SageMaker training drivers give EFA settings (sagemaker-core 2.x,
# sagemaker/core/modules/train/container_drivers/common/utils.py: SM_EFA_NCCL_INSTANCES and
# SM_EFA_RDMA_INSTANCES; the same lists in aws/sagemaker-training-toolkit's torch_distributed.py).
EFA_NCCL_INSTANCES = (
    "ml.g4dn.8xlarge",
    "ml.g4dn.12xlarge",
    "ml.g5.48xlarge",
    "ml.p3dn.24xlarge",
    "ml.p4d.24xlarge",
    "ml.p4de.24xlarge",
    "ml.p5.48xlarge",
    "ml.trn1.32xlarge",
)
EFA_RDMA_INSTANCES = ("ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.trn1.32xlarge")


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)


def install(mode: str, code: Path) -> str | None:
    """Install multispot as ``mode`` says; returns an error message, or None."""
    if mode == "none":
        return None
    if mode.startswith("index:"):
        _pip(mode[len("index:") :])
        return None
    if mode != "shipped":
        return f"unknown --install {mode!r}"
    script = code / WHEEL_DIR / INSTALL_SCRIPT
    if not script.is_file():
        return f"{script} is missing: the code channel lacks multispot's wheels"
    env = dict(os.environ, MULTISPOT_PYTHON=sys.executable, MULTISPOT_WHEELS=str(script.parent))
    done = subprocess.run(["sh", str(script)], env=env)
    return None if done.returncode == 0 else f"offline install of multispot failed ({done.returncode})"


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def service_env(config_dir: Path, nproc_per_node: int) -> tuple[dict[str, str], list[str], int]:
    """The variables the command gets from the service's config files, the hosts and this rank.

    ``resourceconfig.json`` and ``hyperparameters.json``: "How Amazon SageMaker Provides Training
    Information" (Developer Guide). The NCCL/EFA variables follow the SDK's torchrun driver
    (``setup_env``): FI_PROVIDER=efa and FI_EFA_USE_DEVICE_RDMA=1 (with RDMAV_FORK_SAFE=1) for the
    listed instance types, NCCL_SOCKET_IFNAME from the network interface, NCCL_PROTO=simple; a
    value the job's Environment already sets is kept.
    """
    env: dict[str, str] = {}
    hyper = _json(config_dir / "hyperparameters.json")
    env[HYPERPARAMETERS] = json.dumps(hyper if isinstance(hyper, dict) else {}, sort_keys=True)
    resource = _json(config_dir / "resourceconfig.json")
    resource = resource if isinstance(resource, dict) else {}
    hosts = sorted(str(h) for h in resource.get("hosts") or ["algo-1"])
    current = str(resource.get("current_host", hosts[0]))
    rank = hosts.index(current) if current in hosts else 0
    env.update(NODE_RANK=str(rank), NNODES=str(len(hosts)), MASTER_ADDR=hosts[0], MASTER_PORT=MASTER_PORT)
    if nproc_per_node <= 0:  # one process per node: it is the rank
        env.update(RANK=str(rank), WORLD_SIZE=str(len(hosts)), LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
    instance = str(resource.get("current_instance_type", ""))
    network: dict[str, str] = {
        "NCCL_SOCKET_IFNAME": str(resource.get("network_interface_name") or "eth0"),
        "NCCL_PROTO": "simple",
    }
    if instance in EFA_NCCL_INSTANCES:
        network["FI_PROVIDER"] = "efa"
    if instance in EFA_RDMA_INSTANCES:
        network.update(FI_EFA_USE_DEVICE_RDMA="1", RDMAV_FORK_SAFE="1")
    if len(hosts) > 1 or nproc_per_node > 1:
        env.update({k: v for k, v in network.items() if k not in os.environ})
    return env, hosts, rank


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("--nproc-per-node", type=int, default=0)
    parser.add_argument("--install", default="shipped")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("multispot entry: no command", file=sys.stderr)
        return 2

    code = Path(args.code_dir)
    code.mkdir(parents=True, exist_ok=True)
    os.chdir(code)
    if (code / "requirements.txt").is_file():
        _pip("-r", str(code / "requirements.txt"))
    problem = install(args.install, code)
    if problem:
        print(f"multispot entry: {problem}", file=sys.stderr)
        return 2

    python = command[0] in PYTHON_NAMES
    nproc = args.nproc_per_node if python else 0  # torchrun launches Python; else one process per node
    extra, hosts, rank = service_env(Path(args.config_dir), nproc)
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH", "")) if p)
    if python:
        command[0] = sys.executable
    if nproc > 0:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nnodes={len(hosts)}",
            f"--node_rank={rank}",
            f"--nproc_per_node={nproc}",
            f"--master_addr={hosts[0]}",
            f"--master_port={MASTER_PORT}",
            *command[1:],
        ]

    if env.get("MULTISPOT_SECRETS"):  # secrets by reference: resolved here, inside the job, first
        command = [sys.executable, "-m", "multispot.runtime.secrets", "--exec", "--", *command]
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
