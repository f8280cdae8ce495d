"""``python -m dih.sweep SWEEP.yaml``: run a sweep here or submit it to Slurm (dih/sweep/launch.py)."""

from dih.errors import run_command
from dih.sweep.launch import main

run_command(main)
