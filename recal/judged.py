"""A judged run: one stored run read through a collapsing function B and a confidence scorer.

Every command that turns stored samples into calibration figures goes through here:

    stored run -> B (classes) -> confidence scorer (per-question predictions)
               -> (confidence, correct) arrays -> calibration / held-out split -> metrics

    judged = JudgedRun.from_store(RunStore.open("runs/x"), get_collapser("normalized"),
                                  split=Split.random(0.5, seed=0))
    judged.metrics()                       # every metric with a bootstrap interval, all questions
    judged.judge(*judged.heldout())        # the same, on the held-out questions

The split is the one ``recal fit``, ``recal bench`` and ``recal tune`` share:
:func:`recal.calibrators.split_calibration` over the run's finished questions in the run's
order, with the given fraction and seed. :func:`judge` is the one place metrics with intervals
are computed from arrays (:func:`recal.metrics.compute_all`), and :func:`verdict` the one rule
that says whether a repair helped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from recal.calibrators import split_calibration
from recal.confidence import (
    Classified,
    Prediction,
    classify_run,
    get_scorer,
    lacking_inputs,
)
from recal.grades import require_grades
from recal.metrics import BootstrapResult, brier_score, compute_all
from recal.metrics.paired import PairedDifference, paired_difference
from recal.models.base import Backend
from recal.runstore import RunStore
from recal.semantic.base import Collapser

__all__ = ["Split", "JudgedRun", "judge", "arrays", "verdict", "paired_verdict", "PAIRED_METRICS",
           "AUROC_TOLERANCE"]

AUROC_TOLERANCE = 0.01
"""How much AUROC a repair may lose and still count as good (step maps tie confidences)."""


def arrays(predictions: Sequence[Prediction]) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of ``predictions`` as float arrays, in their order."""
    return (np.array([p.confidence for p in predictions], dtype=float),
            np.array([p.correct for p in predictions], dtype=float))


def judge(confidence: Sequence[float] | np.ndarray, correct: Sequence[float] | np.ndarray, *,
          n_resamples: int = 1000, seed: int = 0, confidence_level: float = 0.95,
          ) -> dict[str, BootstrapResult]:
    """Every metric of :data:`recal.metrics.METRICS` with a percentile bootstrap interval."""
    return compute_all(confidence, correct, n_resamples=n_resamples, seed=seed,
                       confidence_level=confidence_level)


PAIRED_METRICS = ("smooth_ece", "brier_score")
"""What a repair must lower, each judged by the paired interval of its change."""


def paired_verdict(paired: Mapping[str, PairedDifference]) -> str:
    """A repair against no repair, from paired intervals of the change (repair minus reference,
    same held-out questions, same resamples) in smooth ECE and in Brier score.

    "better" only where an interval lies below 0 and none above; "worse" the other way round;
    "mixed" when one is better and the other worse; otherwise "not distinguishable from no
    repair". The intervals follow, e.g. ``better (smooth_ece -0.051 [-0.083, -0.020]; brier_score
    -0.012 [-0.020, -0.004]; paired 95%)``.
    """
    sides = {paired[m].direction(higher_is_better=False) for m in PAIRED_METRICS}
    if "better" in sides:
        word = "mixed" if "worse" in sides else "better"
    else:
        word = "worse" if "worse" in sides else "not distinguishable from no repair"
    level = paired[PAIRED_METRICS[0]].confidence_level
    figures = "; ".join(paired[m].describe() for m in PAIRED_METRICS)
    return f"{word} ({figures}; paired {level:.0%})"


def verdict(metrics: dict[str, BootstrapResult], reference: dict[str, BootstrapResult],
            base_brier: float, tolerance: float = AUROC_TOLERANCE, *,
            is_reference: bool = False) -> str:
    """A point-estimate comparison, for repairs whose per-question confidences are not at hand
    (the synthetic world's LoRA rows): prefer :func:`paired_verdict`, which says whether a
    change is real. The text says it compares point estimates.

    Good: the smooth ECE falls below the reference's, the Brier score stays below the constant
    base-rate predictor's (``base_brier``), and AUROC drops by less than ``tolerance``.
    """
    if is_reference:
        return "reference (no repair)"
    problems = []
    if metrics["smooth_ece"].estimate >= reference["smooth_ece"].estimate:
        problems.append("does not lower smooth ECE")
    if metrics["brier_score"].estimate >= base_brier:
        problems.append("Brier not below the base-rate predictor's")
    if metrics["auroc"].estimate < reference["auroc"].estimate - tolerance:
        problems.append("lowers AUROC")
    verdict_text = "good" if not problems else "fails: " + "; ".join(problems)
    return verdict_text + " (point estimates, not paired)"


@dataclass(frozen=True)
class Split:
    """How a run's questions divide into a calibration part and a held-out part.

    ``random``: :func:`recal.calibrators.split_calibration` (``fraction`` of the questions, in
    the run's order, drawn with ``seed``). ``out_of_fold``: every question on both sides (for
    K-fold cross-fitting, where each question is held out once).
    """

    fraction: float = 0.5
    seed: int = 0
    out_of_fold: bool = False

    @classmethod
    def random(cls, fraction: float = 0.5, seed: int = 0) -> Split:
        return cls(fraction, seed)

    @classmethod
    def all_questions(cls, seed: int = 0) -> Split:
        """Every question on both sides; ``seed`` seeds the folds of cross-fitting."""
        return cls(seed=seed, out_of_fold=True)

    def indices(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(calibration indices, held-out indices) over ``n`` questions."""
        if self.out_of_fold:
            every = np.arange(n)
            return every, every
        return split_calibration(n, self.fraction, self.seed)


@dataclass
class JudgedRun:
    """A run's questions with one confidence scorer's predictions, arrays, split and metrics.

    Build it with :meth:`from_store` (or :meth:`from_items` when the classes are shared by
    several scorers). ``confidence`` and ``correct`` follow ``items`` (the run's order).
    """

    items: list[Classified]
    collapser: Collapser
    scorer: str
    predictions: list[Prediction]
    split: Split | None = None
    n_resamples: int = 1000
    seed: int = 0
    """Seeds the bootstrap of every interval."""
    confidence_level: float = 0.95
    store: RunStore | None = None
    confidence: np.ndarray = field(init=False, repr=False)
    correct: np.ndarray = field(init=False, repr=False)
    calibration_idx: np.ndarray = field(init=False, repr=False)
    heldout_idx: np.ndarray = field(init=False, repr=False)
    _metrics: dict[str, BootstrapResult] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.confidence, self.correct = arrays(self.predictions)
        empty = np.arange(0)
        self.calibration_idx, self.heldout_idx = (self.split.indices(len(self.items))
                                                  if self.split is not None else (empty, empty))

    @classmethod
    def from_items(cls, items: Sequence[Classified], collapser: Collapser,
                   scorer: str = "modal_share", *, backend: Backend | None = None,
                   split: Split | None = None, n_resamples: int = 1000, seed: int = 0,
                   confidence_level: float = 0.95, store: RunStore | None = None) -> JudgedRun:
        """Score classified questions with the confidence scorer ``scorer``."""
        require_grades([item.question for item in items],
                       str(store.path) if store is not None else "these questions",
                       "judging calibration")
        if store is not None:  # a run without what the scorer reads (an imported one)
            why = lacking_inputs(scorer, store.manifest, model=backend is not None
                                 or store.manifest["model"].get("backend") != "import")
            if why is not None:
                raise ValueError(f"{store.path}: the {scorer} confidence scorer {why}; choose "
                                 "one that reads the samples (modal_share, ...)")
        entry = get_scorer(scorer)
        if entry.needs_backend and backend is None:
            raise ValueError(f"the {scorer} scorer asks the model: load it (the CLI does this "
                             "when --confidence names it)")
        predictions = entry.score(items, collapser, backend)
        return cls(list(items), collapser, scorer, predictions, split, n_resamples, seed,
                   confidence_level, store)

    @classmethod
    def from_store(cls, store: RunStore, collapser: Collapser, scorer: str = "modal_share", *,
                   backend: Backend | None = None, split: Split | None = None,
                   ids: Sequence[str] | None = None, n_resamples: int = 1000, seed: int = 0,
                   confidence_level: float = 0.95) -> JudgedRun:
        """Classify the finished questions of ``store`` (or those of ``ids``) and score them."""
        items = classify_run(store, collapser, ids=ids)
        return cls.from_items(items, collapser, scorer, backend=backend, split=split,
                              n_resamples=n_resamples, seed=seed,
                              confidence_level=confidence_level, store=store)

    # -- metrics -----------------------------------------------------------------------------

    def judge(self, confidence: Sequence[float] | np.ndarray,
              correct: Sequence[float] | np.ndarray) -> dict[str, BootstrapResult]:
        """Metrics with intervals of any (confidence, correct), with this run's bootstrap."""
        return judge(confidence, correct, n_resamples=self.n_resamples, seed=self.seed,
                     confidence_level=self.confidence_level)

    def compare(self, confidence: Sequence[float] | np.ndarray,
                correct: Sequence[float] | np.ndarray) -> dict[str, PairedDifference]:
        """Paired intervals of (repair - unrepaired) on the held-out questions, for each of
        :data:`PAIRED_METRICS`: ``confidence``/``correct`` are a repair's, question by question
        in held-out order; the same resamples of questions judge both."""
        reference = self.heldout()
        return {m: paired_difference(m, reference, (confidence, correct),
                                     n_resamples=self.n_resamples, seed=self.seed,
                                     confidence_level=self.confidence_level)
                for m in PAIRED_METRICS}

    def metrics(self) -> dict[str, BootstrapResult]:
        """Every metric with its interval, over all questions (computed once)."""
        if self._metrics is None:
            self._metrics = self.judge(self.confidence, self.correct)
        return self._metrics

    def heldout_metrics(self) -> dict[str, BootstrapResult]:
        """The unrepaired confidence judged on the held-out questions: every repair's reference."""
        return self.judge(*self.heldout())

    # -- the split ---------------------------------------------------------------------------

    def calibration(self) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, correct) of the calibration questions."""
        return self.confidence[self.calibration_idx], self.correct[self.calibration_idx]

    def heldout(self) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, correct) of the held-out questions."""
        return self.confidence[self.heldout_idx], self.correct[self.heldout_idx]

    def calibration_items(self) -> list[Classified]:
        return [self.items[i] for i in self.calibration_idx]

    def heldout_items(self) -> list[Classified]:
        return [self.items[i] for i in self.heldout_idx]

    @property
    def calibration_ids(self) -> list[str]:
        return [self.items[i].question.id for i in self.calibration_idx]

    @property
    def heldout_ids(self) -> list[str]:
        return [self.items[i].question.id for i in self.heldout_idx]

    def base_rate(self) -> float:
        """The calibration questions' accuracy: what a constant predictor would say."""
        return float(self.correct[self.calibration_idx].mean())

    def base_rate_brier(self) -> float:
        """The held-out Brier score of the constant base-rate predictor."""
        held = self.correct[self.heldout_idx]
        return brier_score(np.full(len(held), self.base_rate()), held)
