"""Issue 19's "Checked by", end to end: a team's deployment as docs/team.md sets it up, on a real
PostgreSQL, with faults.

The server (``multispot server``) and three controller replicas (``multispot controller
--replicas 3``) run with ``MULTISPOT_DB`` set; the team, user and token come from ``multispot
admin``; a person submits short local jobs (some with an injected preemption) through the CLI with
``MULTISPOT_SERVER`` / ``MULTISPOT_TOKEN``. Then a replica, the server or Postgres goes away
mid-run. Each job's command waits for a gate file after its work, so the jobs are running when
that happens on any machine; every wait is for a state, bounded only to end a hung test. The
seconds printed (takeover, jobs/min) are for docs/performance.md; nothing is asserted on them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.postgres import PostgresServer
from helpers.service import wait_for
from helpers.team import Team, check_each_job, chromium, replica_pids

from multispot.controller import STALE_AFTER
from multispot.status import JobState
from multispot.store import Store

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc"),
]

JOBS = 12
LOAD_JOBS = 60
PREEMPTED_EVERY = 3  # every third job gets `--inject-preemptions at=1s`


@pytest.fixture
def team(tmp_path: Path, postgres_url: str) -> Iterator[Team]:
    """docs/team.md on loopback: user bob of team vision, the server, 3 controller replicas."""
    # the URL as deploy/compose.yaml spells it (docs/team.md: both spellings are the same)
    deployed = Team(tmp_path, postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    deployed.make_user("bob", "vision")
    # The replicas start up while the server does (start_server waits for its /health): neither
    # needs the other, and docs/team.md starts them as separate services.
    deployed.start_controllers(3)
    deployed.start_server()
    store = deployed.store()
    try:
        wait_for("3 live controller replicas", lambda: len(store.workers(STALE_AFTER)) == 3)
    finally:
        store.close()
    try:
        yield deployed
    finally:
        deployed.gate.touch()  # a test that failed mid-run leaves no job waiting for its gate
        deployed.stop()


@pytest.fixture
def store(team: Team) -> Iterator[Store]:
    opened = team.store()
    yield opened
    opened.close()


def submit_jobs(team: Team) -> tuple[list[str], set[str]]:
    job_ids: list[str] = []
    preempted: set[str] = set()
    for n in range(JOBS):
        inject = n % PREEMPTED_EVERY == 0
        job_id = team.submit(f"team-{n}", steps=15 if inject else 5, preempt="at=1s" if inject else None)
        job_ids.append(job_id)
        if inject:
            preempted.add(job_id)
    return job_ids, preempted


def all_in(store: Store, job_ids: list[str], *states: JobState) -> bool:
    return all(store.get_job(j).state in states for j in job_ids)


def preemptions_seen(store: Store, preempted: set[str]) -> bool:
    """Each job with an injected preemption has had it (its first attempt ended PREEMPTED)."""
    return all((a := store.attempts(j)) and a[0].state is JobState.PREEMPTED for j in preempted)


def finish(team: Team, store: Store, job_ids: list[str], preempted: set[str]) -> None:
    """Once every injected preemption happened and every job runs again, open the gate; wait for
    the end."""
    wait_for("every injected preemption", lambda: preemptions_seen(store, preempted), every=0.2)
    wait_for("every job running", lambda: all_in(store, job_ids, JobState.RUNNING), every=0.2)
    team.gate.touch()
    wait_for("every job to end", lambda: all(store.get_job(j).state.job_terminal for j in job_ids), every=0.2)


def listed(team: Team) -> dict[str, str]:
    """id -> state of the jobs ``multispot list -o json`` shows through the server."""
    rows = json.loads(team.cli("list", "-n", "100", "-o", "json").stdout)
    return {row["id"]: row["state"] for row in rows}


def test_the_walkthrough_with_a_replica_killed_mid_run(team: Team, store: Store) -> None:
    started = time.monotonic()
    job_ids, preempted = submit_jobs(team)
    wait_for("every job leased and running", lambda: all_in(store, job_ids, JobState.RUNNING), every=0.2)

    # kill -9 a replica that holds a job (the gate keeps them all running)
    victim, held = kill_a_replica_holding_a_job(team, store, job_ids)
    takeover = wait_for(
        "the killed replica's jobs to be taken over", lambda: taken_over(store, victim, held), every=0.2
    )
    finish(team, store, job_ids, preempted)
    seconds = time.monotonic() - started

    kinds = check_each_job(team, store, job_ids, preempted)
    assert kinds["preempted"] >= len(preempted)
    assert "restarting" in team.log("controller"), "the supervisor replaced the killed replica"
    # what the person sees through the server
    assert listed(team) == dict.fromkeys(job_ids, "SUCCEEDED")
    for job_id in preempted:
        status = json.loads(team.cli("status", job_id, "-o", "json").stdout)
        assert status["state"] == "SUCCEEDED"
        assert status["attempts"][0]["state"] == "PREEMPTED"
    # `multispot login` instead of the variables: the same answer; after logout, the local store
    laptop = team.root / "laptop"
    laptop.mkdir()
    team.cli("login", team.url, "--token", team.token, home=laptop)
    rows = json.loads(team.cli("list", "-n", "100", "-o", "json", home=laptop).stdout)
    assert {row["id"]: row["state"] for row in rows} == dict.fromkeys(job_ids, "SUCCEEDED")
    team.cli("logout", home=laptop)
    assert json.loads(team.cli("list", "-o", "json", home=laptop).stdout) == []
    check_dashboard_lists(team, job_ids)
    print(
        f"\nteam e2e (Postgres, server, 3 replicas): {JOBS} jobs in {seconds:.1f}s "
        f"({JOBS / seconds * 60:.0f} jobs/min, gated); replica kill -9 -> its {len(held)} jobs taken over "
        f"in {takeover:.1f}s (stale window {STALE_AFTER:g}s)"
    )


def kill_a_replica_holding_a_job(team: Team, store: Store, job_ids: list[str]) -> tuple[str, list[str]]:
    """``kill -9`` a replica that holds one of the jobs: (its worker id, the jobs it held)."""
    workers = {w.id: w.pid for w in store.workers(STALE_AFTER)}
    victim = next(o for j in job_ids if (o := store.get_job(j).owner) in workers)
    assert workers[victim] in replica_pids(team)
    held = [j for j in job_ids if store.get_job(j).owner == victim]
    os.kill(workers[victim], signal.SIGKILL)
    return victim, held


def taken_over(store: Store, victim: str, held: list[str]) -> bool:
    return all(store.get_job(j).owner not in (None, victim) for j in held)


def test_a_replica_and_then_the_server_killed_mid_run(team: Team, store: Store) -> None:
    job_ids, preempted = submit_jobs(team)
    wait_for("every job running", lambda: all_in(store, job_ids, JobState.RUNNING), every=0.2)
    victim, held = kill_a_replica_holding_a_job(team, store, job_ids)
    wait_for("the killed replica's jobs to be taken over", lambda: taken_over(store, victim, held), every=0.2)
    team.kill_server()

    # a clear error while it is down, not a traceback
    down = team.cli("list", check=False)
    assert down.returncode != 0
    said = down.stdout + down.stderr
    assert "Traceback" not in said, said
    assert team.url in said or "server" in said.lower(), said
    print(f"\nmultispot list while the server is down (rc {down.returncode}): {said.strip()}")

    # the controllers drive the jobs without it
    finish(team, store, job_ids, preempted)
    check_each_job(team, store, job_ids, preempted)

    team.start_server()
    assert listed(team) == dict.fromkeys(job_ids, "SUCCEEDED")
    for job_id in job_ids:
        assert json.loads(team.cli("status", job_id, "-o", "json").stdout)["state"] == "SUCCEEDED"


def test_postgres_restarted_mid_run(team: Team, store: Store, postgres_server: PostgresServer) -> None:
    job_ids, preempted = submit_jobs(team)
    wait_for("every job running", lambda: all_in(store, job_ids, JobState.RUNNING), every=0.2)
    postgres_server.stop()  # `fast`: every session is ended, as a database failover would
    try:
        down = team.cli("list", check=False)
    finally:
        postgres_server.start()
    said = down.stdout + down.stderr
    assert down.returncode != 0 and "Traceback" not in said, said
    # the server answers (503) and says what is wrong, rather than the client timing out
    assert "cannot reach the multispot server" not in said and "job store" in said, said
    print(f"\nmultispot list while Postgres is down (rc {down.returncode}): {said.strip()}")

    finish(team, store, job_ids, preempted)
    check_each_job(team, store, job_ids, preempted)
    assert team.server is not None and team.server.poll() is None, team.log("server")
    assert listed(team) == dict.fromkeys(job_ids, "SUCCEEDED")


def test_a_paused_replica_is_taken_over_after_the_stale_window(team: Team, store: Store) -> None:
    """A replica that stops answering without dying (as one on another host looks when its node
    hangs): its jobs are taken over after the default stale window, and when it wakes it is
    fenced, not a second driver."""
    job_ids, preempted = submit_jobs(team)
    wait_for("every job running", lambda: all_in(store, job_ids, JobState.RUNNING), every=0.2)
    workers = {w.id: w.pid for w in store.workers(STALE_AFTER)}
    victim = next(o for j in job_ids if (o := store.get_job(j).owner) in workers)
    held = [j for j in job_ids if store.get_job(j).owner == victim]
    os.kill(workers[victim], signal.SIGSTOP)
    try:
        takeover = wait_for(
            "the paused replica's jobs to be taken over", lambda: taken_over(store, victim, held)
        )
    finally:
        os.kill(workers[victim], signal.SIGCONT)
    finish(team, store, job_ids, preempted)
    kinds = check_each_job(team, store, job_ids, preempted)
    assert kinds["fenced"] >= 1, f"the woken replica was not fenced: {team.log('controller')}"
    print(
        f"\nteam deployment: a replica paused (SIGSTOP) -> its {len(held)} jobs taken over after "
        f"{takeover:.1f}s (stale window {STALE_AFTER:g}s)"
    )


def test_jobs_per_minute_with_the_server_in_the_path(team: Team, store: Store) -> None:
    team.gate.touch()  # nothing to wait for: the jobs run straight through
    started = time.monotonic()
    job_ids = [team.post_job(f"load-{n}") for n in range(LOAD_JOBS)]
    submitted = time.monotonic() - started
    wait_for("every job to end", lambda: all(store.get_job(j).state.job_terminal for j in job_ids), every=0.5)
    seconds = time.monotonic() - started
    kinds = check_each_job(team, store, job_ids, preempted=set())
    assert kinds["submitted"] == LOAD_JOBS
    print(
        f"\nteam load (Postgres, server, 3 replicas x 16): {LOAD_JOBS} jobs POSTed in {submitted:.1f}s, "
        f"all ended after {seconds:.1f}s: {LOAD_JOBS / seconds * 60:.0f} jobs/min"
    )


def check_dashboard_lists(team: Team, job_ids: list[str]) -> None:
    """The dashboard's jobs page, in the OS's Chromium, lists every job as SUCCEEDED."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium, or `make chromium`)")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(team.url + "/")
            page.fill("#token", team.token)
            page.click("#login-form button[type=submit]")
            page.wait_for_selector("table#jobs")
            for job_id in job_ids:
                row = page.locator("table#jobs tbody tr", has=page.locator(f'a[data-job="{job_id}"]'))
                assert row.locator("td").all_inner_texts()[2] == "SUCCEEDED", job_id
            assert page.locator("table#jobs tbody tr").count() == len(job_ids)
        finally:
            browser.close()
    assert errors == []
