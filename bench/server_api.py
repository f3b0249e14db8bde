"""API latency of ``multispot server``: ``GET /jobs`` (list) and ``GET /jobs/{id}`` (status) under
concurrent clients, against ``GET /health`` (no store, no token) in the same run.

A real server (``multispot server``, uvicorn, one process) on loopback over a job store
(``--db``: a SQLite file, the default; ``postgres``: a throwaway PostgreSQL server made from the
OS's binaries, as the tests make it; or a ``postgresql://`` URL of an empty database) that holds
ended jobs of one team (written straight into the store before the server
starts, so no job runs during the measurement). Each client is a thread with its own keep-alive-less
``urllib`` requests, alternating list and status; p50/p95 per endpoint and the request rate.
Goal: status p95 ≤ 100 ms with 8 concurrent clients.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

import common

sys.path.insert(0, str(common.REPO / "tests"))
from helpers.multispot_server import Server, start
from helpers.postgres import PostgresServer, postgres_bin

from multispot.status import JobState
from multispot.store import JobRecord, new_job_id, open_store


def seed(url: str, home: Path, jobs: int) -> list[str]:
    """``jobs`` ended jobs of team-a, straight into the store (no job runs while we measure)."""
    store = open_store(url)
    ids = []
    for n in range(jobs):
        job_id = new_job_id(f"bench{n}")
        store.create_job(
            JobRecord(
                id=job_id,
                name=f"bench{n}",
                spec={"name": f"bench{n}", "command": "true"},
                provider="local",
                state=JobState.SUCCEEDED,
                checkpoint_uri=(home / "ckpt" / job_id).as_uri(),
                output_uri=(home / "out" / job_id).as_uri(),
                ended=time.time(),
                team="team-a",
                submitted_by="alice",
            )
        )
        ids.append(job_id)
    store.close()
    return ids


def get(server: Server, path: str, token: str | None) -> float:
    request = urllib.request.Request(server.url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as answer:
        answer.read()
    return time.perf_counter() - started


def run_clients(server: Server, clients: int, per_client: int, ids: list[str]) -> dict[str, list[float]]:
    token = server.tokens["alice"]
    seen: dict[str, list[float]] = {"list": [], "status": [], "health": []}
    lock = threading.Lock()

    def client(k: int) -> None:
        mine: dict[str, list[float]] = {"list": [], "status": [], "health": []}
        for i in range(per_client):
            mine["list"].append(get(server, "/api/v1/jobs?limit=20", token))
            mine["status"].append(get(server, f"/api/v1/jobs/{ids[(k + i) % len(ids)]}", token))
            mine["health"].append(get(server, "/api/v1/health", None))
        with lock:
            for key, values in mine.items():
                seen[key] += values

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default="sqlite",
        help="sqlite (a file, default) | postgres (a throwaway local server) | postgresql://… (empty database)",
    )


def store_url(choice: str, home: Path) -> tuple[str, PostgresServer | None]:
    """The store's URL, and the PostgreSQL server started for it (to stop afterwards)."""
    if choice == "sqlite":
        return f"sqlite:///{home / 'jobs.sqlite'}", None
    if choice != "postgres":
        return choice, None
    bindir = postgres_bin()
    if bindir is None:
        sys.exit("--db postgres: PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
    pg = PostgresServer(bindir)
    pg.start()
    return pg.new_database(), pg


def main() -> None:
    args = common.parse_args(__doc__ or "", options)
    jobs, per_client = (50, 5) if args.quick else (200, 20)
    levels = (1, 8) if args.quick else (1, 8, 32)
    common.print_machine()
    root = common.bench_dir("server")
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    url, pg = store_url(args.db, home)
    try:
        measure(url, home, jobs, per_client, levels, "PostgreSQL" if url.startswith("postgres") else "SQLite")
    finally:
        if pg is not None:
            pg.close()


def measure(url: str, home: Path, jobs: int, per_client: int, levels: tuple[int, ...], kind: str) -> None:
    ids = seed(url, home, jobs)
    server = start(home, {"alice": ("team-a", False)}, db=url)
    try:
        get(server, "/api/v1/jobs?limit=20", server.tokens["alice"])  # warm-up
        common.heading(
            f"multispot server on {kind}: {jobs} jobs in the store, {per_client} rounds per client"
        )
        rows = []
        status_p95_at_8 = None
        for clients in levels:
            started = time.perf_counter()
            seen = run_clients(server, clients, per_client, ids)
            elapsed = time.perf_counter() - started
            total = sum(len(v) for v in seen.values())
            for key in ("list", "status", "health"):
                p50, p95 = pct(seen[key], 50) * 1000, pct(seen[key], 95) * 1000
                rows.append([clients, key, f"{p50:.1f}", f"{p95:.1f}", f"{total / elapsed:.0f}"])
            if clients == 8:
                status_p95_at_8 = pct(seen["status"], 95) * 1000
        common.table(("clients", "endpoint", "p50 ms", "p95 ms", "requests/s (all)"), rows)
        if status_p95_at_8 is not None:
            common.goal("GET /jobs/{id} p95 with 8 clients", status_p95_at_8, 100, at_most=True, unit=" ms")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
