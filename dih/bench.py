"""``python -m dih.bench``: images/s of every stage against plain loops (dih/tools/bench.py).

Only the command's name lives here, so the name users type stays while the code sits with the tools."""

if __name__ == "__main__":
    from dih.errors import run_command
    from dih.tools.bench import main

    run_command(main)
