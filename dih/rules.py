"""The rules a setting is checked against, one class per kind of value (a number in a range, one of a set of
names, a list of ...), and the common ones. Torch-free and importing nothing of the project but its errors, so
both the schema (dih/config/check.py) and a loss class (dih/losses, its ``settings``) declare settings with
them, and a bad setting is answered before torch loads."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

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

    def __init__(self, low=None, high=None, *, low_open=False, high_open=False, integer=False, describe=""):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.integer = integer
        kind = "an integer" if integer else "a number"
        if describe:
            self.describe = describe
        elif low is not None and high is not None:
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


class Directory(Text):
    """A directory's path: a non-empty string (an empty one would mean the current directory, which is
    never what was meant: its files would mix with whatever is there)."""

    def __init__(self, what: str, example: str):
        self.describe = (
            f"a directory for {what}, such as {example} or an absolute path (empty would fill the current "
            "directory)"
        )

    def ok(self, value, root):
        return isinstance(value, str) and bool(value.strip())


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


class NesterovFlag(Flag):
    """trainer.nesterov: true needs a momentum above 0 (torch's SGD refuses Nesterov without one)."""

    def check(self, path, value, root):
        super().check(path, value, root)
        momentum = (root.get("trainer") or {}).get("momentum")
        if value is True and momentum == 0:
            raise UserError(
                f"{path} is true but trainer.momentum is 0; Nesterov momentum needs trainer.momentum in "
                "(0, 1), or set trainer.nesterov=false."
            )


class ByName:
    """A node whose settings depend on its ``name``: one section (a dict of key -> rule) per name.
    ``sections`` may be a callable, called when a node is checked: the loss table comes from the loss
    classes, which import torch, so it is read only when a config's loss is checked."""

    def __init__(self, kind: str, sections: dict[str, dict] | Callable[[], dict[str, dict]]):
        self.kind, self._sections = kind, sections
        self.lazy = callable(sections)

    @property
    def sections(self) -> dict[str, dict]:
        return self._sections() if callable(self._sections) else self._sections


POSITIVE = Number(0, low_open=True)
NON_NEGATIVE = Number(0)
WEIGHT = Number(0, 1)  # alpha, alpha_kd: the share of a loss term
COUNT = Number(1, integer=True)
# What torch's generators take (torch.manual_seed refuses 2**64 and above)
SEED = Number(0, 2**64 - 1, integer=True, describe="an integer in [0, 2**64 - 1] (a 64-bit generator seed)")
AUTO_OR_BOOL = Choice(["auto", True, False])
