"""What a repair method is, and the one registry every command lists and runs them from.

A repair method is fitted on the calibration split of a :class:`~recal.judged.JudgedRun` and
gives confidences (and correctness, which moves only for repairs that change the answers) for
its held-out questions, with what it costs at scoring time and a serialisable state for export.
``recal fit``, ``recal bench``, the synthetic world and recipes take their methods, and their
default lists, from :data:`REPAIR_METHODS`; a new method is one module with one
:func:`register_repair` call (imported by :mod:`recal.repairs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recal.calibrators import MIN_CLASS_SIZE, DegenerateSplitError
from recal.judged import JudgedRun
from recal.registry import Registry

__all__ = ["RepairTask", "RepairOutcome", "RepairMethod", "REPAIR_METHODS", "register_repair",
           "default_methods", "FAMILIES", "check_classes", "selection_brier", "SELECTION_FOLDS"]

FAMILIES = ("post-hoc", "sampling", "peer", "lora")
"""post-hoc: recal's recalibrators; sampling: the model's own sampling temperature; peer:
netcal's and scikit-learn's recalibrators; lora: LoRA calibration tuning (:mod:`recal.tuning`)."""


@dataclass
class RepairTask:
    """One judged run (a model's confidence on one dataset, with its split) a method repairs."""

    judged: JudgedRun
    model: str = ""
    dataset: str = ""
    load_backend: Callable[[], Any] | None = None
    """The model's backend, loaded on first call (methods that train or ask the model)."""
    workdir: Path | None = None
    """A folder for what methods train (adapters); None: methods that train refuse."""
    tuning: dict[str, Any] = field(default_factory=dict)
    """Settings of the LoRA methods' configs (the split's fraction and seed, and the collapsing
    function, included)."""
    progress: bool = False
    min_ess: float = 5.0
    """The sampling-temperature refit refuses temperatures whose median ESS is below this."""
    cv_folds: int | None = None
    """Judge every question out of fold (K-fold cross-fitting; post-hoc maps only)."""
    heldout_confidence: dict[str, np.ndarray] = field(default_factory=dict)
    """What each method said on the held-out questions (the bench's transfer reads it)."""
    heldout_correct: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        """The split's seed (it also seeds cross-fitting)."""
        split = self.judged.split
        return split.seed if split is not None else self.judged.seed


@dataclass
class RepairOutcome:
    """A fitted repair judged on the held-out questions."""

    confidence: np.ndarray
    """Held-out confidence after the repair."""
    correct: np.ndarray
    """Held-out correctness (of the answers the repaired model gives)."""
    detail: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] | None = None
    """What the fit learnt, as JSON data (a recalibrator's ``to_dict``, a temperature, ...)."""
    fitted: Any = None
    """The fitted object itself (a Recalibrator, a TemperatureFit), for export."""
    unchanged: bool = False
    """The repair chose to change nothing (the row is the unrepaired one)."""
    sequences_factor: float = 1.0
    """Multiplies the scorer's sequences per question (1: the repair costs no extra decoding)."""
    extra_sequences: float = 0.0
    """Forward passes per question the repair adds at scoring time."""


class RepairMethod:
    """A repair. Maps of confidence implement ``fit_predict``; others override ``run``."""

    family: str = "post-hoc"
    key: str = ""
    """The name it is registered under (set by :func:`register_repair`)."""
    transferable: bool = True
    """Whether a map fitted on one dataset can be applied to another's scores."""
    accuracy_changes: bool = False
    """Whether the repair changes the answers (and so the accuracy)."""

    def fit_predict(self, cal_conf: np.ndarray, cal_corr: np.ndarray,
                    conf: np.ndarray) -> np.ndarray:
        """Fit on (cal_conf, cal_corr), return the repaired ``conf``."""
        raise NotImplementedError

    def run(self, task: RepairTask) -> RepairOutcome | None:
        """Fit on the task's calibration split, judge on its held-out one; None: not applicable
        to this task (another scorer, no temperature grid, ...)."""
        if task.cv_folds:
            raise ValueError(f"{type(self).__name__} does not cross-fit: leave cv_folds unset")
        cal_conf, cal_corr = task.judged.calibration()
        held_conf, held_corr = task.judged.heldout()
        check_classes(self.key, cal_corr)
        return RepairOutcome(self.fit_predict(cal_conf, cal_corr, held_conf), held_corr)

    def transfer(self, source: RepairTask, target: RepairTask) -> np.ndarray:
        """Fit on ``source``'s calibration split, apply to ``target``'s held-out scores."""
        cal_conf, cal_corr = source.judged.calibration()
        check_classes(self.key, cal_corr)
        return self.fit_predict(cal_conf, cal_corr, target.judged.heldout()[0])


def check_classes(method: str, correct: np.ndarray) -> None:
    """Refuse a calibration split with fewer than ``MIN_CLASS_SIZE`` correct or wrong answers
    (:class:`~recal.calibrators.DegenerateSplitError`), as recal's recalibrators refuse it, so
    that a peer library's fallback (a constant, the identity) is never shown as a repair."""
    n_correct = int(np.count_nonzero(np.asarray(correct) == 1))
    if min(n_correct, len(correct) - n_correct) < MIN_CLASS_SIZE:
        raise DegenerateSplitError(method or "this method", len(correct), n_correct)


SELECTION_FOLDS = 5
"""Folds of the cross-validation inside the calibration split that chooses among methods."""


def selection_brier(method: RepairMethod, task: RepairTask,
                    folds: int = SELECTION_FOLDS) -> float | None:
    """The Brier score of ``method``'s out-of-fold predictions on the calibration split alone.

    Choosing a method by its held-out score and then reporting that score is optimistic (the
    minimum of several noisy figures), so recal chooses on this instead: ``folds``-fold
    cross-validation inside the calibration split (folds drawn with the split's seed), and the
    held-out questions only judge the choice. The Brier score is a proper scoring rule: a
    constant guess of the base rate cannot win on calibration alone. ``None`` for methods that
    are not maps of confidence (sampling temperature, LoRA) and when a fold refuses to fit.
    """
    if method.family not in ("post-hoc", "peer"):
        return None
    conf, corr = task.judged.calibration()
    if len(conf) < folds:
        return None
    order = np.random.default_rng(task.seed).permutation(len(conf))
    out = np.empty(len(conf))
    for test in np.array_split(order, folds):
        train = np.setdiff1d(order, test)
        try:
            check_classes(method.key, corr[train])
            out[test] = method.fit_predict(conf[train], corr[train], conf[test])
        except DegenerateSplitError:
            return None
    return float(np.mean((out - corr) ** 2))


REPAIR_METHODS: Registry[RepairMethod] = Registry("repair method")
_DEFAULTS: list[str] = []


def register_repair(name: str, method: RepairMethod, *, help: str,
                    default: bool = False) -> RepairMethod:
    """Register ``method`` under ``name`` with a one-line ``help``; ``default``: in the default
    lists of its family (in registration order)."""
    if method.family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {method.family!r}")
    method.key = name
    REPAIR_METHODS.register(name, method, help=help)
    if default:
        _DEFAULTS.append(name.lower())
    return method


def default_methods(*families: str) -> tuple[str, ...]:
    """The default methods of ``families`` (all families when none is named), in order."""
    for family in families:
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
    return tuple(n for n in _DEFAULTS
                 if not families or REPAIR_METHODS.get(n).family in families)
