"""Teacher-side heads: classifiers mounted on the frozen teacher's stages learn with cross-entropy while the
teacher stays fixed. DIH's linear heads (SPEC s.3), and likewise MHKD's heads and TOFD's auxiliary
classifiers, by the spec's kind of heads."""

from dih.losses import HeadsLoss
from dih.models import heads_class
from dih.models.heads import HeadsOnFrozen
from dih.stages.artifact_io import heads_payload, teacher_side
from dih.stages.runtime import Runtime
from dih.stages.specs import HeadsSpec
from dih.train.determinism import seed_everything
from dih.train.engine import Task

VERSION = 1  # bump when what this stage computes changes (docs/versions.md)


def build(spec: HeadsSpec, upstream: dict, rt: Runtime, work_dir) -> tuple[dict, dict]:
    data = rt.data(spec.data)
    side = teacher_side(upstream, rt, spec.bf16)
    seed_everything(spec.seed)  # after loading: the learners' initial weights depend on the seed alone
    heads = heads_class(spec.head_kind).for_model(side.teacher, data.num_classes, data.image_shape)
    summary = rt.fit(Task(HeadsOnFrozen(side, heads), HeadsLoss()), data, spec, work_dir)
    return heads_payload(heads, spec.head_kind, data.num_classes), summary
