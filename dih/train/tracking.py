"""Where a run's metrics go: always a JSON-lines file in the run directory, and optionally Weights & Biases.

W&B is a guest: if it cannot start or log (no network, a bad key, a full disk), the run says so once and
carries on without it; training never stops for it.
"""

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class Tracker:
    """Metrics of one run: per-epoch lines of every stage, then the run's summary."""

    def __init__(self, run_dir: Path, cfg: DictConfig):
        self.metrics_file = Path(run_dir) / "metrics.jsonl"
        self.wandb = _start_wandb(run_dir, cfg) if cfg.logger.name == "wandb" else None

    def log_epoch(self, line: dict) -> None:
        with self.metrics_file.open("a") as f:
            f.write(json.dumps(line) + "\n")
        self._to_wandb(
            lambda run: run.log({f"{line['stage']}/{k}": v for k, v in line.items() if k != "stage"})
        )

    def log_summary(self, summary: dict) -> None:
        flat = {
            f"{stage}/{k}": v
            for stage, figures in summary["stages"].items()
            for k, v in figures.items()
            if k != "identity"  # what the key hashes: in summary.json for the report, not a figure
        }
        flat.update({k: v for k, v in summary.items() if k.startswith("test/")})
        self._to_wandb(lambda run: run.summary.update(flat))

    def close(self) -> None:
        self._to_wandb(lambda run: run.finish())

    def _to_wandb(self, call) -> None:
        if self.wandb is None:
            return
        try:
            call(self.wandb)
        except Exception as exc:  # noqa: BLE001 - a logging failure must never stop training
            log.warning("W&B failed (%s); going on without it", exc)
            self.wandb = None


def _start_wandb(run_dir: Path, cfg: DictConfig):
    settings = cfg.logger
    pair = f"{cfg.teacher.name}->{cfg.student.name}"
    try:
        import wandb

        return wandb.init(
            project=settings.project,
            entity=settings.get("entity"),
            mode=settings.mode,
            dir=str(run_dir),
            group=settings.get("group") or _sweep_name(run_dir),
            name=f"{cfg.method.name} {pair} s{cfg.seed}",
            tags=[cfg.method.name, pair, f"seed{cfg.seed}", cfg.dataset.name, *settings.get("tags", [])],
            config=OmegaConf.to_container(cfg, resolve=True),
            reinit="finish_previous",
        )
    except Exception as exc:  # noqa: BLE001
        log.warning("W&B could not start (%s); metrics go to %s only", exc, run_dir / "metrics.jsonl")
        return None


def _sweep_name(run_dir: Path) -> str:
    """Runs of one multirun share their sweep directory; a single run is its own group."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode.name == "MULTIRUN":
            return Path(hydra_cfg.sweep.dir).name
    except Exception:  # noqa: BLE001 - outside a Hydra app
        pass
    return Path(run_dir).name
