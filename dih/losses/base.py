"""What a method is: its student loss class. A subclass of ``MethodLoss`` declares, as class attributes,

- ``name``: the ``method.loss.name`` that selects it;
- ``needs``: what it reads from the teacher side (``Needs``): nothing, the logits only (then the cohort
  cache can serve it) or the teacher's features (then the teacher runs live);
- ``version``: bumped when what the loss computes changes (docs/versions.md), part of every key it trains;
- ``settings``: the rule (dih/rules.py) of each of its config keys, exactly its constructor's keyword
  parameters but ``context``.

A class that leaves one out, or whose settings are not its parameters, is refused when its module loads
(a TypeError), so a method cannot reach a run half declared. dih/losses/__init__.py finds every such class
in the package: a new method is one module here and one YAML under conf/method/.
"""

import enum
import inspect

from torch import nn

from dih.rules import Rule

DECLARED = ("name", "needs", "version", "settings")


class Needs(enum.Enum):
    """What a method's student loss reads from the frozen teacher side."""

    NOTHING = "nothing"  # no teacher: the plan drops the teacher side from the student's stage
    LOGITS = "logits"  # the cohort's logits only: the cohort cache can serve it (teacher_side.cache)
    FEATURES = "features"  # the teacher's features too: the teacher side runs live


class MethodLoss(nn.Module):
    """A method's student loss: ``loss(student_output, teacher_output, batch) -> (total, parts)``."""

    name: str
    needs: Needs
    version: int
    settings: dict[str, Rule]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        problem = _declaration_problem(cls)
        if problem:
            raise TypeError(
                f"Method loss {cls.__module__}.{cls.__qualname__} {problem}; see dih/losses/base.py."
            )


def _declaration_problem(cls: type) -> str:
    """What is wrong with a loss class's declarations, or ``""``."""
    missing = [a for a in DECLARED if not hasattr(cls, a)]
    if missing:
        return f"does not declare {', '.join(missing)}"
    if "name" not in vars(cls):
        return f"inherits name {cls.name!r}; a method names itself"
    if not isinstance(cls.name, str) or not cls.name.isidentifier():
        return f"has name {cls.name!r}; it must be a word like 'kd'"
    if not isinstance(cls.needs, Needs):
        return f"has needs {cls.needs!r}; it must be one of Needs.NOTHING, Needs.LOGITS, Needs.FEATURES"
    if isinstance(cls.version, bool) or not isinstance(cls.version, int) or cls.version < 1:
        return f"has version {cls.version!r}; it must be an integer >= 1"
    if not isinstance(cls.settings, dict) or not all(isinstance(r, Rule) for r in cls.settings.values()):
        return "has settings that are not a dict of config key -> rule (dih/rules.py)"
    params = keyword_parameters(cls)
    if set(cls.settings) != params:
        return (
            f"declares settings {sorted(cls.settings)} but its constructor takes {sorted(params)}; "
            "they must be the same keys"
        )
    return ""


def keyword_parameters(cls: type) -> set[str]:
    """The constructor's parameters a config sets: all but ``self`` and ``context``."""
    params = inspect.signature(cls.__init__).parameters
    return {
        p
        for p, v in params.items()
        if p not in ("self", "context") and v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)
    }
