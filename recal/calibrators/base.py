"""The recalibrator interface, its registry, and the checks and edge cases every one shares.

A recalibrator is an estimator in the scikit-learn shape: ``__init__`` stores keyword-only
hyperparameters (checked there), ``fit(confidence, correct, sample_weight=None)`` learns a map
from stated confidence to calibrated probability and returns ``self``, and
``predict_proba(confidence)`` applies it. Fitted state lives in attributes with a trailing
underscore and is plain numbers and float arrays, so :meth:`Recalibrator.to_dict` writes it as
JSON data (see :mod:`recal.calibrators.io`).

Shared behaviour, decided once here for every method:

* Input: ``confidence`` and ``correct`` are checked by :mod:`recal.metrics`' shared validation
  (1-D, same non-zero length, finite, confidence in [0, 1], correct binary); ``sample_weight``
  must be finite, non-negative, one per prediction and not all zero. Rows of weight 0 are dropped
  before fitting, exactly as if absent. A ``ValueError`` names the bad argument.
* Fewer than :data:`MIN_CLASS_SIZE` (2) correct or wrong predictions (of positive weight; this
  includes one class only, and n < 4): the data say how often the model is right but (almost)
  nothing about how confidence relates to being right. The maximum-likelihood fits are then
  degenerate (temperature -> 0, slopes -> infinity, a step at the lone answer) or a fallback
  that is no repair at all. So every recalibrator that reads the labels refuses with
  :class:`DegenerateSplitError` ("not fitted: the calibration split has no correct answer (75
  questions; platt needs at least 2 correct and 2 wrong)"), which callers show as the method's
  row instead of a map; the identity recalibrator, which ignores the labels, still fits.
* Fewer than :data:`MIN_RELIABLE_SIZE` (10) predictions of positive weight with at least 2 of
  each class: the fit runs and a :class:`CalibrationWarning` says the map is unreliable. When
  those few predictions are also *separable* (every wrong answer's confidence below every right
  answer's), the maximum-likelihood maps have no finite optimum: temperature, Platt and beta
  scaling run to their bound or ridge and isotonic regression steps from exactly 0 to exactly 1,
  so a handful of answers would be served as 1e-35 and 1.0. These methods
  (``_steep_when_separable``) refuse such a fit with :class:`DegenerateSplitError` ("... the
  confidence separates the 2 correct from the 2 wrong answers ..."); histogram binning, whose
  smoothed bins stay inside (0, 1), fits it. From 10 predictions on, separable data are fitted
  (the ridge keeps them finite; the map is then close to a step).
* A single distinct confidence: the map is determined at that value only; a warning says so and
  each method documents what it predicts elsewhere.
* ``predict_proba`` on an unfitted recalibrator raises :class:`NotFittedError`; on confidences
  that are not finite values in [0, 1] a ``ValueError``; an empty array gives an empty array.
"""

from __future__ import annotations

import inspect
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt

from recal.metrics.validation import as_1d_array, check_predictions, describe_first_bad
from recal.registry import Registry

__all__ = [
    "MIN_CLASS_SIZE",
    "MIN_RELIABLE_SIZE",
    "RECALIBRATORS",
    "CalibrationWarning",
    "DegenerateSplitError",
    "FitError",
    "NotFittedError",
    "Recalibrator",
    "check_real",
    "check_sample_weight",
    "clone",
    "get_recalibrator",
    "recalibrator_from_dict",
]

FloatArray = npt.NDArray[np.float64]
StateKind = Literal["scalar", "integer", "array"]

#: ``fit`` on fewer predictions than this (of positive weight) warns that the map is unreliable.
MIN_RELIABLE_SIZE: int = 10

#: ``fit`` refuses (:class:`DegenerateSplitError`) data with fewer correct, or fewer wrong,
#: predictions (of positive weight) than this.
MIN_CLASS_SIZE: int = 2


class NotFittedError(ValueError):
    """A recalibrator was applied or saved before :meth:`Recalibrator.fit`."""


class CalibrationWarning(UserWarning):
    """``fit`` ran, but on data that make the map unreliable or forced a documented fallback."""


class FitError(RuntimeError):
    """The optimiser behind a fit failed; the message carries its reason."""


class DegenerateSplitError(ValueError):
    """``fit`` refused: the data hold fewer than :data:`MIN_CLASS_SIZE` correct or wrong answers.

    ``str(err)`` is the reason to show in a table ("not fitted: the calibration split has no
    correct answer (75 questions; platt needs at least 2 correct and 2 wrong)"); ``method``,
    ``n`` (predictions of positive weight), ``n_correct`` and ``where`` (what was fitted on: "the
    calibration split", or a cross-fitting fold's training part) say the same as data.
    """

    def __init__(self, method: str, n: int, n_correct: int,
                 where: str = "the calibration split", separable: bool = False) -> None:
        self.method, self.n, self.n_correct, self.where = method, n, n_correct, where
        self.separable = separable
        n_wrong = n - n_correct
        if separable:
            super().__init__(f"not fitted: on {where} ({n} question{'s' * (n != 1)}) the "
                             f"confidence separates the {n_correct} correct from the {n_wrong} "
                             f"wrong answers, so {method} would map them to 0 and 1; it needs "
                             f"at least {MIN_RELIABLE_SIZE} questions for such data")
            return
        if n_correct == 0 or n_wrong == 0:
            what = "no correct answer" if n_correct == 0 else "no wrong answer"
        else:
            few, kind = (n_correct, "correct") if n_correct < n_wrong else (n_wrong, "wrong")
            what = f"only {few} {kind} answer{'s' * (few != 1)}"
        super().__init__(f"not fitted: {where} has {what} ({n} "
                         f"question{'s' * (n != 1)}; {method} needs at least {MIN_CLASS_SIZE} "
                         f"correct and {MIN_CLASS_SIZE} wrong)")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.method, self.n, self.n_correct, self.where, self.separable)


# --------------------------------------------------------------------------- input checks


def _check_confidence(confidence: npt.ArrayLike) -> FloatArray:
    """``confidence`` alone, through the same checks as :func:`recal.metrics._check`."""
    conf = as_1d_array(confidence, "confidence")
    if conf.size:
        check_predictions(conf, np.zeros_like(conf))
    return conf


def check_sample_weight(sample_weight: npt.ArrayLike | None, n: int) -> FloatArray:
    if sample_weight is None:
        return np.ones(n)
    weight = as_1d_array(sample_weight, "sample_weight")
    if weight.size != n:
        raise ValueError(f"sample_weight must have one value per prediction ({n}), "
                         f"got {weight.size}")
    bad = ~np.isfinite(weight)
    if bad.any():
        raise ValueError(f"sample_weight has {int(bad.sum())} non-finite values "
                         f"{describe_first_bad(weight, bad)}")
    bad = weight < 0
    if bad.any():
        raise ValueError(f"sample_weight has {int(bad.sum())} negative values "
                         f"{describe_first_bad(weight, bad)}")
    if not (weight > 0).any():
        raise ValueError("sample_weight is zero everywhere; at least one prediction needs a "
                         "positive weight")
    return weight


def check_real(value: object, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    """A hyperparameter that must be a finite real number >= (or >) ``minimum``."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if ok and math.isfinite(value) and (value > minimum if strict else value >= minimum):
        return float(value)
    relation = ">" if strict else ">="
    raise ValueError(f"{name} must be a finite number {relation} {minimum:g}, got {value!r}")


# --------------------------------------------------------------------------- the interface


class Recalibrator(ABC):
    """A map from a model's stated confidence to a calibrated probability of being correct.

    Subclasses set ``name``, declare their fitted state in ``_state_spec`` (JSON key -> "scalar",
    "integer" or "array"; the attribute is the key plus a trailing underscore; ``_state_defaults``
    fills keys that older files lack) and implement ``_fit``, ``_predict`` and, optionally,
    ``_check_state`` (for loaded files).
    """

    name: ClassVar[str]
    _state_spec: ClassVar[Mapping[str, StateKind]] = {}
    #: Values for state keys that files written by an older recal lack (the map they described).
    _state_defaults: ClassVar[Mapping[str, Any]] = {}
    #: False for recalibrators whose fit ignores the labels (never refused, no warnings).
    _uses_labels: ClassVar[bool] = True
    #: True for maximum-likelihood maps that go to 0 and 1 on separable data (refused on fewer
    #: than MIN_RELIABLE_SIZE predictions; see the module docstring).
    _steep_when_separable: ClassVar[bool] = True

    n_fit_: int  # predictions (of positive weight) the map was fitted on

    def __init__(self) -> None:  # noqa: B027 - no hyperparameters unless a subclass adds some
        pass

    # ----------------------------------------------------------------- estimator API

    def fit(
        self,
        confidence: npt.ArrayLike,
        correct: npt.ArrayLike,
        sample_weight: npt.ArrayLike | None = None,
    ) -> Self:
        """Learn the map from ``confidence`` (in [0, 1]) and ``correct`` (binary); returns self.

        Raises :class:`DegenerateSplitError` when the labels hold fewer than
        :data:`MIN_CLASS_SIZE` of either class (recalibrators that ignore the labels excepted).
        """
        conf, corr = check_predictions(confidence, correct)
        weight = check_sample_weight(sample_weight, conf.size)
        keep = weight > 0
        if not keep.all():
            conf, corr, weight = conf[keep], corr[keep], weight[keep]
        if self._uses_labels:
            self._check_classes(conf, corr)
        self._fit(conf, corr, weight)
        self.n_fit_ = int(conf.size)
        return self

    def predict_proba(self, confidence: npt.ArrayLike) -> FloatArray:
        """Calibrated probabilities in [0, 1], one per confidence (a new 1-D float64 array)."""
        self._check_fitted()
        conf = _check_confidence(confidence)
        if conf.size == 0:
            return np.empty(0)
        return np.clip(self._predict(conf), 0.0, 1.0)

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, by the names ``__init__`` takes them."""
        return {name: getattr(self, name) for name in self._param_names()}

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "params", "state"}`` as JSON-able data (state arrays as lists of floats)."""
        self._check_fitted()
        state: dict[str, Any] = {"n_fit": int(self.n_fit_)}
        for key, kind in self._state_spec.items():
            value = getattr(self, key + "_")
            state[key] = (float(value) if kind == "scalar" else int(value) if kind == "integer"
                          else [float(v) for v in value])
        return {"name": self.name, "params": self.get_params(), "state": state}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recalibrator:
        """The fitted recalibrator that :meth:`to_dict` described, found through the registry.

        Unknown keys in ``params`` or ``state`` (from a newer recal) are ignored with a warning;
        missing or malformed ones raise ``ValueError`` naming the key.
        """
        out = recalibrator_from_dict(data, "recalibrator dict", stacklevel=3)
        if not isinstance(out, cls):
            raise ValueError(f"recalibrator dict describes {out.name!r}, which is not a "
                             f"{cls.__name__}")
        return out

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "n_fit_")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # ----------------------------------------------------------------- for subclasses

    @abstractmethod
    def _fit(self, conf: FloatArray, corr: FloatArray, weight: FloatArray) -> None:
        """Set the fitted state from checked data with positive weights and, when the labels
        are used, at least :data:`MIN_CLASS_SIZE` of each class."""

    @abstractmethod
    def _predict(self, conf: FloatArray) -> FloatArray:
        """The map applied to checked, non-empty confidences."""

    def _check_state(self) -> None:  # noqa: B027 - optional hook, nothing to check by default
        """Raise ``ValueError`` naming the key (``state.<key>``) if loaded state is inconsistent."""

    # ----------------------------------------------------------------- internals

    @classmethod
    def _param_names(cls) -> list[str]:
        parameters = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call "
                                 f"fit(confidence, correct) first")

    def _check_classes(self, conf: FloatArray, corr: FloatArray) -> None:
        """Refuse too few of either class; warn about data that make the map unreliable."""
        n = conf.size
        n_correct = int(np.count_nonzero(corr == 1.0))
        if min(n_correct, n - n_correct) < MIN_CLASS_SIZE:
            raise DegenerateSplitError(self.name, n, n_correct)
        if (n < MIN_RELIABLE_SIZE and self._steep_when_separable
                and conf[corr == 0.0].max() < conf[corr == 1.0].min()):
            raise DegenerateSplitError(self.name, n, n_correct, separable=True)
        if n < MIN_RELIABLE_SIZE:
            warnings.warn(f"{self.name}: fitting on {n} prediction{'s' * (n != 1)}; a "
                          f"recalibration map fitted on fewer than {MIN_RELIABLE_SIZE} is "
                          f"unreliable", CalibrationWarning, stacklevel=3)
        if np.all(conf == conf[0]):
            warnings.warn(f"{self.name}: confidence takes one value ({float(conf[0])!r}) in the "
                          f"fit; the map is determined at that value only", CalibrationWarning,
                          stacklevel=3)

    def _load_state(self, state: object, where: str, stacklevel: int) -> None:
        if not isinstance(state, Mapping):
            raise ValueError(f"{where}: key 'state' must be an object, got "
                             f"{type(state).__name__}")
        spec: dict[str, str] = {"n_fit": "count", **self._state_spec}
        unknown = sorted(set(state) - set(spec))
        if unknown:
            warnings.warn(f"{where}: ignoring unknown {self.name} state key(s) "
                          f"{', '.join(map(repr, unknown))} (written by a newer recal?)",
                          stacklevel=stacklevel)
        values = {}
        for key, kind in spec.items():
            if key not in state and key in self._state_defaults:
                values[key] = self._state_defaults[key]
                continue
            if key not in state:
                raise ValueError(f"{where}: key 'state.{key}' is missing")
            values[key] = _read_state_value(state[key], kind, f"{where}: key 'state.{key}'")
        for key, value in values.items():
            setattr(self, key + "_", value)
        try:
            self._check_state()
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read_state_value(value: object, kind: str, what: str) -> Any:
    if kind == "count":
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    if kind == "scalar":
        if _is_number(value):
            return float(value)
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list of numbers, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not _is_number(item):
            raise ValueError(f"{what} must hold finite numbers, got {item!r} at index {i}")
    return np.array(value, dtype=np.float64)


def recalibrator_from_dict(data: object, where: str, stacklevel: int) -> Recalibrator:
    """Build a fitted recalibrator from ``{"name", "params", "state"}``; errors name ``where``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be an object, got {type(data).__name__}")
    for key in ("name", "params", "state"):
        if key not in data:
            raise ValueError(f"{where}: key {key!r} is missing")
    name = data["name"]
    if not isinstance(name, str):
        raise ValueError(f"{where}: key 'name' must be a string, got {name!r}")
    try:
        kind = RECALIBRATORS.get(name)
    except KeyError as err:
        raise ValueError(f"{where}: key 'name': {err.args[0]}") from None
    params = data["params"]
    if not isinstance(params, Mapping):
        raise ValueError(f"{where}: key 'params' must be an object, got {type(params).__name__}")
    known = kind._param_names()
    unknown = sorted(set(params) - set(known))
    if unknown:
        warnings.warn(f"{where}: ignoring unknown {kind.name} parameter(s) "
                      f"{', '.join(map(repr, unknown))} (written by a newer recal?)",
                      stacklevel=stacklevel)
    try:
        out = kind(**{k: params[k] for k in known if k in params})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: key 'params': {err}") from None
    out._load_state(data["state"], where, stacklevel + 1)
    return out


# --------------------------------------------------------------------------- registry

RECALIBRATORS: Registry[type[Recalibrator]] = Registry("recalibrator")


def get_recalibrator(name: str, **params: Any) -> Recalibrator:
    """A new, unfitted recalibrator; unknown names raise ``KeyError`` with "did you mean"."""
    return RECALIBRATORS.get(name)(**params)


def clone(recalibrator: Recalibrator) -> Recalibrator:
    """A new, unfitted recalibrator of the same kind with the same hyperparameters."""
    return type(recalibrator)(**recalibrator.get_params())
