"""``python -m dih.export``: export a trained model (dih/tools/export.py).

Only the command's name lives here, so the name users type stays while the code sits with the tools."""

if __name__ == "__main__":
    from dih.errors import run_command
    from dih.tools.export import main

    run_command(main)
