"""The preemption notice: one hook with the seconds left, from SIGTERM or a polled source."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from multispot.checkpoint import CheckpointStore
from multispot.runtime import EXIT_PREEMPTED, FileNoticeSource, PreemptionNotice


def wait_for(predicate: object, timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return bool(predicate())  # type: ignore[operator]


def test_fire_is_idempotent_and_hooks_get_the_budget() -> None:
    notice = PreemptionNotice(notice_seconds=120)
    calls: list[float] = []
    notice.on_preemption(calls.append)
    assert not notice.received
    assert notice.seconds_left() is None
    notice.fire()
    deadline = notice.deadline
    notice.fire(5)
    notice.fire()
    assert calls == [120]
    assert notice.deadline == deadline
    left = notice.seconds_left()
    assert left is not None and 119 < left <= 120


def test_fire_with_an_explicit_budget() -> None:
    notice = PreemptionNotice(notice_seconds=120)
    calls: list[float] = []
    notice.on_preemption(calls.append)
    notice.on_preemption(lambda left: calls.append(-left))
    notice.fire(7.5)
    assert calls == [7.5, -7.5]
    left = notice.seconds_left()
    assert left is not None and 7.0 < left <= 7.5


def test_a_hook_added_after_the_notice_runs_at_once() -> None:
    notice = PreemptionNotice(notice_seconds=30)
    notice.fire(10)
    calls: list[float] = []
    returned = notice.on_preemption(calls.append)
    assert returned == calls.append  # usable as a decorator
    assert len(calls) == 1 and 9 < calls[0] <= 10


def test_seconds_left_decreases_and_stops_at_zero() -> None:
    notice = PreemptionNotice(notice_seconds=30)
    notice.fire(0.3)
    first = notice.seconds_left()
    time.sleep(0.05)
    second = notice.seconds_left()
    assert first is not None and second is not None
    assert 0 < second < first <= 0.3
    time.sleep(0.3)
    assert notice.seconds_left() == 0.0


def test_concurrent_fires_call_each_hook_once() -> None:
    notice = PreemptionNotice(notice_seconds=30)
    calls: list[float] = []
    notice.on_preemption(calls.append)
    threads = [threading.Thread(target=notice.fire, args=(float(i),)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_file_notice_source_reads_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "notice.json"
    source = FileNoticeSource(path)
    assert source.poll() is None  # no file
    path.write_text("{not json")
    assert source.poll() is None
    path.write_text(json.dumps({"other": 1}))
    assert source.poll() is None
    path.write_text(json.dumps({"deadline": time.time() + 20}))
    left = source.poll()
    assert left is not None and 19 < left <= 20
    path.write_text(json.dumps({"deadline": time.time() - 5}))
    assert source.poll() == 0.0


def _install_off_main_thread(notice: PreemptionNotice, sources: list[FileNoticeSource]) -> None:
    # install() only touches SIGTERM from the main thread: keep pytest's handler alone
    t = threading.Thread(target=notice.install, args=(sources,))
    t.start()
    t.join()


def test_poller_fires_when_the_notice_file_appears(tmp_path: Path) -> None:
    path = tmp_path / "notice.json"
    notice = PreemptionNotice(notice_seconds=120)
    calls: list[float] = []
    notice.on_preemption(calls.append)
    _install_off_main_thread(notice, [FileNoticeSource(path, interval=0.05)])
    try:
        time.sleep(0.15)
        assert not notice.received
        path.write_text(json.dumps({"deadline": time.time() + 7}))
        assert wait_for(lambda: notice.received, timeout=1.0), "the notice did not fire within a second"
        assert len(calls) == 1 and 6 < calls[0] <= 7  # the file's budget, not the default 120
        left = notice.seconds_left()
        assert left is not None and 6 < left <= 7
    finally:
        notice.uninstall()


def test_uninstall_stops_the_poller(tmp_path: Path) -> None:
    path = tmp_path / "notice.json"
    notice = PreemptionNotice(notice_seconds=120)
    before = {t.ident for t in threading.enumerate()}
    _install_off_main_thread(notice, [FileNoticeSource(path, interval=0.05)])
    pollers = [t for t in threading.enumerate() if t.ident not in before and t.name == "multispot-notice"]
    assert len(pollers) == 1 and pollers[0].daemon
    notice.uninstall()
    pollers[0].join(timeout=1.0)
    assert not pollers[0].is_alive()
    path.write_text(json.dumps({"deadline": time.time() + 7}))
    time.sleep(0.15)
    assert not notice.received


SCRIPT = textwrap.dedent(
    """
    import signal, sys, time
    chained = []
    signal.signal(signal.SIGTERM, lambda signum, frame: chained.append(signum))

    from multispot.runtime import Checkpointer

    ckpt = Checkpointer()
    seen = []
    ckpt.on_preemption(seen.append)
    print("ready", flush=True)
    end = time.monotonic() + 20
    while not ckpt.preempted and time.monotonic() < end:
        time.sleep(0.01)
    left = ckpt.seconds_left()
    print("notice", ckpt.preempted, seen, left is not None and 0 < left <= 42, chained == [signal.SIGTERM],
          flush=True)
    if ckpt.should_save(5):
        with ckpt.save(5) as writer:
            writer.write_bytes("state.bin", b"saved on notice")
    ckpt.exit_preempted()
    """
)


def test_sigterm_reaches_the_job_and_it_exits_143(tmp_path: Path) -> None:
    uri = (tmp_path / "ckpt").as_uri()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MULTISPOT_", "TRAINING_JOB", "SM_", "AIP_"))
    }
    env.update(MULTISPOT_CHECKPOINT_URI=uri, MULTISPOT_NOTICE_SECONDS="42", MULTISPOT_PROVIDER="local")
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_PREEMPTED == 143, err
    assert "notice True [42.0] True True" in out, (out, err)
    restored = CheckpointStore(uri).restore()
    assert restored.step == 5
    assert restored.read_bytes("state.bin") == b"saved on notice"


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="POSIX signals")
def test_uninstall_restores_the_previous_handler() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    notice = PreemptionNotice(notice_seconds=3)
    try:
        notice.install()
        assert signal.getsignal(signal.SIGTERM) not in (previous, signal.SIG_DFL, signal.SIG_IGN)
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)  # what a real SIGTERM would run (a real one could kill pytest)
        assert notice.received
    finally:
        notice.uninstall()
    assert signal.getsignal(signal.SIGTERM) == previous
