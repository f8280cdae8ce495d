"""A trained model out of the pipeline in one call: ``dih.load_model(<artifact or run directory>)``.

    import dih
    model = dih.load_model("outputs/2026-11-21/10-00-00_dih_res110_res8_s30")   # the run's student
    logits = model(images).logits       # images: float NCHW, normalised as the run's data set (dih.export)

A run directory's summary.json names its stages' artifact keys; its config.yaml names the artifact store
(artifacts.root, relative to where run.py was started: looked for beside the run directory, in its parents,
then in the current directory). An artifact directory (``<store>/<key>/``) of a teacher, assistant, hint or
student is read directly, as is a .safetensors file that ``python -m dih.export`` wrote. Checksums are
verified before anything is loaded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from dih.errors import UserError
from dih.run_dirs import artifact_stores

MODEL_KINDS = ("student", "teacher", "assistant", "hint")  # artifacts that hold a zoo model
# a run's model: its student, else the last model it trained
_RUN_STAGES = ("student", "assistant", "teacher")
SAFETENSORS = ".safetensors"  # an export's weights (dih.export)
PT2 = ".pt2"  # an export as a torch.export program
METADATA = "dih.json"  # what an export carries besides the model: class names, normalisation, ...


def find_artifact(path: str | Path):
    """The verified model artifact that ``path`` (an artifact or a finished run directory) names."""
    from dih.artifacts import META, ArtifactStore

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
    if (path / "summary.json").is_file():
        stages = json.loads((path / "summary.json").read_text()).get("stages", {})
        role = next((r for r in _RUN_STAGES if r in stages), None)
        if role is None:
            raise UserError(f"The run in {path} trained no model ({', '.join(stages)}); give another run.")
        key = stages[role]["key"]
        config = run_config(path)
        for store in artifact_stores(path, config):
            if (store / key / META).is_file():
                return ArtifactStore(store, on_corrupt="refuse").find(key)
        raise UserError(
            f"The {role} artifact {key} of the run in {path} is in no store where its artifacts.root "
            f"({config.get('artifacts', {}).get('root')}) may be; pass the artifact directory <store>/{key}."
        )
    if (path / "config.yaml").is_file():
        raise UserError(f"The run in {path} has not finished (no summary.json); wait for it or give another.")
    raise UserError(
        f"{path} is neither an artifact (no meta.json) nor a run directory (no summary.json); give one of "
        "them."
    )


def run_config(run_dir: Path) -> dict:
    """The resolved config a run wrote beside its results."""
    try:
        return yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UserError(
            f"Cannot read {run_dir}/config.yaml ({err}); give the artifact directory instead."
        ) from None


def data_settings(path: Path, artifact, data_root: str | None) -> dict:
    """The data set settings the model was trained on: a run's config.yaml, else the artifact's identity
    (where CIFAR's files are is not in it: they are looked for under ``data`` unless ``data_root`` says)."""
    if (path / "config.yaml").is_file():
        settings = dict(run_config(path).get("dataset") or {})
        root = settings.get("root")
        if root and not Path(root).is_absolute():  # relative to where run.py was started
            bases = [path.resolve(), *path.resolve().parents]
            settings["root"] = str(next((b / root for b in bases if (b / root).exists()), Path(root)))
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
