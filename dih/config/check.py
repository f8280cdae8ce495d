"""Every setting of a composed run config is known, of the right type and in range, or the run is refused.

``validate(cfg)`` walks ``SCHEMA`` below and raises a ``UserError`` of one sentence that names the key, the
value and what is allowed. It runs at compose time (``dih.config.compose.compose_run``, which run.py's
pre-check uses) and again at the start of every job (a launcher's job composes its config on its own).

Why a table in Python rather than Hydra structured configs in the ConfigStore: the settings that exist
depend on a name in the same node (``method.loss`` keys on ``method.loss.name``, ``dataset`` keys on
``dataset.name``, ``logger`` keys on ``logger.name``), which OmegaConf's structured configs cannot express
without one dataclass per option wired into every defaults list; they check types only, so the ranges
(``lr > 0``, milestones within the epochs, alpha in [0, 1]) would need this code anyway; and their
failures are multi-line OmegaConf errors. One table keeps each rule beside its key, and the YAML under
conf/ stays the only place defaults are written.

Table syntax: a section is a dict of key -> rule (dih/rules.py) or nested section; a key ending in
``?`` may be absent; ``ByName`` picks the section by the node's ``name``. The method's loss settings are
not written here: each loss class declares its own (``settings``, dih/losses/base.py).
Nothing here imports torch: the loss section, whose rules come from the loss classes, is checked after
every other setting, so a bad setting elsewhere is answered without loading torch.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from dih.config.groups import model_names
from dih.config.stage_names import METHOD_STAGES, UNTIL
from dih.errors import UserError
from dih.rules import (
    AUTO_OR_BOOL,
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    AnyOf,
    ByName,
    Choice,
    Directory,
    Flag,
    ListOf,
    Milestones,
    NesterovFlag,
    Nullable,
    Number,
    Rule,
    Text,
    show,
)


def unknown_key_at(key: str, where: str, known: Iterable) -> UserError:
    """The error for a key that does not exist, listing the keys that do at that level."""
    hint = HINTS.get(key.lstrip("+"), "")
    return UserError(
        f"Unknown key {key}; {where or 'the top level'} has: {', '.join(sorted(map(str, known)))}.{hint}"
    )


# Keys users reach for that live elsewhere: the pointer appended to their "Unknown key" sentence.
HINTS = {
    "hydra.launcher.runs_per_gpu": (
        " Hydra's submitit launcher cannot pack runs; a sweep packs them: python -m dih.sweep SWEEP.yaml "
        "--runs-per-gpu N."
    ),
}


# The kinds of mounted heads (dih.models.HEAD_KINDS, tests/test_config_check.py holds them equal), written
# here so that checking a setting imports no torch.
HEAD_KINDS = ("linear", "mhkd", "tofd")


def _models() -> tuple[str, ...]:
    """The zoo's model names, as conf/teacher/ holds them (equal to dih.models.MODEL_NAMES, a test holds it),
    rather than asked of the zoo, which loads torch."""
    return model_names()


class TrainPerClass(Rule):
    """null, or a count each class can give beside its validation images: known here for the data sets of
    fixed class sizes (dih.data.check_train_per_class), checked when it loads for an image folder."""

    describe = "null or an integer >= 1"

    def ok(self, value, root):
        return value is None or COUNT.ok(value, root)

    def check(self, path, value, root):
        super().check(path, value, root)
        from dih.data import check_train_per_class

        check_train_per_class(root.get("dataset") or {})


MODEL = Choice(_models, kind="model")
IMAGE_SIZE = Nullable(AnyOf(COUNT, ListOf(COUNT, length=2)))

_DATA = {
    "name": Text(),
    "root": Nullable(Text()),
    "val_fraction": Number(0, 1, high_open=True),
    "split_seed": SEED,
    # optional: configs written before these settings existed lack them
    "train_per_class?": TrainPerClass(),
    "label?": Nullable(Text()),
}

DATASETS = ByName(
    "data set",
    {
        "cifar10": {**_DATA, "verify_checksums": Flag()},
        "cifar100": {**_DATA, "verify_checksums": Flag()},
        "tiny_imagenet": {**_DATA, "image_size": IMAGE_SIZE},
        "folder": {**_DATA, "image_size": IMAGE_SIZE},
        "synthetic": {
            **_DATA,
            "num_classes": Number(2, integer=True),
            "image_size": COUNT,
            "train_size": COUNT,
            "test_size": COUNT,
            "seed": SEED,
        },
    },
)


@functools.cache
def _loss_sections() -> dict[str, dict]:
    """Each method loss's settings, as its class declares them (dih/losses/base.py), beside its name."""
    from dih.losses import LOSSES as CLASSES

    return {name: {"name": Text(), **cls.settings} for name, cls in CLASSES.items()}


LOSSES = ByName("loss", _loss_sections)  # read when a config's loss is checked: the classes import torch

LOGGERS = ByName(
    "logger",
    {
        "none": {"name": Text()},
        "wandb": {
            "name": Text(),
            "project": Text(),
            "entity": Nullable(Text()),
            "mode": Text(),  # W&B judges it; a W&B failure is logged and training goes on
            "group": Nullable(Text()),
            "tags": ListOf(Text()),
        },
    },
)

SCHEMA: dict = {
    "dataset": DATASETS,
    "teacher": {"name": MODEL},
    "student": {"name": MODEL},
    "method": {
        "name": Text(),
        "stages": ListOf(Choice(list(METHOD_STAGES)), nonempty=True),
        "heads?": Choice(HEAD_KINDS, kind="kind of heads"),
        "assistant?": MODEL,
        "hint?": {"hint": Text(), "guided": Text()},
        "batch_size?": COUNT,
        "heads_recipe?": {  # each may be absent (+method.heads_recipe.lr=... on a method without the node)
            "lr?": Nullable(POSITIVE),
            "weight_decay?": Nullable(NON_NEGATIVE),
            "epochs?": Nullable(COUNT),
            "milestones?": Nullable(ListOf(COUNT)),  # within the heads' epochs: _check_heads_recipe
            "gamma?": Nullable(POSITIVE),
            "lr_search?": Nullable(ListOf(POSITIVE, nonempty=True)),
            "calibrate?": Flag(),
        },
        "loss": LOSSES,
    },
    "stage": {"until": Choice(list(UNTIL))},
    "trainer": {
        "optimizer": Choice(["sgd"], explain="only sgd is implemented (SGD with momentum and Nesterov)"),
        "lr": POSITIVE,
        "momentum": Number(0, 1, high_open=True),
        "nesterov": NesterovFlag(),  # after momentum, which it is checked against
        "weight_decay": NON_NEGATIVE,
        "epochs": COUNT,
        "milestones": Milestones(),  # after epochs, which it is checked against
        "gamma": POSITIVE,
        "batch_size": COUNT,
        "eval_batch_size": COUNT,
        "progress": Nullable(Flag()),
        "deterministic": Flag(),
        "compile": Flag(),
        "hint_epochs": COUNT,
    },
    "logger": LOGGERS,
    "seed": SEED,
    "teacher_seed": SEED,
    "device": Text(),
    "teacher_side": {
        "bf16": AUTO_OR_BOOL,
        "channels_last": AUTO_OR_BOOL,
        "compile": Flag(),
        "cache": AUTO_OR_BOOL,
        "cache_device_share": Number(0, 1),
    },
    "artifacts": {
        "root": Directory("the artifact store", "artifacts"),
        "on_corrupt": Choice(["rebuild", "refuse"]),
    },
}


def _plain(cfg: Any) -> dict:
    """The config as plain containers, interpolations resolved where they can be (an interpolation that
    cannot be resolved outside a Hydra run is left as text and not checked)."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import InterpolationKeyError, UnsupportedInterpolationType

    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
    except (InterpolationKeyError, UnsupportedInterpolationType) as exc:  # the user's, never Hydra's
        raw: Any = OmegaConf.to_container(cfg, resolve=False)
        for part in str(exc.full_key).split("."):
            raw = raw.get(part) if isinstance(raw, dict) else None
        raise UserError(
            f"{exc.full_key} is {raw}, which cannot be resolved ({_first_line(exc)}); write a value, or "
            "${...} naming an existing setting, e.g. ${teacher_seed}."
        ) from None
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a run: check what can be checked
        return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def _check(path: str, value: Any, rule: Any, root: Mapping, where: str, later: list | None) -> None:
    """Check one node; a lazy ``ByName`` node goes on ``later`` (when given), to be checked after the rest."""
    if _is_interpolation(value):
        return
    if isinstance(rule, ByName) and rule.lazy and later is not None:
        later.append((path, value, rule, where))
        return
    if isinstance(rule, ByName):
        sections = rule.sections
        name = value.get("name") if isinstance(value, dict) else None
        Choice(sections, kind=rule.kind).check(_join(path, "name"), name, root)
        rule, where = sections[name], f"the {name} {rule.kind}"
    if isinstance(rule, dict):
        _check_section(path, value, rule, root, where, later)
    else:
        rule.check(path, value, root)


def _check_section(
    path: str, node: Any, section: dict, root: Mapping, where: str, later: list | None
) -> None:
    keys = {key.rstrip("?"): (rule, key.endswith("?")) for key, rule in section.items()}
    if not isinstance(node, dict):
        raise UserError(f"{path} is {show(node)}; expected a group of settings ({', '.join(sorted(keys))}).")
    for key in node:
        if key not in keys and not (path == "" and key == "hydra"):
            raise unknown_key_at(_join(path, str(key)), where, keys)
    for key, (rule, optional) in keys.items():
        if key in node:
            _check(_join(path, key), node[key], rule, root, _join(path, key), later)
        elif not optional:
            wanted = getattr(rule, "describe", "a group of settings")
            raise UserError(f"{_join(path, key)} is missing; it is required ({wanted}).")


def validate(cfg: Any) -> None:
    """Refuse, with one sentence, any unknown key, wrong type, out-of-range or unsupported value.

    The nodes whose table needs torch (the method's loss, from the loss classes) are checked last, so a bad
    setting anywhere else is answered without importing the loss classes."""
    plain = _plain(cfg)
    later: list = []
    _check_section("", plain, SCHEMA, plain, "", later)
    _check_heads_recipe(plain)
    for path, value, rule, where in later:
        _check(path, value, rule, plain, where, None)


def _check_heads_recipe(root: Mapping) -> None:
    """What method.heads_recipe's settings say together: they need a heads stage to act on, one learning rate
    or a search (not both), a schedule within the heads' epochs, and a validation split for what is chosen
    on it (the search and the calibration never read the test split)."""
    method = root.get("method") or {}
    own = method.get("heads_recipe")
    if not isinstance(own, dict) or any(_is_interpolation(v) for v in own.values()):
        return
    at = "method.heads_recipe"
    changed = [k for k, v in own.items() if v not in (None, False)]
    if changed and "heads" not in (method.get("stages") or []):
        raise UserError(
            f"{at}.{changed[0]} is set, but method {method.get('name')} has no heads stage for it to act on; "
            "remove it, or use a method with heads (dih, mhkd, tofd)."
        )
    if own.get("lr") is not None and own.get("lr_search"):
        raise UserError(
            f"{at}.lr and {at}.lr_search are both set; give one learning rate or a list to search, not both."
        )
    search = own.get("lr_search") or []
    repeated = sorted({lr for lr in search if search.count(lr) > 1})
    if repeated:
        raise UserError(
            f"{at}.lr_search is {show(search)} and holds {show(repeated[0])} more than once; list each "
            "learning rate once."
        )
    trainer = root.get("trainer") or {}
    epochs = own.get("epochs") or trainer.get("epochs")
    milestones = own.get("milestones") if own.get("milestones") is not None else trainer.get("milestones")
    in_range = isinstance(milestones, list) and all(1 <= v <= (epochs or 0) for v in milestones)
    increasing = isinstance(milestones, list) and all(a < b for a, b in zip(milestones, milestones[1:]))
    if isinstance(epochs, int) and isinstance(milestones, list) and not (in_range and increasing):
        whose = f"{at}.milestones" if own.get("milestones") is not None else "trainer.milestones"
        raise UserError(
            f"The heads stage trains {epochs} epochs and its milestones ({whose}) are {show(milestones)}; "
            f"set {at}.milestones to strictly increasing integers within 1..{epochs}."
        )
    chooses = [k for k in ("lr_search", "calibrate") if own.get(k)]
    val_fraction = (root.get("dataset") or {}).get("val_fraction")
    if chooses and val_fraction == 0:
        raise UserError(
            f"{at}.{chooses[0]} chooses on the validation split, and dataset.val_fraction is 0; set "
            "dataset.val_fraction above 0 (e.g. 0.1) so that the test split is never used to choose."
        )


# ---- Hydra's launcher node ---------------------------------------------------------------------------------

SUBMITIT = "hydra_plugins.hydra_submitit_launcher.submitit_launcher."
# The ranges submitit and Slurm need; the types are the plugin's dataclass's (OmegaConf checks them).
LAUNCHER: dict[str, Rule] = {
    "timeout_min": Number(1, integer=True),
    "cpus_per_task": Nullable(Number(1, integer=True)),
    "gpus_per_node": Nullable(Number(0, integer=True)),
    "tasks_per_node": Number(1, integer=True),
    "mem_gb": Nullable(Number(0, integer=True)),
    "nodes": Number(1, integer=True),
    "cpus_per_gpu": Nullable(Number(1, integer=True)),
    "gpus_per_task": Nullable(Number(0, integer=True)),
    "signal_delay_s": Number(0, integer=True),
    "max_num_timeout": Number(0, integer=True),
    "array_parallelism": Number(1, integer=True),
}


def _submitit_fields(target: Any) -> tuple[str, ...] | None:
    """The settings of the submitit launcher ``target`` names (its plugin's dataclass), else None."""
    if not (isinstance(target, str) and target.startswith(SUBMITIT)):
        return None
    from dataclasses import fields

    from hydra_plugins.hydra_submitit_launcher import config

    kind = {"SlurmLauncher": config.SlurmQueueConf, "LocalLauncher": config.LocalQueueConf}
    cls = kind.get(target[len(SUBMITIT) :])
    return tuple(f.name for f in fields(cls)) if cls else None


def validate_launcher(launcher: Mapping) -> None:
    """Refuse, with one sentence, a submitit launcher setting that does not exist (one added with ``+``,
    which submitit would reject in a job's log) or is out of range (``timeout_min=-1``), before anything
    is submitted. Other launchers are left to Hydra."""
    known = _submitit_fields(launcher.get("_target_"))
    if known is None:
        return
    for key in launcher:
        if key not in known:
            raise unknown_key_at(f"hydra.launcher.{key}", "the submitit launcher", known)
    for key, rule in LAUNCHER.items():
        if key in launcher:
            _check(f"hydra.launcher.{key}", launcher[key], rule, launcher, "hydra.launcher", None)
