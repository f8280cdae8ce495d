"""``python -m dih.cohort_stats``: how soft a DIH run's targets are (dih/tools/cohort_stats.py).

Only the command's name lives here, so the name users type stays while the code sits with the tools."""

if __name__ == "__main__":
    from dih.errors import run_command
    from dih.tools.cohort_stats import main

    run_command(main)
