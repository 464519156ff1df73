"""The model's own sampling temperature, refitted on the calibration split (one implementation,
used by ``recal fit``, ``recal bench`` and the synthetic world).

The temperature is chosen by :func:`recal.sampling_temperature.fit_sampling_temperature`
(importance reweighting of the recorded samples; a temperature whose median effective sample
size is below ``RepairTask.min_ess`` is refused) and the held-out questions' modal share is
reweighted to it. It needs the ``modal_share`` scorer on a run sampled with a temperature grid;
it changes the answers, so accuracy moves with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recal.repairs.base import RepairMethod, RepairOutcome, RepairTask, register_repair
from recal.sampling_temperature import fit_sampling_temperature, reweight_all

__all__ = ["SamplingTemperature", "temperature_grid"]


def temperature_grid(manifest: dict[str, Any]) -> tuple[float, ...]:
    """The temperature grid a run recorded (empty: none)."""
    return tuple(manifest.get("sampling", {}).get("tau_grid") or ())


class SamplingTemperature(RepairMethod):
    family = "sampling"
    transferable = False
    accuracy_changes = True

    def run(self, task: RepairTask) -> RepairOutcome | None:
        judged = task.judged
        if judged.store is None:
            return None
        grid = temperature_grid(judged.store.manifest)
        if judged.scorer != "modal_share" or not grid or task.cv_folds:
            return None  # needs the modal share of samples recorded with a temperature grid
        tau0 = float(judged.store.manifest["sampling"]["temperature"])
        fit = fit_sampling_temperature(judged.calibration_items(), judged.collapser,
                                       tau_grid=grid, tau0=tau0, min_ess=task.min_ess)
        detail: dict[str, Any] = {"tau": fit.tau_,
                                  "refused_below": [r["tau"] for r in fit.table if r["refused"]]}
        state = {"tau": fit.tau_, "tau0": tau0, "criterion": fit.criterion, "table": fit.table}
        if fit.tau_ == tau0:
            # Nothing changes; reweighting by weights that are 1 up to the rounding of the stored
            # logits would only reshuffle tied classes, so the row is the unrepaired one.
            conf, corr = judged.heldout()
            return RepairOutcome(conf, corr, {**detail, "estimate": "sampled"}, state, fit,
                                 unchanged=True)
        conf, corr, ess = reweight_all(judged.heldout_items(), judged.collapser, fit.tau_, grid)
        return RepairOutcome(conf, corr, {**detail, "estimate": "importance-reweighted",
                                          "median_ess": float(np.median(ess))}, state, fit)


register_repair("sampling_temperature", SamplingTemperature(), default=True,
                help="refit the sampling temperature by importance reweighting (needs a tau grid)")
