"""Post-hoc repair: fit recalibrators on a calibration split, judge them on a held-out split.

A method is never reported on the data it was fitted on, nor chosen on it. For each method the
held-out table gives every headline metric with an interval, and a paired verdict
(:func:`recal.judged.paired_verdict`): the repair and the unrepaired confidence are judged on
the same resamples of the same held-out questions, and a repair is "better" only where the
paired interval of its change in smooth ECE or Brier score lies below 0 (and neither lies
above); otherwise it is "not distinguishable from no repair".

When the run recorded a temperature grid, the model's own sampling temperature is refitted too
(:mod:`recal.sampling_temperature`) and judged the same way; that repair changes the answers, so
accuracy moves with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

from recal.abstention import AbstentionConfig, choose_threshold
from recal.calibrators import DegenerateSplitError
from recal.calibrators.base import Recalibrator
from recal.confidence import Prediction, classify_run, get_scorer
from recal.judged import JudgedRun, Split, paired_verdict
from recal.metrics import BootstrapResult
from recal.models.base import Backend
from recal.repairs import (
    REPAIR_METHODS,
    SELECTION_FOLDS,
    RepairTask,
    default_methods,
    selection_brier,
)
from recal.runstore import RunStore
from recal.sampling_temperature import TemperatureFit
from recal.semantic.base import Collapser, get_collapser

__all__ = ["FitConfig", "MethodResult", "FitReport", "fit_methods", "export_scorer",
           "confirm_temperature", "apply_scorer", "DEFAULT_METHODS"]

DEFAULT_METHODS = default_methods("post-hoc")
"""recal's post-hoc recalibrators, as :mod:`recal.repairs` lists them."""


@dataclass(frozen=True)
class FitConfig:
    """Which repairs to fit, on which scores, and how to split."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    """Repair methods of :data:`recal.repairs.REPAIR_METHODS` (post-hoc, peer); the sampling
    temperature is refitted after them when ``sampling_temperature`` is set."""
    scorer: str = "modal_share"
    collapse: str = "normalized"
    calibration_fraction: float = 0.5
    """Share of the questions the methods are fitted on; the rest judges them."""
    seed: int = 0
    n_resamples: int = 1000
    auroc_tolerance: float = 0.01
    """How much AUROC the synthetic world's point-estimate verdicts tolerate losing."""
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
            method = REPAIR_METHODS.get(name)  # unknown names fail now, with did-you-mean
            if method.family not in ("post-hoc", "peer"):
                raise ValueError(f"{name!r} is a {method.family} repair: recal fit fits maps of "
                                 "confidence (the sampling temperature follows them when "
                                 "sampling_temperature is set; LoRA methods: recal tune)")
            if self.cv_folds is not None and method.family != "post-hoc":
                raise ValueError(f"cv_folds cross-fits recal's recalibrators; {name!r} is a "
                                 f"{method.family} method: judge it on a held-out split")
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
    judged: JudgedRun | None = field(default=None, repr=False)
    """The run as the methods saw it (classes, arrays, split); not written by ``to_dict``."""

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


def split_of(config: FitConfig) -> Split:
    """The calibration / held-out split ``config`` asks for (out of fold with ``cv_folds``)."""
    return (Split.all_questions(config.seed) if config.cv_folds
            else Split.random(config.calibration_fraction, config.seed))


def fit_methods(store: RunStore, config: FitConfig | None = None, *,
                collapser: Collapser | None = None, backend: Backend | None = None) -> FitReport:
    """Fit every method of ``config`` on the calibration split of ``store``, judge on the rest."""
    config = config or FitConfig()
    collapser = collapser or get_collapser(config.collapse)
    items = classify_run(store, collapser)
    if len(items) < 4:
        raise ValueError(f"{store.path} holds {len(items)} finished questions; fitting and "
                         "judging a repair needs at least 4 (more than 100 to mean much)")
    judged = JudgedRun.from_items(items, collapser, config.scorer, backend=backend,
                                  split=split_of(config), n_resamples=config.n_resamples,
                                  seed=config.seed, store=store)
    # Out of fold, every question is held out once; the base rate is the whole set's (a slightly
    # optimistic constant predictor, so the Brier test is, if anything, stricter).
    base_brier = judged.base_rate_brier()
    report = FitReport(config, store.manifest, judged.calibration_ids, judged.heldout_ids,
                       judged.base_rate(), base_brier, predictions=judged.predictions,
                       judged=judged)
    # Every method is judged against the unrepaired confidence on the same held-out questions.
    reference = judged.heldout_metrics()
    task = RepairTask(judged, min_ess=config.min_ess, cv_folds=config.cv_folds)
    names = list(config.methods)
    if config.sampling_temperature:
        names.append("sampling_temperature")
    for name in names:
        method = REPAIR_METHODS.get(name)
        try:
            outcome = method.run(task)
        except DegenerateSplitError as err:  # shown as not fitted, never as a repair
            report.results.append(MethodResult(name, {}, method.accuracy_changes, str(err),
                                               detail={"not_fitted": True}))
            continue
        if outcome is None:
            continue
        if outcome.unchanged:
            report.results.append(MethodResult(
                name, reference, accuracy_changes=False,
                verdict="keeps the sampled temperature (no repair)", detail=outcome.detail))
        else:
            metrics = judged.judge(outcome.confidence, outcome.correct)
            if not config.cv_folds:  # out of fold, every question is judged: nothing to choose on
                outcome.detail["selection_brier"] = selection_brier(method, task)
            report.results.append(MethodResult(
                name, metrics, method.accuracy_changes,
                ("reference (no repair)" if name == "identity"
                 else paired_verdict(judged.compare(outcome.confidence, outcome.correct))),
                recalibrator=(outcome.fitted if isinstance(outcome.fitted, Recalibrator)
                              else None), detail=outcome.detail))
        if isinstance(outcome.fitted, TemperatureFit):
            report.temperature = outcome.fitted
    return report


def choose_method(report: FitReport) -> tuple[str, dict[str, float]]:
    """The method with the lowest cross-validated Brier score on the calibration split (see
    :func:`recal.repairs.selection_brier`), and every candidate's score.

    The held-out questions take no part in the choice: they judge it. Raises ``ValueError`` when
    no method could be scored, or when the identity (no repair) scores best.
    """
    scores = {r.method: r.detail["selection_brier"] for r in report.results
              if r.detail.get("selection_brier") is not None}
    if not scores:
        raise ValueError("no method could be scored by cross-validation on the calibration "
                         "split (see fit.json): name the method to export")
    best = min(scores, key=lambda name: scores[name])  # ties: the first listed
    if best == "identity":
        raise ValueError("no repair beats the unrepaired confidence in cross-validation on the "
                         "calibration split (see fit.json); nothing to export")
    return best, scores


def export_scorer(store: RunStore, method: str, config: FitConfig | None = None,
                  collapse_options: dict[str, Any] | None = None,
                  selection: dict[str, float] | None = None,
                  abstention: AbstentionConfig | None = None) -> Any:
    """Fit ``method`` on the calibration split of ``store`` and package it as a scorer.

    The scorer also carries an abstention threshold (:mod:`recal.abstention`) chosen on the
    calibration split's raw confidences for ``abstention`` (default: error rate at most 0.1
    among answered questions, with probability 0.9), with its held-out risk and coverage.

    The scorer records the metrics of the recalibrated confidence on both splits (the held-out
    ones are the honest figures) and, when the method was chosen among others (``selection``:
    each candidate's cross-validated Brier score on the calibration split), the scores it was
    chosen on, kept apart from the held-out figures.
    """
    from recal.scorer import CalibratedScorer

    config = replace(config or FitConfig(), methods=(method,), sampling_temperature=False)
    if REPAIR_METHODS.get(method).family != "post-hoc":
        raise ValueError(f"{method!r} is not one of recal's recalibrators: a scorer exports a "
                         "post-hoc map (LoRA methods: recal tune writes their scorer)")
    collapser = get_collapser(config.collapse, **(collapse_options or {}))
    report = fit_methods(store, config, collapser=collapser)
    [result] = report.results
    if result.recalibrator is None:  # refused: a one-class or tiny calibration split
        raise ValueError(f"{method}: {result.verdict}")
    recalibrator = result.recalibrator
    judged = cast(JudgedRun, report.judged)
    conf, corr = judged.calibration()
    in_sample = judged.judge(recalibrator.predict_proba(conf), corr)
    sampling = dict(store.manifest["sampling"])
    rule = choose_threshold(conf, corr, abstention)
    if rule.threshold is not None:
        rule = replace(rule, calibrated_threshold=float(
            recalibrator.predict_proba([rule.threshold])[0]))
    held_conf, held_corr = judged.heldout()
    if len(held_conf):
        rule = rule.judge(held_conf, held_corr)
    return CalibratedScorer(
        recalibrator=recalibrator, collapse=config.collapse, scorer=config.scorer,
        style=store.manifest["style"], shots=store.manifest.get("shots"), sampling=sampling,
        model=dict(store.manifest["model"]), collapse_options=dict(collapse_options or {}),
        abstention=rule.to_dict(),
        metrics={"calibration": {k: asdict(v) for k, v in in_sample.items()},
                 "heldout": {k: asdict(v) for k, v in result.heldout.items()},
                 "n_calibration": len(report.calibration_ids),
                 "n_heldout": len(report.heldout_ids), "verdict": result.verdict,
                 **({"selection": {
                     "rule": f"lowest Brier score of {SELECTION_FOLDS}-fold cross-validation "
                             "inside the calibration split",
                     "chosen": method, "scores": dict(selection)}} if selection else {})})


def confirm_temperature(store: RunStore, report: FitReport, *,
                        backend: Backend | None = None) -> dict[str, Any]:
    """Resample the held-out questions at the refitted sampling temperature and measure them.

    The importance-reweighted row of ``fit_methods`` is an estimate; this draws real samples
    (``store.path / resampled-tau<T>``, resumable) from the run's model (``backend``, or loaded
    by name) with the run's settings at T = ``report.temperature.tau_`` and judges their modal
    share. Returns ``{"tau": T, "heldout": {metric: BootstrapResult as a dict}}``.
    """
    from recal.samples import SamplingConfig
    from recal.sampling import sample_run

    if report.temperature is None:
        raise ValueError("the fit did not refit the sampling temperature: nothing to confirm")
    tau = report.temperature.tau_
    sampling = dict(store.manifest["sampling"], temperature=tau, tau_grid=())
    by_id = {q.id: q for q in store.questions()}
    held = [by_id[i] for i in report.heldout_ids]
    if backend is None:
        from recal.models import load_backend

        model = store.manifest["model"]
        backend = load_backend(model["name"], kind=model["kind"])
    resampled = sample_run(backend, held, out=store.path / f"resampled-tau{tau:g}",
                           config=SamplingConfig(**sampling), style=store.manifest["style"],
                           shots=store.manifest.get("shots"),
                           dataset=store.manifest["questions"]["dataset"])
    judged = JudgedRun.from_store(resampled, get_collapser(report.config.collapse),
                                  "modal_share", n_resamples=report.config.n_resamples,
                                  seed=report.config.seed)
    return {"tau": tau, "heldout": {k: asdict(v) for k, v in judged.metrics().items()}}


def apply_scorer(store: RunStore, scorer: Any) -> list[Any]:
    """An exported scorer (:class:`recal.scorer.CalibratedScorer`) applied to every finished
    question of ``store`` through its own scoring (tuned readouts included): one
    :class:`recal.scorer.RunScore` (id, answer, raw and calibrated confidence, correct) each.

    Refuses a run sampled from another model than the scorer was fitted on.
    """
    if store.manifest["model"].get("config_hash") != scorer.model.get("config_hash"):
        raise ValueError(f"{store.path} was sampled from another model than the scorer was "
                         "fitted on (config hashes differ)")
    return list(scorer.score_run(store))
