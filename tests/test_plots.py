"""Tests for recal.plots: the computed diagram (curve, band, bars, histogram, headline numbers),
drawing and saving, edge cases and bad arguments."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recal import metrics
from recal.metrics.reliability import smoothed_accuracy as _smoothed_accuracy
from recal.metrics.resampling import draw_counts as _draw_counts
from recal.metrics.resampling import prediction_cells as _cells
from recal.plots import (
    ReliabilityData,
    draw_reliability,
    reliability_data,
    save_reliability,
    save_reliability_grid,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def calibrated(n: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.0, 1.0, n)
    return conf, (rng.random(n) < conf).astype(float)


def overconfident(n: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.beta(4.0, 1.5, n)
    return conf, (rng.random(n) < conf**3).astype(float)


def underconfident(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.0, 1.0, n)
    return conf, (rng.random(n) < np.sqrt(conf)).astype(float)


@pytest.fixture(scope="module")
def calibrated_data() -> ReliabilityData:
    return reliability_data(*calibrated())


@pytest.fixture(scope="module")
def mpl_figure():
    """A bare Agg figure factory (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def make(figsize: tuple[float, float] = (4.0, 4.0)) -> Figure:
        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        return fig

    return make


def png_shape(path: Path) -> tuple[int, ...]:
    import matplotlib.image

    return matplotlib.image.imread(path).shape


# --------------------------------------------------------------------------- imports


def test_import_does_not_import_matplotlib() -> None:
    code = "import recal.plots, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_save_does_not_touch_pyplot(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np; from recal.plots import reliability_data, save_reliability; "
        "d = reliability_data(np.linspace(0, 1, 50), np.arange(50) % 2, n_resamples=5); "
        f"save_reliability(d, {str(tmp_path / 'a.png')!r}); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert (tmp_path / "a.png").read_bytes().startswith(PNG_SIGNATURE)


# --------------------------------------------------------------------------- the smooth curve


def test_curve_is_metrics_smooth_calibration_curve(calibrated_data: ReliabilityData) -> None:
    conf, corr = calibrated()
    curve = metrics.smooth_calibration_curve(conf, corr, grid_size=200)
    d = calibrated_data
    np.testing.assert_array_equal(d.grid, curve.grid)
    np.testing.assert_array_equal(d.curve, curve.accuracy)
    np.testing.assert_array_equal(d.density, curve.density)
    assert d.bandwidth == curve.bandwidth
    assert d.smooth_ece == curve.smooth_ece == pytest.approx(metrics.smooth_ece(conf, corr))


@pytest.mark.parametrize("make", [calibrated, overconfident])
def test_batched_smoothing_reproduces_the_curve(make) -> None:
    """The resamples are smoothed by the same maths: the data's own counts give the curve."""
    conf, corr = make(n=3000, seed=3)
    curve = metrics.smooth_calibration_curve(conf, corr, grid_size=150)
    cell_conf, cell_corr, count, inverse = _cells(conf, corr)
    np.testing.assert_array_equal(cell_conf[inverse], conf)
    np.testing.assert_array_equal(cell_corr[inverse], corr)
    assert count.sum() == conf.size
    weights = np.vstack([count, 2 * count])  # doubling every count leaves the curve alone
    rows = _smoothed_accuracy(cell_conf, cell_corr, weights, curve.bandwidth, curve.grid)
    np.testing.assert_allclose(rows[0], curve.accuracy, atol=1e-9)
    np.testing.assert_allclose(rows[1], curve.accuracy, atol=1e-6)


@pytest.mark.parametrize("levels", [5, None])  # multinomial over 10 cells; index draws
def test_resample_counts_are_a_bootstrap(levels: int | None) -> None:
    conf, corr = overconfident(n=400, seed=5)
    if levels:
        conf = np.round(conf * levels) / levels
    _, _, count, inverse = _cells(conf, corr)
    draws = _draw_counts(np.random.default_rng(0), count, inverse, 4000)
    assert draws.shape == (4000, count.size)
    np.testing.assert_array_equal(draws.sum(axis=1), 400)
    # Multinomial(n, count / n): mean count, variance count (1 - count / n).
    standard_error = np.sqrt(count * (1 - count / 400) / 4000)
    assert np.all(np.abs(draws.mean(axis=0) - count) <= 5 * standard_error + 1e-9)
    expected_var = count * (1 - count / 400)
    np.testing.assert_allclose(draws.var(axis=0).sum(), expected_var.sum(), rtol=0.05)


def test_calibrated_curve_follows_the_diagonal(calibrated_data: ReliabilityData) -> None:
    d = calibrated_data
    dense = d.density > 0.5  # uniform confidences: density ~1 almost everywhere
    assert dense.sum() > 150
    gap = np.abs(d.curve - d.grid)[dense]
    assert np.mean(gap < 0.06) >= 0.9
    assert gap.mean() < 0.03
    diagonal_inside = (d.band_low <= d.grid) & (d.grid <= d.band_high)
    assert np.mean(diagonal_inside[dense]) >= 0.75  # a pointwise 90% band
    assert d.smooth_ece < 0.03


def test_overconfident_curve_lies_below_the_diagonal() -> None:
    d = reliability_data(*overconfident())
    dense = d.density > 0.5
    assert dense.sum() > 50
    assert np.all(d.curve[dense] < d.grid[dense] - 0.05)
    assert np.all(d.band_high[dense] < d.grid[dense])
    assert d.mean_confidence - d.accuracy > 0.15
    assert d.smooth_ece > 0.1


# --------------------------------------------------------------------------- the band


def test_band_is_seeded() -> None:
    conf, corr = overconfident(n=1000)
    a = reliability_data(conf, corr, seed=7)
    b = reliability_data(conf, corr, seed=7)
    c = reliability_data(conf, corr, seed=8)
    np.testing.assert_array_equal(a.band_low, b.band_low)
    np.testing.assert_array_equal(a.band_high, b.band_high)
    assert not np.array_equal(a.band_low, c.band_low)
    np.testing.assert_array_equal(a.curve, c.curve)  # the seed only moves the band


def test_curve_lies_inside_its_band(calibrated_data: ReliabilityData) -> None:
    for d in (calibrated_data, reliability_data(*overconfident(n=2000))):
        dense = d.density > 0.5
        inside = (d.band_low <= d.curve) & (d.curve <= d.band_high)
        assert np.mean(inside[dense]) >= 0.95
        assert np.all(d.band_low <= d.band_high)


def test_band_widens_with_the_level_and_narrows_with_n() -> None:
    conf, corr = overconfident(n=4000)
    narrow = reliability_data(conf, corr, confidence_level=0.5)
    wide = reliability_data(conf, corr, confidence_level=0.99)
    dense = narrow.density > 0.5
    assert np.all((wide.band_high - wide.band_low)[dense] >= (narrow.band_high
                                                              - narrow.band_low)[dense])
    assert wide.confidence_level == 0.99 and wide.n_resamples == 200
    small = reliability_data(conf[:400], corr[:400], confidence_level=0.5)
    dense_both = dense & (small.density > 0.5)
    assert np.median((small.band_high - small.band_low)[dense_both]) > np.median(
        (narrow.band_high - narrow.band_low)[dense_both])


# --------------------------------------------------------------------------- bars and histogram


SMALL_CONF = np.array([0.05, 0.15, 0.18, 0.55, 0.95, 1.0])
SMALL_CORR = np.array([0, 1, 0, 1, 1, 0])


def test_bins_by_hand() -> None:
    d = reliability_data(SMALL_CONF, SMALL_CORR, n_bins=10, hist_bins=5, n_resamples=20)
    np.testing.assert_allclose(d.bin_edges, np.linspace(0, 1, 11))
    assert d.bin_count.tolist() == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    filled = d.bin_count > 0
    np.testing.assert_allclose(d.bin_confidence[filled], [0.05, 0.165, 0.55, 0.975])
    np.testing.assert_allclose(d.bin_accuracy[filled], [0.0, 0.5, 1.0, 0.5])
    assert np.all(np.isnan(d.bin_confidence[~filled]))
    assert np.all(np.isnan(d.bin_accuracy[~filled]))
    expected_ece = (1 * 0.05 + 2 * 0.335 + 1 * 0.45 + 2 * 0.475) / 6
    assert d.binned_ece == pytest.approx(expected_ece)
    assert d.hist_counts.tolist() == [3, 0, 1, 0, 2]
    np.testing.assert_allclose(d.hist_edges, np.linspace(0, 1, 6))
    assert (d.n, d.n_bins, d.hist_bins) == (6, 10, 5)
    assert d.accuracy == pytest.approx(0.5)
    assert d.mean_confidence == pytest.approx(SMALL_CONF.mean())


@pytest.mark.parametrize("n_bins", [1, 7, 10, 15])
def test_bins_agree_with_metrics_binned_ece(n_bins: int) -> None:
    conf, corr = overconfident(n=1500, seed=2)
    conf = np.round(conf * 20) / 20  # values on bin edges too
    d = reliability_data(conf, corr, n_bins=n_bins, n_resamples=10)
    filled = d.bin_count > 0
    from_bars = np.sum(d.bin_count[filled] / d.n
                       * np.abs(d.bin_confidence[filled] - d.bin_accuracy[filled]))
    assert from_bars == pytest.approx(metrics.binned_ece(conf, corr, n_bins=n_bins))
    assert d.binned_ece == pytest.approx(metrics.binned_ece(conf, corr, n_bins=n_bins))
    assert d.bin_count.sum() == d.n


@pytest.mark.parametrize("hist_bins", [1, 3, 20, 64])
def test_histogram_counts_sum_to_n(hist_bins: int) -> None:
    conf, corr = overconfident(n=777, seed=4)
    conf[:5] = [0.0, 1.0, 0.5, 0.25, 1.0]
    d = reliability_data(conf, corr, hist_bins=hist_bins, n_resamples=10)
    assert d.hist_counts.sum() == 777
    assert d.hist_counts.shape == (hist_bins,)
    expected, _ = np.histogram(conf, bins=hist_bins, range=(0.0, 1.0))
    assert np.abs(d.hist_counts - expected).sum() <= 2  # edges: same up to floating point


def test_data_is_frozen_and_read_only(calibrated_data: ReliabilityData) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        calibrated_data.n = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        calibrated_data.curve[0] = 0.5


# --------------------------------------------------------------------------- edge cases


def test_all_correct_and_all_wrong() -> None:
    conf = np.linspace(0.3, 1.0, 400)
    right = reliability_data(conf, np.ones_like(conf), n_resamples=30)
    wrong = reliability_data(conf, np.zeros_like(conf), n_resamples=30)
    dense = right.density > 0.5
    np.testing.assert_allclose(right.curve[dense], 1.0, atol=1e-3)
    np.testing.assert_allclose(right.band_low[dense], 1.0, atol=1e-3)
    np.testing.assert_allclose(wrong.curve[dense], 0.0, atol=1e-3)
    np.testing.assert_allclose(wrong.band_high[dense], 0.0, atol=1e-3)
    assert right.accuracy == 1.0 and wrong.accuracy == 0.0
    assert np.all(right.bin_accuracy[right.bin_count > 0] == 1.0)
    assert np.all(wrong.bin_accuracy[wrong.bin_count > 0] == 0.0)


def test_constant_confidence(tmp_path: Path) -> None:
    corr = np.arange(100) % 4 != 0  # 75% right
    d = reliability_data(np.full(100, 0.9), corr, n_resamples=50)
    assert d.bin_count.tolist() == [0] * 9 + [100]
    assert d.bin_confidence[9] == pytest.approx(0.9)
    assert d.bin_accuracy[9] == pytest.approx(0.75)
    assert d.binned_ece == pytest.approx(0.15)
    assert d.hist_counts.sum() == 100 and d.hist_counts[18] == 100
    assert d.bandwidth == pytest.approx(0.15, abs=2e-3)  # smooth ECE's fixed point
    # Every prediction sits at 0.9, so the kernel average is 0.75 wherever there is density.
    dense = d.density > 0.1
    assert dense[np.searchsorted(d.grid, 0.9)]
    np.testing.assert_allclose(d.curve[dense], 0.75, atol=1e-3)
    assert save_reliability(d, tmp_path / "c.png", dpi=40).stat().st_size > 0


@pytest.mark.parametrize("conf,corr", [([0.7], [1]), ([0.0], [0]), ([1.0], [0])])
def test_a_single_prediction_works(conf, corr, tmp_path: Path) -> None:
    """n = 1 is allowed: every resample is the data, so the band collapses onto the curve."""
    d = reliability_data(conf, corr, n_resamples=20)
    assert d.n == 1 and d.hist_counts.sum() == 1 and d.bin_count.sum() == 1
    np.testing.assert_allclose(d.band_low, d.curve, atol=1e-12)
    np.testing.assert_allclose(d.band_high, d.curve, atol=1e-12)
    assert d.binned_ece == pytest.approx(abs(conf[0] - corr[0]))
    assert save_reliability(d, tmp_path / "one.png", dpi=40).read_bytes()[:8] == PNG_SIGNATURE


def test_confidence_on_the_ends() -> None:
    conf = np.array([0.0] * 30 + [1.0] * 70)
    corr = np.array([0] * 30 + [1] * 60 + [0] * 10)
    d = reliability_data(conf, corr, n_resamples=20)
    assert d.bin_count[0] == 30 and d.bin_count[-1] == 70
    assert d.bin_accuracy[-1] == pytest.approx(60 / 70)
    assert d.hist_counts[0] == 30 and d.hist_counts[-1] == 70


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "conf,corr,match",
    [
        ([0.5, 0.6], [1], "same length"),
        ([], [], "empty"),
        ([0.5, np.nan], [1, 0], "confidence has 1 non-finite"),
        ([0.5, 1.2], [1, 0], "confidence has 1 values outside"),
        ([0.5, 0.6], [1, 2], "correct must be binary"),
        ([[0.5]], [1], "confidence must be 1-D"),
        (["a"], [1], "confidence must hold numbers"),
    ],
)
def test_bad_data(conf, corr, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        reliability_data(conf, corr)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"n_bins": 0}, "n_bins"),
        ({"n_bins": 2.5}, "n_bins"),
        ({"n_bins": True}, "n_bins"),
        ({"hist_bins": 0}, "hist_bins"),
        ({"hist_bins": "10"}, "hist_bins"),
        ({"n_resamples": 0}, "n_resamples"),
        ({"n_resamples": 10.0}, "n_resamples"),
        ({"confidence_level": 1.0}, "confidence_level"),
        ({"confidence_level": 0}, "confidence_level"),
        ({"confidence_level": 95}, "confidence_level"),
        ({"grid_size": 1}, "grid_size"),
        ({"seed": "zero"}, "seed"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} "):
        reliability_data(SMALL_CONF, SMALL_CORR, **kwargs)


def test_bad_drawing_arguments(calibrated_data: ReliabilityData, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="data must be a ReliabilityData"):
        save_reliability({"curve": []}, tmp_path / "x.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^dpi "):
        save_reliability(calibrated_data, tmp_path / "x.png", dpi=0)
    with pytest.raises(ValueError, match="^panels "):
        save_reliability_grid([], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"^panels\[1\] "):
        save_reliability_grid([("a", calibrated_data), calibrated_data], tmp_path / "x.png")
    with pytest.raises(ValueError, match="^ncols "):
        save_reliability_grid([("a", calibrated_data)], tmp_path / "x.png", ncols=0)
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- drawing and saving


def test_save_reliability_writes_a_png_of_the_right_size(
    calibrated_data: ReliabilityData, tmp_path: Path
) -> None:
    out = save_reliability(calibrated_data, tmp_path / "r.png", title="calibrated", dpi=50)
    assert out == tmp_path / "r.png"
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert png_shape(out)[:2] == (300, 250)  # default figsize (5, 6) inches at 50 dpi
    out = save_reliability(calibrated_data, str(tmp_path / "s.png"), dpi=40, figsize=(4, 3))
    assert isinstance(out, Path)
    assert png_shape(out)[:2] == (120, 160)


def test_save_reliability_grid(calibrated_data: ReliabilityData, tmp_path: Path) -> None:
    panels = [
        ("calibrated", calibrated_data),
        ("overconfident", reliability_data(*overconfident(n=800), n_resamples=50)),
        ("underconfident", reliability_data(*underconfident(n=300), n_bins=5, n_resamples=50)),
    ]
    out = save_reliability_grid(panels, tmp_path / "grid.png", dpi=30)
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    height, width = png_shape(out)[:2]
    assert width > 2 * height  # three panels side by side
    tall = save_reliability_grid(panels, tmp_path / "tall.png", ncols=1, dpi=30)
    height, width = png_shape(tall)[:2]
    assert height > 2 * width  # one column, three rows


def test_draw_on_given_axes(mpl_figure, calibrated_data: ReliabilityData) -> None:
    fig = mpl_figure()
    ax = fig.add_subplot()
    assert draw_reliability(calibrated_data, ax, title="mine") is ax
    assert ax.get_title() == "mine"
    assert ax.get_xlabel() == "confidence" and ax.get_ylabel() == "accuracy"
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)
    assert len(fig.axes) == 2  # the histogram's twin axis
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["perfect calibration", "smoothed accuracy"]
    assert any("bootstrap band" in label for label in labels)
    assert any("bins" in label for label in labels)
    headline = ax.texts[0].get_text()
    assert "smooth ECE = " in headline and "n = 5,000" in headline
    fig.canvas.draw()


def test_show_flags_leave_things_out(mpl_figure, calibrated_data: ReliabilityData) -> None:
    fig = mpl_figure()
    full, bare = fig.subplots(1, 2)
    draw_reliability(calibrated_data, full)
    draw_reliability(calibrated_data, bare, show_bins=False, show_band=False)
    labels = [t.get_text() for t in bare.get_legend().get_texts()]
    assert labels == ["perfect calibration", "smoothed accuracy"]
    assert len(bare.patches) == 0 and len(full.patches) == calibrated_data.n_bins
    assert len(bare.collections) < len(full.collections)


def test_text_box_avoids_the_curve(mpl_figure) -> None:
    fig = mpl_figure()
    over, under = fig.subplots(1, 2)
    draw_reliability(reliability_data(*overconfident(n=1000), n_resamples=20), over)
    draw_reliability(reliability_data(*underconfident(n=1000), n_resamples=20), under)
    assert over.texts[0].get_position() == (0.03, 0.97)  # upper left: above the curve
    assert under.texts[0].get_position() != (0.03, 0.97)  # the curve runs through upper left


def test_draw_without_axes_makes_two_panels(calibrated_data: ReliabilityData) -> None:
    import matplotlib.pyplot as plt

    ax = draw_reliability(calibrated_data, title="pyplot")
    try:
        fig = ax.figure
        assert len(fig.axes) == 2
        main, hist = fig.axes
        assert main is ax and hist.get_xlabel() == "confidence"
        assert hist.get_ylabel() == "frequency"
        assert main.get_position().height == pytest.approx(4 * hist.get_position().height,
                                                           rel=0.15)
        assert hist.get_shared_x_axes().joined(main, hist)
    finally:
        plt.close(ax.figure)


def test_risk_coverage_plot_is_written_and_checks_its_input(tmp_path: Path) -> None:
    from recal.plots import save_risk_coverage

    rng = np.random.default_rng(3)
    conf = rng.uniform(size=200)
    corr = (rng.uniform(size=200) < conf).astype(float)
    curves = [("modal_share", metrics.risk_coverage_curve(conf, corr)),
              ("all right", metrics.risk_coverage_curve(conf, np.ones(200)))]  # PRR nan
    path = save_risk_coverage(curves, tmp_path / "rc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="non-empty sequence"):
        save_risk_coverage([], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"curves\[0\] must be a \(name, RiskCoverage\) pair"):
        save_risk_coverage([("a", conf)], tmp_path / "x.png")  # type: ignore[list-item]
