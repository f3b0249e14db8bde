"""A real ``multispot server`` (uvicorn) on a loopback port, with users made by ``multispot admin``.

Used by tests/server and bench/server_api.py: the server is the CLI command a team runs, in its
own process with its own ``MULTISPOT_HOME``; clients are CLI subprocesses or HTTP requests with
``MULTISPOT_SERVER`` and a token.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MULTISPOT = str(Path(sys.executable).with_name("multispot"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(home: Path, *args: str, db: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MULTISPOT_HOME=str(home))
    env.pop("MULTISPOT_SERVER", None)
    where = ["--db", db] if db else []
    return subprocess.run(
        [MULTISPOT, "admin", *where, *args], capture_output=True, text=True, env=env, timeout=120, check=True
    )


def make_user(home: Path, name: str, team: str, is_admin: bool = False, db: str | None = None) -> str:
    """A user and a token for it (the token is the one line create-token prints on stdout)."""
    admin(home, "create-team", team, db=db)
    admin(home, "create-user", name, "--team", team, *(["--admin"] if is_admin else []), db=db)
    return admin(home, "create-token", name, "--label", "test", db=db).stdout.strip()


@dataclass
class Server:
    url: str
    home: Path
    log: Path
    process: subprocess.Popen[bytes]
    tokens: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, token: str | None = None, body: Any = None, data: bytes | None = None
    ) -> tuple[int, Any]:
        """(status, parsed JSON or text) of one request; errors are answers too."""
        if body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json" if body is not None else "application/gzip")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as answer:
                status, raw, kind = answer.status, answer.read(), answer.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            status, raw, kind = exc.code, exc.read(), exc.headers.get("content-type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode()

    def client_env(self, user: str, home: Path) -> dict[str, str]:
        """A client's environment: its own (empty) home, the server's URL and the user's token."""
        return dict(
            os.environ, MULTISPOT_HOME=str(home), MULTISPOT_SERVER=self.url, MULTISPOT_TOKEN=self.tokens[user]
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(
    home: Path, users: dict[str, tuple[str, bool]], ready_within: float = 120.0, db: str | None = None
) -> Server:
    """``multispot server`` on a free loopback port over the store at ``db`` (default: SQLite in
    ``home``); ``users``: name -> (team, admin). Returns once /health answers."""
    home.mkdir(parents=True, exist_ok=True)
    tokens = {name: make_user(home, name, team, is_admin, db) for name, (team, is_admin) in users.items()}
    port = free_port()
    log = home.parent / f"server-{port}.log"
    env = dict(os.environ, MULTISPOT_HOME=str(home))
    env.pop("MULTISPOT_SERVER", None)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [MULTISPOT, "server", "--host", "127.0.0.1", "--port", str(port), *(["--db", db] if db else [])],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
        )
    server = Server(f"http://127.0.0.1:{port}", home, log, process, tokens)
    deadline = time.monotonic() + ready_within
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if server.request("GET", "/api/v1/health")[0] == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the server did not answer within {ready_within}s: {log.read_text()[-2000:]}")
        time.sleep(0.2)
