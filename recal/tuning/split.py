"""The split every tuning method shares: train / validation / held-out question ids.

The held-out part is the one `recal fit` and `recal bench` judge repairs on
(:class:`recal.judged.Split` with the same fraction and seed over the run's finished questions in
order), so that fine-tuning and post-hoc rows of a table are measured on the same questions.
Validation questions are carved from the training part; they choose when to stop and are never
trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recal.confidence import Classified
from recal.judged import Split

__all__ = ["TuningSplit", "tuning_split"]


@dataclass(frozen=True)
class TuningSplit:
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    heldout_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train_ids), "val": list(self.val_ids),
                "heldout": list(self.heldout_ids)}


def tuning_split(items: Sequence[Classified], calibration_fraction: float, val_fraction: float,
                 seed: int) -> TuningSplit:
    """Split the classified questions of a run (in the run's order, as ``classify_run`` gives)."""
    if len(items) < 4:
        raise ValueError(f"the run holds {len(items)} finished questions; tuning needs at least "
                         "4 (training, validation and held-out parts; hundreds to mean much)")
    cal, held = Split.random(calibration_fraction, seed).indices(len(items))
    if len(cal) < 2:
        raise ValueError(f"the training part has {len(cal)} question(s); it needs 2 to keep one "
                         "for validation: raise calibration_fraction")
    order = np.random.default_rng([seed, 1]).permutation(cal)
    n_val = min(max(round(val_fraction * len(cal)), 1), len(cal) - 1)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    ids = [item.question.id for item in items]
    return TuningSplit(tuple(ids[i] for i in train), tuple(ids[i] for i in val),
                       tuple(ids[i] for i in held))
