"""The project's GPU check (dih/tools/gpu_check/) in its tiny CPU mode, so that it cannot rot where no GPU
is at hand: every section of the report, and a killed student resumed bit-identically."""

import subprocess
import sys
import time

import pytest
import torch
from conftest import HANG_S, ROOT, write_image_folder

from dih.tools import gpu_check

SECTIONS = [
    "## Environment",
    "## 1. The DIH chain, eager",
    "## 2. Kill -9 and resume",
    "## 3. Captured vs eager",
    "## 4. Precision check",
    "## 5. Bench",
    "## 6. Packing",
    "## 7. GPU use",
]


@pytest.mark.slow  # eleven run.py and tool processes on the CPU
def test_the_tiny_cpu_check_writes_every_section_and_resumes_bit_identically(tmp_path):
    write_image_folder(tmp_path / "data", classes=4, train=12, size=16)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "dih.tools.gpu_check", "run", "--tiny", "--data", str(tmp_path / "data"),
               "--out", str(out), "--work", str(tmp_path / "work")]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (out / "gpu_check.md").read_text()
    at = [report.find(s) for s in SECTIONS]
    assert all(i >= 0 for i in at) and at == sorted(at), report
    resume = report[at[2] : at[3]]
    assert "SIGKILL after 1 of 3 student epochs" in resume and "**bit-identical" in resume, resume
    assert "skipped" not in report and "exited" not in report, report
    assert "| live step | 16 |" in report and "| cache build | 64 |" in report  # the tiny trainer's batches
    assert "| 2 |" in report[at[6] :]  # two runs at once


def test_a_step_past_the_deadline_is_skipped_and_said(tmp_path):
    mode = gpu_check.Mode(**{**gpu_check.TINY.__dict__, "deadline": 20})
    c = gpu_check.Check(mode, tmp_path, tmp_path, tmp_path, "trainer.compile=true")
    assert c.budget("chain") in (14, 15)  # what is left, less 5 s kept back
    c.started = time.monotonic() - 10  # 10 s left: under the 10 s floor once the 5 s are kept back
    assert c.budget("chain") is None
    assert c.command("late", [sys.executable, "-c", "pass"], "chain") == (
        None,
        "skipped: no time left before the deadline",
    )


def test_payloads_are_compared_bit_for_bit(tmp_path):
    a = {"learner": {"w": torch.ones(3), "n": torch.tensor(2)}, "meta": [torch.zeros(2)]}
    torch.save(a, tmp_path / "a.pt")
    torch.save(a, tmp_path / "b.pt")
    assert gpu_check.compare(tmp_path / "a.pt", tmp_path / "b.pt") == "bit-identical (3 tensors)"
    a["learner"]["w"][1] += 2**-20
    torch.save(a, tmp_path / "b.pt")
    assert gpu_check.compare(tmp_path / "a.pt", tmp_path / "b.pt").startswith("NOT bit-identical")


def test_sm_use_is_reported_per_step_from_dmon_samples(tmp_path):
    c = gpu_check.Check(gpu_check.TINY, tmp_path, tmp_path, tmp_path, "trainer.compile=true")
    c.dmon = subprocess.Popen([sys.executable, "-c", "pass"])  # stands in for nvidia-smi dmon
    c.dmon.wait()
    lines = ["# gpu     sm    mem    enc    dec", "# Idx      %      %      %      %"]
    lines += [f"    0     {sm}      1      0      0" for sm in (0, 40, 80, 20)]
    (tmp_path / "dmon.txt").write_text("\n".join(lines))
    c.spans = [("chain", 1, 3)]
    gpu_check.dmon_section(c)
    report = (tmp_path / "gpu_check.md").read_text()
    assert "| whole check | 4 | 35 | 80 |" in report and "| chain | 2 | 60 | 80 |" in report, report
