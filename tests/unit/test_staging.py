"""Staging a source_dir reads nothing outside it, cannot loop or recurse into itself, is bounded,
and fails for good; a lost local supervisor is lost capacity and its processes end (issue 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multispot.errors import ValidationFailed
from multispot.job import Job
from multispot.local import provider as local_provider
from multispot.local.provider import LocalProvider, stage_tree
from multispot.local.supervisor import marker, read_json, write_json_atomic
from multispot.provider import LaunchContext
from multispot.status import Handle, JobState


@pytest.fixture()
def src(tmp_path: Path) -> Path:
    code = tmp_path / "src"
    (code / "pkg").mkdir(parents=True)
    (code / "train.py").write_text("print('hi')\n")
    (code / "pkg" / "m.py").write_text("x = 1\n")
    return code


def test_inside_links_are_copied_as_links(src: Path, tmp_path: Path) -> None:
    os.symlink("pkg/m.py", src / "alias.py")
    os.symlink("pkg", src / "pkg2")
    stage_tree(src, tmp_path / "out")
    assert os.readlink(tmp_path / "out" / "alias.py") == "pkg/m.py"
    assert os.readlink(tmp_path / "out" / "pkg2") == "pkg"
    assert (tmp_path / "out" / "pkg" / "m.py").read_text() == "x = 1\n"


@pytest.mark.parametrize("kind", ["outside-file", "outside-dir", "dangling", "loop"])
def test_links_that_leave_dangle_or_loop_are_refused_by_name(src: Path, tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    if kind == "outside-file":
        os.symlink(secret, src / "leak")
    elif kind == "outside-dir":
        os.symlink(tmp_path, src / "leak")
    elif kind == "dangling":
        os.symlink(tmp_path / "nothing", src / "leak")
    else:
        os.symlink("leak2", src / "leak")
        os.symlink("leak", src / "leak2")
    with pytest.raises(ValueError, match="leak"):
        stage_tree(src, tmp_path / "out")
    copied = [p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file() and not p.is_symlink()]
    assert b"s3cr3t" not in copied


def test_home_inside_source_is_not_copied_into_itself(src: Path, tmp_path: Path) -> None:
    home = src / ".multispot-home"
    (home / "local" / "j").mkdir(parents=True)
    (home / "jobs.sqlite").write_text("x")
    stage_tree(src, home / "local" / "j" / "code", skip=(home,))
    staged = home / "local" / "j" / "code"
    assert (staged / "train.py").exists()
    assert not (staged / ".multispot-home").exists()


def test_size_cap_is_a_clear_error(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_provider, "STAGE_MAX_BYTES", 10)
    with pytest.raises(ValueError, match="MiB"):
        stage_tree(src, tmp_path / "out")


def test_fifos_are_skipped_not_read(src: Path, tmp_path: Path) -> None:
    os.mkfifo(src / "pipe")
    stage_tree(src, tmp_path / "out")  # would block forever if the FIFO were opened
    assert not (tmp_path / "out" / "pipe").exists()


@pytest.mark.parametrize("where", ["/", "home"])
def test_root_and_home_are_refused_at_staging_too(tmp_path: Path, where: str) -> None:
    source = Path("/") if where == "/" else Path.home()
    with pytest.raises(ValueError):
        stage_tree(source, tmp_path / "out")


def test_a_staging_failure_is_final_and_names_source_dir(
    src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    job = Job.validate_data({"name": "s", "command": ["python", "train.py"], "source_dir": str(src)})
    os.symlink(tmp_path, src / "leak")  # after submit, before the attempt starts
    ctx = LaunchContext(job_id="s-1", attempt=1, checkpoint_uri="file:///tmp/c", output_uri="file:///tmp/o")
    provider = LocalProvider(tmp_path / "root")
    with pytest.raises(ValidationFailed) as info:
        provider.submit(job, provider.placements(job)[0], ctx)
    assert info.value.problems[0].path == "source_dir"
    assert not (tmp_path / "root" / "s-1" / "code").exists()


def test_a_lost_supervisor_is_lost_capacity_and_its_processes_end(tmp_path: Path) -> None:
    directory = tmp_path / "attempt-1"
    directory.mkdir()
    env = dict(os.environ, MULTISPOT_NOTICE_FILE=str(directory / "notice.json"))
    # a node (group leader) and a child of it that escaped into a session of its own
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
        "time.sleep(300)\n"
    )
    node = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        escaped = _wait_for_marked_children(directory, node.pid)
        write_json_atomic(
            directory / "state.json",
            {"state": "RUNNING", "submitted": time.time(), "started": time.time(), "pids": [node.pid]},
        )
        status = LocalProvider(tmp_path).status(Handle("local", "j/attempt-1", {"dir": str(directory)}))
        assert status.state is JobState.PREEMPTED
        assert "capacity is lost" in status.message
        assert node.wait(timeout=60) == -signal.SIGKILL
        for pid in escaped:
            _wait_gone(pid)
        assert (read_json(directory / "state.json") or {})["state"] == "PREEMPTED"
    finally:
        if node.poll() is None:
            node.kill()


def _marked(directory: Path) -> list[int]:
    mark = marker(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _wait_for_marked_children(directory: Path, leader: int) -> list[int]:
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc")
    for _ in range(600):  # until the child exists: an event, not a time window
        others = [pid for pid in _marked(directory) if pid != leader]
        if others:
            return others
        time.sleep(0.05)
    raise AssertionError("the escaped child never started")


def _wait_gone(pid: int) -> None:
    for _ in range(1200):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rpartition(")")[2].split()[:1] == ["Z"]:
            return  # killed; waiting for its parent (init) to reap it
        time.sleep(0.05)
    raise AssertionError(f"process {pid} outlived its attempt")
