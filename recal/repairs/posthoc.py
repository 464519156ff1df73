"""recal's post-hoc recalibrators (:mod:`recal.calibrators`) as repair methods."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recal.calibrators import RECALIBRATORS, cross_val_predict, get_recalibrator
from recal.repairs.base import RepairMethod, RepairOutcome, RepairTask, register_repair

__all__ = ["PostHoc", "DEFAULT_POSTHOC"]

DEFAULT_POSTHOC = ("identity", "temperature", "platt", "isotonic", "histogram", "beta")
"""The recalibrators ``recal fit`` and ``recal bench`` fit unless told otherwise, in order."""


@dataclass
class PostHoc(RepairMethod):
    """A recalibrator fitted on the calibration split's (confidence, correct); its state is the
    recalibrator's JSON (what ``recal export`` writes)."""

    name: str

    def fit_predict(self, cal_conf: np.ndarray, cal_corr: np.ndarray,
                    conf: np.ndarray) -> np.ndarray:
        return get_recalibrator(self.name).fit(cal_conf, cal_corr).predict_proba(conf)

    def run(self, task: RepairTask) -> RepairOutcome:
        judged = task.judged
        recalibrator = get_recalibrator(self.name).fit(*judged.calibration())
        held_conf, held_corr = judged.heldout()
        if task.cv_folds:  # every question judged by a map fitted without it
            held_conf = cross_val_predict(get_recalibrator(self.name), judged.confidence,
                                          judged.correct, task.cv_folds, task.seed)
        else:
            held_conf = recalibrator.predict_proba(held_conf)
        return RepairOutcome(held_conf, held_corr, state=recalibrator.to_dict(),
                             fitted=recalibrator)


for _name in (*DEFAULT_POSTHOC, *(n for n in RECALIBRATORS if n not in DEFAULT_POSTHOC)):
    register_repair(_name, PostHoc(_name), default=_name in DEFAULT_POSTHOC,
                    help=f"recal's recalibrator: {RECALIBRATORS.help(_name)}")
