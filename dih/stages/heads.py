"""Teacher-side heads: classifiers mounted on the frozen teacher's stages learn with cross-entropy while the
teacher stays fixed. DIH's linear heads (SPEC s.3), and likewise MHKD's heads and TOFD's auxiliary
classifiers, by the spec's kind of heads. Where the spec says so, several learning rates are tried side by
side and each head's temperature is fit, both on the validation split (dih/stages/heads_choice.py)."""

from dih.losses import HeadsLoss
from dih.models import heads_class
from dih.models.heads import HeadsOnFrozen
from dih.stages import heads_choice
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
    if spec.lr_search is None:
        model = HeadsOnFrozen(side, heads)
        summary = rt.fit(Task(model, HeadsLoss()), data, spec, work_dir)
    else:
        model = heads_choice.CandidatesOnFrozen(side, heads, spec.lr_search)
        groups = list(zip(model.copies, model.lrs, strict=True))
        task = Task(model, HeadsLoss(), lr_groups=groups, head_names=model.names)
        summary = rt.fit(task, data, spec, work_dir)
        logits, labels = heads_choice.validation_logits(model, data, rt.device, rt.eval_batch_size)
        heads, chosen = heads_choice.choose(model, logits, labels, summary)
        summary.update(chosen)
        model = HeadsOnFrozen(side, heads)
    if spec.calibrate:
        logits, labels = heads_choice.validation_logits(model, data, rt.device, rt.eval_batch_size)
        summary.update(heads_choice.calibrate(heads, logits, labels))
    if spec.head_kind == "linear" and len(data.val_labels):  # how far past SGD's stability edge they trained
        lrs = [summary.get(f"head{i}/lr", spec.recipe.lr) for i in range(1, len(heads) + 1)]
        lambdas = heads_choice.curvature(side, heads.stage_names, data, rt.device)
        summary.update(heads_choice.stability_lines(lambdas, lrs))
    return heads_payload(heads, spec.head_kind, data.num_classes), summary
