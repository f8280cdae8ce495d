"""The entry point: compose the config with Hydra and hand it to the pipeline.

python run.py method=dih teacher=res110 student=res8
python run.py experiment=smoke            # a tiny offline run of the same chain
python run.py --help                      # the config groups and their options

Before Hydra runs anything, the command line is composed and validated in this process (each run of a
``--multirun`` too): a bad group option, key or value exits 2 with one ``error:`` line and nothing starts.
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dih.cli import check_command_line
from dih.config.check import validate
from dih.errors import UserError, fail


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    try:
        validate(cfg)  # again here: a launcher's job composes its own config
        from dih.pipeline import run  # imported here so --help and bad settings answer without loading torch

        hydra_cfg = HydraConfig.get()
        # a relative artifacts.root is relative to where run.py was started, whatever hydra.job.chdir says
        return run(cfg, Path(hydra_cfg.runtime.output_dir), start_dir=Path(hydra_cfg.runtime.cwd))
    except UserError as exc:
        fail(exc)


if __name__ == "__main__":
    try:
        check_command_line(sys.argv[1:])
    except UserError as exc:
        fail(exc)
    main()
