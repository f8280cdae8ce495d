"""Run a plan: each planned stage, upstream first, is reused from the artifact store or built there with
its upstream artifacts."""

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dih import stages
from dih.plan.chain import plan_run, runtime
from dih.store import atomic
from dih.store.artifacts import Artifact, ArtifactStore
from dih.store.fs_errors import user_error
from dih.train.metrics import BEST_VAL, LAST, MAIN, final
from dih.train.tracking import Tracker

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run_dir: Path, start_dir: Path | None = None) -> dict:
    """Run (or reuse) every planned stage; write and return the run's summary.

    ``summary.json`` appears only when the run succeeded; a failed run leaves ``failed.json`` saying why,
    so a report over a sweep can list it instead of dropping it. A full disk, a read-only file system,
    no permission or a file in the way, in the store or the run directory, is one sentence (a UserError)
    naming the path and the setting that moves it.

    A relative artifacts.root is relative to ``start_dir``, where run.py was started (default: the
    current directory), not to the job's working directory: with ``hydra.job.chdir=true`` every run would
    otherwise get a store of its own and reuse nothing.
    """
    run_dir = Path(run_dir)
    root = Path(start_dir or Path.cwd()) / Path(cfg.artifacts.root)
    places = {root.absolute(): "artifacts.root", run_dir.absolute(): "hydra.run.dir"}
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # The resolved config beside the results: what the report reads to place the run in its table.
        atomic.write_bytes(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True).encode())
        (run_dir / "failed.json").unlink(missing_ok=True)
    except OSError as exc:
        raise _user_error(exc, places) from exc
    tracker = Tracker(run_dir, cfg)
    try:
        summary = _run_stages(cfg, tracker, root)
    except BaseException as exc:
        error = _user_error(exc, places)
        _write_failed(run_dir, error)
        if error is exc:
            raise
        raise error from exc
    finally:
        tracker.close()
    try:
        atomic.write_json(run_dir / "summary.json", summary)
    except OSError as exc:
        raise _user_error(exc, places) from exc
    return summary


def _user_error(exc: BaseException, places: dict[Path, str]) -> BaseException:
    """``exc`` as the user's one sentence when it is a file-system error in one of ``places``, else itself."""
    return user_error(exc, places) or exc


def _write_failed(run_dir: Path, exc: BaseException) -> None:
    """``failed.json`` saying why; best effort, as the disk that is full may be the reason."""
    try:
        atomic.write_json(run_dir / "failed.json", {"error": f"{type(exc).__name__}: {exc}"})
    except OSError as err:
        log.error("could not write %s: %s", run_dir / "failed.json", err)


def _run_stages(cfg: DictConfig, tracker: Tracker, root: Path) -> dict:
    planned = plan_run(cfg)
    store = ArtifactStore(root, on_corrupt=cfg.artifacts.on_corrupt)
    rt = runtime(cfg, on_epoch=tracker.log_epoch)
    log.info("device %s, artifacts in %s", rt.device, store.root)
    log.info("plan: %s", ", ".join(f"{p.name} {p.spec.key}" for p in planned))
    built: dict[str, Artifact] = {}
    summary = {
        "method": cfg.method.name,
        "dataset": cfg.dataset.name,
        "teacher": cfg.teacher.name,
        "student": cfg.student.name,
        "seed": cfg.seed,
        "stages": {},
    }
    for p in planned:
        spec = p.spec
        upstream = {role: built[key] for role, key in spec.upstream().items()}
        artifact, fresh = store.get_or_build(
            spec.key, spec.identity(), lambda work, s=spec, up=upstream: stages.build(s, up, rt, work)
        )
        log.info("%s: %s artifact %s (%s)", p.name, "built" if fresh else "reused", spec.key, artifact.path)
        built[spec.key] = artifact
        # the identity beside the key: what the report compares to tell runs made differently apart
        entry = {"key": spec.key, "identity": spec.identity(), "reused": not fresh}
        summary["stages"][p.name] = {**entry, **artifact.summary}
    last = summary["stages"][planned[-1].name]
    summary.update({k: v for k, v in last.items() if k in (final(MAIN, LAST), final(MAIN, BEST_VAL))})
    tracker.log_summary(summary)
    return summary
