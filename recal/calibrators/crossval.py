"""Splitting predictions for recalibration: a held-out split, and cross-fitted predictions."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recal.calibrators.base import FloatArray, Recalibrator, check_sample_weight, clone
from recal.metrics.validation import check_predictions

__all__ = ["cross_val_predict", "split_calibration"]

IntArray = npt.NDArray[np.int64]


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _fold_ids(corr: FloatArray, n_splits: int, seed: int | None) -> IntArray:
    """A fold in ``0..n_splits-1`` for each prediction, stratified when both classes allow it."""
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(corr == 0.0), np.flatnonzero(corr == 1.0)]
    if min(c.size for c in classes) < n_splits:
        classes = [np.arange(corr.size)]
    folds = np.empty(corr.size, dtype=np.int64)
    offset = 0
    for members in classes:
        # Dealing the classes out in turn, continuing the count, keeps fold sizes within one.
        folds[rng.permutation(members)] = (np.arange(members.size) + offset) % n_splits
        offset += members.size
    return folds


def cross_val_predict(
    recalibrator: Recalibrator,
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_splits: int = 5,
    seed: int | None = 0,
    *,
    sample_weight: npt.ArrayLike | None = None,
) -> FloatArray:
    """Out-of-fold calibrated probabilities: each prediction from a map fitted without it.

    The predictions are dealt at random (``seed``) into ``n_splits`` folds, stratified by
    ``correct`` when both classes have at least ``n_splits`` members; for each fold a fresh copy
    of ``recalibrator`` (same hyperparameters; the one passed in is left untouched) is fitted on
    the other folds and predicts the fold. For calibration sets too small to give up a held-out
    half; the result can be scored with any metric in :mod:`recal.metrics` as if held out.
    Warnings from the fits (tiny folds) pass through. A recalibrator that reads the labels
    refuses data with fewer than 2 correct or 2 wrong answers
    (:class:`~recal.calibrators.base.DegenerateSplitError`): on the whole set before any fold is
    fitted, and on a fold's training part, naming the fold, when the folds leave it too few.
    """
    conf, corr = check_predictions(confidence, correct)
    weight = None if sample_weight is None else check_sample_weight(sample_weight, conf.size)
    if not isinstance(recalibrator, Recalibrator):
        raise ValueError(f"recalibrator must be a Recalibrator, got {type(recalibrator).__name__}")
    if not _is_int(n_splits) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    if n_splits > conf.size:
        raise ValueError(f"n_splits ({n_splits}) must not exceed the number of predictions "
                         f"({conf.size})")
    # Imported here: this module's import block is shared with the recal.metrics split.
    from recal.calibrators.base import MIN_CLASS_SIZE, DegenerateSplitError

    counted = corr if weight is None else corr[weight > 0]  # as fit counts them
    n_correct = int(np.count_nonzero(counted == 1.0))
    if recalibrator._uses_labels and min(n_correct, counted.size - n_correct) < MIN_CLASS_SIZE:
        raise DegenerateSplitError(recalibrator.name, counted.size, n_correct)
    folds = _fold_ids(corr, int(n_splits), seed)
    out = np.empty(conf.size)
    for k in range(n_splits):
        held = folds == k
        train = ~held
        model = clone(recalibrator)
        try:
            model.fit(conf[train], corr[train], None if weight is None else weight[train])
        except DegenerateSplitError as err:
            raise DegenerateSplitError(err.method, err.n, err.n_correct,
                                       f"the training part of fold {k + 1} of {n_splits}",
                                       err.separable) from None
        out[held] = model.predict_proba(conf[held])
    return out


def split_calibration(
    n: int, fraction: float = 0.5, seed: int | None = 0
) -> tuple[IntArray, IntArray]:
    """(calibration indices, held-out indices): a seeded random split of ``range(n)``.

    The two sorted index arrays are disjoint and together cover ``0..n-1``; the calibration part
    has ``round(fraction * n)`` members, kept between 1 and ``n - 1`` so neither part is empty.
    """
    if not _is_int(n) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (one prediction for each part), got {n!r}")
    ok = isinstance(fraction, int | float | np.floating) and not isinstance(fraction, bool)
    if not (ok and 0.0 < fraction < 1.0):
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction!r}")
    size = min(max(round(fraction * n), 1), n - 1)
    order = np.random.default_rng(seed).permutation(int(n))
    return np.sort(order[:size]), np.sort(order[size:])
