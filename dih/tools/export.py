"""Export a trained model as a torch.export program (.pt2), for use without this project, or as its weights
in safetensors, for code that builds the architecture itself:

    python -m dih.export outputs/<run dir> --out student.pt2          # or <store>/<student key>
    python -m dih.export outputs/<run dir> --out student.safetensors  # the format follows the suffix

The file is loadable with plain torch (any batch size); the model maps float NCHW images, normalised per
channel with the recorded mean and std, to logits. What a user needs besides the weights travels inside it
as dih.json:

    files = {"dih.json": ""}
    model = torch.export.load("student.pt2", extra_files=files).module()
    meta = json.loads(files["dih.json"])   # class_names, mean, std, image_size [h, w], channels, model...
    logits = model((images / 255 - mean[:, None, None]) / std[:, None, None])

(or ``dih.tools.export.read(path)`` for both). A .safetensors file holds the zoo model's state dict (its key
names) with the same dih.json as header metadata (``safetensors.safe_open(path,
"pt").metadata()["dih.json"]``); ``dih.load_model(path)`` builds the zoo model around it. Class names and the
normalisation come from the data set the model was trained on, read when exporting (an image folder from its
decoded cache): artifacts hold weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from dih.errors import UserError, command
from dih.store.atomic import write_bytes, write_with
from dih.store.fs_errors import cannot_write
from dih.store.run_dir import dataset_title
from dih.tools.loading import METADATA, PT2, SAFETENSORS, data_settings, find_artifact, load_training_data


def describe(path: Path, artifact, data_root: str | None = None) -> dict:
    """The metadata written beside the weights."""
    settings = data_settings(path, artifact, data_root)
    data = load_training_data(settings)
    payload = artifact.load()
    _, height, width = data.image_shape
    return {
        "model": payload["name"],
        "num_classes": int(payload["num_classes"]),
        "class_names": list(data.class_names),
        "mean": list(data.mean),
        "std": list(data.std),
        "channels": data.image_shape[0],
        "image_size": [height, width],
        "input": "float RGB NCHW: pixels / 255, minus mean, divided by std, per channel",
        "dataset": dataset_title(settings),
        "artifact": artifact.key,
    }


FORMATS = {PT2: "a torch.export program", SAFETENSORS: "safetensors weights"}  # what --out's suffix asks for


def check_out(out: Path) -> None:
    """Refuse, before anything is loaded, an ``out`` export would write wrongly: a suffix it does not write
    (a model.onnx would hold another format under the name) or an existing directory."""
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file in it, such as {out / ('model' + PT2)}.")
    if out.suffix not in FORMATS:
        kinds = " or ".join(f"{suffix} ({kind})" for suffix, kind in FORMATS.items())
        raise UserError(f"--out {out} names a format export does not write; end it in {kinds}.")


def export(path: str | Path, out: str | Path, data_root: str | None = None) -> dict:
    """Write the model that ``path`` names to ``out`` with its metadata, as safetensors where ``out`` ends in
    .safetensors and as a torch.export program where it ends in .pt2; return the metadata."""
    from dih.stages.artifact_io import load_model

    path, out = Path(path), Path(out)
    check_out(out)
    artifact = find_artifact(path)
    meta = describe(path, artifact, data_root)
    if meta["num_classes"] != len(meta["class_names"]):
        raise UserError(
            f"The model has {meta['num_classes']} classes but its data set has {len(meta['class_names'])}; "
            "pass --data-root= the data it was trained on."
        )

    model = load_model(artifact, torch.device("cpu")).eval()
    try:
        _write(model, meta, out)
    except OSError as err:
        raise cannot_write(out, err, "--out") from None
    return meta


def _write(model: nn.Module, meta: dict, out: Path) -> None:
    """``model`` and ``meta`` into ``out`` in the format its suffix names, atomically: a killed export leaves
    the old file or none, never half of one."""
    if out.suffix == SAFETENSORS:
        from safetensors.torch import save

        write_bytes(out, save(model.state_dict(), metadata={METADATA: json.dumps(meta)}))
        return
    example = torch.zeros(2, meta["channels"], *meta["image_size"])
    program = torch.export.export(
        Logits(model), (example,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}
    )
    write_with(out, lambda f: torch.export.save(program, f, extra_files={METADATA: json.dumps(meta)}))


class Logits(nn.Module):
    """The zoo's models return logits with their features; a deployed one, logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


def read(path: str | Path):
    """(the model as a callable module from images to logits, its metadata) of a file ``export`` wrote."""
    if Path(path).suffix == SAFETENSORS:
        from dih.tools.loading import load_safetensors

        model, meta = load_safetensors(path)
        return Logits(model), meta
    files = {METADATA: ""}
    module = torch.export.load(str(path), extra_files=files).module()
    return module, json.loads(files[METADATA])


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dih.export",
        description="Write a trained model as a torch.export program (or safetensors weights) with its class "
        "names and normalisation.",
    )
    parser.add_argument("path", type=Path, help="a finished run directory (its student) or a model artifact")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the file to write: student.pt2 (a torch.export program) or student.safetensors (weights)",
    )
    parser.add_argument("--data-root", default=None, help="where the training data is, if not where it was")
    args = parser.parse_args(argv)
    meta = export(args.path, args.out, args.data_root)
    what = f"{meta['model']} ({meta['artifact']}, {meta['num_classes']} classes of {meta['dataset']})"
    print(f"{what} -> {args.out}")
    return 0

