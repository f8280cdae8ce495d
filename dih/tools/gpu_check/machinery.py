"""The check's machinery: its two modes (real size on a GPU, tiny on a CPU), the environment of its steps,
the state the steps share (the clock and deadline guard, each step as its own process, the dmon samples, the
Markdown report), and the report's tables and payload comparison."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .prepare import ROOT, SITE


@dataclass(frozen=True)
class Mode:
    """What the check runs at: the real size on a GPU, or tiny on a CPU (the test suite's)."""

    device: str
    teacher: str
    student: str
    epochs: int  # of every stage (the kill comes after a student's first)
    per_class: int | None  # training images per class (dataset.train_per_class); None: all
    batch: list[str]  # extra trainer overrides
    bench: list[str]  # python -m dih.bench's arguments
    pack: int  # runs at once in the packing step
    deadline: int  # seconds for the whole check
    caps: dict[str, int] = field(default_factory=dict)  # each step's own time limit, seconds
    # Kill and resume the captured student: on a GPU, where exact resume of CUDA graphs is what needs showing
    # (eager resume was shown on an H200 before); on the CPU the suite's own tests cover it, and compiling
    # twice more would double the tiny check's time.
    resume_captured: bool = False


# On a GPU the chain's first run also decodes the 60,000 JPEGs once (cached beside them); the bench's read row
# uses a cohort cache of 8,192 images, not the real 45,000 (5.8 GB of stand-in values to write first).
GPU = Mode(
    "cuda", "res110", "res8", 2, 1000, [],
    ["--seconds", "0.5", "--repeats", "2", "--threads", "8", "--cache-images", "8192"], 4, 450,
    dict(chain=200, eager=45, captured=100, whole=100, killed=100, resumed=100, precision=45, bench=120,
         pack=50),
    resume_captured=True,
)  # fmt: skip
TINY = Mode(
    "cpu", "res14", "res8", 3, None, ["trainer.batch_size=16", "trainer.eval_batch_size=64"],
    ["--quick"], 2, 1500,
    dict(chain=300, eager=150, captured=300, whole=150, killed=150, resumed=150, precision=150, bench=300,
         pack=200),
)  # fmt: skip


def env() -> dict[str, str]:
    """The environment of every step: .gpu/site first where prepare filled it, unbuffered output."""
    path = [str(SITE)] if SITE.is_dir() else []
    path += [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p), "PYTHONUNBUFFERED": "1",
            "WANDB_MODE": "offline"}  # fmt: skip


class Check:
    """The steps' shared state: the clock, the work directory, the report's sections."""

    def __init__(self, mode: Mode, out: Path, work: Path, data: Path, capture: str):
        self.mode, self.out, self.work, self.data, self.capture = mode, out, work, data, capture
        self.started = time.monotonic()
        self.sections: list[tuple[str, str]] = []
        self.dmon: subprocess.Popen | None = None
        self.spans: list[tuple[str, int, int]] = []  # (step, first, last dmon sample of its time)

    def samples(self) -> list[int]:
        """SM use (%) of every ``nvidia-smi dmon`` sample so far, one a second."""
        path = self.out / "dmon.txt"
        text = path.read_text() if self.dmon is not None and path.is_file() else ""
        rows = [line.split() for line in text.splitlines() if not line.startswith("#")]
        return [int(r[1]) for r in rows if len(r) > 1 and r[1].isdigit()]

    def span(self, step: str, first: int) -> None:
        """Record that ``step`` ran from dmon sample ``first`` to now."""
        self.spans.append((step, first, len(self.samples())))

    def left(self) -> float:
        return self.mode.deadline - (time.monotonic() - self.started)

    def budget(self, step: str, floor: int = 10) -> int | None:
        """The step's time limit: its cap, or what is left of the deadline; None where that is under
        ``floor`` seconds (the step is skipped)."""
        t = min(self.mode.caps.get(step, 60), int(self.left()) - 5)
        return t if t >= floor else None

    def log(self, text: str) -> None:
        line = f"[gpu_check +{time.monotonic() - self.started:.0f}s] {text}"
        print(line, flush=True)
        with open(self.out / "steps.log", "a") as f:
            f.write(line + "\n")

    def section(self, title: str, body: str) -> None:
        self.sections.append((title, body))
        self.write()

    def write(self) -> None:
        m = self.mode
        head = (
            f"# GPU check\n\n- {platform.node()}, python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, deadline {m.deadline} s, "
            f"{time.monotonic() - self.started:.0f} s so far\n- device {m.device}, teacher {m.teacher}, "
            f"student {m.student}, {m.epochs} epochs per stage, "
            f"{f'{m.per_class} training images per class' if m.per_class else 'every training image'}, "
            f"data {self.data}\n- capture: `{self.capture}`\n"
        )
        body = "".join(f"\n## {title}\n\n{text.rstrip()}\n" for title, text in self.sections)
        (self.out / "gpu_check.md").write_text(head + body)

    def command(self, name: str, args: list[str], step: str) -> tuple[int | None, str]:
        """Run ``args`` (a python command line) as step ``step``, output in ``out/<name>.log``; (exit status,
        output), the status None where the deadline left no time or the step ran past its limit."""
        limit = self.budget(step)
        if limit is None:
            self.log(f"{name}: skipped, {self.left():.0f} s left")
            return None, "skipped: no time left before the deadline"
        self.log(f"{name}: {' '.join(args[1:])} (limit {limit} s)")
        first = len(self.samples())
        try:
            p = subprocess.run(args, cwd=self.work, env=env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=limit)  # fmt: skip
            code, text = p.returncode, p.stdout
        except subprocess.TimeoutExpired as e:
            code, text = None, (e.stdout or b"").decode(errors="replace") + f"\n(stopped after {limit} s)"
        (self.out / f"{name}.log").write_text(text)
        self.log(f"{name}: exit {code}")
        self.span(name, first)
        return code, text

    def run_py(self, name: str, store: str, step: str, *overrides: str) -> tuple[int | None, str]:
        return self.command(name, [sys.executable, str(ROOT / "run.py"), *self.overrides(name, store),
                                   *overrides], step)  # fmt: skip

    def overrides(self, name: str, store: str) -> list[str]:
        m = self.mode
        data = [f"dataset.train_per_class={m.per_class}"] if m.per_class else []
        return [
            "dataset=folder", f"dataset.root={self.data}", *data, f"device={m.device}",
            f"teacher={m.teacher}", f"student={m.student}", "method=dih", f"trainer.epochs={m.epochs}",
            f"trainer.milestones=[{max(1, m.epochs - 1)}]", "trainer.progress=false", *m.batch,
            f"artifacts.root={self.work / store}", f"hydra.run.dir={self.work / 'runs' / name}",
        ]  # fmt: skip

    def summary(self, name: str) -> dict | None:
        path = self.work / "runs" / name / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None


def tail(text: str, lines: int = 6) -> str:
    return "```\n" + "\n".join(text.strip().splitlines()[-lines:]) + "\n```\n"


def stage_lines(c: Check, store: str, run: str) -> list[dict]:
    """Per stage of a finished run: its key, whether built, last epoch's images/s, seconds, test accuracy."""
    found = c.summary(run) or {}
    rows = []
    for stage, s in found.get("stages", {}).items():
        metrics = c.work / store / s.get("key", "") / "metrics.jsonl"
        lines = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.is_file() else []
        last = lines[-1] if lines else {}
        rows.append(
            {"stage": stage, "key": s.get("key"), "reused": s.get("reused"),
             "images/s": last.get("time/images_per_s"), "first epoch s": (lines[0] if lines else {}).get(
                 "time/epoch_s"), "last epoch s": last.get("time/epoch_s"), "test acc": last.get("test/acc"),
             "total s": s.get("time/total_s")}  # fmt: skip
        )
    return rows


def table(rows: list[dict]) -> str:
    if not rows:
        return "(nothing to show)\n"
    cols = list(rows[0])
    fmt = lambda v: f"{v:.1f}" if isinstance(v, float) else "" if v is None else str(v)  # noqa: E731
    return "\n".join([f"| {' | '.join(cols)} |", "|" + "---|" * len(cols)]
                     + [f"| {' | '.join(fmt(r[c]) for c in cols)} |" for r in rows]) + "\n"  # fmt: skip


def payload_tensors(path: Path) -> dict:
    """Every tensor of an artifact's payload, by its path in the payload."""
    import torch

    found = {}

    def walk(x, name: str) -> None:
        if isinstance(x, torch.Tensor):
            found[name] = x
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{name}/{k}")
        elif isinstance(x, list | tuple):
            for i, v in enumerate(x):
                walk(v, f"{name}/{i}")

    walk(torch.load(path, map_location="cpu", weights_only=False), "")
    return found


def compare(a: Path, b: Path) -> str:
    """Whether two payloads hold the same tensors bit for bit, and the largest difference where not."""
    import torch

    x, y = payload_tensors(a), payload_tensors(b)
    if x.keys() != y.keys():
        return "different tensors (names differ)"
    same = all(x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]) for k in x)
    if same:
        return f"bit-identical ({len(x)} tensors)"
    diff = max((x[k].double() - y[k].double()).abs().max().item() for k in x if x[k].is_floating_point())
    return f"NOT bit-identical: largest difference {diff:.3g}"


def student_payload(c: Check, store: str, run: str) -> Path | None:
    key = ((c.summary(run) or {}).get("stages", {}).get("student") or {}).get("key")
    path = c.work / store / str(key) / "payload.pt"
    return path if key and path.is_file() else None
