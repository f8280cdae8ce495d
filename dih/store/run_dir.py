"""What a run directory (the one ``dih.pipeline.run`` writes config.yaml and summary.json into) says beyond
its numbers: the name a reader knows its data set by, and where its artifact store may be."""

from __future__ import annotations

from pathlib import Path


def dataset_title(data: dict) -> str:
    """The name a reader knows the data set by: dataset.label when set, else an image folder's directory
    name, else the data set's name."""
    if data.get("label"):
        return str(data["label"])
    if data.get("name") == "folder" and data.get("root"):
        return Path(str(data["root"])).resolve().name or str(data["root"])
    return str(data.get("name"))


def artifact_stores(run_dir: Path, config: dict) -> list[Path]:
    """Where the run's artifact store may be, most likely first: artifacts.root as given when absolute;
    a relative root (relative to where run.py was started) beside the run directory or one of its parents
    (run directories live under the start directory's outputs/ or multirun/), else the current directory."""
    root = Path(str((config.get("artifacts") or {}).get("root", "artifacts")))
    if root.is_absolute():
        return [root]
    run_dir = Path(run_dir).resolve()
    return [base / root for base in (run_dir, *run_dir.parents, Path.cwd())]
