"""Repair by fine-tuning: LoRA calibration methods trained with peft, launched through accelerate.

=================  ======================  ==================================================
method             config                  what it trains
=================  ======================  ==================================================
distribution       DistributionConfig      the model's class distribution toward a target (a
                                           reference model's, or its own made calibrated)
confidence_head    ConfidenceHeadConfig    P(yes) to "is this answer correct?" (Kapoor et al.
                                           2024), answers kept by a KL regulariser
amortised          AmortisedConfig         a head predicting the modal share from the
                                           question alone, in one forward pass
=================  ======================  ==================================================

:func:`tune` runs one on a stored run (same held-out split as `recal fit`), saves the adapter with
``save_pretrained`` (safetensors + JSON, no pickle) and a calibrated scorer that references it.
torch and peft are imported with this package, not with ``import recal``.
"""

from recal.tuning.base import TUNING_METHODS, Evaluation, TunedModel, TuningMethod, get_method
from recal.tuning.config import (
    AmortisedConfig,
    ConfidenceHeadConfig,
    DistributionConfig,
    TrainConfig,
    config_from_dict,
)
from recal.tuning.run import (
    HeldoutScores,
    TuneReport,
    export_tuned_scorer,
    load_tuned,
    save_adapter,
    tune,
)
from recal.tuning.split import TuningSplit, tuning_split
from recal.tuning.trainer import TrainResult

__all__ = [
    "TUNING_METHODS", "AmortisedConfig", "ConfidenceHeadConfig", "DistributionConfig",
    "Evaluation", "HeldoutScores", "TrainConfig", "TrainResult", "TuneReport", "TunedModel",
    "TuningMethod", "TuningSplit", "config_from_dict", "export_tuned_scorer", "get_method",
    "load_tuned", "save_adapter", "tune", "tuning_split",
]
