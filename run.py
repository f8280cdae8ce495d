"""The entry point: compose the config with Hydra and hand it to the pipeline.

python run.py method=dih teacher=res110 student=res8
python run.py experiment=smoke            # a tiny offline run of the same chain
python run.py --help                      # the config groups and their options
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dih.cli import check_group_choices
from dih.errors import UserError

CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    from dih.pipeline import run  # imported here so --help and bad names answer without loading torch

    try:
        return run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    try:
        check_group_choices(sys.argv[1:], CONF)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    main()
