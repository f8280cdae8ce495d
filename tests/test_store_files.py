"""The store and the run directory on real file systems: files honour the umask (a group can share a
store), another user's unreadable artifact is a permission sentence and never "corrupt", a full disk, a
read-only file system, no permission or a file in the way is one sentence naming the path and the setting
that moves it, the cohort cache reserves its space before it is memory-mapped (no SIGBUS), a failed build
leaves no empty work directory, and a relative artifacts.root is where run.py was started.

Other users are played by root taking the uid of ``nobody`` for a moment (seteuid); tiny file systems are
tmpfs mounts. Where this process cannot do either, those tests skip and say why."""

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, run_cli

from dih.cli import check_command_line
from dih.errors import UserError
from dih.store import atomic
from dih.store.artifacts import ArtifactStore
from dih.store.fs_errors import human_bytes
from dih.teacher_side.cohort_cache import build

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="playing another user and mounting need root")


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@contextlib.contextmanager
def as_nobody(*, in_group: int | None = None):
    """This process as user nobody (and a member of group ``in_group`` if given) until the block ends."""
    nobody = pwd.getpwnam("nobody")
    groups = os.getgroups()
    os.setgroups([nobody.pw_gid] + ([in_group] if in_group is not None else []))
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


@pytest.fixture
def shared_dir():
    """A directory every user may enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="dih-shared-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tiny_fs():
    """``tiny_fs(size, ro=False)``: a tmpfs of ``size`` bytes mounted on a fresh directory."""
    mounted = []

    def mount(size: int, *, ro: bool = False) -> Path:
        path = Path(tempfile.mkdtemp(prefix="dih-fs-"))
        options = f"size={size}" + (",ro" if ro else "")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
        )
        if proc.returncode != 0:
            path.rmdir()
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)
        path.rmdir()


def fill(directory: Path) -> None:
    """Take every free byte of ``directory``'s file system, as another job writing there would."""
    with open(directory / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)


def build_small(work: Path) -> tuple[dict, dict]:
    """A stage build that leaves metrics and a file, like the real ones."""
    (work / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (work / "files").mkdir()
    (work / "files" / "extra.bin").write_bytes(b"x" * 10)
    return {"w": torch.arange(4.0)}, {"test/acc": 0.5}


# ----- 1. a store shared by a group --------------------------------------------------------------


@pytest.mark.parametrize(("mask", "mode"), [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, mask, mode):
    with umask(mask):
        atomic.write_json(tmp_path / "summary.json", {"a": 1})
        artifact, _ = ArtifactStore(tmp_path / "store").get_or_build("teacher-x", {}, build_small)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == mode
    for name in ("payload.pt", "meta.json", "metrics.jsonl"):
        assert (artifact.path / name).stat().st_mode & 0o777 == mode, name


@needs_root
def test_a_group_shares_the_store(shared_dir):
    with umask(0o002):
        store = ArtifactStore(shared_dir / "store")
        store.get_or_build("teacher-x", {"a": 1}, build_small)
    with as_nobody(in_group=os.getgid()):
        found = ArtifactStore(shared_dir / "store").find("teacher-x")
    assert found is not None and found.summary == {"test/acc": 0.5}
    assert not list((shared_dir / "store").glob("*.corrupt-*"))


@pytest.mark.parametrize("on_corrupt", ["rebuild", "refuse"])
@pytest.mark.parametrize("unreadable", ["meta.json", "payload.pt"])
def test_another_users_unreadable_artifact_is_a_permission_sentence_not_corrupt(
    shared_dir, on_corrupt, unreadable
):
    store = ArtifactStore(shared_dir / "store", on_corrupt=on_corrupt)
    with umask(0o022):
        artifact, _ = store.get_or_build("teacher-x", {}, build_small)
    (artifact.path / unreadable).chmod(0o600 if IS_ROOT else 0o000)  # root reads anything: read as nobody
    with as_nobody() if IS_ROOT else contextlib.nullcontext(), pytest.raises(UserError) as caught:
        ArtifactStore(shared_dir / "store", on_corrupt=on_corrupt).find("teacher-x")
    message = str(caught.value)
    assert f"No permission to read {artifact.path / unreadable}" in message
    assert "chmod -R g+rX" in message and "artifacts.root" in message and "corrupt" not in message
    assert artifact.path.is_dir() and not list((shared_dir / "store").glob("*.corrupt-*")), "never set aside"


# ----- 2. the cohort cache on a disk that fills ----------------------------------------------------


def small_side():
    from dih.models import LinearHeads, build_model
    from dih.teacher_side.side import TeacherSide

    torch.manual_seed(0)
    teacher = build_model("res8", 5)
    teacher.eval()
    return TeacherSide(teacher, LinearHeads.for_model(teacher, 5, (3, 16, 16)))


MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
IMAGES = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
# pad 1: 18 variants x 4 classifiers x 5 classes x 2 bytes = 720 bytes an image, 28.1 KiB for 40 images


def test_sizes_are_written_in_the_unit_that_reads_best():
    assert human_bytes(512) == "512 B"
    assert human_bytes(28_800) == "28.1 KiB"
    assert human_bytes(3 * 2**20) == "3.0 MiB"
    assert human_bytes(1.5 * 2**30) == "1.5 GiB"


@needs_root
def test_cache_refused_up_front_says_sizes_in_a_readable_unit(tiny_fs):
    fs = tiny_fs(16 * 1024)
    with pytest.raises(UserError) as caught:
        build(small_side(), IMAGES, MEAN, STD, 1, fs / "work")
    message = str(caught.value)
    assert "needs 28.1 KiB but" in message and "KiB free" in message and "0.0 GiB" not in message
    assert "teacher_side.cache=false" in message


RESUME_ON_A_FULL_DISK = """
import sys, torch
sys.path.insert(0, sys.argv[2])
from test_store_files import IMAGES, MEAN, STD, small_side
from dih.teacher_side.cohort_cache import build
from dih.errors import UserError
try:
    build(small_side(), IMAGES, MEAN, STD, 1, __import__("pathlib").Path(sys.argv[1]), images_per_chunk=8)
except UserError as exc:
    print("error:", exc)
    sys.exit(2)
"""


@needs_root
def test_cache_build_on_a_disk_filled_meanwhile_is_a_sentence_not_sigbus(tiny_fs):
    """A build resumed after the disk filled (a sweep's other jobs) skips the up-front check; writing into
    its memory-mapped file's unallocated pages was a SIGBUS (rc 135, not a word)."""
    import numpy as np

    work = tiny_fs(64 * 1024) / "work"
    (work / "files").mkdir(parents=True)
    # the state a killed build leaves: a sparse cache file, the first chunk done
    np.lib.format.open_memmap(
        work / "files" / "cohort.npy", mode="w+", dtype=np.float16, shape=(40, 18, 4, 5)
    )
    (work / "progress.json").write_text(json.dumps({"images_done": 8}))
    fill(work)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
    proc = subprocess.run(
        [sys.executable, "-c", RESUME_ON_A_FULL_DISK, str(work), str(ROOT / "tests")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert f"needs 28.1 KiB but {work / 'files'} has" in proc.stdout
    assert (work / "files" / "cohort.npy").exists(), "a resumable cache is kept"


# ----- 3. full, read-only, forbidden or blocked store and run directory -------------------------


@needs_root
def test_full_store_is_one_sentence(tiny_fs):
    root = tiny_fs(64 * 1024) / "store"

    def big(work):
        return {"w": torch.zeros(100_000)}, {}

    with pytest.raises(UserError) as caught:
        ArtifactStore(root).get_or_build("teacher-x", {}, big)
    message = str(caught.value)
    assert message.startswith("No space left on the device") and str(root) in message
    assert "artifacts.root" in message


def test_store_root_that_is_a_file_is_one_sentence(tmp_path):
    (tmp_path / "store").write_text("")
    with pytest.raises(UserError, match=r"store is a file, not a directory; .*artifacts.root"):
        ArtifactStore(tmp_path / "store").get_or_build("teacher-x", {}, build_small)
    with pytest.raises(UserError, match=r"store is a file, not a directory; .*artifacts.root"):
        ArtifactStore(tmp_path / "store" / "inner").get_or_build("teacher-x", {}, build_small)


@needs_root
def test_store_on_a_read_only_file_system_is_one_sentence(tiny_fs):
    root = tiny_fs(64 * 1024, ro=True) / "store"
    with pytest.raises(UserError, match=r"is on a read-only file system; point artifacts.root"):
        ArtifactStore(root).get_or_build("teacher-x", {}, build_small)


@needs_root
def test_store_without_permission_is_one_sentence(shared_dir):
    with as_nobody(), pytest.raises(UserError) as caught:
        ArtifactStore(shared_dir / "store").get_or_build("teacher-x", {}, build_small)
    assert f"No permission to use {shared_dir}" in str(caught.value) and "artifacts.root" in str(caught.value)


@needs_root
def test_run_dir_that_cannot_be_made_is_refused_before_hydra(tmp_path, tiny_fs, shared_dir):
    (tmp_path / "file").write_text("")
    cases = [
        (tmp_path / "file" / "run", f"{tmp_path / 'file'} is a file, not a directory"),
        (tiny_fs(64 * 1024, ro=True) / "run", "is on a read-only file system; point hydra.run.dir"),
    ]
    full = tiny_fs(64 * 1024)
    fill(full)
    cases.append((full / "run", "free, too little to write"))
    for run_dir, words in cases:
        with pytest.raises(UserError, match="hydra.run.dir") as caught:
            check_command_line([*TINY, f"hydra.run.dir={run_dir}"])
        assert words in str(caught.value)
    with as_nobody(), pytest.raises(UserError, match=f"No permission to use {shared_dir}"):
        check_command_line([*TINY, f"hydra.run.dir={shared_dir / 'run'}"])
    with pytest.raises(UserError, match="hydra.sweep.dir"):
        check_command_line(["--multirun", *TINY, "seed=1,2", f"hydra.sweep.dir={tmp_path / 'file' / 'x'}"])


def test_run_dir_only_a_running_hydra_can_resolve_is_left_to_hydra():
    check_command_line([*TINY, "hydra.run.dir=outputs/${hydra:job.name}"])  # no error, no traceback


@needs_root
def test_run_on_a_full_store_exits_with_one_sentence_and_leaves_failed_json(
    tmp_path, tiny_fs, one_thread_runs
):
    store = tiny_fs(256 * 1024)
    proc = run_cli(tmp_path, "stage=teacher", f"artifacts.root={store}", check=False)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("error:")]
    assert "No space left on the device" in line and str(store) in line and "artifacts.root" in line
    failed = json.loads((tmp_path / "run" / "failed.json").read_text())
    assert "No space left" in failed["error"]


# ----- 5. a failed build leaves no empty work directory --------------------------------------------


def test_failed_build_leaves_no_empty_work_dir_but_keeps_a_checkpoint(tmp_path):
    store = ArtifactStore(tmp_path / "store")

    def fails_at_once(work):
        (work / "files").mkdir()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.get_or_build("teacher-x", {}, fails_at_once)
    assert not store.path("teacher-x").exists(), "nothing to resume from: nothing left behind"

    def fails_after_a_checkpoint(work):
        (work / "checkpoint.pt").write_bytes(b"state")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.get_or_build("teacher-x", {}, fails_after_a_checkpoint)
    assert (store.work_dir("teacher-x") / "checkpoint.pt").exists(), "kept for the next run to resume"


# ----- 4. where the store lands ------------------------------------------------------------------


def test_relative_store_with_chdir_is_where_run_py_was_started(tmp_path, one_thread_runs):
    """hydra.job.chdir=true moves the job into its run directory; a relative artifacts.root stays relative
    to where run.py was started, so the second run reuses the first one's teacher."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    for name in ("first", "second"):
        args = [
            *TINY,
            "stage=teacher",
            "artifacts.root=store",
            "hydra.job.chdir=true",
            f"hydra.run.dir={name}",
        ]
        proc = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
    assert "reused artifact teacher-" in proc.stdout
    assert len(list((tmp_path / "store").glob("teacher-*/meta.json"))) == 1
    assert not list(tmp_path.glob("*/store")), "no store inside a run directory"
