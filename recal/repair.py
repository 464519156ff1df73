"""Post-hoc repair: fit recalibrators on a calibration split, judge them on a held-out split.

A method is never reported on the data it was fitted on. For each method the held-out table gives
every headline metric with a bootstrap interval, and a verdict: a good repair lowers the smooth
ECE below the unrepaired confidence's, keeps the Brier score below the constant base-rate
predictor's (the calibration split's accuracy, said to every question), and keeps AUROC at least
where it was (within ``auroc_tolerance``: step maps such as isotonic regression tie confidences,
which costs a little ranking).

When the run recorded a temperature grid, the model's own sampling temperature is refitted too
(:mod:`recal.sampling_temperature`) and judged the same way; that repair changes the answers, so
accuracy moves with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import numpy as np

from recal.calibrators import cross_val_predict, get_recalibrator, split_calibration
from recal.calibrators.base import Recalibrator
from recal.confidence import Prediction, classify_run, get_scorer
from recal.metrics import BootstrapResult, brier_score, compute_all
from recal.models.base import Backend
from recal.runstore import RunStore
from recal.sampling_temperature import TemperatureFit, fit_sampling_temperature, reweight_all
from recal.semantic.base import Collapser, get_collapser

__all__ = ["FitConfig", "MethodResult", "FitReport", "fit_methods", "export_scorer",
           "DEFAULT_METHODS"]

DEFAULT_METHODS = ("identity", "temperature", "platt", "isotonic", "histogram", "beta")


@dataclass(frozen=True)
class FitConfig:
    """Which repairs to fit, on which scores, and how to split."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    scorer: str = "modal_share"
    collapse: str = "normalized"
    calibration_fraction: float = 0.5
    """Share of the questions the methods are fitted on; the rest judges them."""
    seed: int = 0
    n_resamples: int = 1000
    auroc_tolerance: float = 0.01
    sampling_temperature: bool = True
    """Also refit the sampling temperature when the run recorded a temperature grid."""
    min_ess: float = 5.0
    cv_folds: int | None = None
    """For small sets: judge every question out of fold (K-fold cross-fitting) instead of on
    one held-out split. The exported map is then fitted on all questions."""

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("methods is empty: name at least one recalibrator")
        for name in self.methods:
            get_recalibrator(name)  # unknown names fail now, with did-you-mean
        get_scorer(self.scorer)
        if self.cv_folds is not None and self.cv_folds < 2:
            raise ValueError(f"cv_folds must be at least 2, got {self.cv_folds}")
        if not 0 < self.calibration_fraction < 1:
            raise ValueError(f"calibration_fraction must be in (0, 1), got "
                             f"{self.calibration_fraction}")


@dataclass
class MethodResult:
    method: str
    heldout: dict[str, BootstrapResult]
    accuracy_changes: bool
    verdict: str
    recalibrator: Recalibrator | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitReport:
    config: FitConfig
    manifest: dict[str, Any]
    calibration_ids: list[str]
    heldout_ids: list[str]
    base_rate: float
    base_rate_brier: float
    results: list[MethodResult] = field(default_factory=list)
    temperature: TemperatureFit | None = None
    predictions: list[Prediction] = field(default_factory=list)
    """The unrepaired prediction of every question, in the run's order."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "model": self.manifest.get("model"), "style": self.manifest.get("style"),
            "sampling": self.manifest.get("sampling"),
            "n_calibration": len(self.calibration_ids), "n_heldout": len(self.heldout_ids),
            "base_rate": self.base_rate, "base_rate_brier": self.base_rate_brier,
            "methods": {r.method: {"heldout": {k: asdict(v) for k, v in r.heldout.items()},
                                   "verdict": r.verdict, "accuracy_changes": r.accuracy_changes,
                                   "recalibrator": (r.recalibrator.to_dict()
                                                    if r.recalibrator is not None else None),
                                   **r.detail}
                        for r in self.results},
            "sampling_temperature": asdict(self.temperature) if self.temperature else None,
        }


def _arrays(predictions: Sequence[Prediction]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([p.confidence for p in predictions], dtype=float),
            np.array([p.correct for p in predictions], dtype=float))


def _verdict(metrics: dict[str, BootstrapResult], reference: dict[str, BootstrapResult],
             base_brier: float, tolerance: float, is_reference: bool) -> str:
    if is_reference:
        return "reference (no repair)"
    problems = []
    if metrics["smooth_ece"].estimate >= reference["smooth_ece"].estimate:
        problems.append("does not lower smooth ECE")
    if metrics["brier_score"].estimate >= base_brier:
        problems.append("Brier not below the base-rate predictor's")
    if metrics["auroc"].estimate < reference["auroc"].estimate - tolerance:
        problems.append("lowers AUROC")
    return "good" if not problems else "fails: " + "; ".join(problems)


def fit_methods(store: RunStore, config: FitConfig | None = None, *,
                collapser: Collapser | None = None, backend: Backend | None = None) -> FitReport:
    """Fit every method of ``config`` on the calibration split of ``store``, judge on the rest."""
    config = config or FitConfig()
    collapser = collapser or get_collapser(config.collapse)
    items = classify_run(store, collapser)
    if len(items) < 4:
        raise ValueError(f"{store.path} holds {len(items)} finished questions; fitting and "
                         "judging a repair needs at least 4 (more than 100 to mean much)")
    predictions = get_scorer(config.scorer).score(items, collapser, backend)
    conf, corr = _arrays(predictions)
    if config.cv_folds:
        # Out of fold, every question is held out once; the base rate is the whole set's (a
        # slightly optimistic constant predictor, so the Brier test is, if anything, stricter).
        cal_idx = held_idx = np.arange(len(items))
    else:
        cal_idx, held_idx = split_calibration(len(items), config.calibration_fraction,
                                              config.seed)
    base_rate = float(corr[cal_idx].mean())
    base_brier = brier_score(np.full(len(held_idx), base_rate), corr[held_idx])
    report = FitReport(config, store.manifest, [items[i].question.id for i in cal_idx],
                       [items[i].question.id for i in held_idx], base_rate, base_brier,
                       predictions=predictions)

    # Every method is judged against the unrepaired confidence on the same held-out questions.
    reference = compute_all(conf[held_idx], corr[held_idx], n_resamples=config.n_resamples,
                            seed=config.seed)

    def judge(name: str, held_conf: np.ndarray, held_corr: np.ndarray, **kw: Any) -> None:
        metrics = compute_all(held_conf, held_corr, n_resamples=config.n_resamples,
                              seed=config.seed)
        verdict = _verdict(metrics, reference, base_brier, config.auroc_tolerance,
                           is_reference=name == "identity")
        report.results.append(MethodResult(name, metrics, verdict=verdict, **kw))

    for name in config.methods:
        recalibrator = get_recalibrator(name).fit(conf[cal_idx], corr[cal_idx])
        held_conf = (cross_val_predict(get_recalibrator(name), conf, corr, config.cv_folds,
                                       config.seed) if config.cv_folds
                     else recalibrator.predict_proba(conf[held_idx]))
        judge(name, held_conf, corr[held_idx], accuracy_changes=False, recalibrator=recalibrator)

    grid = tuple(store.manifest.get("sampling", {}).get("tau_grid") or ())
    if (config.sampling_temperature and grid and config.scorer == "modal_share"
            and not config.cv_folds):
        tau0 = float(store.manifest["sampling"]["temperature"])
        fit = fit_sampling_temperature([items[i] for i in cal_idx], collapser, tau_grid=grid,
                                       tau0=tau0, min_ess=config.min_ess)
        report.temperature = fit
        if fit.tau_ == tau0:
            # Nothing changes; reweighting by weights that are 1 up to the rounding of the stored
            # logits would only reshuffle tied classes, so the row is the unrepaired one.
            report.results.append(MethodResult(
                "sampling_temperature", reference, accuracy_changes=False,
                verdict="keeps the sampled temperature (no repair)",
                detail={"tau": fit.tau_, "estimate": "sampled"}))
            return report
        held_conf, held_corr, ess = reweight_all([items[i] for i in held_idx], collapser,
                                                 fit.tau_, grid)
        judge("sampling_temperature", held_conf, held_corr, accuracy_changes=True,
              detail={"tau": fit.tau_, "estimate": "importance-reweighted",
                      "median_ess": float(np.median(ess))})
    return report


def export_scorer(store: RunStore, method: str, config: FitConfig | None = None,
                  collapse_options: dict[str, Any] | None = None) -> Any:
    """Fit ``method`` on the calibration split of ``store`` and package it as a scorer.

    The scorer records the metrics of the recalibrated confidence on both splits (the held-out
    ones are the honest figures).
    """
    from recal.scorer import CalibratedScorer

    config = replace(config or FitConfig(), methods=(method,), sampling_temperature=False)
    collapser = get_collapser(config.collapse, **(collapse_options or {}))
    report = fit_methods(store, config, collapser=collapser)
    [result] = report.results
    recalibrator = cast(Recalibrator, result.recalibrator)  # set for every post-hoc method
    calibration = set(report.calibration_ids)
    conf, corr = _arrays([p for p in report.predictions if p.question_id in calibration])
    in_sample = compute_all(recalibrator.predict_proba(conf), corr,
                            n_resamples=config.n_resamples, seed=config.seed)
    sampling = dict(store.manifest["sampling"])
    return CalibratedScorer(
        recalibrator=recalibrator, collapse=config.collapse, scorer=config.scorer,
        style=store.manifest["style"], shots=store.manifest.get("shots"), sampling=sampling,
        model=dict(store.manifest["model"]), collapse_options=dict(collapse_options or {}),
        metrics={"calibration": {k: asdict(v) for k, v in in_sample.items()},
                 "heldout": {k: asdict(v) for k, v in result.heldout.items()},
                 "n_calibration": len(report.calibration_ids),
                 "n_heldout": len(report.heldout_ids), "verdict": result.verdict})
