"""The report's plots stay legible with long method names: no label runs off the figure or into another."""

import pytest

from dih.report import plots as report_plots
from dih.report.results import Cell, Row, Table

# Column names as the report makes them when a sweep varies a method's settings.
COLUMNS = [
    "ce",
    "kd",
    "dih [loss.reduction=mean]",
    "dih [loss.reduction=sum]",
    "dih [loss.alpha=0.5, loss.temperature=3.0]",
]


def table(columns: list[str]) -> Table:
    row = Row("folder", "res20", "res8", title="CIFAR-10, 500 per class")
    cells = {(row, c): Cell(values=[58.0 + i, 59.0 + i], seeds=[30, 50]) for i, c in enumerate(columns)}
    return Table(variant="last", rows=[row], columns=columns, cells=cells)


def extents(fig, artists):
    fig.canvas.draw()  # lay the figure out as saving it would
    renderer = fig.canvas.get_renderer()
    return [a.get_window_extent(renderer) for a in artists]


@pytest.mark.parametrize("count", [2, 4, 5])
def test_bar_labels_do_not_overlap(count):
    fig = report_plots.accuracy_figure(table(COLUMNS[:count]))
    ticks = [t for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert len(ticks) == count
    boxes = extents(fig, ticks)
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 <= right.x0, f"tick labels overlap: {left} {right}"
    figure_box = fig.bbox
    assert all(figure_box.x0 <= b.x0 and b.x1 <= figure_box.x1 for b in boxes)


@pytest.mark.parametrize("count", [2, 4, 5])
def test_curve_legend_fits_the_figure(count):
    columns = COLUMNS[:count]
    t = table(columns)
    means = {(t.rows[0], c): [(1, 30.0 + i), (2, 40.0 + i)] for i, c in enumerate(columns)}
    fig = report_plots.curves_figure(t, means)
    (legend,) = fig.legends
    assert [text.get_text() for text in legend.get_texts()] == columns  # every method named
    (box,) = extents(fig, [legend])
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0
    (axes_box,) = extents(fig, [fig.axes[0].xaxis.label])
    assert box.y1 <= axes_box.y0, "the legend covers the x-axis label"
