"""What ``recal measure`` reports on questions without gold answers: the label-free parts.

Without grades there is no accuracy, calibration error, Brier score or AUROC; what the samples
still show is how confident each scorer is (the distribution of its confidence over the
questions) and how the answers spread over meaning classes under B (classes per question, the
modal class's share). :func:`measure_ungraded` computes them from the same classified samples
and scorers as :func:`recal.measure.measure_run`; :func:`write_label_free_report` writes
``report.md``, ``summary.json`` and ``scores.jsonl``, and says in one line that calibration
needs grades.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recal import __version__
from recal.confidence import Classified, Prediction, classify_run, get_scorer
from recal.lines import dumps_line
from recal.models.base import Backend
from recal.runstore import RunStore
from recal.semantic.base import Collapser

__all__ = ["NEEDS_GRADES", "ConfidenceSummary", "LabelFreeReport", "measure_ungraded",
           "summarise_confidence", "write_label_free_report"]

NEEDS_GRADES = ("calibration needs grades: these questions have no gold answers, so accuracy, "
                "calibration error (smooth ECE, ECE), Brier score and AUROC are not defined; "
                "give each question an 'answers' field to measure them")
"""The one line a label-free report says about what it cannot report."""

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
BINS = 10


@dataclass(frozen=True)
class ConfidenceSummary:
    """One scorer's confidences over n questions: mean, quantiles and a 10-bin histogram of
    [0, 1] (bin i holds [i/10, (i+1)/10), the last bin also 1.0)."""

    n: int
    mean: float
    quantiles: dict[str, float]
    histogram: list[int]


def summarise_confidence(confidence: Sequence[float] | np.ndarray) -> ConfidenceSummary:
    values = np.asarray(confidence, dtype=float)
    if values.size == 0:
        raise ValueError("no confidences to summarise")
    bins = np.minimum((values * BINS).astype(int), BINS - 1)
    return ConfidenceSummary(
        n=int(values.size), mean=float(values.mean()),
        quantiles={f"{q:g}": float(np.quantile(values, q)) for q in QUANTILES},
        histogram=[int(c) for c in np.bincount(bins, minlength=BINS)])


@dataclass
class LabelFreeReport:
    run: str
    manifest: dict[str, Any]
    collapse: str
    items: list[Classified]
    predictions: dict[str, list[Prediction]] = field(default_factory=dict)
    confidence: dict[str, ConfidenceSummary] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    """Scorers left out, with the reason (the run lacks what they read)."""

    def class_counts(self) -> dict[str, Any]:
        """Classes per question (how many questions have k classes), and the modal share's and
        the class count's means."""
        per_question = [len(item.counts()) for item in self.items]
        modal = [item.counts()[0][1] / len(item.labels) for item in self.items]
        spread = Counter(per_question)
        return {"classes_per_question": {str(k): spread[k] for k in sorted(spread)},
                "mean_classes": float(np.mean(per_question)),
                "mean_modal_share": float(np.mean(modal)),
                "single_class_questions": spread.get(1, 0)}


def measure_ungraded(store: RunStore, collapser: Collapser, scorers: Sequence[str], *,
                     collapse: str, backend: Backend | None = None,
                     skipped: dict[str, str] | None = None) -> LabelFreeReport:
    """Classify every finished question of ``store`` under ``collapser`` and summarise each
    scorer's confidence; no prediction is graded."""
    items = classify_run(store, collapser)
    if not items:
        raise ValueError(f"{store.path} holds no finished questions yet")
    report = LabelFreeReport(str(store.path), store.manifest, collapse, items,
                             skipped=dict(skipped or {}))
    for name in scorers:
        predictions = get_scorer(name).score(items, collapser, backend)
        report.predictions[name] = predictions
        report.confidence[name] = summarise_confidence([p.confidence for p in predictions])
    return report


def write_label_free_report(report: LabelFreeReport, out: str | Path) -> Path:
    """Write ``scores.jsonl`` (per question: classes with counts, each scorer's answer and
    confidence), ``summary.json`` and ``report.md`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "scores.jsonl").open("w", encoding="utf-8") as f:
        for i, item in enumerate(report.items):
            f.write(dumps_line({
                "id": item.question.id, "question": item.question.question,
                "classes": dict(item.counts()), "greedy": item.greedy_label,
                "scorers": {name: {"answer": p[i].answer, "confidence": p[i].confidence}
                            for name, p in report.predictions.items()}}))
    counts = report.class_counts()
    doc = {"recal_version": __version__, "run": report.run, "collapse": report.collapse,
           "graded": False, "note": NEEDS_GRADES, "n_questions": len(report.items),
           "model": report.manifest.get("model"), "sampling": report.manifest.get("sampling"),
           "source": report.manifest.get("source"), "classes": counts,
           "confidence": {k: asdict(v) for k, v in report.confidence.items()},
           "skipped_scorers": report.skipped}
    (out / "summary.json").write_text(json.dumps(doc, indent=2, sort_keys=True,
                                                 ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_markdown(report, counts), encoding="utf-8")
    return out


def _markdown(report: LabelFreeReport, counts: dict[str, Any]) -> str:
    m = report.manifest
    sampling = m.get("sampling", {})
    lines = ["# Confidence report (ungraded questions)", "",
             f"- **model**: {m['model'].get('name')} ({m['model'].get('kind')}, "
             f"{m['model'].get('backend')})",
             f"- **questions**: {len(report.items)} of {m['questions']['count']} "
             f"({m['questions'].get('dataset')})",
             f"- **sampling**: M = {sampling.get('n_samples')}, "
             f"T = {sampling.get('temperature')}",
             f"- **collapsing function B**: {report.collapse}",
             *(f"- **{name} left out**: {why}" for name, why in report.skipped.items()),
             "", NEEDS_GRADES + ".", "",
             "| scorer | mean | min | 10% | median | 90% | max |", "|---|---|---|---|---|---|---|"]
    for name, s in report.confidence.items():
        q = s.quantiles
        lines.append(f"| {name} | {s.mean:.3f} | " + " | ".join(
            f"{q[k]:.3f}" for k in ("0", "0.1", "0.5", "0.9", "1")) + " |")
    lines += ["", "Confidence histogram (questions per tenth of [0, 1]):", "",
              "| scorer | " + " | ".join(f"{i / BINS:.1f}" for i in range(BINS)) + " |",
              "|---|" + "---|" * BINS]
    lines += [f"| {name} | " + " | ".join(str(c) for c in s.histogram) + " |"
              for name, s in report.confidence.items()]
    spread = ", ".join(f"{k}: {v}" for k, v in counts["classes_per_question"].items())
    lines += ["", f"Meaning classes per question (classes: questions): {spread}; mean "
              f"{counts['mean_classes']:.2f} classes, mean modal share "
              f"{counts['mean_modal_share']:.3f}.", "",
              "Per-question classes and confidences: `scores.jsonl`; figures: `summary.json`.", ""]
    return "\n".join(lines)
