"""How often each bootstrap interval of smooth ECE and binned ECE covers the true calibration error.

A simulation suite (issue 14, item 4). Settings: a perfectly calibrated predictor (true
frequency ``p(c) = c``) and an overconfident one (``p(c) = 0.5 + 0.8 (c - 0.5) - 0.05``, clipped
to [0, 1]); n = 50, 200, 1000 and 5000 answers; confidences ``k/10`` and ``k/50`` (discrete, as
modal shares of M = 10 or 50 samples) or continuous, with probability (or density) proportional
to ``c + 0.05`` on [0, 1] (more answers at high confidence, as for language models).

The true value of each setting is the metric of the population: the confidences with their true
frequencies as fractional targets, exactly for the discrete settings (each level weighted by its
probability to 1e-6) and on 200,000 quantiles of the density for the continuous ones. Each
setting draws ``--replications`` datasets (200 by default: coverage 0.90 has a standard error
of 0.021, so 0.90 and 0.80 are told apart) and asks whether each interval type of
:mod:`recal.metrics.intervals` holds the truth, at the 95% level:

* discrete settings: all replications at once on one set of cells (the ``k/M`` levels), with
  ``--resamples`` bootstrap resamples and as many calibrated datasets per replication, through
  the same batched metrics, draws and :func:`recal.metrics.intervals.summarise_draws` that
  :func:`recal.metrics.bootstrap` uses (the estimate is the cells' value of the data, equal to
  the point value: exact levels);
* continuous settings: :func:`recal.metrics.intervals.bootstrap_intervals` on each replication,
  with ``--continuous-resamples`` resamples (50 by default, against the library's 1,000: one
  call per replication is the slow part; the floor quantile from fewer draws is a little
  noisier, so coverage here is if anything understated). The whole run took 507 s on one
  thread of a shared 2-core machine (discrete settings 5-16 s each, continuous 39-80 s).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/interval_coverage.py

Writes benchmarks/results/interval_coverage.json, prints a table, and prints last
``interval_coverage_min: VALUE``: the smallest coverage of the default interval (the noise-floor
interval for calibration errors) over all settings and both metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recal.metrics import METRICS
from recal.metrics.intervals import INTERVALS, bootstrap_intervals, default_interval
from recal.metrics.intervals import summarise_draws as interval_of
from recal.metrics.resampling import Resamples, build_cells
from recal.metrics.smooth import smooth_ece_unchecked

RESULTS = Path(__file__).resolve().parent / "results" / "interval_coverage.json"
METRIC_NAMES = ("smooth_ece", "ece")
SIZES = (50, 200, 1000, 5000)
CONFIDENCES = ("k/10", "k/50", "continuous")
LEVEL = 0.95
SHIFT = 0.05  # density of the confidences proportional to c + SHIFT

PREDICTORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "calibrated": lambda c: c,
    "overconfident": lambda c: np.clip(0.5 + 0.8 * (c - 0.5) - 0.05, 0.0, 1.0),
}


def levels_and_weights(confidences: str) -> tuple[np.ndarray, np.ndarray]:
    m = int(confidences.split("/")[1])
    levels = np.arange(m + 1) / m
    weights = levels + SHIFT
    return levels, weights / weights.sum()


def continuous_quantile(u: np.ndarray) -> np.ndarray:
    """Inverse CDF of the density (c + SHIFT) / (1/2 + SHIFT) on [0, 1]."""
    return -SHIFT + np.sqrt(SHIFT**2 + 2.0 * u * (0.5 + SHIFT))


def true_value(name: str, confidences: str, p: Callable[[np.ndarray], np.ndarray]) -> float:
    if confidences == "continuous":
        conf = continuous_quantile((np.arange(200_000) + 0.5) / 200_000)
    else:
        levels, weights = levels_and_weights(confidences)
        conf = np.repeat(levels, np.rint(weights * 1e6).astype(np.int64))
    return float(METRICS[name].compute(conf, p(conf)))


def universe_cells(levels: np.ndarray, n: int):  # noqa: ANN201 - recal.metrics.resampling.Cells
    """Cells holding both outcomes of every level, for datasets of ``n`` answers."""
    cells = build_cells(np.repeat(levels, 2), np.tile([0.0, 1.0], levels.size))
    return dataclasses.replace(cells, n=n)


def discrete_setting(confidences: str, n: int, p: Callable[[np.ndarray], np.ndarray],
                     replications: int, resamples: int, rng: np.random.Generator
                     ) -> dict[str, list[dict[str, tuple[float, float]]]]:
    """Every replication's intervals at once: rows of one Resamples over the k/M levels."""
    levels, weights = levels_and_weights(confidences)
    count = rng.multinomial(n, weights, size=replications)  # replications x levels
    right = rng.binomial(count, p(levels))
    data = np.empty((replications, 2 * levels.size))
    data[:, 0::2], data[:, 1::2] = count - right, right
    boot = np.concatenate([rng.multinomial(n, row / n, size=resamples) for row in data])
    floor_right = rng.binomial(np.repeat(count, resamples, axis=0), levels)
    floor = np.empty_like(boot, dtype=np.float64)
    floor[:, 0::2] = np.repeat(count, resamples, axis=0) - floor_right
    floor[:, 1::2] = floor_right
    # Start each bandwidth search at the first dataset's smooth ECE bandwidth.
    first = np.repeat(np.repeat(levels, 2), data[0].astype(np.int64))
    first_y = np.repeat(np.tile([0.0, 1.0], levels.size), data[0].astype(np.int64))
    sigma = smooth_ece_unchecked(first, first_y)[1]
    rows = Resamples(universe_cells(levels, n), np.vstack([data, boot, floor]), sigma)
    out: dict[str, list[dict[str, tuple[float, float]]]] = {}
    for name in METRIC_NAMES:
        spec = METRICS[name]
        values = spec.batch(rows)
        estimate = values[:replications]
        boot_values = values[replications:replications + replications * resamples]
        floor_values = values[replications + replications * resamples:]
        out[name] = []
        for r in range(replications):
            block = slice(r * resamples, (r + 1) * resamples)
            results = {kind: interval_of(float(estimate[r]), boot_values[block], LEVEL, kind,
                                         floor_values[block], spec.range) for kind in INTERVALS}
            out[name].append({kind: (res.low, res.high) for kind, res in results.items()})
    return out


def continuous_setting(n: int, p: Callable[[np.ndarray], np.ndarray], replications: int,
                       resamples: int, rng: np.random.Generator
                       ) -> dict[str, list[dict[str, tuple[float, float]]]]:
    out: dict[str, list[dict[str, tuple[float, float]]]] = {name: [] for name in METRIC_NAMES}
    for r in range(replications):
        conf = continuous_quantile(rng.uniform(size=n))
        correct = (rng.uniform(size=n) < p(conf)).astype(np.float64)
        for name in METRIC_NAMES:
            results = bootstrap_intervals(name, conf, correct, n_resamples=resamples,
                                          confidence_level=LEVEL, seed=r)
            out[name].append({kind: (res.low, res.high) for kind, res in results.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=200,
                        help="bootstrap resamples (and calibrated datasets) per replication, "
                             "discrete settings")
    parser.add_argument("--continuous-resamples", type=int, default=50,
                        help="the same for the continuous settings (one call per replication)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    rows = []
    start = time.perf_counter()
    for confidences in CONFIDENCES:
        for predictor, p in PREDICTORS.items():
            for n in SIZES:
                tick = time.perf_counter()
                if confidences == "continuous":
                    found = continuous_setting(n, p, args.replications,
                                               args.continuous_resamples, rng)
                else:
                    found = discrete_setting(confidences, n, p, args.replications,
                                             args.resamples, rng)
                seconds = time.perf_counter() - tick
                for name in METRIC_NAMES:
                    truth = true_value(name, confidences, p)
                    ends = found[name]
                    coverage = {k: float(np.mean([lo <= truth <= hi for lo, hi in
                                                  (e[k] for e in ends)])) for k in INTERVALS}
                    width = {k: float(np.mean([hi - lo for lo, hi in (e[k] for e in ends)]))
                             for k in INTERVALS}
                    rows.append({
                        "metric": name, "confidences": confidences, "predictor": predictor,
                        "n": n, "true_value": truth, "coverage": coverage, "mean_width": width,
                        "default_interval": default_interval(METRICS[name]),
                        "seconds": round(seconds, 2),
                    })
                print(f"{confidences:>10} {predictor:>13} n={n:<5} {seconds:6.1f} s", flush=True)
    total = time.perf_counter() - start

    header = (f"{'metric':<11} {'confidences':<11} {'predictor':<13} {'n':>5} {'truth':>7}  "
              + "  ".join(f"{k:>10}" for k in INTERVALS) + "  width(floor)")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['metric']:<11} {row['confidences']:<11} {row['predictor']:<13} "
              f"{row['n']:>5} {row['true_value']:7.4f}  "
              + "  ".join(f"{row['coverage'][k]:10.3f}" for k in INTERVALS)
              + f"  {row['mean_width']['floor']:12.4f}")
    minimum = min(row["coverage"][row["default_interval"]] for row in rows)
    by_kind = {k: min(row["coverage"][k] for row in rows) for k in INTERVALS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "interval_coverage",
        "config": {"replications": args.replications, "resamples": args.resamples,
                   "continuous_resamples": args.continuous_resamples, "seed": args.seed,
                   "confidence_level": LEVEL, "metrics": list(METRIC_NAMES),
                   "sizes": list(SIZES), "confidences": list(CONFIDENCES),
                   "predictors": list(PREDICTORS), "confidence_density": "c + 0.05"},
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "seconds": round(total, 1),
        "min_coverage": by_kind,
        "interval_coverage_min": minimum,
        "settings": rows,
    }, indent=1, sort_keys=True) + "\n")
    print("minimum coverage by interval: "
          + ", ".join(f"{k} {v:.3f}" for k, v in by_kind.items()))
    print(f"total {total:.0f} s; wrote {args.out}")
    print(f"interval_coverage_min: {minimum:.3f}")


if __name__ == "__main__":
    main()
