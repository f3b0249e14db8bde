"""CLI cold start: ``multispot --help`` and ``submit --dry-run`` vs ``python -c "import click"``.

Each command runs as a fresh subprocess (one warm-up, then N timed runs; the median counts), with
the same interpreter as the baselines. Goal: ``--help`` ≤ 2× the ``import click`` baseline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import common

QUICKSTART = common.REPO / "examples" / "quickstart" / "job.yaml"


def multispot_argv() -> list[str]:
    """The installed console script next to this interpreter (what a user runs)."""
    script = Path(sys.executable).parent / "multispot"
    if script.exists():
        return [str(script)]
    found = shutil.which("multispot")
    if found:
        return [found]
    return [sys.executable, "-c", "from multispot.cli import main; main()"]


def run_once(argv: list[str], env: dict[str, str]) -> float:
    seconds, proc = common.timed(
        lambda: subprocess.run(
            argv, env=env, cwd=common.REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    )
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return seconds


def import_breakdown(argv: list[str], env: dict[str, str], top: int = 8) -> tuple[float, list[tuple]]:
    """Total import time and the modules that cost the most themselves (``-X importtime``)."""
    proc = subprocess.run(
        argv, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, cwd=common.REPO, capture_output=True, text=True
    )
    rows: list[tuple[str, float, float]] = []
    total = 0.0
    for line in proc.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        name = fields[2][1:]
        self_ms, cumulative_ms = int(fields[0]) / 1000, int(fields[1]) / 1000
        if not name.startswith(" "):  # top level: what the program imported itself
            total += cumulative_ms
        rows.append((name.strip(), self_ms, cumulative_ms))
    return total, sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    common.banner("cli_startup", args.quick)
    common.print_machine()
    repeat = 5 if args.quick else 10
    home = common.bench_dir("cli")
    env = {**os.environ, "MULTISPOT_HOME": str(home)}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    ms = multispot_argv()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import click" (baseline)': [sys.executable, "-c", "import click"],
        "multispot --help": [*ms, "--help"],
        "multispot submit quickstart --dry-run -o json": [
            *ms,
            "submit",
            str(QUICKSTART),
            "--dry-run",
            "--output",
            "json",
        ],
    }
    try:
        times: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():
            run_once(argv, env)  # warm-up: page cache, .pyc files, the job store
        for _ in range(repeat):  # interleaved, so drift on a busy machine hits every command alike
            for name, argv in commands.items():
                times[name].append(run_once(argv, env))
        medians = {name: common.median(values) for name, values in times.items()}
        base = medians['python -c "import click" (baseline)']
        bare = medians["python -c pass"]

        common.heading(f"Cold start, median of {repeat} runs after 1 warm-up")
        common.table(
            ["command", "median ms", "min ms", "× import click", "× python -c pass"],
            [
                (
                    name,
                    medians[name] * 1000,
                    min(times[name]) * 1000,
                    medians[name] / base,
                    medians[name] / bare,
                )
                for name in commands
            ],
        )
        print()
        common.goal("multispot --help vs import click", medians["multispot --help"] / base, 2.0, at_most=True)
        dry = medians["multispot submit quickstart --dry-run -o json"]
        print(f"info: submit --dry-run is {dry / base:.2f}× import click, {dry / bare:.2f}× python -c pass")

        for name in ("multispot --help", "multispot submit quickstart --dry-run -o json"):
            total, heaviest = import_breakdown(commands[name], env)
            common.heading(
                f"`{name}`: {total:.0f} ms of imports (as -X importtime counts them); the heaviest modules"
            )
            common.table(["module", "self ms", "cumulative ms"], heaviest)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
