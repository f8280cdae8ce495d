"""Device-hours of a plan before spending them (``python -m dih.plan <sweep> --device-hours``): each distinct
artifact's work (training images x epochs, or image-variants for a cohort cache) divided by the rate measured
for its stage on a device kind (dih/plan/device_rates.yaml), summed per stage kind.

A stage with a row of its own in the table is *measured*; any other is *assumed* from the nearest measured
row of its stage kind (same teacher side, the same method where there is one), scaled as the device kind
says (the ``same`` rate, or by multiply-accumulates or weight layers), and the output says which and how.
The table itself is dih/plan/rates.py; the estimate reads the specs the plan made.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from dih.errors import UserError
from dih.plan.rates import DeviceKind, Rate, Table

# The kinds shown, in this order: a student by what its teacher side is.
GROUPS = (
    "teacher",
    "heads",
    "hint",
    "assistant",
    "cohort cache",
    "student live",
    "student cached",
    "student alone",
)
# Where a method has no row of its own, the measured method of its stage and side it is assumed from,
# in order of preference (a logits-only loss is nearest KD live, DIH from the cache).
NEAREST = ("kd", "dih", "ce", "linear", "hint")


# ---- what an artifact costs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """An artifact's stage as the table indexes it, and its work: images x epochs (cohort: image-variants)."""

    group: str  # one of GROUPS
    stage: str  # the table's stage kind it is measured as
    method: str
    model: str
    teacher: str | None
    side: str
    units: int
    image_side: int | None  # None: not known before the files load (a folder at its native size)
    counted: bool  # the training images were counted from the config (else --train-images assumed them)

    @property
    def models(self) -> str:
        return f"{self.teacher}->{self.model}" if self.teacher else self.model

    @property
    def what(self) -> str:
        if self.stage in ("heads", "cohort"):
            return f"{self.method} on {self.model}"
        return self.models if self.stage == "teacher" else f"{self.method} {self.models}"


def works(specs: list[Any], train_images: int | None = None) -> list[Work]:
    """Each spec's Work, reading the models of its upstream stages from the other specs (a plan holds every
    stage's upstream). ``train_images`` stands in for a training split the config cannot count (an image
    folder not on this machine); without it such a split is refused."""
    from dih.data import train_split_size
    from dih.teacher_side.cohort_cache import num_variants

    by_key = {s.key: s for s in specs}

    def model_of(key: str) -> str:
        return by_key[key].model

    out = []
    for s in specs:
        images = train_split_size(s.data)
        counted = images is not None
        if images is None:
            if train_images is None:
                raise UserError(
                    f"The training split of data set {s.data.get('name')} (root {s.data.get('root')}) cannot "
                    "be counted here (the folder is not on this machine); pass --train-images=N to assume "
                    "its size."
                )
            images = train_images
        side_px = _side(s.data)
        kind = s.kind
        if kind == "teacher":
            w = ("teacher", "teacher", "ce", s.model, None, "none", images * s.recipe.epochs)
        elif kind == "heads":
            w = ("heads", "heads", s.head_kind, model_of(s.teacher), None, "live", images * s.recipe.epochs)
        elif kind == "hint":
            w = ("hint", "hint", "hint", s.model, model_of(s.teacher), "live", images * s.recipe.epochs)
        elif kind == "cohort":
            heads = by_key[s.heads].head_kind if s.heads else "none"
            w = (
                "cohort cache",
                "cohort",
                heads,
                model_of(s.teacher),
                None,
                "live",
                images * num_variants(s.pad),
            )
        else:  # assistant or student: estimated from the student rows
            loss = s.loss["name"]
            if s.cohort:
                side, teacher = "cache", model_of(by_key[s.cohort].teacher)
            elif s.teacher:
                side, teacher = "live", model_of(s.teacher)
            else:
                side, teacher = "none", None
            group = (
                "assistant"
                if kind == "assistant"
                else {"live": "student live", "cache": "student cached"}.get(side, "student alone")
            )
            w = (group, "student", loss, s.model, teacher, side, images * s.recipe.epochs)
        out.append(Work(*w, image_side=side_px, counted=counted))
    return out


def _side(data: dict) -> int | None:
    """The images' side as trained, None where only the files know it (an image folder at native size)."""
    size = data.get("image_size")
    if size is None:
        return {"tiny_imagenet": 64, "folder": None}.get(data.get("name"), 32)
    return int(size) if isinstance(size, int) else int(max(size))


# ---- its rate ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    rate: float
    measured: bool
    basis: str  # the source of a measured row, or how an assumed rate was derived


def rate_for(table: Table, kind: DeviceKind, w: Work, scaling: str | None = None) -> Estimate:
    """The measured rate of ``w``'s stage, or one assumed from the nearest measured row of its stage kind,
    scaled to its models as ``scaling`` says (default: the device kind's)."""
    scaling = scaling or kind.scaling
    rows = [r for r in kind.rates if r.stage == w.stage]
    exact = [
        r for r in rows if (r.method, r.model, r.teacher, r.side) == (w.method, w.model, w.teacher, w.side)
    ]
    if exact and w.image_side == kind.image_side:
        return Estimate(exact[0].rate, True, exact[0].source)
    if not rows:
        raise UserError(
            f"Device kind {kind.name} has no measured {w.stage} rate to estimate {w.group} {w.what} from; "
            f"measure one with python -m dih.bench and add it to {table.path}."
        )
    ref = exact[0] if exact else min(rows, key=lambda r: _distance(r, w))
    rate, how = ref.rate, []
    if ref.method != w.method:
        how.append(f"{ref.method}'s rate for {w.method}")
    if (ref.model, ref.teacher) != (w.model, w.teacher):
        if scaling == "same":
            how.append("the same rate for other models (scaling: same)")
        else:
            per = table.mmacs if scaling == "flops" else table.layers
            rate *= _cost(per, ref.stage, ref.model, ref.teacher, ref.side) / _cost(
                per, w.stage, w.model, w.teacher, w.side
            )
            how.append(
                f"scaled to its models by {'multiply-accumulates' if scaling == 'flops' else 'weight layers'}"
            )
    if ref.side != w.side:
        how.append(f"the {ref.side} teacher side's rate")
    if w.image_side is None:
        how.append(f"the images' size unknown until they load, taken as {kind.image_side}px")
    elif w.image_side != kind.image_side:
        rate *= (kind.image_side / w.image_side) ** 2
        how.append(f"scaled by pixels ({w.image_side}px images, measured at {kind.image_side}px)")
    measured_as = Work(
        w.group, ref.stage, ref.method, ref.model, ref.teacher, ref.side, 0, kind.image_side, True
    )
    return Estimate(rate, False, f"from {measured_as.what} ({ref.side}): " + ", ".join(how))


def _distance(r: Rate, w: Work) -> tuple:
    """How far a measured row is from the stage to estimate: teacher side first, then method, then models."""
    method = (
        0 if r.method == w.method else 1 + (NEAREST.index(r.method) if r.method in NEAREST else len(NEAREST))
    )
    return (r.side != w.side, method, r.model != w.model, r.teacher != w.teacher)


def _cost(per: dict[str, float], stage: str, model: str, teacher: str | None, side: str) -> float:
    """A stage's step per image in units of ``per`` (a model's forward: multiply-accumulates or layers): the
    trained model's forward and backward (3 forwards), plus one forward of a live teacher side; heads and
    cohort rows run their teacher's forward."""
    for name in (model, teacher):
        if name is not None and name not in per:
            raise UserError(
                f"The rates table has no entry under models: for {name}; add it (dih/plan/device_rates.yaml)."
            )
    if stage in ("heads", "cohort"):
        return per[model]
    return 3 * per[model] + (per[teacher] if side == "live" and teacher else 0)


# ---- the estimate ------------------------------------------------------------------------------------------


@dataclass
class Line:
    """Artifacts of one stage kind and method that share a rate (and how it was found)."""

    group: str
    method: str
    estimate: Estimate
    names: set[str] = field(default_factory=set)  # the models (teacher->model) it covers
    count: int = 0
    units: int = 0
    counted: bool = True

    @property
    def hours(self) -> float:
        return self.units / self.estimate.rate / 3600

    @property
    def what(self) -> str:
        names = ", ".join(sorted(self.names))
        return names if self.group == "teacher" else f"{self.method}: {names}"


def estimate(table: Table, kind: DeviceKind, ws: list[Work], scaling: str | None = None) -> list[Line]:
    """The works grouped by stage kind, method and rate, in the order of GROUPS, measured first."""
    lines: dict[tuple, Line] = {}
    for w in ws:
        est = rate_for(table, kind, w, scaling)
        line = lines.setdefault((w.group, w.method, est), Line(w.group, w.method, est))
        line.names.add(w.models)
        line.count += 1
        line.units += w.units
        line.counted &= w.counted
    return sorted(lines.values(), key=lambda x: (GROUPS.index(x.group), x.method, not x.estimate.measured))


def report(
    kind: DeviceKind, todo: list[Line], stored: list[Line], header: str, scaling: str | None = None
) -> str:
    """The estimate as text: hours per stage kind, then every rate used and whether it was measured."""
    scaling = scaling or kind.scaling
    out = [header, f"device kind {kind.name}: {kind.description}; unmeasured models scaled: {scaling}", ""]
    by_group: dict[str, list[Line]] = defaultdict(list)
    for line in todo:
        by_group[line.group].append(line)
    out.append(f"{'stage kind':<15} {'to build':>8} {'device-hours':>13}  rates")
    total = 0.0
    for group in GROUPS:
        if group not in by_group:
            continue
        lines = by_group[group]
        hours = sum(x.hours for x in lines)
        total += hours
        measured = sum(x.count for x in lines if x.estimate.measured)
        assumed = sum(x.count for x in lines if not x.estimate.measured)
        rates = ", ".join(f"{n} {label}" for n, label in ((measured, "measured"), (assumed, "assumed")) if n)
        out.append(f"{group:<15} {sum(x.count for x in lines):>8} {_hours(hours):>13}  {rates}")
    out.append(f"{'total':<15} {sum(x.count for x in todo):>8} {_hours(total):>13}")
    if stored:
        hours = sum(x.hours for x in stored)
        out.append(
            f"already in the store, not counted: {sum(x.count for x in stored)} artifacts "
            f"({_hours(hours)} device-hours)"
        )
    out += ["", "Each rate used (images/s; cohort cache: image-variants/s) and what it costs:"]
    out.append(f"{'stage kind':<15} {'n':>4} {'work':>8} {'rate':>9} {'hours':>7}  what; rate")
    for x in todo:
        label = "measured: " if x.estimate.measured else "ASSUMED "
        work = _human(x.units) + ("" if x.counted else "*")
        rate, spent = f"{x.estimate.rate:.1f}", _hours(x.hours)
        out.append(f"{x.group:<15} {x.count:>4} {work:>8} {rate:>9} {spent:>7}  {x.what}")
        out.append(f"{'':<47}{label}{x.estimate.basis}")
    if any(not x.counted for x in todo):
        out.append("* the training split's size assumed (--train-images), not counted")
    out.append(
        "Work is training images x epochs (cohort cache: images x variants); evaluation passes and start-up "
        "are not counted (docs/performance.md)."
    )
    return "\n".join(out)


def as_json(kind: DeviceKind, x: Line, in_store: bool) -> dict:
    """One line of the estimate as a JSON object (``--device-hours --json``)."""
    return {
        "device_kind": kind.name,
        "stage_kind": x.group,
        "method": x.method,
        "models": sorted(x.names),
        "count": x.count,
        "work": x.units,
        "work_counted": x.counted,
        "rate": x.estimate.rate,
        "measured": x.estimate.measured,
        "basis": x.estimate.basis,
        "device_hours": x.hours,
        "in_store": in_store,
    }


def _hours(h: float) -> str:
    """Tenths of an hour from 10 hours up, else hundredths (--json has every digit)."""
    return f"{h:.1f}" if h >= 10 else f"{h:.2f}" if h >= 0.005 or h == 0 else "<0.01"


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
