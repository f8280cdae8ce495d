"""The measured rates of each device kind (dih/plan/device_rates.yaml): read, checked, and a device kind
chosen or refused by name before anything is planned. Torch-free, so a bad ``--device-kind`` is refused at
once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from dih.errors import UserError

TABLE = Path(__file__).with_name("device_rates.yaml")
# How a model with no row of its own is assumed to run, from a measured row of its stage (the table's
# ``scaling``, or --scaling): the same rate; by multiply-accumulates per image (arithmetic-bound: a CPU); by
# weight layers (launch-bound: a GPU at batch 64, where a step's time is its kernels' count).
SCALINGS = ("same", "flops", "layers")


@dataclass(frozen=True)
class Rate:
    """One measured row: a stage's images (or image-variants) per second on a device kind."""

    stage: str
    method: str
    model: str
    teacher: str | None
    side: str
    rate: float
    source: str


@dataclass(frozen=True)
class DeviceKind:
    name: str
    description: str
    device: str
    image_side: int
    scaling: str
    rates: tuple[Rate, ...]


@dataclass(frozen=True)
class Table:
    kinds: dict[str, DeviceKind]
    mmacs: dict[str, float]  # forward multiply-accumulates per 32x32 image, millions, per zoo model
    layers: dict[str, int]  # weight layers (Conv2d, Linear) per zoo model
    path: Path


def load(path: Path = TABLE) -> Table:
    """The table of measured rates; a malformed row is a UserError naming the file."""
    if not Path(path).is_file():
        raise UserError(f"No rates table {path}; pass --rates= a file of the form of {TABLE}.")
    try:
        raw = yaml.safe_load(Path(path).read_text())
        kinds = {}
        for name, k in raw["kinds"].items():
            rates = tuple(
                Rate(
                    r["stage"],
                    r["method"],
                    r["model"],
                    r.get("teacher"),
                    r["side"],
                    float(r["rate"]),
                    r["source"],
                )
                for r in k["rates"]
            )
            if k["scaling"] not in SCALINGS:
                raise ValueError(f"scaling {k['scaling']!r} of {name}")
            kinds[name] = DeviceKind(
                name, k["description"], k["device"], int(k["image_side"]), k["scaling"], rates
            )
        mmacs = {m: float(v["mmacs"]) for m, v in raw["models"].items()}
        layers = {m: int(v["layers"]) for m, v in raw["models"].items()}
    except (KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError) as exc:
        raise UserError(
            f"The rates table {path} is malformed ({exc}); fix it (its header says the fields)."
        ) from None
    return Table(kinds, mmacs, layers, Path(path))


def device_kind(table: Table, name: str | None, device_types: set[str]) -> DeviceKind:
    """The row set: ``name`` if given, else the one kind of the runs' device type (``device=``)."""
    if name is not None:
        check_kind(table, name)
        return table.kinds[name]
    if len(device_types) > 1:
        raise UserError(
            f"The runs plan several device types ({', '.join(sorted(device_types))}); pass --device-kind= "
            f"one of: {', '.join(sorted(table.kinds))}."
        )
    (device,) = device_types
    found = [k for k in table.kinds.values() if k.device == device]
    if len(found) != 1:
        have = "none is" if not found else f"{len(found)} are"
        raise UserError(
            f"The runs use device type {device} and {have} in the rates table; pass --device-kind= one of: "
            f"{', '.join(sorted(table.kinds))}."
        )
    return found[0]


def check_kind(table: Table, name: str | None) -> None:
    """Refuse an unknown ``--device-kind`` (before anything is planned), listing the known ones."""
    if name is not None and name not in table.kinds:
        raise UserError(
            f"No measured rates for device kind '{name}'; choose --device-kind= one of: "
            f"{', '.join(sorted(table.kinds))} (or measure it with python -m dih.bench and add its rows to "
            f"{table.path})."
        )
