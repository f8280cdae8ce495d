"""``python -m dih.report DIR``: the tables and plots of every run under a directory (dih/report/write.py)."""

from dih.errors import run_command
from dih.report.write import main

run_command(main)
