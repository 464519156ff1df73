"""Seconds for every calibration metric plus a 1,000-resample bootstrap of each, on 100,000 answers.

Times ``recal.metrics.compute_all`` (best of 3) on seeded synthetic predictions, and as the obvious
alternative the same metrics computed by the reference libraries (relplot's ``smECE``, netcal's
``ECE``/``MCE``, scikit-learn's Brier score, log loss and ROC AUC) on resampled copies of the data
in a plain loop, over a few resamples and extrapolated to ``1 + n_resamples`` evaluations. Metrics
with no reference library (debiased ECE, AURC, accuracy, mean confidence) use recal's own functions
in that loop; netcal's equal-mass ECE stands in for ``ece_mass``. Also measured: recal's own
functions in the same plain loop, each metric's bootstrap alone, and the peak memory of
``compute_all`` (a naive (1000 x 100,000) int64 index array alone would be 800 MB).

    .venv/bin/python benchmarks/metrics_speed.py            # 100,000 predictions, 1,000 resamples

Writes benchmarks/results/metrics_speed.json; the last line printed is the headline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recal import metrics
from recal.metrics import METRICS, bootstrap, compute_all

RESULTS = Path(__file__).resolve().parent / "results" / "metrics_speed.json"


def predictions(n: int, seed: int, discrete: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Confidences skewed high, over-confident at the top and under-confident at the bottom."""
    rng = np.random.default_rng(seed)
    conf = rng.beta(4.0, 1.5, n)
    if discrete:
        conf = np.round(conf * 20) / 20  # verbalised confidence: 0, 0.05, ..., 1
    correct = rng.random(n) < np.clip(0.15 + 0.8 * conf**2, 0.0, 1.0)
    return conf, correct.astype(float)


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def reference_functions() -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    import relplot
    from netcal.metrics import ECE, MCE
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    return {
        "smooth_ece": lambda c, y: relplot.smECE(c, y),
        "ece": lambda c, y: ECE(15).measure(c, y),
        "ece_mass": lambda c, y: ECE(15, equal_intervals=False).measure(c, y),
        "mce": lambda c, y: MCE(15).measure(c, y),
        "debiased_ece": metrics.debiased_ece,  # no reference library
        "brier_score": lambda c, y: brier_score_loss(y, c),
        "log_loss": lambda c, y: log_loss(y, c, labels=[0, 1]),
        "auroc": lambda c, y: roc_auc_score(y, c),
        "aurc": metrics.aurc,  # no reference library
        "accuracy": metrics.accuracy,  # no reference library
        "mean_confidence": metrics.mean_confidence,  # no reference library
    }


def naive_loop_seconds(
    functions: dict[str, Callable[[np.ndarray, np.ndarray], float]],
    conf: np.ndarray,
    correct: np.ndarray,
    n_resamples: int,
    seed: int,
) -> dict[str, float]:
    """Seconds per resample of each metric: draw n indices, resample, call the function."""
    rng = np.random.default_rng(seed)
    seconds = dict.fromkeys(functions, 0.0)
    for _ in range(n_resamples):
        index = rng.integers(0, conf.size, size=conf.size)
        c, y = conf[index], correct[index]
        for name, fn in functions.items():
            start = time.perf_counter()
            fn(c, y)
            seconds[name] += time.perf_counter() - start
    return {name: total / n_resamples for name, total in seconds.items()}


def peak_megabytes(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of predictions")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--reference-resamples", type=int, default=10,
                        help="resamples actually run in the naive loops (then extrapolated)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # netcal and relplot deprecation chatter

    conf, correct = predictions(args.n, args.seed)
    evaluations = args.resamples + 1  # the estimate plus every resample

    compute_all(conf, correct, n_resamples=args.resamples, seed=args.seed)  # warm up
    headline = best_of(3, lambda: compute_all(conf, correct, args.resamples, args.seed))
    point = best_of(3, lambda: {name: info.function(conf, correct)
                                for name, info in METRICS.items()})
    per_metric = {
        name: best_of(3, lambda name=name: bootstrap(name, conf, correct, args.resamples,
                                                     seed=args.seed))
        for name in METRICS
    }
    discrete = predictions(args.n, args.seed, discrete=True)
    headline_discrete = best_of(3, lambda: compute_all(*discrete, args.resamples, args.seed))
    peak = peak_megabytes(lambda: compute_all(conf, correct, args.resamples, args.seed))

    reference = naive_loop_seconds(reference_functions(), conf, correct,
                                   args.reference_resamples, args.seed)
    own = naive_loop_seconds({name: info.function for name, info in METRICS.items()}, conf,
                             correct, args.reference_resamples, args.seed)
    reference_total = sum(reference.values()) * evaluations
    own_total = sum(own.values()) * evaluations
    result = compute_all(conf, correct, args.resamples, args.seed)

    summary = {
        "n_predictions": args.n,
        "n_resamples": args.resamples,
        "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "processor": platform.processor()},
        "metrics_compute_all_seconds": headline,
        "compute_all_discrete_confidence_seconds": headline_discrete,
        "point_estimates_only_seconds": point,
        "bootstrap_seconds_by_metric": per_metric,
        "compute_all_peak_traced_memory_mb": peak,
        "reference_loop": {
            "resamples_run": args.reference_resamples,
            "seconds_per_resample_by_metric": reference,
            "extrapolated_seconds": reference_total,
            "speedup": reference_total / headline,
        },
        "recal_functions_loop": {
            "resamples_run": args.reference_resamples,
            "seconds_per_resample_by_metric": own,
            "extrapolated_seconds": own_total,
            "speedup": own_total / headline,
        },
        "results": {name: vars(r) for name, r in result.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")

    print(f"{args.n} predictions, {args.resamples} resamples, {os.cpu_count()} CPUs")
    for name, r in result.items():
        print(f"  {name:16s} {r.estimate:.4f}  [{r.low:.4f}, {r.high:.4f}]  "
              f"bootstrap alone {per_metric[name]:.3f} s")
    print(f"point estimates only: {point:.3f} s; discrete confidences: {headline_discrete:.3f} s; "
          f"peak traced memory {peak:.0f} MB")
    print(f"reference libraries in a loop: {reference_total:.1f} s extrapolated "
          f"({reference_total / headline:.0f}x slower); recal's functions in a loop: "
          f"{own_total:.1f} s ({own_total / headline:.0f}x)")
    print(f"metrics_compute_all_seconds: {headline:.2f}")


if __name__ == "__main__":
    main()
