"""A lock file that works across processes and hosts on a shared (network) file system.

Acquired by creating the file with O_CREAT | O_EXCL, atomic on local disks and NFSv3+. The holder
touches it every ``heartbeat_s`` seconds; a lock is stale when its holder is a dead process on this
host, or when it has not been touched for ``stale_s`` seconds (a holder on another host that died).
"""

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)


class FileLock:
    """An exclusive lock on ``path`` with heartbeat and a rule for dead holders."""

    def __init__(self, path: Path, heartbeat_s: float = 20.0, stale_s: float = 180.0, poll_s: float = 1.0):
        self.path = Path(path)
        self.heartbeat_s, self.stale_s, self.poll_s = heartbeat_s, stale_s, poll_s
        self._token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Block until the lock is ours; says once, in the log, whom it waits for."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        told = False
        while not self._try_create():
            holder = self._read()
            if self._is_stale(holder):
                self._break(holder)
                continue
            if not told:
                log.info("waiting for %s, held by %s", self.path.name, (holder or {}).get("token", "?"))
                told = True
            time.sleep(self.poll_s)
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        holder = self._read()
        if holder is not None and holder.get("token") == self._token:
            self.path.unlink(missing_ok=True)

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        info = {"token": self._token, "host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None  # gone, or its creator is between create and write

    def _is_stale(self, holder: dict | None) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        if holder is None:
            return age > self.stale_s  # an empty lock file whose writer died at once
        if holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid", -1)):
            return True
        return age > self.stale_s

    def _break(self, holder: dict | None) -> None:
        # Rename, then check that what we moved is the lock we judged stale: if another waiter broke
        # it first and a live holder took it meanwhile, put that one back.
        moved = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return
        try:
            taken = json.loads(moved.read_text())
        except (OSError, json.JSONDecodeError):
            taken = None
        if holder is not None and taken is not None and taken.get("token") != holder.get("token"):
            try:
                os.link(moved, self.path)  # fails if someone holds it again; then theirs stands
            except FileExistsError:
                pass
        else:
            log.warning("broke a stale lock %s held by %s", self.path.name, (holder or {}).get("token", "?"))
        moved.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                log.warning("lock %s vanished while held", self.path)
                return


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
