"""Every ``python -m dih.X`` command a user types keeps its name wherever its code lives: each answers
--help with its own usage line and exit 0 (a name that imported a module without running it would exit 0
silently, printing nothing)."""

import subprocess
import sys

from conftest import ROOT

COMMANDS = ("plan", "sweep", "report", "export", "cohort_stats", "precision_check", "bench")


def test_every_command_name_runs_its_command():
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"dih.{name}", "--help"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in COMMANDS
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, (name, err)
        assert out.startswith(f"usage: python -m dih.{name}"), (name, out[:200])
