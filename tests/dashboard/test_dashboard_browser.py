"""The dashboard in a real browser: the OS's Chromium, driven by Playwright, against a real
`multispot server` on loopback with its own job store. Two teams submit jobs through the API (one
is preempted once and resumes from a checkpoint); each page must show what the API knows, show
nothing of the other team, and log no console error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers.net import free_port, wait_for_port

from multispot.server.auth import hash_token, new_token
from multispot.store import open_store

pytestmark = pytest.mark.slow

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright"
)


def chromium() -> str | None:
    """The OS's Chromium (`make test` installs it with apt-get); Playwright's own download is not
    reachable from these machines."""
    explicit = os.environ.get("MULTISPOT_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = chromium()
if CHROMIUM is None:
    pytest.skip(
        "no Chromium on this machine (apt-get install chromium, or `make chromium`; or set MULTISPOT_CHROMIUM)",
        allow_module_level=True,
    )

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}
PRICES = {"spot": 1.0, "on-demand": 3.0}


@dataclass
class Server:
    url: str
    tokens: dict[str, str]  # user → API token
    outputs: Path  # where the jobs write their outputs
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # job name → the API's answer

    def call(self, user: str, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}/api/v1{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.tokens[user]}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


def spec(name: str, out: Path, steps: int) -> dict[str, Any]:
    return {
        "name": name,
        "command": [
            "python",
            "-m",
            "multispot.testing.worker",
            "--steps",
            str(steps),
            "--step-seconds",
            "0.05",
        ],
        "output_uri": str(out / name),
        "spot": {"max_attempts": 4},
        "provider_options": {"local": {"time_scale": 0.02, "price_per_hour": PRICES}},
    }


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # Not pytest's tmp_path: pytest keeps only the newest few of its temporary folders, so another
    # pytest session on this machine could delete the store from under a running server.
    with tempfile.TemporaryDirectory(prefix="multispot-dashboard-") as name:
        yield from serve(Path(name))


def serve(tmp: Path) -> Iterator[Server]:
    db = f"sqlite:///{tmp / 'jobs.sqlite'}"
    env = {**os.environ, "MULTISPOT_HOME": str(tmp / "home"), "MULTISPOT_DB": db}
    env.pop("MULTISPOT_SERVER", None)
    env.pop("MULTISPOT_TOKEN", None)

    # teams, users and tokens as `multispot admin` makes them: only the hashes are stored
    os.environ["MULTISPOT_HOME"], saved_home = env["MULTISPOT_HOME"], os.environ.get("MULTISPOT_HOME")
    try:
        store = open_store(db)
        tokens = {}
        for user, team, admin in (("ada", "vision", False), ("bo", "nlp", False), ("root", "ops", True)):
            store.create_team(team)
            created = store.create_user(user, team, admin=admin)
            tokens[user] = new_token()
            store.add_token(created.id, hash_token(tokens[user]), "dashboard test")
        store.close()
    finally:
        if saved_home is None:
            os.environ.pop("MULTISPOT_HOME")
        else:
            os.environ["MULTISPOT_HOME"] = saved_home

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "multispot.cli", "server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "server.log", "wb"),  # noqa: SIM115 (the server's lifetime)
    )
    try:
        wait_for_port(port, lambda: proc.poll() is None, "multispot server", timeout=60)
        srv = Server(f"http://127.0.0.1:{port}", tokens, tmp / "out")
        submitted = [
            ("ada", "resumer", {"inject_preemptions": "at=1s"}, 40),
            ("ada", "steady", {}, 10),
            ("bo", "other-team", {}, 10),
        ]
        ids = {}
        for user, name, options, steps in submitted:
            answer = srv.call(
                user, "POST", "/jobs", {"spec": spec(name, srv.outputs, steps), "options": options}
            )
            ids[name] = (user, answer["id"])
        # each job is driven by the controller its submission started; wait for all to end
        deadline = time.monotonic() + 240
        for name, (user, job_id) in ids.items():
            while (job := srv.call(user, "GET", f"/jobs/{job_id}"))["state"] not in TERMINAL:
                assert time.monotonic() < deadline, f"{name} did not end: {job}"
                time.sleep(0.2)
            srv.jobs[name] = job
        assert all(job["state"] == "SUCCEEDED" for job in srv.jobs.values()), srv.jobs
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Browser:
    page: Any
    errors: list[str]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        # root (CI) needs --no-sandbox for Chromium
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def browser(playwright: Any) -> Iterator[Browser]:
    context = playwright.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    yield Browser(page, errors)
    context.close()


def sign_in(browser: Browser, server: Server, user: str) -> None:
    page = browser.page
    page.goto(f"{server.url}/")
    page.fill("#token", server.tokens[user])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("table#jobs")


def test_jobs_list_shows_the_teams_jobs_with_state_cost_and_savings(browser: Browser, server: Server) -> None:
    sign_in(browser, server, "ada")
    page = browser.page
    assert "ada · team vision" in page.inner_text("#who")
    for name in ("resumer", "steady"):
        job = server.jobs[name]
        row = page.locator("table#jobs tbody tr", has=page.locator(f'a[data-job="{job["id"]}"]'))
        cells = row.locator("td").all_inner_texts()
        assert cells[:4] == [job["id"], name, "SUCCEEDED", "local"], cells
        cost = server.call("ada", "GET", f"/jobs/{job['id']}/cost")
        assert cost["actual_usd"] > 0 and cost["savings_usd"] > 0
        assert cells[-2:] == [money(cost["actual_usd"]), money(cost["savings_usd"])]
    assert page.locator("table#jobs tbody tr").count() == 2
    # another team's job is not listed
    assert server.jobs["other-team"]["id"] not in page.inner_text("table#jobs")
    assert browser.errors == []


def test_job_page_draws_the_preemption_and_the_resume_step(browser: Browser, server: Server) -> None:
    job = server.jobs["resumer"]
    attempts = job["attempts"]
    assert [a["state"] for a in attempts] == ["PREEMPTED", "SUCCEEDED"], attempts
    step = attempts[1]["resumed_from_step"]
    assert isinstance(step, int) and step > 0
    sign_in(browser, server, "ada")
    page = browser.page
    page.click(f'a[data-job="{job["id"]}"]')
    timeline = page.wait_for_selector("svg#timeline")
    assert timeline is not None
    bars = page.locator("svg#timeline g.attempt")
    assert bars.count() == 2
    assert page.locator('svg#timeline g.attempt[data-attempt="1"] rect.bar.spot').count() == 1
    preemption = page.locator('svg#timeline g.preemption[data-attempt="1"]')
    assert preemption.count() == 1 and "preempted" in preemption.text_content()
    assert page.locator('svg#timeline g.preemption[data-attempt="2"]').count() == 0
    resume = page.locator('svg#timeline g.resume[data-attempt="2"]')
    assert resume.get_attribute("data-step") == str(step)
    assert f"resumed from step {step}" in resume.text_content()
    assert page.locator("svg#timeline g.resume").count() == 1  # attempt 1 started from scratch
    # the attempts table, checkpoints and the cost against on-demand
    assert page.locator("table#attempts tbody tr").count() == 2
    checkpoints = server.call("ada", "GET", f"/jobs/{job['id']}/checkpoints")["checkpoints"]
    rows = page.locator("table#checkpoints tbody tr")
    assert rows.count() == len(checkpoints) > 0
    assert rows.first.locator("td").first.inner_text() == str(checkpoints[0]["step"])
    cost = server.call("ada", "GET", f"/jobs/{job['id']}/cost")
    assert f"saved {money(cost['savings_usd'])}" in page.inner_text("#cost")
    assert money(cost["on_demand_usd"]) in page.locator("#cost svg").text_content()
    assert "preempted" in page.inner_text("table#events")
    assert browser.errors == []


def test_savings_by_team_provider_and_instance_type(browser: Browser, server: Server) -> None:
    sign_in(browser, server, "root")  # an admin sees every team
    page = browser.page
    assert page.locator("table#jobs tbody tr").count() == len(server.call("root", "GET", "/jobs")) == 3
    page.click("a[data-nav=savings]")
    for group, keys in (("team", {"vision", "nlp"}), ("provider", {"local"}), ("instance_type", {"local"})):
        page.select_option("#group-by", group)
        page.wait_for_selector(f"table#savings[data-group={group}]")
        expected = server.call("root", "GET", f"/savings?group_by={group}")
        assert {row["key"] for row in expected} == keys
        shown = page.locator("table#savings tbody tr")
        assert shown.count() == len(expected)
        for row in expected:
            cells = page.locator("table#savings tbody tr", has_text=str(row["key"])).locator("td")
            assert cells.all_inner_texts()[:5] == [
                str(row["key"]),
                str(row["jobs"]),
                money(row["cost"]),
                money(row["on_demand"]),
                money(row["saved"]),
            ]
        assert page.locator("svg#savings-chart rect[data-key]").count() == len(
            server.call("root", "GET", f"/savings/timeline?group_by={group}&bucket=day")
        )
    assert browser.errors == []


def test_a_wrong_token_is_refused_on_the_form(browser: Browser, server: Server) -> None:
    page = browser.page
    page.goto(f"{server.url}/")
    page.fill("#token", "not-a-token")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:has-text('refused')")
    assert page.locator("table#jobs").count() == 0
    # the browser reports the 401 answer itself; nothing else went wrong
    assert all("401" in error for error in browser.errors), browser.errors


def test_a_running_job_is_followed_until_it_ends(browser: Browser, server: Server) -> None:
    """The page refreshes a job that has not ended: its state and attempts appear without a reload.
    (Last in this module: it adds a job to the ones the tests above count.)"""
    body = {"spec": spec("live", server.outputs, 100)}
    job_id = server.call("bo", "POST", "/jobs", body)["id"]
    sign_in(browser, server, "bo")
    page = browser.page
    page.goto(f"{server.url}/#/job/{job_id}")
    first = page.wait_for_selector("h1 .state").get_attribute("data-state")
    assert first not in TERMINAL  # 100 steps of 0.05 s: it cannot have ended yet
    page.wait_for_selector("h1 .state[data-state=SUCCEEDED]", timeout=120_000)
    page.wait_for_selector('svg#timeline g.attempt[data-attempt="1"][data-state=SUCCEEDED]')
    assert server.call("bo", "GET", f"/jobs/{job_id}")["state"] == "SUCCEEDED"
    assert browser.errors == []


def money(value: float) -> str:
    """The dashboard's money format (app.js money())."""
    sign = "-$" if value < 0 else "$"
    value = abs(value)
    return f"{sign}{value:.4f}" if 0 < value < 1 else f"{sign}{value:.2f}"
