"""What a stage's build uses besides its spec: the device, the loaded data sets, how the frozen teacher side
runs, and the shared ``fit``. None of it is in a key (docs/choices.md)."""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dih.data import ImageData, load_data
from dih.teacher_side.precision import bf16_warning
from dih.teacher_side.side import Speed
from dih.train.engine import Task, fit

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Where and how a run's stages build: the device, evaluation batch size, progress display, the
    teacher side's layout and compilation, whether the training step is compiled, where the cohort cache
    is held, and the metric hook. None of it changes what a stage produces (at most its rounding), so none
    of it is in a key; the loaded data sets are kept for the run's later stages. (Determinism is applied
    once to the process when the device is set up: dih/plan/chain.py ``runtime``.)"""

    device: torch.device
    eval_batch_size: int = 512
    progress: bool | None = None
    channels_last: bool = False
    compile: bool = False  # teacher_side.compile
    compile_training: bool = False  # trainer.compile: the trained model's step (dih/train/compiled_step.py)
    cache_device_share: float = 0.5  # the share of the device's free memory the cohort cache may take
    warned: bool = False  # whether the emulated-bf16 warning was logged (once a run)
    on_epoch: Callable[[dict], None] = field(default=lambda line: None)
    loaded: dict[str, ImageData] = field(default_factory=dict)

    def data(self, settings: dict) -> ImageData:
        """The data set of a spec, loaded on first use only (a run whose stages are all reused loads none)."""
        name = json.dumps(settings, sort_keys=True, default=str)
        if name not in self.loaded:
            data = self.loaded[name] = load_data(settings)
            log.info(
                "data %s: %d train, %d val, %d test images of %s, %d classes",
                data.name,
                len(data.train_labels),
                len(data.val_labels),
                len(data.test_labels),
                "x".join(map(str, data.image_shape)),
                data.num_classes,
            )
        return self.loaded[name]

    def speed(self, bf16: bool) -> Speed:
        warning = bf16_warning(self.device) if bf16 else None
        if warning and not self.warned:
            self.warned = True
            log.warning(warning)
        return Speed(bf16=bf16, channels_last=self.channels_last, compile=self.compile)

    def fit(self, task: Task, data: ImageData, spec, work_dir: Path) -> dict:
        """Train ``task`` on ``data`` with the spec's recipe and seed: what every training stage shares."""
        return fit(
            task,
            data,
            spec.recipe,
            self.device,
            work_dir,
            seed=spec.seed,
            stage=spec.kind,
            eval_batch_size=self.eval_batch_size,
            on_epoch=self.on_epoch,
            progress=self.progress,
            compiled=self.compile_training,
        )
