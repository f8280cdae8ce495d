"""``python -m dih.plan``: the artifacts of a run, a multirun or a sweep, without training
(dih/plan/listing.py)."""

from dih.errors import run_command
from dih.plan.listing import main

run_command(main)
