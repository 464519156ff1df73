"""Repair methods: one registry (:data:`REPAIR_METHODS`), one module per kind.

=====================  ==========  ======================================================
module                 family      methods
=====================  ==========  ======================================================
:mod:`.posthoc`        post-hoc    recal's recalibrators (identity ... beta)
:mod:`.sampling`       sampling    sampling_temperature (refit T by importance reweighting)
:mod:`.peers`          peer        netcal:<name>, sklearn:isotonic, sklearn:platt
:mod:`.lora`           lora        lora:confidence_head, lora:amortised, lora:distribution
=====================  ==========  ======================================================

A new method: a :class:`RepairMethod` subclass in a module here, one :func:`register_repair`
call in it, and one import line below.
"""

from recal.repairs import lora, peers, posthoc, sampling  # noqa: F401  (registrations)
from recal.repairs.base import (
    FAMILIES,
    REPAIR_METHODS,
    SELECTION_FOLDS,
    RepairMethod,
    RepairOutcome,
    RepairTask,
    check_classes,
    default_methods,
    register_repair,
    selection_brier,
)

__all__ = ["REPAIR_METHODS", "RepairMethod", "RepairOutcome", "RepairTask", "register_repair",
           "default_methods", "FAMILIES", "check_classes", "selection_brier", "SELECTION_FOLDS"]
