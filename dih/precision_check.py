"""``python -m dih.precision_check``: the bf16 rule on this device (dih/tools/precision_check.py).

Only the command's name lives here, so the name users type stays while the code sits with the tools."""

if __name__ == "__main__":
    from dih.errors import run_command
    from dih.tools.precision_check import main

    run_command(main)
