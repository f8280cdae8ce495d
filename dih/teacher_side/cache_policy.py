"""When a stage reads the cohort cache rather than running the teacher side live, and the augmentation
range the cache covers. Decided here and nowhere else; the plan asks it."""

from dih.losses import Needs, loss_class
from dih.teacher_side import cohort_cache

PAD = 4  # the loader's crop padding: the cache holds one entry per crop offset and flip


def wanted(setting: bool | str, loss_name: str, epochs: int) -> bool:
    """Whether a stage with this loss reads the cache (``teacher_side.cache``): only for a loss that reads
    the teacher side's logits alone (``Needs.LOGITS``), never its features; with ``auto``, when the stage
    runs at least as many epochs as there are variants, where building the cache costs less than running
    the teacher live even for this one stage (and every later stage of the same cohort reuses it)."""
    applies = loss_class(loss_name).needs is Needs.LOGITS
    if setting == "auto":
        return applies and epochs >= cohort_cache.num_variants(PAD)
    return applies and bool(setting)
