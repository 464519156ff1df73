"""The identity recalibrator: the model's confidence, unchanged (the "none" row of a table)."""

from __future__ import annotations

from recal.calibrators.base import RECALIBRATORS, FloatArray, Recalibrator

__all__ = ["IdentityRecalibrator"]


@RECALIBRATORS.register("identity")
class IdentityRecalibrator(Recalibrator):
    """``p' = p``: no recalibration, the baseline every method is compared with.

    ``fit`` only checks the data (and records ``n_fit_``), so that a table's "none" row goes
    through the same calls, checks and save/load as every other method; it never warns, since it
    learns nothing from the labels.
    """

    name = "identity"
    _uses_labels = False

    def _fit(self, conf: FloatArray, corr: FloatArray, weight: FloatArray) -> None:
        pass

    def _predict(self, conf: FloatArray) -> FloatArray:
        return conf.copy()
