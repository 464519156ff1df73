"""Run a tuning method end to end: split, train, save the adapter, judge it on held-out questions.

    from recal.runstore import RunStore
    from recal.tuning import AmortisedConfig, tune

    report = tune(RunStore.open("runs/x"), AmortisedConfig(), out="runs/x/tune-amortised")

``out`` receives ``adapter/`` (peft ``save_pretrained``: ``adapter_config.json`` and
``adapter_model.safetensors``; ``head.safetensors`` when the method has a head; and
``recal_tuning.json``: the method's config, the base model's identity, the prompt style and the
split), ``checkpoints/`` (best and last, for resuming), ``report.json``, ``table.md``,
``heldout.json`` (each held-out question's readouts, row by row, for benches and plots), and
``scorer/``: a calibrated scorer artifact that references the adapter.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recal import __version__
from recal.confidence import classify_run
from recal.judged import judge
from recal.metrics import BootstrapResult
from recal.models.hf import TransformersBackend
from recal.runstore import RunStore
from recal.scorer_format import signing_key
from recal.semantic.base import get_collapser
from recal.tuning.base import TunedModel, TuningMethod, get_method
from recal.tuning.config import TrainConfig, config_from_dict
from recal.tuning.split import TuningSplit, tuning_split
from recal.tuning.trainer import HEAD_FILE, TrainResult, make_peft, save_weights, train

__all__ = ["TuneReport", "HeldoutScores", "tune", "save_adapter", "load_tuned",
           "export_tuned_scorer", "ADAPTER_META", "HELDOUT_FILE"]

ADAPTER_META = "recal_tuning.json"
HELDOUT_FILE = "heldout.json"
_ADAPTER_SCHEMA = 1


@dataclass(frozen=True)
class HeldoutScores:
    """Each judged held-out question's (confidence, correct), row by row, as ``tune`` measured
    them; ``tuned`` names the row read off the tuned model."""

    ids: tuple[str, ...]
    rows: dict[str, tuple[np.ndarray, np.ndarray]]
    tuned: str
    config: dict[str, Any]
    """The tuning config that produced them (``TrainConfig.to_dict``)."""

    def save(self, path: Path) -> None:
        doc = {"ids": list(self.ids), "tuned": self.tuned, "config": self.config,
               "rows": {name: {"confidence": conf.tolist(), "correct": corr.tolist()}
                        for name, (conf, corr) in self.rows.items()}}
        path.write_text(json.dumps(doc, indent=1, sort_keys=True, default=list) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> HeldoutScores:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
            rows = {name: (np.asarray(r["confidence"], dtype=float),
                           np.asarray(r["correct"], dtype=float))
                    for name, r in doc["rows"].items()}
            return cls(tuple(doc["ids"]), rows, doc["tuned"], dict(doc["config"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a readable {HELDOUT_FILE} ({err}); delete it and "
                             "tune again") from err


@dataclass
class TuneReport:
    config: TrainConfig
    model: dict[str, Any]
    style: str
    split: TuningSplit
    n_train_rows: int
    n_val_rows: int
    training: TrainResult
    heldout: dict[str, dict[str, BootstrapResult]]
    """Metrics with bootstrap intervals of each row (before / after), on held-out questions."""
    tuned_row: str
    """The row of ``heldout`` read off the tuned model."""
    extra: dict[str, Any] = field(default_factory=dict)
    adapter: str = ""
    adapter_sha256: str = ""
    eval_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "model": self.model, "style": self.style,
                "n_train": len(self.split.train_ids), "n_val": len(self.split.val_ids),
                "n_heldout": len(self.split.heldout_ids), "n_train_rows": self.n_train_rows,
                "n_val_rows": self.n_val_rows, "training": self.training.to_dict(),
                "heldout": {row: {k: asdict(v) for k, v in m.items()}
                            for row, m in self.heldout.items()},
                "tuned_row": self.tuned_row, "extra": self.extra, "adapter": self.adapter,
                "adapter_sha256": self.adapter_sha256, "eval_seconds": self.eval_seconds}

    def table(self) -> str:
        shown = ("smooth_ece", "brier_score", "auroc", "accuracy")
        t = self.training
        n_held = int(self.extra["n_heldout_judged"])
        lines = [f"{self.config.method}: trained on {len(self.split.train_ids)} questions "
                 f"({self.n_train_rows} rows), stopped on {len(self.split.val_ids)} "
                 f"({t.stopped} after {t.epochs} epochs, best epoch {t.best_epoch}, "
                 f"{t.seconds:.0f} s); judged on {n_held} held-out questions. Each cell: "
                 "estimate [95% interval].",
                 "", "| row | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
        for row, metrics in self.heldout.items():
            cells = [f"{metrics[m].estimate:.3f} [{metrics[m].low:.3f}, {metrics[m].high:.3f}]"
                     for m in shown]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def save_adapter(folder: Path, tuned: TunedModel, config: TrainConfig, model: dict[str, Any],
                 split: TuningSplit) -> str:
    """Write the adapter folder; returns its sha256 (:func:`recal.scorer.folder_sha256`)."""
    from recal.scorer import folder_sha256

    save_weights(folder, tuned.model, tuned.head)
    meta = {"schema": _ADAPTER_SCHEMA, "recal_version": __version__,
            "method": config.method, "config": config.to_dict(), "base_model": model,
            "style": tuned.style, "shots": tuned.shots,
            "head_state": tuned.method.head_state(), "split": split.to_dict()}
    (folder / ADAPTER_META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=list)
                                       + "\n")
    return folder_sha256(folder)


def load_tuned(folder: str | Path, *, backend: TransformersBackend | None = None) -> TunedModel:
    """Load an adapter folder onto its base model (``backend``, or loaded by name).

    Reads JSON and safetensors only; the base model's weights are not changed (the adapter goes
    on a copy).
    """
    from peft import PeftModel
    from safetensors.torch import load_file

    from recal.models.hf import load_transformers
    from recal.scorer import folder_sha256

    folder = Path(folder)
    if not (folder / ADAPTER_META).exists():
        raise FileNotFoundError(f"{folder} is not a recal adapter folder (no {ADAPTER_META}); "
                                "make one with `recal tune`")
    meta = json.loads((folder / ADAPTER_META).read_text())
    if meta.get("schema", 0) > _ADAPTER_SCHEMA:
        raise ValueError(f"{folder / ADAPTER_META} has schema {meta.get('schema')}; this recal "
                         f"({__version__}) reads schema <= {_ADAPTER_SCHEMA}: upgrade recal")
    config = config_from_dict(meta["config"])
    method = get_method(meta["method"])(config)
    method.load_head_state(meta.get("head_state") or {})
    base = meta["base_model"]
    backend = backend or load_transformers(base["name"], kind=base.get("kind"))
    if backend.identity.config_hash != base.get("config_hash"):
        raise ValueError(f"the adapter in {folder} was trained on a model with config hash "
                         f"{base.get('config_hash')}, but the model given has "
                         f"{backend.identity.config_hash}")
    method.bind(backend, meta["style"], meta.get("shots"))
    model = PeftModel.from_pretrained(copy.deepcopy(backend.model), str(folder))
    model.eval()
    head = method.make_head(backend.model)
    if head is not None:
        head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        head.eval()
    return TunedModel(method, backend, model, head, meta["style"], meta.get("shots"),
                      folder_sha256(folder))


def tune(store: RunStore, config: TrainConfig, out: str | Path, *,
         backend: TransformersBackend | None = None, progress: bool = True) -> TuneReport:
    """Train ``config.method`` on the training part of ``store``, judge it on the held-out part.

    ``backend`` defaults to the run's model, loaded by name; its weights are not changed.
    """
    from recal.models.hf import load_transformers

    key = signing_key()  # the scorer is signed as `recal export` signs it; a bad key is refused now
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    method: TuningMethod = get_method(config.method)(config)
    collapser = get_collapser(config.collapse)
    items = classify_run(store, collapser)
    split = tuning_split(items, config.calibration_fraction, config.val_fraction, config.seed)
    by_id = {it.question.id: it for it in items}
    train_items = [by_id[i] for i in split.train_ids]
    val_items = [by_id[i] for i in split.val_ids]
    held_items = [by_id[i] for i in split.heldout_ids]
    model_id = dict(store.manifest["model"])
    if backend is None:
        backend = load_transformers(model_id["name"], kind=model_id.get("kind"))
    if backend.identity.config_hash != model_id.get("config_hash"):
        raise ValueError(f"{store.path} was sampled from a model with config hash "
                         f"{model_id.get('config_hash')}; the model given has "
                         f"{backend.identity.config_hash}: tune the model that made the run")
    style, shots = store.manifest["style"], store.manifest.get("shots")
    method.prepare(train_items, train_items + val_items, collapser, backend, style, shots)
    # Training rows carry the frozen bottom layers' output; readouts after training run the
    # whole tuned model from token ids.
    method.cache_model, method.progress = backend.model, progress
    train_rows, val_rows = method.rows(train_items), method.rows(val_items)
    model = make_peft(copy.deepcopy(backend.model), config)
    head = method.make_head(backend.model)
    origin = json.dumps({"model": model_id, "questions": store.manifest.get("questions"),
                         "sampling": store.manifest.get("sampling"), "split": split.to_dict()},
                        sort_keys=True, default=list)
    result = train(model, head, train_rows, val_rows, method.collate, method.loss, config, out,
                   head_learning_rate=getattr(config, "head_learning_rate", None),
                   progress=progress, origin=hashlib.sha256(origin.encode()).hexdigest()[:16])
    tuned = TunedModel(method, backend, model, head, style, shots)
    sha = save_adapter(out / "adapter", tuned, config, model_id, split)
    tuned.adapter_sha256 = sha
    start = time.perf_counter()
    judged = held_items[: config.eval_limit] if config.eval_limit else held_items
    evaluation = method.evaluate(tuned, judged, collapser, out, progress=progress)
    heldout = {name: judge(conf, corr, n_resamples=config.n_resamples, seed=config.seed)
               for name, (conf, corr) in evaluation.rows.items()}
    report = TuneReport(config, model_id, style, split, len(train_rows), len(val_rows), result,
                        heldout, evaluation.tuned,
                        {"n_heldout_judged": len(judged), **evaluation.extra},
                        str(out / "adapter"), sha, time.perf_counter() - start)
    HeldoutScores(tuple(it.question.id for it in judged), evaluation.rows, evaluation.tuned,
                  config.to_dict()).save(out / HELDOUT_FILE)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True,
                                                default=float) + "\n")
    (out / "table.md").write_text(report.table() + "\n")
    export_tuned_scorer(report, store).save(out / "scorer", key=key)
    return report


def export_tuned_scorer(report: TuneReport, store: RunStore) -> Any:
    """A calibrated scorer that uses the adapter (the recalibrator is the identity: the tuned
    readout is meant to be calibrated as it is; its held-out metrics are recorded)."""
    from recal.calibrators import IdentityRecalibrator
    from recal.scorer import AdapterRef, CalibratedScorer

    after = report.tuned_row
    identity = IdentityRecalibrator().fit([0.0, 1.0], [0, 1])
    return CalibratedScorer(
        recalibrator=identity, collapse=report.config.collapse, scorer="modal_share",
        style=report.style, shots=store.manifest.get("shots"),
        sampling=dict(store.manifest["sampling"]), model=dict(report.model),
        metrics={"heldout": {k: asdict(v) for k, v in report.heldout[after].items()},
                 "heldout_row": after, "n_heldout": len(report.split.heldout_ids),
                 "verdict": f"tuned ({report.config.method})"},
        adapter=AdapterRef(report.config.method, str(Path(report.adapter).resolve()),
                           report.adapter_sha256))
