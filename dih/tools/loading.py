"""A trained model out of the pipeline in one call: ``dih.load_model(<artifact or run directory>)``.

    import dih
    model = dih.load_model("outputs/2026-11-21/10-00-00_dih_res110_res8_s30")   # the run's student
    logits = model(images).logits       # images: float NCHW, normalised as the run's data set (dih.export)

A run directory is read as a ``RunDir`` (dih/store/run_dir.py): its summary.json names its stages'
artifact keys, its config.yaml the artifact store (artifacts.root, relative to where run.py was started:
looked for beside the run directory, in its parents, then in the current directory). An artifact directory
(``<store>/<key>/``) of a teacher, assistant, hint or student is read directly, as is a .safetensors file
that ``python -m dih.export`` wrote. Checksums are verified before anything is loaded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dih.errors import UserError
from dih.store.run_dir import RunDir

MODEL_KINDS = ("student", "teacher", "assistant", "hint")  # artifacts that hold a zoo model
# a run's model: its student, else the last model it trained
_RUN_STAGES = ("student", "assistant", "teacher")
SAFETENSORS = ".safetensors"  # an export's weights (dih.export)
PT2 = ".pt2"  # an export as a torch.export program
METADATA = "dih.json"  # what an export carries besides the model: class names, normalisation, ...


def find_artifact(path: str | Path):
    """The verified model artifact that ``path`` (an artifact or a finished run directory) names."""
    from dih.store.artifacts import META, ArtifactStore

    path = Path(path).expanduser().resolve()
    if (path / META).is_file():
        found = ArtifactStore(path.parent, on_corrupt="refuse").find(path.name)
        kind = found.meta.get("kind", path.name.split("-")[0])
        if kind not in MODEL_KINDS:
            raise UserError(
                f"{path} is a {kind} artifact, which holds no model; give a {', '.join(MODEL_KINDS)} "
                "artifact or a run directory."
            )
        return found
    if RunDir.is_run(path):
        run = RunDir.finished(path)
        role = next((r for r in _RUN_STAGES if r in run.stages), None)
        if role is None:
            stages = ", ".join(run.stages)
            raise UserError(f"The run in {path} trained no model ({stages}); give another run.")
        return run.artifact(role, fix=f"pass the artifact directory <store>/{run.key(role)}")
    raise UserError(
        f"{path} is neither an artifact (no meta.json) nor a run directory (no summary.json); give one of "
        "them."
    )


def data_settings(path: Path, artifact, data_root: str | None) -> dict:
    """The data set settings the model was trained on: a run's config.yaml, else the artifact's identity
    (where CIFAR's files are is not in it: they are looked for under ``data`` unless ``data_root`` says)."""
    if RunDir.is_run(path):
        settings = RunDir.open(path).dataset()
    else:
        settings = dict(artifact.meta.get("identity", {}).get("data") or {})
        settings.setdefault("root", "data")
    if data_root is not None:
        settings["root"] = data_root
    return settings


def load_training_data(settings: dict):
    """The data set of ``settings`` (data_settings: what a finished run or artifact was trained on), for the
    commands that read it back: a refusal names their ``--data-root`` flag where the data set's own names
    ``dataset.root``."""
    from dih.data import load_data

    try:
        return load_data(settings)
    except UserError as err:
        raise UserError(re.sub(r"\bdataset\.root\b", "--data-root", str(err))) from None


def load_model(path: str | Path, device: str = "cpu"):
    """The zoo model (a torch module in eval mode, on ``device``) with the weights of the model artifact that
    ``path`` names: an artifact directory, a finished run directory (its student, else its teacher), or a
    .safetensors file ``python -m dih.export`` wrote. Calling it returns a ModelOutput: ``.logits`` and the
    named ``.features``."""
    import torch

    from dih.stages.artifact_io import load_model as load_artifact

    if Path(path).suffix == SAFETENSORS:
        return load_safetensors(path)[0].to(device)
    return load_artifact(find_artifact(path), torch.device(device)).eval()


def load_safetensors(path: str | Path):
    """(the zoo model in eval mode on the CPU, its dih.json metadata) of a .safetensors export."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from dih.models import build_model

    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})[METADATA])
        model = build_model(meta["model"], meta["num_classes"])
        model.load_state_dict(load_file(str(path)))
    except (OSError, SafetensorError, KeyError, RuntimeError, json.JSONDecodeError) as err:
        raise UserError(
            f"{path} is not a safetensors file written by python -m dih.export ({err!r}); "
            "export the run again."
        ) from None
    return model.eval(), meta
