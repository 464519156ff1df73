"""LoRA calibration tuning (:mod:`recal.tuning`) as repair methods.

============================  ==================================================
lora:confidence_head          P(yes) to "is this answer correct?" after LoRA
                              calibration tuning
lora:amortised                a head that predicts from the question alone
                              whether the modal answer is right
lora:distribution             LoRA toward the model's own sharpened class
                              distribution; judged on the tuned model's samples
============================  ==================================================

They train on the calibration questions (less a validation share that stops them early),
through :func:`recal.tuning.tune`, with the same held-out questions as every other method.
Their confidence is their own readout, so they run on the ``modal_share`` scorer's task only;
they need an in-process transformers model, and they do not transfer (judging another set would
mean running the tuned model on it). A second run reuses the stored result when the config is
unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recal.repairs.base import RepairMethod, RepairOutcome, RepairTask, register_repair

__all__ = ["Tuned"]


@dataclass
class Tuned(RepairMethod):
    """A :mod:`recal.tuning` method; its state is the adapter it saved (folder and sha256)."""

    tuning_method: str
    defaults: dict[str, Any] = field(default_factory=dict)
    family: str = "lora"
    transferable: bool = False

    def config(self, task: RepairTask) -> Any:
        from recal.tuning.config import config_for

        return config_for(self.tuning_method, {**self.defaults, **task.tuning})

    def run(self, task: RepairTask) -> RepairOutcome | None:
        from recal.models.hf import TransformersBackend
        from recal.tuning import HeldoutScores, tune
        from recal.tuning.run import HELDOUT_FILE

        judged = task.judged
        if judged.scorer != "modal_share":
            return None  # its confidence is its own readout: one row per model and dataset
        if task.workdir is None or judged.store is None or task.load_backend is None:
            raise ValueError("this task has no work folder for the adapter (or no run store)")
        config = self.config(task)
        # One folder per training setup: a changed config trains afresh and keeps the old one
        # (loop limits are not in the digest: raising max_epochs resumes the same run).
        folder = task.workdir / f"{self.tuning_method}-{config.digest()}"
        ids = tuple(judged.heldout_ids)
        scores = _stored_scores(folder / HELDOUT_FILE, config.to_dict(), ids)
        reused = scores is not None
        if scores is None:
            backend = task.load_backend()
            if not isinstance(backend, TransformersBackend):
                raise TypeError(f"{self.tuning_method} trains a LoRA adapter in process, but "
                                f"{task.model!r} loaded as {type(backend).__name__}: give a "
                                "packaged model name or a local transformers folder")
            tune(judged.store, config, folder, backend=backend, progress=task.progress)
            scores = HeldoutScores.load(folder / HELDOUT_FILE)
            if scores.ids != ids:
                raise RuntimeError(f"{self.tuning_method} judged other held-out questions than "
                                   "the task's split: its row would not be comparable")
        conf, corr = scores.rows[scores.tuned]
        report = json.loads((folder / "report.json").read_text())
        m = float(judged.store.manifest["sampling"]["n_samples"])
        eval_samples = getattr(config, "eval_samples", None)
        return RepairOutcome(
            conf, corr,
            detail={"readout": scores.tuned, "reused": reused,
                    "train_seconds": report["training"]["seconds"],
                    "epochs": report["training"]["epochs"],
                    "best_epoch": report["training"]["best_epoch"], "n_train": report["n_train"],
                    "n_val": report["n_val"], "adapter": report["adapter"]},
            state={"method": self.tuning_method, "adapter": report["adapter"],
                   "sha256": report["adapter_sha256"]},
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
    register_repair(f"lora:{_name}", Tuned(_name, _defaults),
                    help=f"LoRA fine-tuning with recal.tuning's {_name} method")
