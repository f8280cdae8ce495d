"""The benchmark runs end to end on tiny settings and prints a consistent table. Speed targets are never
asserted here: they belong to the benchmark's own run on a quiet machine."""

import pytest
import torch
from omegaconf import OmegaConf

from dih.config.groups import CONF
from dih.device import has_native_bf16
from dih.errors import UserError
from dih.losses import LOSSES, Needs
from dih.teacher_side import measure
from dih.teacher_side.measure import BUILD, LIVE, stage_batches
from dih.teacher_side.precision import bf16_checked
from dih.tools import bench
from dih.tools.precision_check import Check, run_batches, verdict

ROWS = [
    ("loader", "torchvision DataLoader, PIL transforms, 0 workers"),
    ("loader", "torchvision DataLoader, 2 workers"),
    ("loader", "DeviceLoader"),
    ("teacher (res8)", "careful plain: DataLoader + CE"),
    ("teacher (res8)", "Task (CE)"),
    # the one teacher side measurement (dih/teacher_side/measure.py), at --quick's batches
    ("teacher side forward (res8 + heads), live step, batch 16", "fp32"),
    ("teacher side forward (res8 + heads), live step, batch 16", "bf16"),
    ("teacher side forward (res8 + heads), cache build, batch 32", "fp32"),
    ("teacher side forward (res8 + heads), cache build, batch 32", "bf16"),
    ("heads (DIH linear)", "seed-style"),
    ("heads (DIH linear)", "careful plain"),
    ("heads (DIH linear)", "Task (heads), fp32"),
    ("heads (DIH linear)", "Task (heads), bf16"),
    ("DIH student (res8 -> res8)", "seed-style"),
    ("DIH student (res8 -> res8)", "careful plain"),
    ("DIH student (res8 -> res8)", "ceiling"),
    ("DIH student (res8 -> res8)", "Task (DIH), live fp32"),
    ("DIH student (res8 -> res8)", "Task (DIH), live bf16"),
    ("DIH student (res8 -> res8)", "Task (DIH), cohort cache"),
    ("DIH student (res8 -> res8)", "cohort cache build"),
    # one row per method loss (a loss without a teacher: no teacher side), then FitNets' hint stage
    *(
        ("student by method (res8 -> res8)", f"Task ({m}), {where}")
        for m, where in [
            *(
                (name, "live fp32" if cls.needs is not Needs.NOTHING else "no teacher side")
                for name, cls in LOSSES.items()
            ),
            ("fitnets (hint stage)", "live fp32"),
        ]
    ),
]
UNRATIOED = 1 + len(LOSSES) + 1  # the cache build and the rows by method: no reference loop of their own


def parse_table(report: str, which: int = 0) -> list[dict]:
    """The ``which``-th Markdown table of the report as dicts by column."""
    tables = [block for block in report.split("\n\n") if block.startswith("|")]
    lines = tables[which].splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    assert all(len(row) == len(header) for row in rows)
    return rows


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.md"
    rows, report = bench.run(["--quick", "--device", "cpu", "--out", str(out)])
    return rows, report, out


@pytest.mark.slow  # the benchmark end to end (the quick fixture)
def test_every_row_is_printed_with_a_positive_rate(quick):
    _, report, out = quick
    assert out.read_text() == report
    assert "- command: `python -m dih.bench --quick --device cpu --out " in report
    assert "device cpu" in report
    assert "torch " in report and "threads" in report and "CPU " in report
    table = parse_table(report)
    assert len(table) == len(ROWS)
    for (stage, loop), row in zip(ROWS, table):
        assert row["stage"] == stage and row["loop"].startswith(loop), row
        assert float(row["images/s"]) > 0


@pytest.mark.slow  # the benchmark end to end (the quick fixture)
def test_every_ratio_is_the_printed_rate_over_its_reference(quick):
    rows, report, _ = quick
    table = parse_table(report)
    printed = {(row["stage"], row["loop"]): row["images/s"] for row in table}

    def bounds(text: str) -> tuple[float, float]:
        """The rates a printed one may have been rounded from (a slow row prints 3 significant digits)."""
        half = 0.5 * 10 ** -len(text.partition(".")[2])
        return float(text) - half, float(text) + half

    checked = 0
    for row, line in zip(rows, table):
        for column, ref in (("x seed-style", row.seed_ref), ("x careful plain", row.plain_ref)):
            if ref is None:
                assert line[column] == ""
                continue
            (lo, hi), (ref_lo, ref_hi) = bounds(printed[row.stage, row.loop]), bounds(printed[row.stage, ref])
            ratio = float(line[column])  # itself rounded to two decimals
            assert lo / ref_hi - 0.0051 <= ratio <= hi / ref_lo + 0.0051, (line, ref)
            checked += 1
    assert checked == 2 * (len(ROWS) - UNRATIOED)  # every other row has both ratios
    references = [(row, line) for row, line in zip(rows, table) if row.loop == row.seed_ref]
    assert len(references) == 6  # one per stage
    assert all(line["x seed-style"] == "1.00" for _, line in references)


def test_runs_per_hour_is_a_stage_over_the_rate():
    # 200 epochs x 45,000 images at 250 images/s: 36,000 s a run, 0.1 runs an hour
    assert bench.runs_per_hour(250.0, 200, 45000) == pytest.approx(0.1)
    assert bench.runs_per_hour(1000.0, 100, 50000) == pytest.approx(3600 / 5000)


@pytest.mark.slow  # the benchmark end to end (the quick fixture)
def test_runs_per_hour_table_follows_the_student_rows(quick):
    _, report, _ = quick
    rates = {
        row["loop"]: float(row["images/s"]) for row in parse_table(report) if row["stage"].startswith("DIH")
    }
    per_hour = parse_table(report, 1)
    assert [row["loop"] for row in per_hour] == [
        loop for loop in rates if "ceiling" not in loop and "build" not in loop
    ]
    assert per_hour[0]["x seed-style"] == "1.00"
    for row in per_hour:  # --quick: 200 epochs of 64 images
        expected = 3600 * rates[row["loop"]] / (200 * 64)
        assert float(row["runs per device-hour"]) == pytest.approx(expected, rel=0.01), row
    assert "64 images x 162 variants at" in report


@pytest.mark.slow  # the benchmark end to end (the quick fixture)
def test_bf16_rows_run_bf16_and_say_whether_it_is_emulated(quick):
    _, report, _ = quick
    b = bench.Bench(bench.parse(["--quick", "--device", "cpu"]))
    assert b.bf16.bf16  # forced on, whatever auto would choose here
    assert all(p.dtype == torch.bfloat16 for p in b.side(b.bf16).run_teacher.parameters())
    loops = [row["loop"] for row in parse_table(report)]
    forced = [loop for loop in loops if "bf16" in loop and not loop.startswith("cohort cache build")]
    assert len(forced) == 4
    emulated = not has_native_bf16(torch.device("cpu"))
    assert all(("emulated" in loop) == emulated for loop in forced)
    # The cache build is no forced row: it runs as a run's cohort stage would, in bf16 where auto has it.
    (build,) = [loop for loop in loops if loop.startswith("cohort cache build")]
    auto = "bf16" if bf16_checked("cpu") else "fp32"
    assert build.startswith(f"cohort cache build, {auto} teacher side"), build


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_the_device_flag_is_honoured():
    with pytest.raises(UserError, match="no CUDA"):
        bench.run(["--quick", "--device", "cuda"])


def test_the_precision_rows_are_the_one_measurement_at_a_runs_batches(monkeypatch):
    """The bench's precision rows and precision_check's verdict come from one call of
    ``teacher_side_speed``, at the batches a default run's live step and cache build use."""
    full = bench.parse(["--device", "cpu"])
    trainer = OmegaConf.load(CONF / "trainer" / "default.yaml")
    default_run = {"trainer": OmegaConf.to_container(trainer)}
    assert stage_batches(full.batch_size, full.build_batch_size) == run_batches(default_run)

    timed = []
    spy = lambda *a, **kw: timed.append(a[3]) or measure.teacher_side_speed(*a, **kw)  # noqa: E731
    monkeypatch.setattr(bench, "teacher_side_speed", spy)
    b = bench.Bench(bench.parse(["--quick", "--device", "cpu", "--seconds", "0.01"]))
    rows = bench.forward_rows(b)
    assert timed == [{LIVE: 16, BUILD: 32}]
    rates = [(u.fp32, u.bf16) for u in b.precision.uses]
    assert [(a.rate, c.rate) for a, c in zip(rows[::2], rows[1::2])] == rates
    assert [u.batch_size for u in b.precision.uses] == [16, 32]
    text = verdict(Check([{"classifier": "teacher", "fp32": 1.0, "bf16": 1.0, "changed": 0.0}], b.precision))
    assert "in a live step at batch 16" in text and "in a cache build at batch 32" in text
