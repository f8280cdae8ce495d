"""The on-disk store of stage outputs, addressed by content keys.

A stage's key is a hash of exactly the settings that determine its output (its *identity*). Two runs
that need the same teacher share one artifact; a run that starts while another builds it waits on the
key's lock, then reuses it. An artifact is complete when its ``meta.json`` exists: that file is written
last, atomically, and records the SHA-256 of the payload, so a truncated or altered payload is caught
before it is ever loaded.

    <root>/<key>/payload.pt     the weights (and whatever the stage hands downstream)
    <root>/<key>/meta.json      key, identity, checksum, summary metrics
    <root>/<key>/metrics.jsonl  the stage's per-epoch metrics
    <root>/<key>/<file>         large files a stage writes itself (the cohort cache), checksummed too
    <root>/<key>/work/          checkpoints while it is being built (removed once complete)
"""

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from dih.errors import UserError
from dih.store import atomic
from dih.store.fs_errors import user_error
from dih.store.lock import FileLock

log = logging.getLogger(__name__)

PAYLOAD, META, METRICS, WORK = "payload.pt", "meta.json", "metrics.jsonl", "work"
FILES = "files"  # a build puts large outputs in work/files/; they move beside the payload on commit


def make_key(kind: str, identity: dict) -> str:
    """``<kind>-<16 hex digits>``: a hash of the identity's canonical JSON."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return f"{kind}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


@dataclass
class Artifact:
    """A complete, checksum-verified artifact."""

    key: str
    path: Path
    meta: dict

    @property
    def summary(self) -> dict:
        return self.meta.get("summary", {})

    def load(self, map_location: str | torch.device = "cpu") -> dict:
        """The payload; its checksum was verified when the artifact was found."""
        return torch.load(self.path / PAYLOAD, map_location=map_location, weights_only=True)


class ArtifactStore:
    """Content-addressed stage outputs under ``root``, shared by every run of a sweep."""

    def __init__(self, root: Path, on_corrupt: str = "rebuild"):
        if on_corrupt not in ("rebuild", "refuse"):
            raise UserError(f"artifacts.on_corrupt must be 'rebuild' or 'refuse', not '{on_corrupt}'.")
        self.root = Path(root).absolute()
        self.on_corrupt = on_corrupt

    def path(self, key: str) -> Path:
        return self.root / key

    def work_dir(self, key: str) -> Path:
        return self.path(key) / WORK

    def lock(self, key: str) -> FileLock:
        return FileLock(self.root / f"{key}.lock")

    def has(self, key: str) -> bool:
        """Whether a complete artifact is stored under ``key`` (without verifying its checksums)."""
        return (self.path(key) / META).exists()

    def find(self, key: str) -> Artifact | None:
        """The complete artifact under ``key``, or None; a corrupt one is set aside or refused."""
        directory = self.path(key)
        meta_path = directory / META
        try:
            if not meta_path.exists():
                return None
            problem = _check(directory, meta_path)
            if problem is None:
                return Artifact(key, directory, json.loads(meta_path.read_text()))
        except PermissionError as exc:  # another user's artifact, not a corrupt one: never set aside
            raise self._unreadable(exc, directory) from None
        if self.on_corrupt == "refuse":
            raise UserError(
                f"Artifact {key} at {directory} is corrupt ({problem}); delete that directory to rebuild it, "
                "or run with artifacts.on_corrupt=rebuild."
            )
        aside = directory.with_name(f"{key}.corrupt-{int(time.time())}")
        log.warning("artifact %s is corrupt (%s): moved to %s and rebuilding it", key, problem, aside.name)
        directory.rename(aside)
        return None

    def _unreadable(self, exc: PermissionError, directory: Path) -> UserError:
        return UserError(
            f"No permission to read {exc.filename or directory} in the artifact store {self.root} (another "
            f"user's file); ask its owner to make the store group-readable (chmod -R g+rX {self.root}, and "
            "umask 002 when writing to it), or point artifacts.root at a store of your own."
        )

    def get_or_build(
        self, key: str, identity: dict, build: Callable[[Path], tuple[dict, dict]]
    ) -> tuple[Artifact, bool]:
        """Return the artifact under ``key``, building it (once, under its lock) if absent.

        ``build(work_dir)`` trains the stage, checkpointing into ``work_dir`` so a killed build resumes,
        and returns ``(payload, summary)``; files it leaves in ``work_dir/files/`` become part of the
        artifact. The second value says whether this call built it.
        """
        found = self.find(key)
        if found is not None:
            return found, False
        with self._writing(), self.lock(key):
            found = self.find(key)  # another process may have built it while we waited
            if found is not None:
                return found, False
            work = self.work_dir(key)
            work.mkdir(parents=True, exist_ok=True)
            try:
                payload, summary = build(work)
            except BaseException:
                _remove_if_empty(work)
                raise
            return self._commit(key, identity, payload, summary, work), True

    @contextmanager
    def _writing(self):
        """File-system errors the user can fix (full, read-only, no permission, a file for the root) as
        one sentence naming the path and artifacts.root."""
        try:
            yield
        except OSError as exc:
            error = user_error(exc, {self.root: "artifacts.root"})
            if error is None:
                raise
            raise error from exc

    def _commit(self, key: str, identity: dict, payload: dict, summary: dict, work: Path) -> Artifact:
        directory = self.path(key)
        data = atomic.torch_save(directory / PAYLOAD, payload)
        if (work / METRICS).exists():
            atomic.write_bytes(directory / METRICS, (work / METRICS).read_bytes())
        files = {}
        for path in sorted((work / FILES).glob("*")):
            files[path.name] = _sha256(path)  # written and fsynced by the build; the rename is atomic
            path.rename(directory / path.name)
        meta = {
            "key": key,
            "kind": key.split("-")[0],
            "identity": identity,
            "sha256": hashlib.sha256(data).hexdigest(),
            "files": files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "summary": summary,
        }
        atomic.write_json(directory / META, meta)  # last: from here on the artifact exists
        shutil.rmtree(work, ignore_errors=True)
        return Artifact(key, directory, meta)


def _remove_if_empty(work: Path) -> None:
    """Remove a failed build's work directory (and its artifact directory) when it holds no file: nothing
    to resume from. One with a checkpoint stays, so the next run resumes."""
    if any(p.is_file() for p in work.rglob("*")):
        return
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.parent.rmdir()
    except OSError:
        pass  # not empty (or gone): leave it


def _check(directory: Path, meta_path: Path) -> str | None:
    """Why the artifact in ``directory`` cannot be trusted, or None when it can. A file this user may not
    read raises PermissionError: that says nothing about the artifact."""
    try:
        meta = json.loads(meta_path.read_text())
        expected = meta["sha256"]
    except PermissionError:
        raise
    except (json.JSONDecodeError, KeyError, OSError):
        return "unreadable meta.json"
    expected_files = {PAYLOAD: expected, **meta.get("files", {})}
    for name, digest in expected_files.items():
        path = directory / name
        if not path.exists():
            return f"{name} missing"
        if _sha256(path) != digest:
            return f"checksum mismatch in {name}"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()
