"""FitNets' hint stage: the student up to its guided layer, through a regressor, learns to reproduce the
frozen teacher's hint layer (MSE); the KD stage that follows starts from these weights."""

from dih.losses import HintLoss
from dih.losses.context import loss_context
from dih.models import build_model
from dih.stages.artifact_io import model_payload, teacher_side
from dih.stages.runtime import Runtime
from dih.stages.specs import HintSpec
from dih.train.determinism import seed_everything
from dih.train.engine import Task

VERSION = 1  # bump when what this stage computes changes (docs/versions.md)


def build(spec: HintSpec, upstream: dict, rt: Runtime, work_dir) -> tuple[dict, dict]:
    data = rt.data(spec.data)
    side = teacher_side(upstream, rt, spec.bf16)
    seed_everything(spec.seed)  # after loading: the learners' initial weights depend on the seed alone
    student = build_model(spec.model, data.num_classes).to(rt.device)
    context = loss_context(data, student, side, rt.device, spec.recipe.epochs)
    loss = HintLoss(context, hint=spec.hint, guided=spec.guided).to(rt.device)
    # The classifier is untrained here, so nothing is evaluated.
    summary = rt.fit(Task(student, loss, side, evaluates=False), data, spec, work_dir)
    return model_payload(student, spec.model, data.num_classes), summary
