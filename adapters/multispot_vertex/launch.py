"""Start the job's command inside a Vertex container: one process per GPU, nodes joined by torchrun.

    python3 -m multispot_vertex.launch --nproc-per-node N -- COMMAND...

Standard library only (it runs before anything but multispot is known to be there). Vertex
describes the cluster in ``CLUSTER_SPEC`` (``cluster``: each worker pool's replicas as
``host:port``; ``task``: this replica's pool and index) and sets ``MASTER_ADDR``/``MASTER_PORT``
for PyTorch. Pool 0 is the primary replica, pool 1 the other nodes (pools 2 and 3, the reduction
server and the evaluator, are not training nodes). A Python command then runs as
``python -m torch.distributed.run --nnodes --node_rank --nproc_per_node --master_addr
--master_port``, as SageMaker's and Azure ML's launchers do; any other command runs once per node
with RANK/WORLD_SIZE of the node. SIGTERM and SIGINT are forwarded; the exit code is the child's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

TRAINING_POOLS = ("workerpool0", "workerpool1")
DEFAULT_PORT = "29500"
PYTHON_NAMES = ("python", "python3")


@dataclass(frozen=True)
class Cluster:
    nnodes: int
    node_rank: int
    master_addr: str
    master_port: str


def cluster(environ: Mapping[str, str]) -> Cluster:
    """This node's place in the job, from CLUSTER_SPEC (one node when there is none)."""
    try:
        spec = json.loads(environ.get("CLUSTER_SPEC") or "{}")
    except json.JSONDecodeError:
        spec = {}
    pools = spec.get("cluster") if isinstance(spec, dict) else None
    pools = pools if isinstance(pools, dict) else {}
    hosts = [str(h) for pool in TRAINING_POOLS for h in (pools.get(pool) or [])]
    task = spec.get("task") if isinstance(spec, dict) else None
    task = task if isinstance(task, dict) else {}
    kind, index = task.get("type"), task.get("index", 0)
    rank = 0
    if kind in TRAINING_POOLS and isinstance(index, int):
        rank = sum(len(pools.get(p) or []) for p in TRAINING_POOLS[: TRAINING_POOLS.index(kind)]) + index
    primary = hosts[0] if hosts else "127.0.0.1"
    host, _, port = primary.rpartition(":") if ":" in primary else (primary, "", "")
    return Cluster(
        nnodes=max(1, len(hosts)),
        node_rank=rank,
        master_addr=environ.get("MASTER_ADDR") or host,
        master_port=environ.get("MASTER_PORT") or port or DEFAULT_PORT,
    )


def plan(
    environ: Mapping[str, str], nproc_per_node: int, command: list[str]
) -> tuple[list[str], dict[str, str]]:
    """(argv, variables to add) for this node."""
    where = cluster(environ)
    if command[0] in PYTHON_NAMES:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nnodes={where.nnodes}",
            f"--node_rank={where.node_rank}",
            f"--nproc_per_node={nproc_per_node}",
            f"--master_addr={where.master_addr}",
            f"--master_port={where.master_port}",
            *command[1:],
        ], {}
    return command, {
        "RANK": str(where.node_rank),
        "WORLD_SIZE": str(where.nnodes),
        "MASTER_ADDR": where.master_addr,
        "MASTER_PORT": where.master_port,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multispot_vertex.launch")
    parser.add_argument("--nproc-per-node", type=int, default=1)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("multispot_vertex.launch: no command", file=sys.stderr)
        return 2
    launch, extra = plan(os.environ, max(1, args.nproc_per_node), command)
    child = subprocess.Popen(launch, env={**os.environ, **extra})

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    return 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + N


if __name__ == "__main__":
    sys.exit(main())
