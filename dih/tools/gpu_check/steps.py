"""The check's steps, each a section of the report: the environment, the DIH chain, kill -9 and resume,
captured vs eager, the precision check, the bench, packing and dmon's GPU use; ``check()``, which runs them
in order under the deadline, and ``main()``, the command line (``python -m dih.tools.gpu_check``)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from .machinery import GPU, TINY, Check, Mode, compare, env, stage_lines, student_payload, table, tail
from .prepare import ARCHIVE, DATA_ARCHIVE, GPU_DIR, ROOT, SITE, prepare


def chain(c: Check) -> bool:
    code, text = c.run_py("chain", "store", "chain", "seed=30")
    if code != 0:
        failed = f"run.py exited {code}; the other steps need its teacher.\n" + tail(text)
        c.section("1. The DIH chain, eager", failed)
        return False
    c.section("1. The DIH chain, eager", table(stage_lines(c, "store", "chain")))
    shutil.copytree(c.work / "store", c.work / "store2")  # the same teacher side in a second store
    return True


def captured(c: Check) -> None:
    c.run_py("eager", "store", "eager", "seed=50")
    code, text = c.run_py("captured", "store2", "captured", "seed=50", c.capture)
    rows = [dict(run="eager", **r) for r in stage_lines(c, "store", "eager")]
    rows += [dict(run="captured", **r) for r in stage_lines(c, "store2", "captured")]
    rows = [r for r in rows if r["stage"] == "student"]
    a, b = student_payload(c, "store", "eager"), student_payload(c, "store2", "captured")
    same = compare(a, b) if a and b else "not compared (a run did not finish)"
    c.section(
        "3. Captured vs eager (DIH student, seed 50)",
        table(rows) + f"\nWeights, captured against eager: {same} (rounding may differ; docs/choices.md).\n"
        + ("" if code == 0 else tail(text)),
    )


def resume(c: Check) -> None:
    step = [c.capture] if c.mode.resume_captured else []
    c.run_py("whole", "store", "whole", "seed=67", *step)
    limit = c.budget("killed", floor=20)
    killed = "not run: no time left before the deadline"
    if limit is not None:
        killed = kill_after_first_epoch(c, limit, step)
    code, text = c.run_py("resumed", "store2", "resumed", "seed=67", *step)
    a, b = student_payload(c, "store", "whole"), student_payload(c, "store2", "resumed")
    same = compare(a, b) if a and b else "not compared (a run did not finish)"
    c.section(
        "2. Kill -9 and resume (DIH student, seed 67)",
        f"- the student's step: {' '.join(step) or 'eager'}\n- killed run: {killed}\n- resumed: exit {code}\n"
        "- resumed against uninterrupted, student weights: "
        f"**{same}**\n" + ("" if code == 0 else tail(text)),
    )


def kill_after_first_epoch(c: Check, limit: int, step: list[str]) -> str:
    """Start the seed-67 run in the second store, SIGKILL its process group once its student's first epoch
    is checkpointed (the checkpoint is written before the epoch's metrics line)."""
    args = [sys.executable, str(ROOT / "run.py"), *c.overrides("killed", "store2"), "seed=67", *step]
    c.log(f"killed: {' '.join(args[1:])}")
    with open(c.out / "killed.log", "w") as log:
        p = subprocess.Popen(args, cwd=c.work, env=env(), stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and p.poll() is None:
            found = (c.work / "store2").glob("student-*/work/metrics.jsonl")
            lines = [f for f in found if f.read_text().strip()]
            if lines:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                epochs = len(lines[0].read_text().splitlines())
                c.log(f"killed: SIGKILL after {epochs} student epoch(s)")
                return f"SIGKILL after {epochs} of {c.mode.epochs} student epochs"
            time.sleep(0.02)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return f"SIGKILL at its limit of {limit} s, before any student epoch ended"
    return f"NOT killed: it ended (exit {p.returncode}) before the kill"


def precision(c: Check) -> None:
    code, text = c.command("precision", [sys.executable, "-m", "dih.precision_check",
                                         str(c.work / "runs" / "chain"), "--device", c.mode.device],
                           "precision")  # fmt: skip
    c.section("4. Precision check (`python -m dih.precision_check`)", text if code == 0 else tail(text, 12))



def bench(c: Check) -> None:
    out = c.out / "bench.md"
    code, text = c.command("bench", [sys.executable, "-m", "dih.bench", "--device", c.mode.device,
                                     *c.mode.bench, "--out", str(out)], "bench")  # fmt: skip
    c.section("5. Bench (`python -m dih.bench`)", out.read_text() if code == 0 else tail(text, 12))


def pack(c: Check) -> None:
    """One CE student alone, then ``pack`` at once, each its own run.py process and store."""
    m = c.mode

    def start(name: str, seed: int) -> subprocess.Popen:
        args = [sys.executable, str(ROOT / "run.py"), *c.overrides(name, f"pack_{name}"), "method=ce",
                f"seed={seed}"]  # fmt: skip
        return subprocess.Popen(args, cwd=c.work, env=env(), stdout=open(c.out / f"{name}.log", "w"),
                                stderr=subprocess.STDOUT)  # fmt: skip

    rows, limit = [], c.budget("pack", floor=20)
    for n in (1, m.pack):
        if limit is None or (limit := c.budget("pack", floor=20)) is None:
            rows.append({"runs at once": n, "wall s": None, "images/s together": None, "x one run": None})
            continue
        c.log(f"pack: {n} at once (limit {limit} s)")
        first = len(c.samples())
        t0, names = time.monotonic(), [f"pack{n}_{i}" for i in range(n)]
        procs = [start(name, 100 * n + i) for i, name in enumerate(names)]
        for p in procs:
            try:
                p.wait(timeout=max(1, limit - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                p.kill()
        c.span(f"pack: {n} at once", first)
        rates = [next(iter(r["images/s"] for r in stage_lines(c, f"pack_{x}", x)), None) for x in names]
        total = sum(rates) if all(rates) else None
        one = rows[0]["images/s together"] if rows else total
        ratio = total / one if total and one else None
        rows.append({"runs at once": n, "wall s": time.monotonic() - t0, "images/s together": total,
                     "x one run": ratio})  # fmt: skip
    c.section("6. Packing (CE students, one run.py process each)", table(rows) +
              "\nimages/s: each run's last epoch, summed over the runs at once.\n")  # fmt: skip


def dmon_start(c: Check) -> None:
    if shutil.which("nvidia-smi"):
        c.dmon = subprocess.Popen(["nvidia-smi", "dmon", "-s", "u", "-d", "1"],
                                  stdout=open(c.out / "dmon.txt", "w"), stderr=subprocess.STDOUT)  # fmt: skip


def dmon_section(c: Check) -> None:
    """SM use over the whole check and per step (the dmon samples taken while it ran)."""
    if c.dmon is None:
        c.section("7. GPU use (`nvidia-smi dmon`)", "No nvidia-smi here.\n")
        return
    c.dmon.terminate()
    sm = c.samples()

    def row(step: str, xs: list[int]) -> dict:
        mean = f"{sum(xs) / len(xs):.0f}" if xs else ""
        return {"step": step, "samples": len(xs), "SM % mean": mean, "SM % max": max(xs, default=0)}

    rows = [row("whole check", sm)] + [row(step, sm[first:last]) for step, first, last in c.spans]
    c.section("7. GPU use (`nvidia-smi dmon`)", table(rows) + "\nOne sample a second (dmon.txt).\n")


def environment(c: Check) -> bool:
    """What the check runs on, in this process (the steps get the same path); False where it cannot run:
    a dependency missing, or no GPU where the mode wants one."""
    if SITE.is_dir():
        sys.path.insert(0, str(SITE))
    try:
        import hydra
        import torch
        import torchvision

        cuda = torch.cuda.is_available()
        gpu = f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}" if cuda else "no GPU"
        versions = f"torch {torch.__version__}, torchvision {torchvision.__version__}"
        text = f"{versions}, hydra {hydra.__version__}, {gpu}"
        ok = c.mode.device != "cuda" or cuda
    except ImportError as e:
        text, ok = f"{e} (run `make gpu-prepare` first: it fills .gpu/)", False
    commit = GPU_DIR / "commit"
    where = f"- project commit {commit.read_text().strip()}\n" if commit.is_file() else ""
    c.log(text)
    c.section("Environment", f"{where}- {text}\n" + ("" if ok else "\n**Cannot run here.**\n"))
    return ok


def unpack(c: Check) -> None:
    """The data: ``--data`` as given, else the archive from .gpu/ unpacked into the work directory."""
    if c.data.is_dir():
        return
    archive = GPU_DIR / ARCHIVE
    c.log(f"data: unpacking {archive}")
    c.data.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(c.data, filter="data")


def check(mode: Mode, out: Path, work: Path, data: Path | None, capture: str) -> int:
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    c = Check(mode, out, work, data or work / "cifar10", capture)
    c.write()
    if not environment(c):
        return 1
    unpack(c)
    dmon_start(c)
    try:
        if chain(c):
            for step in (resume, captured, precision, bench):
                step(c)
        pack(c)
    finally:
        dmon_section(c)
        c.log(f"done; report {out / 'gpu_check.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    doc = sys.modules[__package__].__doc__  # the package's: the tool's usage, its first paragraph here
    p = argparse.ArgumentParser(prog="python -m dih.tools.gpu_check", description=doc.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    prep = sub.add_parser("prepare", help="fill .gpu/ (wheels, data archive) for a bare GPU machine")
    prep.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    prep.add_argument("--archive", type=Path, default=DATA_ARCHIVE, help=f"the data (default {DATA_ARCHIVE})")
    run = sub.add_parser("run", help="run the check and write <out>/gpu_check.md")
    run.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    run.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    run.add_argument("--data", type=Path, help="an image folder (train/, test/) instead of .gpu's archive")
    run.add_argument("--tiny", action="store_true", help="tiny settings on the CPU (the test suite's)")
    run.add_argument("--deadline", type=int, help="seconds for the whole check (default 450; tiny 1500)")
    run.add_argument("--capture", default="trainer.compile=true", help="the override that turns capture on")
    args = p.parse_args(argv)
    if args.what == "prepare":
        return prepare(args.python_version, args.archive)
    mode = TINY if args.tiny else GPU
    if args.deadline:
        mode = Mode(**{**mode.__dict__, "deadline": args.deadline})
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"dih_gpu_check_{os.getpid()}"
    return check(mode, args.out.resolve(), work.resolve(), args.data and args.data.resolve(), args.capture)

