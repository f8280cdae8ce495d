"""A method is its loss class: what it needs from the teacher side, its settings and their rules and its
version are declared on the class (dih/losses/base.py), and the registry, the config check's loss table,
the plan's teacher and cache decisions and the tests' method lists all follow from the classes and
conf/method/. A class that leaves a declaration out is refused when it is defined."""

import inspect

import pytest
from conftest import ROOT
from omegaconf import OmegaConf

from dih.config import compose
from dih.config.check import LOSSES as LOSS_TABLE
from dih.config.check import validate
from dih.config.groups import option_file
from dih.errors import UserError
from dih.losses import LOSSES, HeadsLoss, HintLoss, MethodLoss, Needs, loss_class
from dih.plan.chain import plan_run
from dih.rules import POSITIVE, WEIGHT, Text

METHODS = compose.group_options("method")


# ---- a class must declare itself ---------------------------------------------------------------------------


def test_a_complete_declaration_is_accepted_and_not_registered_outside_the_package():
    class Fine(MethodLoss):
        name = "fine"
        needs = Needs.LOGITS
        version = 1
        settings = {"alpha": WEIGHT, "temperature": POSITIVE}

        def __init__(self, alpha: float = 0.1, temperature: float = 4.0):
            super().__init__()

    assert Fine.needs is Needs.LOGITS
    assert "fine" not in LOSSES  # only the package's own modules are methods


@pytest.mark.parametrize("left_out", ["name", "needs", "version", "settings"])
def test_a_class_that_leaves_out_a_declaration_is_refused_when_defined(left_out):
    body = {"name": "half", "needs": Needs.NOTHING, "version": 1, "settings": {}}
    del body[left_out]
    with pytest.raises(TypeError, match=f"does not declare {left_out}; see dih/losses/base.py") as info:
        type("Half", (MethodLoss,), body)
    assert str(info.value).count(".") >= 1 and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"needs": "logits"}, "it must be one of Needs.NOTHING, Needs.LOGITS, Needs.FEATURES"),
        ({"needs": True}, "it must be one of Needs"),
        ({"version": 0}, "version 0; it must be an integer >= 1"),
        ({"version": "1"}, "it must be an integer >= 1"),
        ({"name": "two words"}, "it must be a word"),
        ({"settings": {"alpha": 0.1}}, "not a dict of config key -> rule"),
        ({"settings": {"beta": WEIGHT}}, "declares settings ['beta'] but its constructor takes ['alpha']"),
        ({"settings": {}}, "declares settings [] but its constructor takes ['alpha']"),
    ],
)
def test_a_wrong_declaration_is_refused_when_defined(change, words):
    def __init__(self, context=None, alpha: float = 0.1):  # noqa: N807 - a constructor for type()
        MethodLoss.__init__(self)

    body = {"name": "bad", "needs": Needs.LOGITS, "version": 1, "settings": {"alpha": WEIGHT}}
    body.update(change, __init__=__init__)
    with pytest.raises(TypeError, match="Method loss .*Bad ") as info:
        type("Bad", (MethodLoss,), body)
    assert words in str(info.value)


def test_a_subclass_of_a_method_must_name_itself():
    kd = loss_class("kd")
    with pytest.raises(TypeError, match="inherits name 'kd'; a method names itself"):
        type("KDAgain", (kd,), {})
    assert type("KDVariant", (kd,), {"name": "kd_variant"}).settings == kd.settings


# ---- the registry is the package's classes ----------------------------------------------------------------


def test_the_registry_is_every_method_loss_of_the_package():
    assert set(LOSSES) >= {"ce", "kd", "dih", "at", "crd", "tofd", "mhkd"}  # the paper's losses
    for name, cls in LOSSES.items():
        assert cls.name == name and issubclass(cls, MethodLoss)
        assert cls.__module__.startswith("dih.losses.")
    assert HeadsLoss not in LOSSES.values() and HintLoss not in LOSSES.values()  # stage losses, not methods
    with pytest.raises(UserError, match="Unknown loss 'nope'; choose one of: at, ce, "):
        loss_class("nope")


@pytest.mark.parametrize("name", list(LOSSES))
def test_settings_are_exactly_the_constructor_keywords(name):
    cls = LOSSES[name]
    params = inspect.signature(cls).parameters
    keywords = {p for p, v in params.items() if p != "context" and v.kind is v.POSITIONAL_OR_KEYWORD}
    assert set(cls.settings) == keywords, name
    assert isinstance(cls.needs, Needs) and cls.version >= 1


def test_the_config_checks_loss_table_is_the_classes_settings():
    assert set(LOSS_TABLE.sections) == set(LOSSES)
    for name, cls in LOSSES.items():
        section = dict(LOSS_TABLE.sections[name])
        assert isinstance(section.pop("name"), Text)
        assert section == cls.settings


def test_the_loss_is_checked_after_every_other_setting():
    """The loss table comes from the loss classes (torch): a bad setting elsewhere is answered first."""
    cfg = compose.compose_run(["method=kd"])
    cfg.method.loss.name = "nope"
    cfg.seed = -1
    with pytest.raises(UserError, match="seed is -1"):
        validate(cfg)
    cfg.seed = 1
    with pytest.raises(UserError, match="Unknown loss 'nope' for method.loss.name"):
        validate(cfg)
    cfg.method.loss.name = "kd"
    cfg.method.loss.alpha = 2.0
    with pytest.raises(UserError, match=r"method.loss.alpha is 2.0; expected a number in \[0, 1\]"):
        validate(cfg)


# ---- conf/method follows the classes ----------------------------------------------------------------------


def test_every_method_yaml_is_an_option_and_every_option_a_yaml():
    assert set(METHODS) == {p.stem for p in (ROOT / "conf" / "method").glob("*.yaml")}
    assert set(METHODS) >= {"ce", "kd", "fitnets", "takd", "at", "crd", "tofd", "mhkd", "dih"}


@pytest.mark.parametrize("method", METHODS)
def test_each_method_yaml_names_a_loss_and_sets_exactly_its_settings(method):
    """Every setting is required (the check has no class defaults for a loss): the YAML writes them all, or
    the method it is a variant of (its defaults list)."""
    cfg = compose.compose_run([f"method={method}"])
    assert cfg.method.name == method
    # what the bench reads from the files (no Hydra) is what Hydra composes
    assert option_file("method", method) == OmegaConf.to_container(cfg.method, resolve=True)
    loss = dict(cfg.method.loss)
    cls = loss_class(loss.pop("name"))
    assert set(loss) == set(cls.settings), method
    validate(cfg)


@pytest.mark.parametrize("method", METHODS)
def test_what_a_loss_needs_decides_its_plan(method):
    """No teacher for NOTHING; with ``teacher_side.cache=true``, the cohort cache for LOGITS; the live teacher
    for FEATURES."""
    cfg = compose.compose_run([f"method={method}", "teacher_side.cache=true"])
    plan = {p.name: p.spec for p in plan_run(cfg)}
    needs = loss_class(cfg.method.loss.name).needs
    student = set(plan["student"].upstream()) - {"init"}
    if needs is Needs.NOTHING:
        assert student == set() and "cohort" not in plan
    elif needs is Needs.LOGITS:
        teacher = plan.get("assistant") or plan["teacher"]  # TAKD's student learns from its assistant
        assert student == {"cohort"} and plan["cohort"].teacher == teacher.key
    else:
        assert "teacher" in student and "cohort" not in plan
