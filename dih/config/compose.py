"""Compose and check a run's config in this process, the way ``run.py`` would, without running anything.

``compose_run(overrides)`` is the config one run's job gets (no ``hydra`` node), validated by
``dih.config.check``; ``expand_sweep(overrides)`` is the list of runs a ``--multirun`` makes. Both raise a
``UserError`` of one sentence for anything wrong: a group option Hydra does not know (its plugins'
included), an unknown key, an override that does not parse, a value the schema refuses.

Speed (a 186-run grid is checked in a few seconds): Hydra is initialised once per process
(dih/config/groups.py), and composing is split the way Hydra splits it. The overrides that choose config
group options make the defaults list, which is composed by Hydra's own defaults-list and merge code, once
per distinct set of choices and kept (without Hydra's own groups, which the job never sees; ``_job``); the
other overrides are applied to a copy with Hydra's own ``_apply_overrides_to_config``, as Hydra applies them
after composing. ``hydra.*`` settings are checked on Hydra's whole composition (``_full``), also kept per set
of ``hydra/`` choices. Nothing here imports torch: a bad setting is answered in about a second.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from dih.config.check import unknown_key_at, validate, validate_launcher
from dih.config.groups import CONFIG_NAME, group_options
from dih.config.groups import hydra as _hydra
from dih.errors import UserError, unknown_name


def _parse(overrides: list[str], *, with_loader: bool = False) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    loader = _hydra().config_loader if with_loader else None
    parser = OverridesParser.create(config_loader=loader)
    parsed = []
    for line in overrides:
        try:
            parsed.extend(parser.parse_overrides([line]))
        except HydraException as exc:
            reason = _first_line(exc).rstrip(".")
            raise UserError(
                f"Could not parse the override '{line}' ({reason}); see Hydra's override grammar."
            ) from None
    return parsed


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _is_group_override(override) -> bool:
    """Whether Hydra treats this override as a choice in the defaults list (as defaults_list.Overrides)."""
    repo = _hydra().config_loader.repository
    return repo.group_exists(override.key_or_group) and not isinstance(override.value(), dict)


def _check_group_choice(override) -> None:
    if override.is_delete():
        return
    group = override.key_or_group
    value = override.value()
    known = group_options(group)
    for option in value if isinstance(value, list) else [value]:
        if option is not None and option not in known:
            raise unknown_name(group, str(option), known)


def _compose_error(exc: BaseException) -> UserError:
    return UserError(f"Hydra could not compose the config: {_first_line(exc).rstrip('.')}.")


@cache
def _full(group_overrides: tuple[str, ...]) -> DictConfig:
    """Hydra's whole composition (its own ``hydra`` node included) for these group choices."""
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    try:
        return _hydra().compose_config(
            config_name=CONFIG_NAME, overrides=list(group_overrides), run_mode=RunMode.RUN, from_shell=True
        )
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise _compose_error(exc) from None


@cache
def _job(group_overrides: tuple[str, ...]) -> DictConfig:
    """The job's part of the composition for these group choices (no ``hydra`` node).

    Composed by Hydra's own defaults list and merge, as ``compose`` does, but without prepending Hydra's
    config groups (help, logging, launcher, sweeper, ...: more than half the time, and never part of the
    job's config). Anything this shortcut cannot compose goes through the whole composition, so the
    result, or the error, is always Hydra's.
    """
    from hydra._internal.defaults_list import create_defaults_list

    loader = _hydra().config_loader
    try:
        parsed, repo = loader._parse_overrides_and_create_caching_repo(CONFIG_NAME, list(group_overrides))
        defaults = create_defaults_list(
            repo=repo, config_name=CONFIG_NAME, overrides_list=parsed, prepend_hydra=False, skip_missing=False
        )
        cfg = loader._compose_config_from_defaults_list(defaults=defaults.defaults, repo=repo)
    except Exception:  # noqa: BLE001 - the whole composition says what is wrong, in Hydra's words
        cfg = copy.deepcopy(_full(group_overrides))
    OmegaConf.set_struct(cfg, True)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def _apply(overrides: list, cfg: DictConfig) -> None:
    """Hydra's own application of value overrides, one at a time so that a failure names its override."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    for override in overrides:
        key = override.key_or_group
        if not (override.is_add() or override.is_force_add()) and not _exists(cfg, key):
            raise unknown_key(cfg, key)
        try:
            ConfigLoaderImpl._apply_overrides_to_config([override], cfg)
        except (HydraException, OmegaConfBaseException) as exc:
            cause = exc.__cause__ or exc
            raise UserError(
                f"Could not apply '{override.input_line}': {_first_line(cause).rstrip('.')}."
            ) from None


def _exists(cfg: DictConfig, key: str) -> bool:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False
        node = node._get_node(part)
    return True


def unknown_key(cfg: DictConfig, key: str) -> UserError:
    """One sentence naming an unknown dotted key and the keys that exist where it would be."""
    parts = key.split(".")
    node, depth = cfg, 0
    while depth < len(parts) - 1 and isinstance(node, DictConfig) and parts[depth] in node:
        node = node._get_node(parts[depth])
        depth += 1
    where = ".".join(parts[:depth])
    if not isinstance(node, DictConfig):
        return UserError(f"Unknown key {key}: {where} is a single value, not a group of settings.")
    return unknown_key_at(key, where, list(node.keys()))


def compose_run(overrides: list[str]) -> DictConfig:
    """The job config of one ``run.py`` run with these overrides, validated; a UserError otherwise.

    ``hydra.*`` overrides and ``hydra/...`` group choices are accepted and checked against Hydra's own
    config (they only matter to Hydra); the returned config has no ``hydra`` node, as the job sees it.
    """
    parsed = _parse(list(overrides))
    for override in parsed:
        if override.is_sweep_override():
            raise UserError(
                f"'{override.input_line}' is a sweep: add --multirun to run each value, or write a list as "
                f"{override.key_or_group}=[a,b]."
            )
    searchpath = [o for o in parsed if o.key_or_group == "hydra.searchpath"]
    groups = [o for o in parsed if _is_group_override(o)]
    for override in groups:
        _check_group_choice(override)
    values = [o for o in parsed if not _is_group_override(o) and o not in searchpath]
    hydra_groups = [o.input_line for o in searchpath + [o for o in groups if o.is_hydra_override()]]
    job_groups = [o.input_line for o in searchpath + [o for o in groups if not o.is_hydra_override()]]
    hydra_values = [o for o in values if o.is_hydra_override()]
    if hydra_groups or hydra_values:  # checked on Hydra's own config, which the job never sees
        full = copy.deepcopy(_full(tuple(hydra_groups)))
        _apply(hydra_values, full)
        validate_launcher(OmegaConf.to_container(full.hydra.launcher, resolve=False))
    cfg = copy.deepcopy(_job(tuple(job_groups)))
    _apply([o for o in values if not o.is_hydra_override()], cfg)
    validate(cfg)
    return cfg


def launcher_config(overrides: list[str], sweep_dir: Path) -> dict:
    """Hydra's ``hydra.launcher`` node as a multirun in ``sweep_dir`` with these overrides would get it,
    resolved: the launcher a sweep's own submission (dih/sweep/launch.py) sets its jobs up from."""
    parsed = [o for o in _parse(list(overrides)) if o.is_hydra_override()]
    groups = tuple(o.input_line for o in parsed if _is_group_override(o))
    cfg = copy.deepcopy(_full(groups))
    _apply([o for o in parsed if not _is_group_override(o)], cfg)
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(sweep_dir)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    validate_launcher(launcher)
    return launcher


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """One override list per run of ``run.py --multirun <overrides>``, in the order of Hydra's BasicSweeper.

    As BasicSweeper.split_arguments: every discrete sweep (``a,b``, ``range()``, ``choice()``, ``glob()``)
    becomes one entry per value, later overrides of a key replace earlier ones in the first one's place,
    and the runs are the cartesian product of the entries in that order. Non-sweep overrides pass through
    as written. (Sweeps set in the config's ``hydra.sweeper.params`` are not looked at: conf/ sets none.)
    """
    entries: OrderedDict[str, list[str]] = OrderedDict()
    for override in _parse(list(overrides), with_loader=True):
        key = override.get_key_element()
        if not override.is_sweep_override():
            entries[key] = [override.input_line]
            continue
        if override.is_hydra_override():
            raise UserError(f"Sweeping over Hydra's own settings is not supported: '{override.input_line}'.")
        if not override.is_discrete_sweep():
            raise UserError(
                f"'{override.input_line}' is an interval, which Hydra's basic sweeper cannot enumerate; "
                "give a list of values, range() or choice()."
            )
        entries[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
    return [list(run) for run in itertools.product(*entries.values())]


def check_multirun(
    overrides: list[str], then: Callable[[DictConfig], object] | None = None
) -> list[list[str]]:
    """Every run of the multirun composed and validated, then each handed to ``then`` (which may refuse it
    too, and may import torch: it is called only once every run passed); the first bad one's UserError
    names the run."""
    runs = expand_sweep(overrides)
    configs = [_naming(run, len(runs), compose_run, run) for run in runs]
    if then is not None:
        for run, cfg in zip(runs, configs):
            _naming(run, len(runs), then, cfg)
    return runs


def output_dir(overrides: list[str], *, multirun: bool = False) -> Path | None:
    """The directory Hydra will create for ``run.py overrides`` (``hydra.run.dir``, or ``hydra.sweep.dir``
    for a multirun: its first run's), resolved as Hydra resolves it (``${now:...}`` is now); None where
    only a running Hydra can resolve it (``${hydra:...}``)."""
    from omegaconf.errors import OmegaConfBaseException

    first = expand_sweep(overrides)[0] if multirun else list(overrides)
    parsed = [o for o in _parse(first) if o.key_or_group != "hydra.searchpath"]
    groups = tuple(o.input_line for o in parsed if _is_group_override(o))
    cfg = copy.deepcopy(_full(groups))
    _apply([o for o in parsed if not _is_group_override(o)], cfg)
    try:
        return Path(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
    except OmegaConfBaseException:
        return None


def _naming(run: list[str], of: int, step: Callable, arg):
    """``step(arg)``, its UserError naming the run when the multirun has more than one."""
    try:
        return step(arg)
    except UserError as exc:
        if of == 1:
            raise
        raise UserError(f"{str(exc).rstrip('.')} (in the run {' '.join(run)}).") from None
