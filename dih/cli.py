"""The check run.py makes before Hydra runs anything: the command line's overrides are composed,
validated and planned in this process (every run of a ``--multirun``), so a mistake gets one sentence and
no job starts. Every run is composed and validated before the planner (and torch with it) is imported, so
a bad setting is answered in about a second."""

from __future__ import annotations

import argparse


class _NotOurs(Exception):
    """A command line Hydra's own parser refuses: Hydra answers it itself."""


def _hydra_args(argv: list[str]) -> argparse.Namespace | None:
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str):
        raise _NotOurs(message)

    parser.error = error  # type: ignore[method-assign]
    try:
        return parser.parse_args(argv)
    except _NotOurs:
        return None


def check_command_line(argv: list[str]) -> None:
    """Raise a UserError for the first bad override (group option, key, type, range) of ``run.py argv``.

    Left to Hydra: ``--help``, ``--hydra-help``, ``--info``, ``--version``, shell completion, a re-run, a
    command line its parser refuses, and another primary config (``--config-name/-path/-dir``); their
    jobs still validate their config when they start.
    """
    if "--version" in argv:
        return
    args = _hydra_args(argv)
    if args is None:
        return
    elsewhere = args.config_path or args.config_name or args.config_dir or args.experimental_rerun
    if args.help or args.hydra_help or args.info or args.shell_completion or elsewhere:
        return
    from dih.config.compose import check_multirun, compose_run, output_dir
    from dih.store.fs_errors import check_creatable

    if args.multirun:
        check_multirun(args.overrides, then=_plan)
    else:
        _plan(compose_run(args.overrides))
    # Hydra creates the run directory and writes into it before the job starts: a traceback if it cannot
    directory = output_dir(args.overrides, multirun=args.multirun)
    if directory is not None:
        check_creatable(directory, "hydra.sweep.dir" if args.multirun else "hydra.run.dir")


def _plan(cfg) -> None:
    """Plan a validated run: it refuses what no single setting shows (a TAKD pair, a stage cut). The
    planner loads torch, so it is imported only here, after every setting passed."""
    from dih.plan.chain import plan_run

    plan_run(cfg)
