"""Hydra on conf/, initialised once per process, and the options of its config groups: what compose builds
on and what the schema takes its model names from (conf/teacher's options are the model zoo's names, a test
holds it), so checking a setting needs no torch."""

from __future__ import annotations

from functools import cache
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "conf"
CONFIG_NAME = "config"
JOB_NAME = "run"  # what @hydra.main names run.py's job


@cache
def hydra():
    """One Hydra instance on conf/, created once. The global Hydra state is restored right after, so
    ``@hydra.main`` can still start in the same process."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name=JOB_NAME):
        return GlobalHydra.instance().hydra


@cache
def group_options(group: str) -> tuple[str, ...]:
    """The options Hydra knows for a config group (conf/ and the installed plugins' ConfigStore).

    Asked of the loader's repository itself: the loader's own get_group_options copies the whole
    repository on every call (about 20 ms)."""
    return tuple(hydra().config_loader.repository.get_group_options(group))


@cache
def model_names() -> tuple[str, ...]:
    """The zoo's model names as conf/teacher/ holds them, read from the files rather than asked of Hydra:
    the schema is also checked inside a running Hydra job, where a second Hydra instance cannot start."""
    return tuple(sorted(path.stem for path in (CONF / "teacher").glob("*.yaml")))


def option_file(group: str, name: str) -> dict:
    """``conf/<group>/<name>.yaml`` as plain data, with the options of its own group that its defaults list
    names merged in first (``dih_stable`` is ``dih`` and its changes), as Hydra composes it; read from the
    files, for tools that compose no Hydra config (the bench). Only same-group defaults are used in conf/."""
    from omegaconf import OmegaConf

    own = OmegaConf.load(CONF / group / f"{name}.yaml")
    defaults = list(own.pop("defaults", None) or ["_self_"])
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged = OmegaConf.create()
    for entry in defaults:
        if not isinstance(entry, str):
            raise ValueError(f"conf/{group}/{name}.yaml: only same-group defaults are read here, not {entry}")
        merged = OmegaConf.merge(merged, own if entry == "_self_" else option_file(group, entry))
    return OmegaConf.to_container(merged, resolve=True)
