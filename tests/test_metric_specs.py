"""Contract tests over every registered metric spec: a new metric is checked without editing a list.

Each spec must declare its direction and range, its batched bootstrap compute must give the point
compute on the full sample (and on a resample, the metric of that resampled data), and its values
must stay inside its declared range on random inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from recal.metrics import METRIC_SPECS, METRICS, bootstrap, compute_all, register_metric
from recal.metrics.resampling import Resamples, build_cells
from recal.metrics.smooth import smooth_ece_unchecked

SPECS = [METRIC_SPECS.get(name) for name in METRIC_SPECS]


def random_data(n: int, seed: int, discrete: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.beta(2.0, 1.0, size=n)
    if discrete:
        conf = np.round(conf * 20) / 20
    corr = (rng.uniform(size=n) < conf**1.3).astype(float)
    return conf, corr


def test_every_spec_is_in_metrics_and_back() -> None:
    assert sorted(METRICS) == sorted(METRIC_SPECS) and len(METRICS) == len(SPECS) >= 11
    for spec in SPECS:
        assert METRICS[spec.name] is spec


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_spec_declares_meaning(spec) -> None:
    assert spec.higher_is_better in (True, False, None)
    low, high = spec.range
    assert isinstance(low, float) and isinstance(high, float) and low < high
    assert spec.description.strip()
    assert callable(spec.function) and callable(spec.compute) and callable(spec.batch)
    if spec.calibration_error:
        assert spec.higher_is_better is False and spec.range[0] == 0.0


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
@pytest.mark.parametrize("n", [3, 40, 700])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_batch_on_the_full_sample_is_the_point_compute(spec, n: int, discrete: bool) -> None:
    conf, corr = random_data(n, seed=n, discrete=discrete)
    cells = build_cells(conf, corr)
    # Up to 400 distinct values the cells are exact; above, levels are narrow ranges of
    # confidence and the batch is close (the interval is shifted by the difference).
    assert cells.exact == (discrete or n <= 400)
    tolerance = 1e-10 if cells.exact else 2e-3
    sigma = smooth_ece_unchecked(conf, corr)[1]
    batch = spec.batch(Resamples(cells, cells.count[None, :], sigma))
    expected = spec.function(conf, corr)
    assert spec.compute(conf, corr) == expected or (math.isnan(expected)
                                                   and math.isnan(spec.compute(conf, corr)))
    if math.isnan(expected):
        assert math.isnan(batch[0])
    else:
        assert batch[0] == pytest.approx(expected, abs=tolerance)
    # And the bootstrap's estimate is the point value.
    result = bootstrap(spec.name, conf, corr, n_resamples=20, seed=1)
    assert result.estimate == pytest.approx(expected, abs=1e-12, nan_ok=True)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_batch_on_a_resample_is_the_metric_of_that_resample(spec) -> None:
    conf, corr = random_data(120, seed=4, discrete=True)
    cells = build_cells(conf, corr)
    level_of_cell = np.searchsorted(cells.level_start, np.arange(cells.count.size), "right") - 1
    rng = np.random.default_rng(2)
    weights = rng.multinomial(cells.n, cells.count / cells.n, size=3).astype(float)
    batch = spec.batch(Resamples(cells, weights, smooth_ece_unchecked(conf, corr)[1]))
    for row, w in zip(batch, weights, strict=True):
        counts = w.astype(int)
        expected = spec.function(np.repeat(cells.level_min[level_of_cell], counts),
                                 np.repeat(cells.right, counts))
        assert row == pytest.approx(expected, abs=1e-10, nan_ok=True)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_values_stay_in_the_declared_range(spec) -> None:
    low, high = spec.range
    rng = np.random.default_rng(7)
    for trial in range(40):
        n = int(rng.integers(1, 60))
        conf = rng.uniform(size=n) ** rng.uniform(0.2, 5.0)
        if trial % 4 == 0:
            conf = np.round(conf * 4) / 4  # ties and exact 0 and 1
        corr = rng.uniform(size=n) < rng.uniform()
        value = spec.function(conf, corr)
        if math.isnan(value):
            assert spec.name in ("auroc", "prr") and len(set(corr.tolist())) == 1
            continue
        assert low - 1e-12 <= value <= high + 1e-12, (trial, value)
    conf, corr = random_data(80, seed=3, discrete=False)
    result = compute_all(conf, corr, n_resamples=50)[spec.name]
    assert low - 1e-12 <= result.low <= result.high <= high + 1e-12


def test_a_name_is_registered_once() -> None:
    import dataclasses

    # another spec under a taken name is refused (the very same object again is a no-op, as a
    # module reload registers it)
    with pytest.raises(ValueError, match="already registered"):
        register_metric(dataclasses.replace(METRICS["ece"], description="another ece"))
    with pytest.raises(KeyError, match="did you mean 'smooth_ece'"):
        METRIC_SPECS.get("smooth_ec")
    with pytest.raises(ValueError, match="did you mean 'brier_score'"):
        bootstrap("brier", [0.5], [1])
