"""A run directory, read through one type: what ``dih.pipeline.run`` wrote into it (config.yaml first, then
summary.json when the run finished or failed.json when it failed; neither while it runs or after a kill),
each stage's artifact key and spec identity, and the artifact store it used. The report, ``dih.load_model``,
export, cohort_stats and precision_check all read runs through ``RunDir``.

    run = RunDir.finished("outputs/2026-11-21/10-00-00_dih_res110_res8_s30")
    run.key("student"), run.identity("student"), run.artifact("teacher")   # a verified Artifact

A relative ``artifacts.root`` is relative to where run.py was started, which the run does not record: the
store is looked for beside the run directory, in each of its parents (run directories live under the start
directory's outputs/ or multirun/), then in the current directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from dih.errors import UserError

if TYPE_CHECKING:  # the store imports torch; reading a run's files does not need it
    from dih.store.artifacts import Artifact

CONFIG, SUMMARY, FAILED, METRICS = "config.yaml", "summary.json", "failed.json", "metrics.jsonl"
META = "meta.json"  # an artifact's, written last (dih/store/artifacts.py): there, the artifact is complete
GROUPS = ("dataset", "teacher", "student", "method")  # the config groups that place a run in the tables
DONE, FAILED_STATUS, UNFINISHED = "done", "failed", "unfinished"


class RunDir:
    """One run directory: its resolved config, how it ended (``status``: done, failed or unfinished), its
    summary or error, and its stages' keys, identities and artifacts."""

    def __init__(self, path: Path, config: dict, summary: dict | None, status: str, error: str | None):
        self.path, self.config, self.summary, self.status, self.error = path, config, summary, status, error

    @staticmethod
    def is_run(path: str | Path) -> bool:
        """Whether ``path`` holds a run's config.yaml (which ``open`` then reads)."""
        return (Path(path) / CONFIG).is_file()

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """The run in ``path``, finished or not; a directory whose config.yaml is missing or not a run's is
        refused in one sentence."""
        path = Path(path).expanduser()
        try:
            config = yaml.safe_load((path / CONFIG).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise UserError(
                f"{path} is not a run directory ({CONFIG}: {err}); give a directory that run.py wrote "
                f"(with {CONFIG} and, once finished, {SUMMARY})."
            ) from None
        if not isinstance(config, dict) or not isinstance(config.get("dataset"), dict):
            raise UserError(
                f"{path / CONFIG} is not a run's resolved config (it has no dataset settings); give a "
                "directory that run.py wrote."
            )
        summary, status, error = None, UNFINISHED, None
        if (path / SUMMARY).exists():
            try:
                summary, status = json.loads((path / SUMMARY).read_text()), DONE
            except (json.JSONDecodeError, OSError) as exc:
                status, error = FAILED_STATUS, f"unreadable {SUMMARY} ({exc})"
        elif (path / FAILED).exists():
            status = FAILED_STATUS
            try:
                error = str(json.loads((path / FAILED).read_text()).get("error", "no error given"))
            except (json.JSONDecodeError, OSError, AttributeError) as exc:
                error = f"unreadable {FAILED} ({exc})"
        return cls(path, config, summary, status, error)

    @classmethod
    def finished(cls, path: str | Path) -> RunDir:
        """The run in ``path``, which must have finished: a failed or unfinished one is refused."""
        run = cls.open(path)
        if run.status == FAILED_STATUS:
            raise UserError(f"The run in {run.path} failed ({run.error}); give a finished run.")
        if run.status != DONE:
            raise UserError(
                f"The run in {run.path} has not finished (no {SUMMARY}); wait for it or give another."
            )
        return run

    # ------------------------------------------------------------------------------------------ its config

    def names(self) -> dict[str, str]:
        """The data set, teacher, student and method the run's config names (what places it in a table)."""
        try:
            return {g: str(self.config[g]["name"]) for g in GROUPS}
        except (KeyError, TypeError):
            raise UserError(
                f"{self.path / CONFIG} does not name a {', '.join(GROUPS)}; it is not a run's config."
            ) from None

    @property
    def seed(self):
        return self.config.get("seed")

    def dataset(self) -> dict:
        """The run's data set settings, a relative dataset.root (relative to where run.py was started) found
        beside the run directory or in one of its parents where it exists there."""
        settings = dict(self.config.get("dataset") or {})
        root = settings.get("root")
        if root and not Path(root).is_absolute():
            bases = [self.path.resolve(), *self.path.resolve().parents]
            settings["root"] = str(next((b / root for b in bases if (b / root).exists()), Path(root)))
        return settings

    # ------------------------------------------------------------------------------------------ its stages

    @property
    def stages(self) -> dict[str, dict]:
        """Each planned stage's figures in summary.json (its key, whether reused, its metrics); empty until
        the run finished."""
        return (self.summary or {}).get("stages", {})

    def key(self, stage: str) -> str | None:
        return self.stages.get(stage, {}).get("key")

    def identity(self, stage: str, stored: bool = False) -> dict | None:
        """What the stage's key hashes (its spec's identity), from summary.json; a summary written before it
        was recorded has none: then None, or with ``stored`` the identity in its artifact's meta.json where
        the store is found."""
        found = self.stages.get(stage, {}).get("identity")
        if found is None and stored and (store := self.store(stage)) is not None:
            found = json.loads((store / self.key(stage) / META).read_text()).get("identity")
        return found

    def identities(self) -> dict[str, dict] | None:
        """Every stage's identity, by stage; None when the summary lacks any (an older run's)."""
        found = {stage: self.identity(stage) for stage in self.stages}
        return found if found and all(i is not None for i in found.values()) else None

    # ------------------------------------------------------------------------------------------ its store

    def stores(self) -> list[Path]:
        """Where the run's artifact store may be, most likely first: artifacts.root as given when absolute,
        else beside the run directory, in one of its parents, or in the current directory."""
        return artifact_stores(self.path, self.config)

    def store(self, stage: str) -> Path | None:
        """The store that holds the stage's artifact (complete: its meta.json written); None if none does."""
        key = self.key(stage)
        return next((s for s in self.stores() if key and (s / key / META).is_file()), None)

    def artifact(self, stage: str, fix: str = "run this from where run.py was started") -> Artifact:
        """The stage's artifact, its checksums verified; a stage the run did not plan, or an artifact in no
        store where the run's artifacts.root may be, is refused in one sentence ending in ``fix``."""
        from dih.store.artifacts import ArtifactStore

        key = self.key(stage)
        if key is None:
            raise UserError(
                f"The run in {self.path} has no {stage} stage ({', '.join(self.stages) or 'none'}); "
                "give another run."
            )
        store = self.store(stage)
        if store is None:
            root = (self.config.get("artifacts") or {}).get("root")
            raise UserError(
                f"The {stage} artifact {key} of the run in {self.path} is in no store where its "
                f"artifacts.root ({root}) may be; {fix}."
            )
        return ArtifactStore(store, on_corrupt="refuse").find(key)

    def metrics(self, stage: str) -> list[dict] | None:
        """The stage's per-epoch metric lines: from its artifact (every epoch), else from the run's own
        metrics.jsonl (the epochs trained in this run); None when neither is found."""
        key = self.key(stage)
        for store in self.stores() if key else ():
            if (store / key / METRICS).is_file():
                return read_lines(store / key / METRICS)
        if (self.path / METRICS).is_file():
            return read_lines(self.path / METRICS, stage)
        return None


def read_lines(path: Path, stage: str | None = None) -> list[dict]:
    """The JSON lines of a metrics file (of one stage's, where the file holds several)."""
    lines = []
    for text in path.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if stage is None or line.get("stage") == stage:
            lines.append(line)
    return lines


def dataset_title(data: dict) -> str:
    """The name a reader knows the data set by: dataset.label when set, else an image folder's directory
    name, else the data set's name."""
    if data.get("label"):
        return str(data["label"])
    if data.get("name") == "folder" and data.get("root"):
        return Path(str(data["root"])).resolve().name or str(data["root"])
    return str(data.get("name"))


def artifact_stores(run_dir: Path, config: dict) -> list[Path]:
    """Where a run's artifact store may be, most likely first: artifacts.root as given when absolute;
    a relative root beside the run directory or one of its parents, else in the current directory."""
    root = Path(str((config.get("artifacts") or {}).get("root", "artifacts")))
    if root.is_absolute():
        return [root]
    run_dir = Path(run_dir).resolve()
    return [base / root for base in (run_dir, *run_dir.parents, Path.cwd())]
