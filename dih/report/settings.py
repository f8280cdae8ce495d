"""Which settings tell a sweep's runs apart, so that runs made differently never share a cell nor a row
(where the paired comparison would take them for the same setting), and runs made alike always do.

A run's config names its settings; each stage's spec identity in its summary.json (what the stage's key
hashes) says which of them made a difference. A config key that varies among the runs of a (data set,
teacher, student) splits its rows (a ``method.*`` key, among one method's runs of a pair: its column), except

- the table's own axes (the seed, the names of the data set, teacher, student and method), and
- a key the identities show to be in no key: two runs of the group that differ in it have the same
  identities, the seed aside (``trainer.progress``, ``logger``, a new speed setting). A stage's seed is the
  seed axis where it is the run's own seed in every run of the group (the student's; the teacher's follows
  ``teacher_seed``, a setting), and a field that holds another stage's key is that stage's identity, compared
  there.

Image folders are known by their path (``dataset.root``), so the same files moved to another path are another
data set, until the reader says otherwise (``--same-data OLD=NEW``: ``same_data`` maps OLD to NEW in the
identities before they are compared).

What the identities cannot decide (a summary written before they were recorded, or a key that changes only
together with the method, as CE run on one machine and KD on another) follows the rule that came before
them: ``IGNORED`` names the keys known to change no result.
"""

from __future__ import annotations

import json
from collections import defaultdict

AXES = ("seed", "dataset.name", "dataset.label", "teacher.name", "student.name", "method.name")
# Config keys that never change a result: the rule where the identities cannot tell.
IGNORED = (
    "device",
    "artifacts",
    "logger",
    "stage",
    "trainer.progress",
    "trainer.eval_batch_size",
    "trainer.deterministic",
    "trainer.compile",
    "teacher_side.channels_last",
    "teacher_side.compile",
    "teacher_side.cache_device_share",
    "method.stages",
)
ROOT_NAMES_DATA = ("folder", "tiny_imagenet")  # data sets whose dataset.root is part of their identity


def flatten(config: dict, prefix: str = "") -> dict:
    """``{"trainer.epochs": 3, ...}``: a nested config as dotted keys, lists as JSON."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list | dict) else value
    return out


def _under(key: str, names) -> bool:
    return any(key == n or key.startswith(f"{n}.") for n in names)


def _ignored(key: str, dataset: str) -> bool:
    if key == "dataset.root":
        return dataset not in ROOT_NAMES_DATA
    return _under(key, IGNORED)


def _signatures(records: list, same_data: dict[str, str]) -> list[str | None]:
    """Each run's identities as one comparable string, the seed axis and the links to upstream keys left
    out, a data root named in ``same_data`` as its other name; None for a run whose summary has none."""
    found = [_same_roots(r.run.identities(), same_data) for r in records]
    # the stages whose seed is the run's own in every run of the group that has them: the seed axis
    seeded: dict[str, bool] = {}
    for r, identities in zip(records, found):
        for stage, identity in (identities or {}).items():
            seeded[stage] = seeded.get(stage, True) and identity.get("seed") == r.seed
    out = []
    for r, identities in zip(records, found):
        if identities is None:
            out.append(None)
            continue
        keys = {r.run.key(stage) for stage in identities}
        plain = {
            stage: {
                k: v
                for k, v in identity.items()
                if not (k == "seed" and seeded[stage]) and not (isinstance(v, str) and v in keys)
            }
            for stage, identity in identities.items()
        }
        out.append(json.dumps(plain, sort_keys=True, default=str))
    return out


def _same_roots(identities: dict | None, same_data: dict[str, str]) -> dict | None:
    """The identities with each data root that ``same_data`` names replaced by its other name."""
    if not identities or not same_data:
        return identities
    out = {}
    for stage, identity in identities.items():
        data = identity.get("data")
        if isinstance(data, dict) and data.get("root") in same_data:
            identity = {**identity, "data": {**data, "root": same_data[data["root"]]}}
        out[stage] = identity
    return out


def data_roots(records: list) -> set[str]:
    """Every data root the runs' identities name."""
    return {
        identity["data"]["root"]
        for r in records
        for identity in (r.run.identities() or {}).values()
        if isinstance(identity.get("data"), dict) and identity["data"].get("root")
    }


def in_no_key(records: list, flat: list[dict], same_data: dict[str, str] | None = None) -> set[str]:
    """The config keys that differ between two runs of ``records`` whose identities are the same."""
    alike: dict[str, list[dict]] = defaultdict(list)
    for signature, f in zip(_signatures(records, same_data or {}), flat):
        if signature is not None:
            alike[signature].append(f)
    found = set()
    for group in alike.values():
        found |= {k for k in set().union(*group) if len({str(f.get(k)) for f in group}) > 1}
    return found


def label_settings(records: list, same_data: dict[str, str] | None = None) -> None:
    """Set each run's ``setting`` (what tells its row apart from the same pair's other rows) and
    ``options`` (what tells its column apart from the same method's other columns); ``same_data``: data
    roots (as the identities hold them) that name the same files as another."""
    flat = [flatten(r.config) for r in records]
    pairs: dict[tuple, list[int]] = defaultdict(list)
    cells: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        pairs[(r.dataset, r.teacher, r.student)].append(i)
        cells[(r.dataset, r.teacher, r.student, r.method)].append(i)

    def varying(members: list[int], dataset: str, method_keys: bool) -> set[str]:
        group = [flat[i] for i in members]
        no_key = in_no_key([records[i] for i in members], group, same_data)
        # A key some runs lack (written by an older version of the project) is compared among the rest.
        return {
            key
            for key in set().union(*group)
            if key.startswith("method.") == method_keys
            and not _under(key, AXES)
            and not _ignored(key, dataset)
            and key not in no_key
            and len({str(f[key]) for f in group if key in f}) > 1
        }

    row_keys: dict[str, set[str]] = defaultdict(set)
    column_keys: dict[str, set[str]] = defaultdict(set)
    for (dataset, _, _), members in pairs.items():
        row_keys[dataset] |= varying(members, dataset, method_keys=False)
    for (dataset, _, _, method), members in cells.items():
        column_keys[method] |= varying(members, dataset, method_keys=True)
    for r, f in zip(records, flat):
        r.setting = ", ".join(f"{k}={f[k]}" for k in sorted(row_keys[r.dataset]) if k in f)
        r.options = ", ".join(
            f"{k.removeprefix('method.')}={f[k]}" for k in sorted(column_keys[r.method]) if k in f
        )
