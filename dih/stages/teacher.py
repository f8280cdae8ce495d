"""Teacher training: a zoo model trained alone with cross-entropy (SPEC s.6)."""

from dih.losses import CELoss
from dih.models import build_model
from dih.stages.artifact_io import model_payload
from dih.stages.runtime import Runtime
from dih.stages.specs import TeacherSpec
from dih.train.determinism import seed_everything
from dih.train.engine import Task

VERSION = 1  # bump when what this stage computes changes (docs/versions.md)


def build(spec: TeacherSpec, upstream: dict, rt: Runtime, work_dir) -> tuple[dict, dict]:
    data = rt.data(spec.data)
    seed_everything(spec.seed)
    model = build_model(spec.model, data.num_classes).to(rt.device)
    summary = rt.fit(Task(model, CELoss()), data, spec, work_dir)
    return model_payload(model, spec.model, data.num_classes), summary
