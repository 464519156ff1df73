"""Input checks shared by every metric and by the recalibrators.

Public functions of :mod:`recal.metrics` (and the recalibrators' ``fit``) call these once and
then work on plain float64 arrays; each raises ``ValueError`` with a sentence naming the argument,
what was expected and what came (``confidence has 3 values outside [0, 1] (first: 1.2 at index
7)``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "FloatArray",
    "as_1d_array",
    "check_bandwidth",
    "check_binning",
    "check_bootstrap_args",
    "check_n_bins",
    "check_positive_int",
    "check_predictions",
    "describe_first_bad",
]

FloatArray = npt.NDArray[np.float64]


def describe_first_bad(values: np.ndarray, bad: np.ndarray) -> str:
    """``"(first: 1.2 at index 7)"``: the first value where the mask ``bad`` is true."""
    first = int(np.flatnonzero(bad)[0])
    return f"(first: {float(values[first])!r} at index {first})"


def as_1d_array(values: npt.ArrayLike, name: str) -> FloatArray:
    """``values`` as a 1-D float64 array (no copy when it already is one); ``name`` is used in
    the error."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} could not be read as an array of numbers: {err}") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers, got an array of dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {array.shape}")
    return array.astype(np.float64, copy=False)


def check_predictions(
    confidence: npt.ArrayLike, correct: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """``confidence`` (finite, in [0, 1]) and ``correct`` (0/1 or bool) as float64 1-D arrays of
    one non-zero length; a ``ValueError`` names the bad one and its first bad value."""
    conf = as_1d_array(confidence, "confidence")
    corr = as_1d_array(correct, "correct")
    if conf.size != corr.size:
        raise ValueError(
            f"confidence and correct must have the same length, got {conf.size} and {corr.size}"
        )
    if conf.size == 0:
        raise ValueError("confidence and correct are empty; need at least one prediction")
    bad = ~np.isfinite(conf)
    if bad.any():
        raise ValueError(
            f"confidence has {int(bad.sum())} non-finite values {describe_first_bad(conf, bad)}"
        )
    bad = (conf < 0.0) | (conf > 1.0)
    if bad.any():
        raise ValueError(
            f"confidence has {int(bad.sum())} values outside [0, 1] {describe_first_bad(conf, bad)}"
        )
    bad = (corr != 0.0) & (corr != 1.0)
    if bad.any():
        raise ValueError(
            f"correct must be binary (bool, or 0/1), but has {int(bad.sum())} other values "
            f"{describe_first_bad(corr, bad)}"
        )
    return conf, corr


def check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")


def check_binning(binning: str) -> None:
    if binning not in ("width", "mass"):
        raise ValueError(f"binning must be 'width' or 'mass', got {binning!r}")


def check_bandwidth(bandwidth: float | None) -> None:
    if bandwidth is None:
        return
    if not (isinstance(bandwidth, int | float) and math.isfinite(bandwidth) and bandwidth >= 1e-4):
        raise ValueError(f"bandwidth must be None or a number >= 0.0001, got {bandwidth!r}")


def check_bootstrap_args(n_resamples: int, confidence_level: float) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or (
        n_resamples < 1
    ):
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not (isinstance(confidence_level, int | float) and 0 < confidence_level < 1):
        raise ValueError(f"confidence_level must be strictly between 0 and 1, got "
                         f"{confidence_level!r}")


def check_positive_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


