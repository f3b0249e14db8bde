"""Helpers shared by the benchmarks: timing, tables, goals, the machine they ran on.

Every benchmark is a script (``python bench/NAME.py [--quick]``) that measures multispot against a
baseline in the same run and prints ratios. A benchmark reports; it never fails on a missed goal.
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def parse_args(description: str, setup: Callable[[argparse.ArgumentParser], None] | None = None) -> Any:
    """The flags every benchmark honours (``--quick``), plus the script's own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    if setup is not None:
        setup(parser)
    return parser.parse_args()


def median_time(fn: Callable[[], Any], repeat: int, warmup: int = 0) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` runs, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn)[0] for _ in range(repeat))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain-text table (also valid Markdown, so results paste into docs/performance.md)."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    right = [all(_numeric(row[i]) for row in rows) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)]
        return "| " + " | ".join(parts) + " |"

    print(line(cells[0]))
    print(
        "|"
        + "|".join(("-" * (w + 1) + ":") if r else "-" * (w + 2) for w, r in zip(widths, right, strict=True))
        + "|"
    )
    for row in cells[1:]:
        print(line(row))
    sys.stdout.flush()


def _numeric(value: Any) -> bool:
    """Numbers and ratios ("0.93×", "12%") align right; words align left."""
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and (
        value in ("baseline", "reference") or re.fullmatch(r"[-+]?[\d.,]+ ?[×%]?", value) is not None
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def goal(label: str, value: float, limit: float, *, at_most: bool, unit: str = "×") -> bool:
    """Print ``goal: LABEL VALUE <= LIMIT -> MET/NOT MET`` and return whether it was met."""
    met = value <= limit if at_most else value >= limit
    sign = "≤" if at_most else "≥"
    print(f"goal: {label}: {value:.3g}{unit} (want {sign} {limit:g}{unit}) -> {'MET' if met else 'NOT MET'}")
    sys.stdout.flush()
    return met


def heading(title: str) -> None:
    print(f"\n## {title}\n")
    sys.stdout.flush()


def bench_dir(prefix: str) -> Path:
    """A fresh directory under $BENCH_DIR (default: the system temp dir), removed at exit whatever
    happens (the benchmarks also remove it themselves as soon as they are done with it)."""
    base = os.environ.get("BENCH_DIR") or tempfile.gettempdir()
    Path(base).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"multispot-bench-{prefix}-", dir=base))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def drop_caches() -> bool:
    """Flush dirty pages and drop the page cache (needs root); False if that is not allowed here."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def drop_file_cache(root: Path) -> int:
    """Write back and drop the page cache of every file under ``root`` (``posix_fadvise``
    DONTNEED after an fsync): the next read of them is cold. Only these files: the rest of the
    machine's cache, which other people's work relies on, is left alone. Returns how many files."""
    count = 0
    for path in [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            count += 1
        finally:
            os.close(fd)
    return count


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process instead of handing it back to the kernel.

    On a VM that reclaims freed guest memory (free page reporting), every large allocation then
    faults in fresh pages from the hypervisor, at speeds that swing by 5x from one operation to the
    next (docs/performance.md). A benchmark that allocates the same buffers in its baseline and in
    multispot's operation (a torch.load's tensors, a read's chunks) measures that swing more than
    the I/O. With freed memory kept, the next allocation reuses pages already touched: the
    baseline gets faster too, so the ratios get stricter, not kinder. False where mallopt is
    missing (not glibc)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
    return all(
        mallopt(option, value) == 1
        for option, value in (
            (m_mmap_max, 0),  # every allocation from the heap, 1 GB buffers too (none mmapped alone)
            (m_trim_threshold, 2**31 - 1),  # and the heap is never trimmed back
            (m_top_pad, 256 * MB),
        )
    )


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def _mount_of(path: Path) -> tuple[str, str, str]:
    """(device, mount point, filesystem type) of ``path``, from /proc/mounts."""
    best = ("?", "/", "?")
    try:
        resolved = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[1]):
                best = (device, mount, fstype)
    except (OSError, ValueError):
        pass
    return best


def _disk_model(device: str) -> str:
    """Rotational or not, from sysfs, for a /dev/NAME block device (best effort)."""
    name = Path(device).name
    for candidate in (name, name.rstrip("0123456789").removesuffix("p")):
        flag = Path(f"/sys/block/{candidate}/queue/rotational")
        if flag.exists():
            return "reports rotational" if flag.read_text().strip() == "1" else "reports non-rotational"
    return "unknown medium"


def machine(disk_for: Path | None = None) -> dict[str, str]:
    """What the numbers came from: CPU, cores, RAM, the disk under the bench dir, versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    ram = _ram_gib()
    info = {
        "cpu": _cpu_model(),
        "cores": f"{usable} usable ({os.cpu_count()} online)",
        "ram": f"{ram:.1f} GiB" if ram else "?",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_version()} ({sys.executable})",
        "torch": package_version("torch") or "not installed",
        "multispot": package_version("multispot") or "?",
        "load": "load average {:.2f} {:.2f} {:.2f} (1, 5, 15 min) at start".format(*os.getloadavg()),
    }
    if disk_for is not None:
        device, mount, fstype = _mount_of(disk_for)
        usage = shutil.disk_usage(disk_for)
        info["disk"] = (
            f"{disk_for} on {device} ({fstype}, mounted at {mount}, {_disk_model(device)}), "
            f"{usage.free / 1024**3:.0f} GiB free of {usage.total / 1024**3:.0f} GiB"
        )
    return info


def print_machine(disk_for: Path | None = None) -> None:
    print("machine:")
    for key, value in machine(disk_for).items():
        print(f"  {key:10} {value}")
    busy, cores = _busy_now(), os.cpu_count() or 1
    if busy is not None:
        note = " (busy: expect noisy numbers)" if busy > 0.25 else ""
        print(f"  {'busy now':10} {busy * 100:.0f}% of {cores} cores over the last 0.5 s{note}")
    sys.stdout.flush()


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
        return out + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (all cores), from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _busy_now(seconds: float = 0.5) -> float | None:
    """Fraction of the machine's CPU busy over a short sample, before this benchmark starts."""
    before = _busy_seconds()
    time.sleep(seconds)
    after = _busy_seconds()
    if before is None or after is None:
        return None
    return (after - before) / seconds / (os.cpu_count() or 1)


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _report_others(busy0: float, own0: float, wall0: float) -> None:
    busy1 = _busy_seconds()
    if busy1 is None:
        return
    wall = time.monotonic() - wall0
    others = max(0.0, (busy1 - busy0) - (_own_seconds() - own0))
    cores = os.cpu_count() or 1
    print(
        f"\nbackground: other processes (and kernel threads, e.g. writeback) used {others:.1f} CPU-s during "
        f"this {wall:.0f} s run, {others / wall / cores * 100:.0f}% of {cores} cores"
    )
    sys.stdout.flush()


def banner(name: str, quick: bool) -> None:
    """Title line; at exit, how much CPU the rest of the machine used meanwhile (noise)."""
    mode = "quick" if quick else "full"
    print(f"# {name} ({mode} mode, multispot {git_revision()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')})")
    sys.stdout.flush()
    busy = _busy_seconds()
    if busy is not None:
        atexit.register(_report_others, busy, _own_seconds(), time.monotonic())


def checkpointer(
    directory: Path, *, keep: int = 3, every_steps: int | None = None, provider: str = "manual"
) -> Any:
    """A Checkpointer on ``directory`` that needs no job environment and never saves on its own.

    multispot is imported here, not at the top, so a benchmark can time things before it is loaded.
    """
    from multispot.runtime import Checkpointer, JobEnv

    uri = directory.as_uri()
    env = JobEnv(
        job_id="bench",
        attempt=1,
        provider=provider,
        checkpoint_uri=uri,
        output_uri=None,
        notice_seconds=120.0,
        checkpoint_keep=keep,
        checkpoint_every_steps=every_steps,
    )
    return Checkpointer(uri, env=env, interval=1e9, keep=keep)
