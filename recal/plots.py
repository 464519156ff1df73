"""Reliability diagrams drawn with matplotlib from the data of :mod:`recal.metrics.reliability`.

:func:`reliability_data` and :class:`ReliabilityData` are computed there (numpy only) and
re-exported here. A diagram holds the smoothed calibration curve of
:func:`recal.metrics.smooth_calibration_curve`
(Błasiok & Nakkiran 2023, as relplot draws it) with a pointwise percentile bootstrap band, the
classic equal-width binned bars, a histogram of the confidences, and the headline numbers.
Computing and drawing are separate: :class:`ReliabilityData` is plain arrays, and matplotlib is
imported only inside the drawing functions, so ``import recal.plots`` does not import it.

:func:`save_reliability` and :func:`save_reliability_grid` draw on a bare
``matplotlib.figure.Figure`` with an Agg canvas, never through pyplot, so they leave no global
figure state behind and work on machines without a display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from recal.metrics.reliability import ReliabilityData, reliability_data
from recal.metrics.selective import SELECTIVE_COVERAGE, RiskCoverage
from recal.metrics.validation import check_positive_int

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ReliabilityData",
    "draw_reliability",
    "reliability_data",
    "save_reliability",
    "save_reliability_grid",
    "save_risk_coverage",
]

FloatArray = npt.NDArray[np.float64]

#: Parts of the curve where the density of confidences is below this fraction of its peak are not
#: drawn: there the kernel average has (almost) no data behind it.
MIN_RELATIVE_DENSITY = 0.02

_FIGSIZE = (5.0, 6.0)  # one diagram: a roughly square main panel over a histogram 1/4 as tall
_PANEL_SIZE = (4.2, 5.2)  # one cell of a grid
_CURVE_COLOR = "C3"
_BAR_COLOR = "C0"
_HIST_COLOR = "0.55"


# --------------------------------------------------------------------------- draw


def _check_data(data: object) -> ReliabilityData:
    if not isinstance(data, ReliabilityData):
        raise TypeError(
            f"data must be a ReliabilityData (from reliability_data), got {type(data).__name__}"
        )
    return data


def _check_dpi(dpi: float) -> None:
    if isinstance(dpi, bool) or not isinstance(dpi, int | float) or not (
        math.isfinite(dpi) and dpi > 0
    ):
        raise ValueError(f"dpi must be a positive number, got {dpi!r}")


def _visible(data: ReliabilityData) -> npt.NDArray[np.bool_]:
    peak = float(data.density.max())
    if peak <= 0:
        return np.zeros(data.grid.shape, dtype=bool)
    return data.density >= MIN_RELATIVE_DENSITY * peak


def _headline(data: ReliabilityData) -> str:
    return "\n".join([
        f"n = {data.n:,}",
        f"smooth ECE = {data.smooth_ece:.3f}",
        f"bandwidth = {data.bandwidth:.3f}",
        f"ECE ({data.n_bins} bins) = {data.binned_ece:.3f}",
        f"accuracy = {data.accuracy:.3f}",
        f"mean confidence = {data.mean_confidence:.3f}",
    ])


# Corners of the main panel (axes coordinates: x0, x1, y0, y1 of the region a box would cover),
# in order of preference: LLMs are mostly overconfident, so their curves avoid the upper left.
_CORNERS = {
    "upper left": (0.0, 0.5, 0.6, 1.0),
    "lower right": (0.5, 1.0, 0.0, 0.4),
    "lower left": (0.0, 0.5, 0.0, 0.4),
    "upper right": (0.5, 1.0, 0.6, 1.0),
}


def _corner_order(data: ReliabilityData, show_band: bool) -> list[str]:
    """Corners sorted by how little of the drawn curve (and band) they would cover."""
    shown = _visible(data)
    x = data.grid[shown]
    ys = [data.curve[shown]]
    if show_band:
        ys += [data.band_low[shown], data.band_high[shown]]
    scores = {}
    for rank, (name, (x0, x1, y0, y1)) in enumerate(_CORNERS.items()):
        inside = sum(int(np.sum((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))) for y in ys)
        diagonal = 1 if name in ("lower left", "upper right") else 0
        scores[name] = (inside, diagonal, rank)
    return sorted(scores, key=scores.__getitem__)


def _text_anchor(corner: str) -> dict[str, Any]:
    vertical, horizontal = corner.split()
    return {
        "x": 0.03 if horizontal == "left" else 0.97,
        "y": 0.97 if vertical == "upper" else 0.03,
        "ha": horizontal,
        "va": "top" if vertical == "upper" else "bottom",
    }


def _draw_curve(ax: Axes, data: ReliabilityData) -> None:
    """The smoothed curve, thicker and more opaque where more predictions lie (as relplot does);
    parts with almost no data are not drawn."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgba

    points = np.column_stack([data.grid, data.curve])
    segments = np.stack([points[:-1], points[1:]], axis=1)
    density = (data.density[:-1] + data.density[1:]) / 2.0
    peak = float(data.density.max())
    weight = np.sqrt(np.clip(density / peak, 0.0, 1.0)) if peak > 0 else np.zeros_like(density)
    shown = _visible(data)
    shown = shown[:-1] & shown[1:]
    colors = np.tile(to_rgba(_CURVE_COLOR), (segments.shape[0], 1))
    colors[:, 3] = np.where(shown, 0.35 + 0.65 * weight, 0.0)
    lines = LineCollection(segments, colors=colors, linewidths=0.8 + 2.4 * weight,
                           capstyle="round", zorder=4)
    ax.add_collection(lines)


def _draw_main(
    ax: Axes, data: ReliabilityData, *, title: str | None, show_bins: bool, show_band: bool,
    legend: bool,
) -> tuple[list[Artist], list[str]]:
    """Diagonal, bars, band, curve and text box on ``ax``; returns the legend's handles and
    labels (and draws the legend when ``legend``)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Artist] = []
    labels: list[str] = []
    (diagonal,) = ax.plot([0, 1], [0, 1], ls="--", lw=1, color="0.45", zorder=2)
    handles.append(diagonal)
    labels.append("perfect calibration")
    if show_bins:
        filled = data.bin_count > 0
        ax.bar(data.bin_edges[:-1][filled], data.bin_accuracy[filled], width=1.0 / data.n_bins,
               align="edge", color=_BAR_COLOR, alpha=0.22, edgecolor=_BAR_COLOR, linewidth=0.6,
               zorder=1)
        handles.append(Patch(facecolor=_BAR_COLOR, alpha=0.3, edgecolor=_BAR_COLOR))
        labels.append(f"binned accuracy ({data.n_bins} bins)")
    if show_band:
        ax.fill_between(data.grid, data.band_low, data.band_high, where=_visible(data),
                        color=_CURVE_COLOR, alpha=0.2, linewidth=0, zorder=3)
        handles.append(Patch(facecolor=_CURVE_COLOR, alpha=0.2))
        labels.append(f"{data.confidence_level:.0%} bootstrap band")
    _draw_curve(ax, data)
    handles.insert(1, Line2D([], [], color=_CURVE_COLOR, lw=2.2))
    labels.insert(1, "smoothed accuracy")

    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("accuracy")
    if title is not None:
        ax.set_title(title)
    corners = _corner_order(data, show_band)
    ax.text(**_text_anchor(corners[0]), s=_headline(data), transform=ax.transAxes, fontsize=8,
            multialignment="left",
            zorder=6, bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "alpha": 0.85,
                            "edgecolor": "0.7"})
    if legend:
        ax.legend(handles, labels, loc=corners[1], fontsize=7, framealpha=0.85)
    return handles, labels


def _draw_hist_panel(ax: Axes, data: ReliabilityData, ymax: float | None) -> None:
    from matplotlib.ticker import MaxNLocator

    fraction = data.hist_counts / data.n
    ax.bar(data.hist_edges[:-1], fraction, width=1.0 / data.hist_bins, align="edge",
           color=_HIST_COLOR, edgecolor="white", linewidth=0.5)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05 * (ymax if ymax is not None else max(float(fraction.max()), 1e-9)))
    ax.set_xlabel("confidence")
    ax.set_ylabel("frequency")
    ax.yaxis.set_major_locator(MaxNLocator(3))


def _draw_hist_twin(ax: Axes, data: ReliabilityData) -> None:
    """The histogram as grey bars in the bottom fifth of ``ax``, on a right-hand twin axis drawn
    behind the diagram."""
    fraction = data.hist_counts / data.n
    twin = ax.twinx()
    twin.bar(data.hist_edges[:-1], fraction, width=1.0 / data.hist_bins, align="edge",
             color=_HIST_COLOR, alpha=0.45, edgecolor="white", linewidth=0.5)
    top = max(float(fraction.max()), 1e-9)
    twin.set_ylim(0.0, 5.0 * top)
    twin.set_yticks([0.0, top])
    twin.set_yticklabels(["0", f"{top:.0%}"], fontsize=7, color="0.4")
    twin.set_ylabel("frequency", color="0.4", fontsize=8)
    twin.yaxis.set_label_coords(1.06, 0.1)
    twin.set_zorder(ax.get_zorder() - 1)
    ax.patch.set_visible(False)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("confidence")


def _draw_pair(
    fig: Any, spec: Any, data: ReliabilityData, *, title: str | None, show_bins: bool,
    show_band: bool, legend: bool, hist_ymax: float | None = None,
) -> tuple[Axes, list[Artist], list[str]]:
    """Main panel over a histogram panel (height ratios 4:1) in ``spec`` of ``fig``."""
    inner = spec.subgridspec(2, 1, height_ratios=[4, 1], hspace=0.04)
    ax = fig.add_subplot(inner[0])
    hist_ax = fig.add_subplot(inner[1], sharex=ax)
    handles, labels = _draw_main(ax, data, title=title, show_bins=show_bins,
                                 show_band=show_band, legend=legend)
    ax.tick_params(labelbottom=False)
    _draw_hist_panel(hist_ax, data, hist_ymax)
    return ax, handles, labels


def draw_reliability(
    data: ReliabilityData,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    show_bins: bool = True,
    show_band: bool = True,
) -> Axes:
    """Draw a reliability diagram and return the main Axes.

    The main panel has the diagonal, the binned accuracies as light bars (one per bin, as wide as
    the bin), the smoothed curve (thicker and more opaque where more predictions lie; not drawn
    where the density is below ``MIN_RELATIVE_DENSITY`` of its peak) with its bootstrap band, a
    box with the headline numbers and a legend; box and legend take the two corners that cover
    the least of the curve.

    With ``ax=None`` a new pyplot figure is made (so ``plt.show()`` and notebooks display it)
    with the histogram of confidences in a panel below, height ratios 4:1, sharing the x axis;
    reach it as ``ax.figure.axes[1]``. With an ``ax``, the histogram is drawn inside it instead,
    as grey bars on a right-hand twin axis scaled into the bottom fifth and drawn behind the
    curve, so the diagram never spills out of the space it was given. To write a file without
    pyplot, use :func:`save_reliability`.
    """
    data = _check_data(data)
    if ax is not None:
        _draw_main(ax, data, title=title, show_bins=show_bins, show_band=show_band, legend=True)
        _draw_hist_twin(ax, data)
        return ax
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=_FIGSIZE, layout="constrained")
    main, _, _ = _draw_pair(fig, fig.add_gridspec(1, 1)[0], data, title=title,
                            show_bins=show_bins, show_band=show_band, legend=True)
    return main


def _agg_figure(figsize: tuple[float, float]) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no global backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _write_png(fig: Figure, path: str | os.PathLike[str], dpi: float) -> Path:
    out = Path(path)
    try:
        fig.savefig(out, dpi=dpi, format="png")
    finally:
        fig.clear()  # drop the artists now; without pyplot nothing else holds the figure
    return out


def save_reliability(
    data: ReliabilityData,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: float = 150,
    figsize: tuple[float, float] = _FIGSIZE,
) -> Path:
    """Draw ``data`` as :func:`draw_reliability` does with ``ax=None`` and write it to ``path``
    as a PNG of ``figsize`` inches at ``dpi`` (so ``figsize * dpi`` pixels); returns the path.

    Drawn on a bare ``Figure`` with an Agg canvas, not through pyplot: no global state changes.
    """
    data = _check_data(data)
    _check_dpi(dpi)
    fig = _agg_figure(figsize)
    _draw_pair(fig, fig.add_gridspec(1, 1)[0], data, title=title, show_bins=True,
               show_band=True, legend=True)
    return _write_png(fig, path, dpi)


def save_reliability_grid(
    panels: Sequence[tuple[str, ReliabilityData]],
    path: str | os.PathLike[str],
    *,
    ncols: int = 3,
    dpi: float = 150,
) -> Path:
    """Several diagrams side by side, one per ``(title, data)`` in ``panels``, written as a PNG.

    ``min(ncols, len(panels))`` columns, rows as needed. Every main panel spans [0, 1] x [0, 1]
    and every histogram shows the fraction of predictions per bin on one shared y range, so
    panels compare at a glance. When all panels would have the same legend it is drawn once,
    below the grid; otherwise each panel gets its own.
    """
    if isinstance(panels, str | bytes) or not isinstance(panels, Sequence) or not panels:
        raise ValueError("panels must be a non-empty sequence of (title, ReliabilityData) pairs")
    for i, panel in enumerate(panels):
        if not (isinstance(panel, tuple) and len(panel) == 2 and isinstance(panel[0], str)
                and isinstance(panel[1], ReliabilityData)):
            raise ValueError(f"panels[{i}] must be a (title, ReliabilityData) pair, got "
                             f"{type(panel).__name__}")
    check_positive_int(ncols, "ncols")
    _check_dpi(dpi)
    ncols = min(int(ncols), len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _agg_figure((_PANEL_SIZE[0] * ncols, _PANEL_SIZE[1] * nrows + 0.4))
    outer = fig.add_gridspec(nrows, ncols)
    hist_ymax = max(float((d.hist_counts / d.n).max()) for _, d in panels)
    legends = {(d.n_bins, d.confidence_level) for _, d in panels}
    shared_legend = len(legends) == 1
    for i, (name, data) in enumerate(panels):
        ax, handles, labels = _draw_pair(
            fig, outer[i // ncols, i % ncols], data, title=name, show_bins=True, show_band=True,
            legend=not shared_legend, hist_ymax=hist_ymax,
        )
        if i % ncols:
            ax.set_ylabel("")
            fig.axes[-1].set_ylabel("")
    if shared_legend:
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8,
                   frameon=False)
    return _write_png(fig, path, dpi)


def save_risk_coverage(
    curves: Sequence[tuple[str, RiskCoverage]],
    path: str | os.PathLike[str],
    *,
    dpi: float = 150,
    figsize: tuple[float, float] = (5.5, 4.5),
) -> Path:
    """Risk-coverage curves (:func:`recal.metrics.risk_coverage_curve`), one per ``(name,
    curve)``, on one axes, written as a PNG: each scorer's selective risk (solid), the best
    reachable at its accuracy (dotted) and a random ranking's level (dashed), with a mark at the
    coverage of ``selective_accuracy_10``. Lower is better; the legend gives AURC and PRR."""
    if isinstance(curves, str | bytes) or not isinstance(curves, Sequence) or not curves:
        raise ValueError("curves must be a non-empty sequence of (name, RiskCoverage) pairs")
    for i, item in enumerate(curves):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], RiskCoverage)):
            raise ValueError(f"curves[{i}] must be a (name, RiskCoverage) pair, got "
                             f"{type(item).__name__}")
    _check_dpi(dpi)
    fig = _agg_figure(figsize)
    ax = fig.add_subplot()
    top = 0.0
    for i, (name, curve) in enumerate(curves):
        color = f"C{i % 10}"
        prr = "-" if math.isnan(curve.prr) else f"{curve.prr:.2f}"
        ax.plot(np.concatenate([[0.0], curve.coverage]),
                np.concatenate([[curve.risk[0]], curve.risk]), color=color, lw=1.6,
                label=f"{name} (AURC {curve.aurc:.3f}, PRR {prr})")
        ax.plot(curve.coverage, curve.best_risk, color=color, lw=1.0, ls=":")
        ax.axhline(1.0 - curve.accuracy, color=color, lw=0.8, ls="--")
        top = max(top, float(curve.risk.max()), 1.0 - curve.accuracy)
    ax.axvline(SELECTIVE_COVERAGE, color="0.6", lw=0.8)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, min(1.0, top * 1.1 + 0.02))
    ax.set_xlabel("coverage (share of questions answered, most confident first)")
    ax.set_ylabel("risk (error rate among answered)")
    ax.set_title("risk-coverage: dotted best possible, dashed random", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return _write_png(fig, path, dpi)
