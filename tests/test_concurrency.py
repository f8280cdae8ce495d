"""Shared stages under concurrency: one build per key, the others wait on its lock and reuse it."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import HANG_S, ROOT, TINY, summary

from dih.store.lock import FileLock


@pytest.mark.slow
def test_processes_started_together_build_a_stage_once(tmp_path):
    args = [*TINY, "stage=teacher", "trainer.epochs=3", f"artifacts.root={tmp_path / 'artifacts'}"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), *args, f"hydra.run.dir={tmp_path / f'run{i}'}"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(3)
    ]
    outputs = [p.communicate(timeout=HANG_S)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    built = [
        s for s in (summary(tmp_path, f"run{i}")["stages"]["teacher"] for i in range(3)) if not s["reused"]
    ]
    assert len(built) == 1, "exactly one process trained the teacher"
    keys = {summary(tmp_path, f"run{i}")["stages"]["teacher"]["key"] for i in range(3)}
    assert len(keys) == 1
    assert sum("waiting for" in out for out in outputs) >= 1, "the others waited on the lock"


def test_lock_excludes_and_hands_over(tmp_path):
    path = tmp_path / "k.lock"
    order = []
    first = FileLock(path, poll_s=0.05)
    first.acquire()

    def second():
        with FileLock(path, poll_s=0.05):
            order.append("second")

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.3)
    order.append("first")  # the second cannot have entered yet
    first.release()
    t.join(HANG_S)  # returns as soon as the second has the lock
    assert order == ["first", "second"]
    assert not path.exists()


def test_lock_of_a_dead_process_on_this_host_is_broken(tmp_path):
    path = tmp_path / "k.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"token": "old", "host": socket.gethostname(), "pid": dead.pid}))
    start = time.time()
    with FileLock(path, poll_s=0.05, stale_s=3600):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert time.time() - start < 600, "broken at once, not after stale_s (however busy the machine)"


def test_lock_untouched_for_too_long_is_broken_but_a_fresh_one_is_not(tmp_path):
    path = tmp_path / "k.lock"
    path.write_text(json.dumps({"token": "remote", "host": "another-host", "pid": 1}))
    old = time.time() - 100
    os.utime(path, (old, old))
    with FileLock(path, poll_s=0.05, stale_s=10):  # untouched for 100 s > 10 s: its holder died
        pass

    path.write_text(json.dumps({"token": "remote", "host": "another-host", "pid": 1}))  # fresh: a live holder
    waiter = FileLock(path, poll_s=0.05, stale_s=10)
    t = threading.Thread(target=waiter.acquire, daemon=True)
    t.start()
    t.join(0.5)
    assert t.is_alive(), "a recently touched lock of another host is respected"
    path.unlink()  # the holder releases it
    t.join(HANG_S)
    assert not t.is_alive()
    waiter.release()


def test_heartbeat_keeps_a_long_holder_fresh(tmp_path):
    path = tmp_path / "k.lock"
    with FileLock(path, heartbeat_s=0.1):
        old = time.time() - 100
        os.utime(path, (old, old))
        deadline = time.time() + HANG_S  # every 0.1 s on an idle machine; a busy one may take longer
        while path.stat().st_mtime < old + 50 and time.time() < deadline:
            time.sleep(0.05)
        assert time.time() - path.stat().st_mtime < 60
