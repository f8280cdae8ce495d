"""Stage specs: one frozen dataclass per kind of stage, holding exactly what that stage's output depends on.

The plan (dih/plan/chain.py) builds them from the config; a stage's build reads only its spec and the
artifacts of its upstream stages, never the config. A spec's key is the hash of its fields and nothing else,
so what is hashed is what is built. ``versions`` names every component the stage uses with its version number:
changing what a component computes bumps its number, and no artifact of the old version is reused
(docs/versions.md).

Fields marked ``upstream`` hold the keys of the artifacts the stage reads, by the role they play in it.
"""

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

from dih.data import dataset_identity
from dih.store.artifacts import make_key
from dih.train.engine import Recipe


def added(default: Any) -> Any:
    """A field added after artifacts of its kind existed: hashed only when it differs from ``default``, so
    every key planned before it was added stays the same."""
    return field(default=default, metadata={"added": True})


def upstream(optional: bool = False) -> Any:
    """A field holding the key of an upstream artifact; an optional one is None when the stage runs
    without that role."""
    if optional:
        return field(default=None, metadata={"upstream": True})
    return field(metadata={"upstream": True})


@dataclass(frozen=True, kw_only=True)
class Spec:
    kind: ClassVar[str]

    data: dict  # the data set's settings; where its files are counts only for image folders
    versions: dict[str, int]  # every component the stage uses -> its version

    def upstream(self) -> dict[str, str]:
        """The keys of the artifacts this stage reads, by role (``teacher``, ``heads``, ``cohort``...)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.metadata.get("upstream") and getattr(self, f.name) is not None
        }

    def identity(self) -> dict:
        """What the key hashes: the kind and every field (the data set by what it is, not where it is)."""
        values = {
            f.name: _plain(getattr(self, f.name))
            for f in fields(self)
            if not (f.metadata.get("added") and getattr(self, f.name) == f.default)
        }
        values["data"] = dataset_identity(self.data)
        return {"kind": self.kind, **values}

    @property
    def key(self) -> str:
        return make_key(self.kind, self.identity())


@dataclass(frozen=True, kw_only=True)
class TeacherSpec(Spec):
    """A zoo model trained alone with cross-entropy."""

    kind = "teacher"
    model: str
    recipe: Recipe
    seed: int


@dataclass(frozen=True, kw_only=True)
class HeadsSpec(Spec):
    """Classifiers of one kind mounted on the frozen teacher's stages, trained with cross-entropy."""

    kind = "heads"
    teacher: str = upstream()
    head_kind: str  # linear (DIH), mhkd, tofd
    recipe: Recipe  # the trainer's, or the method's heads_recipe where it says otherwise
    seed: int
    bf16: bool  # the frozen teacher side run as a bf16 copy
    # Learning rates tried side by side; each head keeps the one with the best validation accuracy
    # (dih/stages/heads_selection.py). None: the recipe's lr alone.
    lr_search: tuple[float, ...] | None = added(None)
    calibrate: bool = added(False)  # each head's temperature fit on the validation split, folded in


@dataclass(frozen=True, kw_only=True)
class HintSpec(Spec):
    """FitNets' hint stage: the student up to its guided layer imitates the teacher's hint layer."""

    kind = "hint"
    teacher: str = upstream()
    model: str
    hint: str  # the teacher's feature
    guided: str  # the student's feature
    recipe: Recipe
    seed: int
    bf16: bool


@dataclass(frozen=True, kw_only=True)
class CohortSpec(Spec):
    """The frozen teacher side's logits for every training image under every crop offset and flip."""

    kind = "cohort"
    teacher: str = upstream()  # the model that teaches (TAKD's assistant for TAKD's student)
    heads: str | None = upstream(optional=True)
    pad: int  # crop offsets run over [-pad, pad]
    bf16: bool


@dataclass(frozen=True, kw_only=True)
class DistillSpec(Spec):
    """A model trained with a (distillation) loss: against a live frozen teacher side, against its cohort
    cache, or alone (``ce``)."""

    model: str
    loss: dict  # the loss's name and settings
    recipe: Recipe
    seed: int
    teacher: str | None = upstream(optional=True)  # live teacher side: the model that teaches...
    heads: str | None = upstream(optional=True)  # ...and its heads
    cohort: str | None = upstream(optional=True)  # or its cached logits instead
    init: str | None = upstream(optional=True)  # initial weights (FitNets' hint stage)
    bf16: bool | None = None  # the live teacher side run as a bf16 copy; None without one


@dataclass(frozen=True, kw_only=True)
class AssistantSpec(DistillSpec):
    """TAKD's teacher assistant, distilled from the teacher."""

    kind = "assistant"


@dataclass(frozen=True, kw_only=True)
class StudentSpec(DistillSpec):
    """The student a method trains."""

    kind = "student"


SPECS: dict[str, type[Spec]] = {
    cls.kind: cls for cls in (TeacherSpec, HeadsSpec, HintSpec, CohortSpec, AssistantSpec, StudentSpec)
}


def _plain(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) else value
