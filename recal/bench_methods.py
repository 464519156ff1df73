"""The methods ``recal bench`` compares, in one registry.

Each method takes one cell (a model's confidence scores on one dataset, with its calibration and
held-out split) and returns the held-out confidence after repair and the held-out correctness
(which changes only for methods that change the answers, such as the sampling temperature).

========================  =========  ==================================================
name                      family     what it is
========================  =========  ==================================================
identity ... beta         post-hoc   recal's recalibrators (:mod:`recal.calibrators`)
sampling_temperature      sampling   refit T by importance reweighting (modal share)
netcal:<name>             peer       netcal's temperature, logistic, beta, histogram,
                                     isotonic, fitted on the same scores
sklearn:isotonic/platt    peer       scikit-learn's IsotonicRegression and
                                     LogisticRegression on logit(confidence)
lora:confidence_head      lora       P(yes) to "is this answer correct?" after LoRA
                                     calibration tuning (:mod:`recal.tuning`)
lora:amortised            lora       a head that predicts from the question alone
                                     whether the modal answer is right
lora:distribution         lora       LoRA toward the model's own sharpened class
                                     distribution; judged on the tuned model's samples
========================  =========  ==================================================

The LoRA methods train on the calibration questions (less a validation share that stops them
early), through :func:`recal.tuning.tune`, with the same held-out questions as every other row.
Their confidence is their own readout, so they run once per cell, on the ``modal_share`` scorer's
row; they need an in-process transformers model, and they do not transfer (judging another set
would mean running the tuned model on it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recal.calibrators import RECALIBRATORS, get_recalibrator
from recal.confidence import Classified
from recal.registry import Registry
from recal.runstore import RunStore
from recal.semantic.base import Collapser

__all__ = ["CellData", "MethodOutcome", "BenchMethod", "BENCH_METHODS"]

_EPS = 1e-12


@dataclass
class CellData:
    """One model x dataset x confidence scorer: the scores, the split, and what was judged."""

    model: str
    dataset: str
    scorer: str
    store: RunStore
    items: list[Classified]
    collapser: Collapser
    confidence: np.ndarray
    correct: np.ndarray
    calibration_idx: np.ndarray
    heldout_idx: np.ndarray
    seed: int
    load_backend: Callable[[], Any]
    """The model's backend, loaded on first call (methods that train or ask the model)."""
    workdir: Path | None = None
    """A folder for what methods train on this cell (adapters); None: methods that train refuse."""
    tuning: dict[str, Any] = field(default_factory=dict)
    """Settings of the LoRA methods' configs (the split's fraction and seed, and the collapsing
    function, included)."""
    progress: bool = False
    """Show progress bars for long work (training)."""
    heldout_confidence: dict[str, np.ndarray] = field(default_factory=dict)
    heldout_correct: dict[str, np.ndarray] = field(default_factory=dict)

    def split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(calibration confidence, calibration correct, held-out confidence)."""
        return (self.confidence[self.calibration_idx], self.correct[self.calibration_idx],
                self.confidence[self.heldout_idx])


@dataclass
class MethodOutcome:
    confidence: np.ndarray
    """Held-out confidence after the repair."""
    correct: np.ndarray
    """Held-out correctness (of the answers the repaired model gives)."""
    detail: dict[str, Any] = field(default_factory=dict)
    sequences_factor: float = 1.0
    """Multiplies the scorer's sequences per question (1: the repair costs no extra decoding)."""
    extra_sequences: float = 0.0
    """Forward passes per question the repair adds at scoring time."""


class BenchMethod:
    """A repair the bench can judge. Subclasses set ``family`` and implement ``fit_apply``."""

    family: str = "post-hoc"
    transferable: bool = True
    """Whether a map fitted on one dataset can be applied to another's scores."""

    def fit_apply(self, cal_conf: np.ndarray, cal_corr: np.ndarray,
                  conf: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run(self, cell: CellData) -> MethodOutcome | None:
        cal_conf, cal_corr, held_conf = cell.split()
        return MethodOutcome(self.fit_apply(cal_conf, cal_corr, held_conf),
                             cell.correct[cell.heldout_idx])

    def transfer(self, source: CellData, target: CellData) -> np.ndarray:
        """Fit on ``source``'s calibration split, apply to ``target``'s held-out scores."""
        cal_conf, cal_corr, _ = source.split()
        return self.fit_apply(cal_conf, cal_corr, target.confidence[target.heldout_idx])


BENCH_METHODS: Registry[BenchMethod] = Registry("bench method")


@dataclass
class _Recal(BenchMethod):
    name: str

    def fit_apply(self, cal_conf: np.ndarray, cal_corr: np.ndarray,
                  conf: np.ndarray) -> np.ndarray:
        import warnings

        from recal.calibrators import CalibrationWarning

        with warnings.catch_warnings():  # tiny or one-class splits: the row shows the result
            warnings.simplefilter("ignore", CalibrationWarning)
            return get_recalibrator(self.name).fit(cal_conf, cal_corr).predict_proba(conf)


for _name in RECALIBRATORS:
    BENCH_METHODS.register(_name, _Recal(_name))


class _SamplingTemperature(BenchMethod):
    """Refit the sampling temperature on the calibration split (importance reweighting of the
    recorded samples, ESS refusal as in ``recal fit``); judge the reweighted modal share."""

    family = "sampling"
    transferable = False

    def run(self, cell: CellData) -> MethodOutcome | None:
        from recal.sampling_temperature import fit_sampling_temperature, reweight_all

        sampling = cell.store.manifest.get("sampling", {})
        grid = tuple(sampling.get("tau_grid") or ())
        if cell.scorer != "modal_share" or not grid:
            return None  # needs the modal share of samples recorded with a temperature grid
        tau0 = float(sampling["temperature"])
        items = cell.items
        fit = fit_sampling_temperature([items[i] for i in cell.calibration_idx], cell.collapser,
                                       tau_grid=grid, tau0=tau0)
        if fit.tau_ == tau0:
            return MethodOutcome(cell.confidence[cell.heldout_idx],
                                 cell.correct[cell.heldout_idx],
                                 detail={"tau": fit.tau_, "refused_below": _refused(fit)})
        conf, corr, ess = reweight_all([items[i] for i in cell.heldout_idx], cell.collapser,
                                       fit.tau_, grid)
        return MethodOutcome(conf, corr, detail={"tau": fit.tau_,
                                                 "median_ess": float(np.median(ess))})


def _refused(fit: Any) -> list[float]:
    return [row["tau"] for row in fit.table if row["refused"]]


BENCH_METHODS.register("sampling_temperature", _SamplingTemperature())


# --------------------------------------------------------------------------- peer baselines


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)


@dataclass
class _Netcal(BenchMethod):
    factory: Callable[[], Any]
    family: str = "peer"

    def fit_apply(self, cal_conf: np.ndarray, cal_corr: np.ndarray,
                  conf: np.ndarray) -> np.ndarray:
        import contextlib
        import io
        import warnings

        model = self.factory()
        # netcal prints its warnings (e.g. one class in a small split) to stdout.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            model.fit(_clip(cal_conf), cal_corr.astype(int))
            out = np.asarray(model.transform(_clip(conf)), dtype=float).reshape(-1)
        return np.clip(out, 0.0, 1.0)


def _netcal(module: str, cls: str, **kwargs: Any) -> Callable[[], Any]:
    def make() -> Any:
        import importlib

        return getattr(importlib.import_module(module), cls)(**kwargs)
    return make


for _name, (_module, _cls, _kw) in {
    "netcal:temperature": ("netcal.scaling", "TemperatureScaling", {}),
    "netcal:logistic": ("netcal.scaling", "LogisticCalibration", {}),
    "netcal:beta": ("netcal.scaling", "BetaCalibration", {}),
    "netcal:histogram": ("netcal.binning", "HistogramBinning", {"bins": 10}),
    "netcal:isotonic": ("netcal.binning", "IsotonicRegression", {}),
}.items():
    BENCH_METHODS.register(_name, _Netcal(_netcal(_module, _cls, **_kw)))


class _SklearnIsotonic(BenchMethod):
    family = "peer"

    def fit_apply(self, cal_conf: np.ndarray, cal_corr: np.ndarray,
                  conf: np.ndarray) -> np.ndarray:
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        return np.asarray(model.fit(cal_conf, cal_corr).predict(conf), dtype=float)


class _SklearnPlatt(BenchMethod):
    """Platt scaling as scikit-learn's CalibratedClassifierCV does it: a logistic regression on
    the logit of the confidence (default L2 penalty, C = 1)."""

    family = "peer"

    def fit_apply(self, cal_conf: np.ndarray, cal_corr: np.ndarray,
                  conf: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        def logit(p: np.ndarray) -> np.ndarray:
            p = _clip(p)
            return np.log(p / (1 - p)).reshape(-1, 1)

        if len(np.unique(cal_corr)) < 2:  # one class: sklearn refuses; predict the base rate
            return np.full(len(conf), float(cal_corr.mean()))
        model = LogisticRegression().fit(logit(cal_conf), cal_corr.astype(int))
        return np.asarray(model.predict_proba(logit(conf))[:, 1], dtype=float)


BENCH_METHODS.register("sklearn:isotonic", _SklearnIsotonic())
BENCH_METHODS.register("sklearn:platt", _SklearnPlatt())


# --------------------------------------------------------------------------- LoRA methods


@dataclass
class _Tuned(BenchMethod):
    """A :mod:`recal.tuning` method, trained on the cell's calibration split and judged on its
    held-out split; a second bench run reuses the stored result when the config is unchanged."""

    tuning_method: str
    defaults: dict[str, Any] = field(default_factory=dict)
    family: str = "lora"
    transferable: bool = False

    def config(self, cell: CellData) -> Any:
        from recal.tuning.config import config_for

        return config_for(self.tuning_method, {**self.defaults, **cell.tuning})

    def run(self, cell: CellData) -> MethodOutcome | None:
        from recal.models.hf import TransformersBackend
        from recal.tuning import HeldoutScores, tune
        from recal.tuning.run import HELDOUT_FILE

        if cell.scorer != "modal_share":
            return None  # its confidence is its own readout: one row per cell
        if cell.workdir is None:
            raise ValueError("this cell has no work folder for the adapter")
        config = self.config(cell)
        # One folder per training setup: a changed config trains afresh and keeps the old one
        # (loop limits are not in the digest: raising max_epochs resumes the same run).
        folder = cell.workdir / f"{self.tuning_method}-{config.digest()}"
        ids = tuple(cell.items[i].question.id for i in cell.heldout_idx)
        scores = _stored_scores(folder / HELDOUT_FILE, config.to_dict(), ids)
        reused = scores is not None
        if scores is None:
            backend = cell.load_backend()
            if not isinstance(backend, TransformersBackend):
                raise TypeError(f"{self.tuning_method} trains a LoRA adapter in process, but "
                                f"{cell.model!r} loaded as {type(backend).__name__}: give a "
                                "packaged model name or a local transformers folder")
            tune(cell.store, config, folder, backend=backend, progress=cell.progress)
            scores = HeldoutScores.load(folder / HELDOUT_FILE)
            if scores.ids != ids:
                raise RuntimeError(f"{self.tuning_method} judged other held-out questions than "
                                   "the bench's split: its row would not be comparable")
        conf, corr = scores.rows[scores.tuned]
        report = json.loads((folder / "report.json").read_text())
        m = float(cell.store.manifest["sampling"]["n_samples"])
        eval_samples = getattr(config, "eval_samples", None)
        return MethodOutcome(
            conf, corr,
            detail={"readout": scores.tuned, "reused": reused,
                    "train_seconds": report["training"]["seconds"],
                    "epochs": report["training"]["epochs"],
                    "best_epoch": report["training"]["best_epoch"], "n_train": report["n_train"],
                    "n_val": report["n_val"], "adapter": report["adapter"]},
            # the distribution method is judged on fresh samples of the tuned model; the others
            # read one more forward pass beside the scorer's samples
            sequences_factor=eval_samples / m if eval_samples else 1.0,
            extra_sequences=0.0 if eval_samples else 1.0)


def _stored_scores(path: Path, config: dict[str, Any], ids: tuple[str, ...]) -> Any:
    """The held-out scores at ``path`` if they came from this config on these questions."""
    from recal.tuning import HeldoutScores

    if not path.exists() or not (path.parent / "report.json").exists():
        return None
    scores = HeldoutScores.load(path)

    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return json.dumps(a, sort_keys=True, default=list) == json.dumps(b, sort_keys=True,
                                                                         default=list)
    return scores if scores.ids == ids and same(scores.config, config) else None


for _name, _defaults in {"confidence_head": {}, "amortised": {"target": "correct"},
                         "distribution": {"target": "sharpen"}}.items():
    BENCH_METHODS.register(f"lora:{_name}", _Tuned(_name, _defaults))
