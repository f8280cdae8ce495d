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

Table syntax: a section is a dict of key -> rule (or nested section); a key ending in ``?`` may be
absent; ``ByName`` picks the section by the node's ``name``; ``Later`` checks a section after all the others.
Nothing here imports torch before the ``Later`` sections, so a bad setting elsewhere is answered fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dih.config.groups import group_options
from dih.errors import UserError


def show(value: Any) -> str:
    """A value as the user would write it in an override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def unknown_key_at(key: str, where: str, known: Iterable) -> UserError:
    """The error for a key that does not exist, listing the keys that do at that level."""
    return UserError(
        f"Unknown key {key}; {where or 'the top level'} has: {', '.join(sorted(map(str, known)))}."
    )


class Rule:
    """What one setting may be; ``describe`` completes 'expected ...'."""

    describe = "a value"

    def ok(self, value: Any, root: Mapping) -> bool:
        raise NotImplementedError

    def check(self, path: str, value: Any, root: Mapping) -> None:
        if not self.ok(value, root):
            raise UserError(f"{path} is {show(value)}; expected {self.describe}.")


class Number(Rule):
    """An int or float (an int is fine where a float is wanted; a bool is not a number), within bounds."""

    def __init__(self, low=None, high=None, *, low_open=False, high_open=False, integer=False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.integer = integer
        kind = "an integer" if integer else "a number"
        if low is not None and high is not None:
            self.describe = (
                f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            )
        elif low is not None:
            self.describe = f"{kind} {'>' if low_open else '>='} {low:g}"
        else:
            self.describe = kind

    def ok(self, value, root):
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


class Text(Rule):
    describe = "a string"

    def ok(self, value, root):
        return isinstance(value, str)


class Flag(Rule):
    describe = "true or false"

    def ok(self, value, root):
        return isinstance(value, bool)


class Choice(Rule):
    """One of a fixed set. ``options`` may be a callable (a lazy import); ``kind`` words the error as an
    unknown name; ``explain`` replaces the list of options in the error."""

    def __init__(self, options: Iterable | Callable[[], Iterable], *, kind: str = "", explain: str = ""):
        self._options, self.kind, self.explain = options, kind, explain

    @property
    def describe(self) -> str:
        return "one of: " + ", ".join(o if isinstance(o, str) else show(o) for o in self.options)

    @property
    def options(self) -> list:
        return list(self._options() if callable(self._options) else self._options)

    def ok(self, value, root):
        # True == 1 in Python: compare types too, so 1 is not taken for true
        return any(type(value) is type(o) and value == o for o in self.options)

    def check(self, path, value, root):
        if self.ok(value, root):
            return
        if self.explain:
            raise UserError(f"{path} is {show(value)}; {self.explain}.")
        if self.kind:
            raise UserError(f"Unknown {self.kind} {show(value)} for {path}; choose {self.describe}.")
        raise UserError(f"{path} is {show(value)}; expected {self.describe}.")


class Nullable(Rule):
    def __init__(self, rule: Rule):
        self.rule, self.describe = rule, f"null or {rule.describe}"

    def ok(self, value, root):
        return value is None or self.rule.ok(value, root)

    def check(self, path, value, root):
        if not self.ok(value, root) and isinstance(self.rule, Choice):
            self.rule.check(path, value, root)  # its own wording (an unknown name, its options)
        super().check(path, value, root)


class AnyOf(Rule):
    def __init__(self, *rules: Rule):
        self.rules = rules
        self.describe = " or ".join(r.describe for r in rules)

    def ok(self, value, root):
        return any(r.ok(value, root) for r in self.rules)


class ListOf(Rule):
    def __init__(self, item: Rule, *, length: int | None = None, nonempty: bool = False):
        self.item, self.length, self.nonempty = item, length, nonempty
        each = f"each {item.describe}"
        if length:
            self.describe = f"a list of {length} entries, {each}"
        else:
            self.describe = f"a {'non-empty ' if nonempty else ''}list, {each}"

    def ok(self, value, root):
        if not isinstance(value, list) or (self.nonempty and not value):
            return False
        return (self.length is None or len(value) == self.length) and all(
            self.item.ok(v, root) for v in value
        )

    def check(self, path, value, root):
        if not self.ok(value, root):
            if isinstance(self.item, Choice) and isinstance(value, list) and value:
                for v in value:  # name the bad entry with the options
                    self.item.check(f"an entry of {path}", v, root)
            raise UserError(f"{path} is {show(value)}; expected {self.describe}.")


class NotAllZero(Rule):
    """A weight or list of weights of which at least one is above 0 (a classifier with alpha 0 leaves DIH's
    sum; with none left, nothing teaches the student)."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self.describe = f"{rule.describe}, not all 0 (for a student trained alone use method=ce)"

    def ok(self, value, root):
        return self.rule.ok(value, root) and any(
            v != 0 for v in (value if isinstance(value, list) else [value])
        )


class Milestones(Rule):
    """The epochs at which the learning rate drops: strictly increasing integers within 1..trainer.epochs."""

    def _epochs(self, root):
        return root.get("trainer", {}).get("epochs")

    def ok(self, value, root):
        epochs = self._epochs(root)
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            return False
        return all(1 <= v <= epochs for v in value) and all(a < b for a, b in zip(value, value[1:]))

    def check(self, path, value, root):
        self.describe = f"strictly increasing integers within 1..{self._epochs(root)} (trainer.epochs)"
        super().check(path, value, root)


class Later:
    """A section checked after every other setting (the loss's: its rules may come from the loss classes,
    which import torch), so that a bad setting anywhere else is answered without loading torch."""

    def __init__(self, rule: Any):
        self.rule = rule


class ByName:
    """A node whose settings depend on its ``name``: one section per name."""

    def __init__(self, kind: str, sections: dict[str, dict]):
        self.kind, self.sections = kind, sections


# The kinds of mounted heads (dih.models.HEAD_KINDS, tests/test_config_check.py holds them equal), written
# here so that checking a setting imports no torch.
HEAD_KINDS = ("linear", "mhkd", "tofd")


def _models() -> tuple[str, ...]:
    """The zoo's model names, as conf/teacher's options (equal to dih.models.MODEL_NAMES, a test holds it):
    asked of Hydra, which is loaded anyway, rather than of the zoo, which loads torch."""
    return group_options("teacher")


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


POSITIVE = Number(0, low_open=True)
NON_NEGATIVE = Number(0)
WEIGHT = Number(0, 1)  # alpha, alpha_kd: the share of a loss term
COUNT = Number(1, integer=True)
SEED = Number(0, integer=True)
AUTO_OR_BOOL = Choice(["auto", True, False])
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

LOSSES = ByName(
    "loss",
    {
        "ce": {"name": Text()},
        "kd": {"name": Text(), "alpha": WEIGHT, "temperature": POSITIVE},
        "dih": {
            "name": Text(),
            "alpha": NotAllZero(AnyOf(WEIGHT, ListOf(WEIGHT, nonempty=True))),
            "temperature": POSITIVE,
            "reduction": Choice(["sum", "mean"]),
        },
        "at": {"name": Text(), "beta": NON_NEGATIVE, "p": POSITIVE},
        "crd": {
            "name": Text(),
            "alpha_kd": WEIGHT,
            "temperature": POSITIVE,
            "beta": NON_NEGATIVE,
            "nce_k": COUNT,
            "nce_t": POSITIVE,
            "nce_momentum": Number(0, 1),
            "feat_dim": COUNT,
        },
        "tofd": {
            "name": Text(),
            "alpha": NON_NEGATIVE,
            "beta": NON_NEGATIVE,
            "temperature_rise": NON_NEGATIVE,
        },
        "mhkd": {"name": Text(), "alpha": WEIGHT, "temperature": POSITIVE, "beta": NON_NEGATIVE},
    },
)

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
        "stages": ListOf(Choice(["teacher", "heads", "hint", "assistant", "student"]), nonempty=True),
        "heads?": Choice(HEAD_KINDS, kind="kind of heads"),
        "assistant?": MODEL,
        "hint?": {"hint": Text(), "guided": Text()},
        "batch_size?": COUNT,
        "loss": Later(LOSSES),
    },
    "stage": {"until": Choice(["teacher", "heads", "hint", "assistant", "cohort", "student"])},
    "trainer": {
        "optimizer": Choice(["sgd"], explain="only sgd is implemented (SGD with momentum and Nesterov)"),
        "lr": POSITIVE,
        "momentum": Number(0, 1, high_open=True),
        "nesterov": Flag(),
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
    "artifacts": {"root": Text(), "on_corrupt": Choice(["rebuild", "refuse"])},
}


def _plain(cfg: Any) -> dict:
    """The config as plain containers, interpolations resolved where they can be (an interpolation that
    cannot be resolved outside a Hydra run is left as text and not checked)."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a run: check what can be checked
        return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def _check(path: str, value: Any, rule: Any, root: Mapping, where: str, later: list) -> None:
    if _is_interpolation(value):
        return
    if isinstance(rule, Later):
        later.append((path, value, rule.rule, where))
        return
    if isinstance(rule, ByName):
        name = value.get("name") if isinstance(value, dict) else None
        Choice(rule.sections, kind=rule.kind).check(_join(path, "name"), name, root)
        rule, where = rule.sections[name], f"the {name} {rule.kind}"
    if isinstance(rule, dict):
        _check_section(path, value, rule, root, where, later)
    else:
        rule.check(path, value, root)


def _check_section(path: str, node: Any, section: dict, root: Mapping, where: str, later: list) -> None:
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
    """Refuse, with one sentence, any unknown key, wrong type, out-of-range or unsupported value."""
    plain = _plain(cfg)
    later: list = []  # the Later sections, checked once everything else passed
    _check_section("", plain, SCHEMA, plain, "", later)
    for path, value, rule, where in later:
        _check(path, value, rule, plain, where, later)
