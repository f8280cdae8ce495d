"""The report's plots (matplotlib, Agg backend): accuracy by method, learning curves, heads by depth.

Each function returns False, writing nothing, when it has nothing to plot.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
from matplotlib.ticker import MaxNLocator  # noqa: E402

from dih.report.results import HeadsResult, Row, Table  # noqa: E402

DPI = 120
PANEL = (5.0, 3.6)  # inches per subplot
BAR_SLOT = 1.7  # inches per bar at least, so a wrapped method name fits under its bar
LEGEND_ROW = 0.3  # inches per row of the shared legend below the subplots
CHAR = 0.075  # inches per character of 10-point legend text, with margin


def _colors(columns: list[str]) -> dict[str, tuple]:
    """One colour per column, the same in every plot."""
    cmap = plt.get_cmap("tab10" if len(columns) <= 10 else "tab20")
    return {column: cmap(i % cmap.N) for i, column in enumerate(columns)}


def _grid(count: int, extra_height: float = 0.0, panel_width: float = PANEL[0]):
    ncols = min(3, count)
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_width * ncols, PANEL[1] * nrows + extra_height), squeeze=False
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _title(text: str) -> str:
    return "\n".join(textwrap.wrap(text, 48))


def _suptitle(fig, text: str) -> None:
    """A figure title wrapped to the figure's width."""
    fig.suptitle("\n".join(textwrap.wrap(text, int(fig.get_figwidth() * 10))), fontsize=11)


def _tick(method: str) -> str:
    """A method's name, its bracketed settings on lines below, so neighbouring bars' names never overlap."""
    name, bracket, settings = method.partition(" [")
    lines = [name] + (
        textwrap.wrap(bracket.strip() + settings, 22, break_long_words=False) if bracket else []
    )
    return "\n".join(lines)


def _legend_columns(labels: list[str], width: float) -> int:
    """As many legend columns as fit the figure's width for the longest label (one at least)."""
    entry = max(len(label) for label in labels) * CHAR + 0.6  # the line sample and padding
    return max(1, min(len(labels), int(width / entry)))


def _save(fig, path: Path) -> bool:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def plot_accuracy(table: Table, path: Path) -> bool:
    """Per pair, one bar per method: mean student test accuracy with the std over seeds as error bar."""
    return bool(table.rows) and _save(accuracy_figure(table), path)


def accuracy_figure(table: Table):
    colors = _colors(table.columns)
    fig, axes = _grid(len(table.rows), panel_width=max(PANEL[0], BAR_SLOT * len(table.columns)))
    for ax, row in zip(axes, table.rows):
        present = [(m, c) for m in table.columns if (c := table.cell(row, m)) is not None]
        xs = range(len(present))
        means = [c.mean for _, c in present]
        stds = [c.std or 0.0 for _, c in present]
        bars = ax.bar(
            xs, means, yerr=stds, capsize=4, color=[colors[m] for m, _ in present], edgecolor="black"
        )
        for bar, mean, std in zip(bars, means, stds):
            ax.annotate(
                f"{mean:.1f}",
                (bar.get_x() + bar.get_width() / 2, mean + std),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
        ax.set_xticks(list(xs), [f"{_tick(m)}\nn={c.n}" for m, c in present], fontsize=8)
        # Zoomed to the bars' range (methods often differ by a point or two), never below zero.
        low = max(0.0, math.floor(min(m - s for m, s in zip(means, stds)) - 5))
        high = max(m + s for m, s in zip(means, stds))
        ax.set_ylim(low, high + 0.12 * (high - low) + 0.5)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(_title(row.label), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    _suptitle(fig, "Student test accuracy at the last epoch (mean ± std over seeds)")
    fig.tight_layout()
    return fig


def plot_curves(table: Table, means: dict[tuple[Row, str], list[tuple[int, float]]], path: Path) -> bool:
    """Per pair, the student's test accuracy per epoch, one line per method (mean over seeds)."""
    figure = curves_figure(table, means)
    return figure is not None and _save(figure, path)


def curves_figure(table: Table, means: dict[tuple[Row, str], list[tuple[int, float]]]):
    rows = [row for row in table.rows if any((row, m) in means for m in table.columns)]
    if not rows:
        return None
    plotted = [m for m in table.columns if any((row, m) in means for row in rows)]
    width = PANEL[0] * min(3, len(rows))
    legend_rows = math.ceil(len(plotted) / _legend_columns(plotted, width))
    legend_height = LEGEND_ROW * legend_rows + 0.1
    colors = _colors(table.columns)
    fig, axes = _grid(len(rows), extra_height=legend_height)
    shown = {}
    for ax, row in zip(axes, rows):
        for column in table.columns:
            points = means.get((row, column))
            if not points:
                continue
            epochs, accs = zip(*points)
            (line,) = ax.plot(
                epochs, accs, color=colors[column], marker="o" if len(points) <= 30 else None, markersize=3
            )
            shown.setdefault(column, line)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(_title(row.label), fontsize=10)
        ax.grid(alpha=0.3)
    _suptitle(fig, "Student test accuracy per epoch (mean over seeds)")
    ncol = _legend_columns(list(shown), fig.get_figwidth())
    fig.legend(list(shown.values()), list(shown), loc="lower center", ncol=ncol, frameon=False)
    fig.tight_layout(rect=(0, legend_height / fig.get_figheight(), 1, 1))
    return fig


def plot_heads(results: list[HeadsResult], path: Path) -> bool:
    """Per teacher, each head's test accuracy by depth, then the teacher's own final accuracy."""
    if not results:
        return False
    fig, axes = _grid(len(results))
    for ax, h in zip(axes, results):
        xs = list(range(1, len(h.heads) + 1))
        ax.plot(xs, h.heads, marker="o", color="tab:blue", label="heads")
        labels = [f"head {i}" for i in xs]
        points = list(zip(xs, h.heads))
        if h.teacher_acc is not None:
            final = len(xs) + 1
            ax.plot([xs[-1], final], [h.heads[-1], h.teacher_acc], linestyle="--", color="gray")
            ax.plot([final], [h.teacher_acc], marker="*", markersize=12, color="tab:red", label="teacher")
            labels.append("teacher")
            points.append((final, h.teacher_acc))
        for x, acc in points:
            ax.annotate(
                f"{acc:.1f}", (x, acc), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8
            )
        ax.set_xticks(range(1, len(labels) + 1), labels)
        ax.set_xlim(0.5, len(labels) + 0.5)
        ax.set_ylim(0, max(acc for _, acc in points) * 1.15 + 1)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(_title(h.label + (f" [{h.n} heads artifacts]" if h.n > 1 else "")), fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    _suptitle(fig, "Heads: test accuracy by depth (shallow to deep), then the teacher's own classifier")
    fig.tight_layout()
    return _save(fig, path)
