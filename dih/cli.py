"""Command-line checks made before Hydra composes anything, so a misspelt choice gets one sentence."""

from pathlib import Path

from dih.errors import unknown_name


def group_options(conf_dir: Path) -> dict[str, list[str]]:
    """Every config group under ``conf_dir`` (``hydra/launcher`` included) and its option names."""
    groups: dict[str, list[str]] = {}
    for yaml in conf_dir.rglob("*.yaml"):
        group = yaml.parent.relative_to(conf_dir).as_posix()
        if group != ".":
            groups.setdefault(group, []).append(yaml.stem)
    return groups


def check_group_choices(argv: list[str], conf_dir: Path) -> None:
    """Raise a UserError naming the valid options for the first ``group=option`` that does not exist.

    Sweep values (``a,b,c``) are checked one by one; sweep functions (``choice(...)``) are left to Hydra.
    """
    groups = group_options(conf_dir)
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        group, _, value = arg.lstrip("+~").partition("=")
        if group not in groups or "(" in value or "$" in value:
            continue
        for option in filter(None, value.split(",")):
            if option != "null" and option not in groups[group]:
                kind = {"hydra/launcher": "launcher"}.get(group, group)
                raise unknown_name(kind, option, groups[group])
