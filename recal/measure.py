"""Measurement: a stored run -> classes -> confidence scores -> metrics -> a report folder.

    report = measure_run(RunStore.open("runs/x"), MeasureConfig(collapse="normalized"))
    write_report(report, "runs/x/report")

The report folder holds ``scores.jsonl`` (per question: classes with counts, and each scorer's
answer, confidence and correctness), ``metrics.json`` (every metric with a bootstrap interval, per
scorer), ``reliability.png`` (one diagram per scorer), ``risk_coverage.png`` (the selective view:
risk against coverage per scorer) and ``report.md`` / ``report.html``, the page a person reads
first. The collapsing function used is named in all of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recal import __version__
from recal.confidence import (
    DEFAULT_CONFIDENCES,
    SCORERS,
    Classified,
    Prediction,
    classify_run,
    unparsed_note,
)
from recal.judged import JudgedRun, arrays
from recal.lines import dumps_line
from recal.metrics import METRICS, BootstrapResult
from recal.models.base import Backend
from recal.runstore import RunStore
from recal.semantic.base import Collapser, get_collapser
from recal.tables import interval_cell

__all__ = ["MeasureConfig", "ScorerResult", "MeasureReport", "measure_run", "write_report",
           "compare_collapsers", "HEADLINE_METRICS", "SELECTIVE_METRICS", "describe_run",
           "metrics_rows"]

DEFAULT_SCORERS = DEFAULT_CONFIDENCES
HEADLINE_METRICS = ("smooth_ece", "ece", "brier_score", "auroc", "accuracy", "mean_confidence")
#: The selective-prediction view: answer only the most confident questions.
SELECTIVE_METRICS = ("aurc", "prr", "selective_accuracy_10", "accuracy")
_SELECTIVE_NOTE = ("Answering only the most confident questions: AURC is the area under the "
                   "risk-coverage curve (lower is better), PRR the share of the way from a random "
                   "ranking (0) to a perfect one (1), selective_accuracy_10 the accuracy of the "
                   "10% most confident answers (HELM's selective accuracy).")


@dataclass(frozen=True)
class MeasureConfig:
    """How a run is measured."""

    collapse: str = "normalized"
    """The collapsing function B (see ``recal.semantic``)."""
    scorers: tuple[str, ...] = DEFAULT_SCORERS
    """Confidence scorers; 'verbalized' and 'p_true' also need the model."""
    n_resamples: int = 1000
    """Bootstrap resamples for every interval."""
    confidence_level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.scorers:
            SCORERS.get(name)  # unknown names: did-you-mean KeyError, before any work
        if not self.scorers:
            raise ValueError("scorers is empty: name at least one confidence scorer")
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be positive, got {self.n_resamples}")
        if not 0 < self.confidence_level < 1:
            raise ValueError(f"confidence_level must be in (0, 1), got {self.confidence_level}")


@dataclass
class ScorerResult:
    scorer: str
    predictions: list[Prediction]
    metrics: dict[str, BootstrapResult]
    judged: JudgedRun | None = field(default=None, repr=False)
    """The run as this scorer judged it (classes, arrays; no split)."""
    note: str | None = None
    """What the report must say beside the numbers (replies the scorer could not read)."""

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return arrays(self.predictions)


@dataclass
class MeasureReport:
    run: str
    manifest: dict[str, Any]
    config: MeasureConfig
    items: list[Classified]
    results: dict[str, ScorerResult] = field(default_factory=dict)
    collapser: Collapser | None = field(default=None, repr=False)
    """The collapsing function that classified ``items`` (the report page asks it why)."""

    @property
    def collapse(self) -> str:
        return self.config.collapse


def measure_run(store: RunStore, config: MeasureConfig | None = None, *,
                backend: Backend | None = None, collapser: Collapser | None = None,
                ) -> MeasureReport:
    """Classify every finished question of ``store`` and score it with each scorer."""
    config = config or MeasureConfig()
    collapser = collapser or get_collapser(config.collapse)
    items = classify_run(store, collapser)
    if not items:
        raise ValueError(f"{store.path} holds no finished questions yet: run `recal sample` first")
    report = MeasureReport(str(store.path), store.manifest, config, items, collapser=collapser)
    for name in config.scorers:
        judged = JudgedRun.from_items(items, collapser, name, backend=backend, store=store,
                                      n_resamples=config.n_resamples, seed=config.seed,
                                      confidence_level=config.confidence_level)
        report.results[name] = ScorerResult(name, judged.predictions, judged.metrics(), judged,
                                            unparsed_note(name, judged.predictions))
    return report


def compare_collapsers(store: RunStore, names: Sequence[str], *, scorer: str = "modal_share",
                       n_resamples: int = 1000, seed: int = 0,
                       options: dict[str, dict[str, Any]] | None = None,
                       ) -> dict[str, dict[str, Any]]:
    """The same samples measured under several collapsing functions B.

    For each B: every metric with its interval, the per-question predictions, and against the
    first B, how much each metric estimate moves (``delta``) and the share of questions whose
    correctness verdict (``correct_agreement``) and confidence (``confidence_agreement``) agree.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        collapser = get_collapser(name, **(options or {}).get(name, {}))
        config = MeasureConfig(collapse=name, scorers=(scorer,), n_resamples=n_resamples,
                               seed=seed)
        result = measure_run(store, config, collapser=collapser).results[scorer]
        out[name] = {"metrics": {k: asdict(v) for k, v in result.metrics.items()},
                     "predictions": result.predictions}
    first = out[names[0]]
    for entry in out.values():
        entry["delta"] = {k: entry["metrics"][k]["estimate"] - first["metrics"][k]["estimate"]
                          for k in entry["metrics"]}
        pairs = list(zip(first["predictions"], entry["predictions"], strict=True))
        entry["correct_agreement"] = sum(a.correct == b.correct for a, b in pairs) / len(pairs)
        entry["confidence_agreement"] = sum(
            abs(a.confidence - b.confidence) < 1e-12 for a, b in pairs) / len(pairs)
    return out


# -- writing the report folder -------------------------------------------------------------------

def _fmt(result: BootstrapResult) -> str:
    return interval_cell(result)


def metrics_rows(report: MeasureReport,
                   metrics: Sequence[str] = HEADLINE_METRICS) -> list[list[str]]:
    header = ["scorer", *metrics]
    rows = [header]
    for name, result in report.results.items():
        rows.append([name, *(_fmt(result.metrics[m]) for m in metrics)])
    return rows


def _markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def describe_run(report: MeasureReport) -> list[tuple[str, str]]:
    m = report.manifest
    sampling = m.get("sampling", {})
    return [
        ("model", f"{m['model']['name']} ({m['model']['kind']}, {m['model']['backend']})"),
        ("questions", f"{len(report.items)} of {m['questions']['count']} "
                      f"({m['questions']['dataset']})"),
        ("prompt style", f"{m['style']}" + (f", {m['shots']} shots" if m.get("shots") else "")),
        ("sampling", f"M = {sampling.get('n_samples')}, T = {sampling.get('temperature')}, "
                     f"no truncation, max {sampling.get('max_new_tokens')} tokens"),
        ("collapsing function B", report.collapse),
        ("intervals", _intervals_text(report)),
        *(("unparsed replies", r.note) for r in report.results.values() if r.note),
    ]


def _intervals_text(report: MeasureReport) -> str:
    """Which interval each metric carries (recorded in each BootstrapResult), in words."""
    level = f"{report.config.confidence_level:.0%}"
    kinds: dict[str, list[str]] = {}
    for result in report.results.values():
        for name, value in result.metrics.items():
            if name not in kinds.setdefault(value.interval, []):
                kinds[value.interval].append(name)
    words = {"floor": "noise floor (estimate +- the level's quantile of a perfectly calibrated "
                      "predictor with the same confidences and n; coverage checked in "
                      "benchmarks/interval_coverage.py)",
             "percentile": "percentile bootstrap", "basic": "basic bootstrap"}
    parts = [f"{words.get(kind, kind)} for {', '.join(names)}" for kind, names in kinds.items()]
    return (f"{level}: " + "; ".join(parts) + f"; {report.config.n_resamples} resamples, "
            f"seed {report.config.seed}")


def _examples(report: MeasureReport, k: int = 5) -> list[tuple[str, str, str, float]]:
    """The most confident wrong answers of the first scorer: where calibration hurts."""
    first = next(iter(report.results.values()))
    by_id = {item.question.id: item for item in report.items}
    wrong = sorted((p for p in first.predictions if not p.correct), key=lambda p: -p.confidence)
    return [(by_id[p.question_id].question.question, by_id[p.question_id].question.answer,
             by_id[p.question_id].text_of(p.answer), p.confidence) for p in wrong[:k]]


def write_report(report: MeasureReport, out: str | Path, *, diagram: bool = True) -> Path:
    """Write scores.jsonl, metrics.json, reliability.png, risk_coverage.png, report.md and
    report.html (the explorer page of :mod:`recal.explorer`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "scores.jsonl").open("w", encoding="utf-8") as f:
        for i, item in enumerate(report.items):
            row = {
                "id": item.question.id, "question": item.question.question,
                "gold": list(item.question.answers),
                "classes": dict(item.counts()),
                "greedy": item.greedy_label,
                "scorers": {name: {"answer": r.predictions[i].answer,
                                   "confidence": r.predictions[i].confidence,
                                   "correct": r.predictions[i].correct}
                            for name, r in report.results.items()},
            }
            f.write(dumps_line(row))
    metrics_doc = {
        "recal_version": __version__, "run": report.run, "collapse": report.collapse,
        "model": report.manifest.get("model"), "style": report.manifest.get("style"),
        "sampling": report.manifest.get("sampling"), "n_questions": len(report.items),
        "metric_info": {k: {"higher_is_better": v.higher_is_better, "range": list(v.range)}
                        for k, v in METRICS.items()},
        "scorers": {name: {m: asdict(v) for m, v in r.metrics.items()}
                    for name, r in report.results.items()},
        "notes": {name: r.note for name, r in report.results.items() if r.note},
    }
    (out / "metrics.json").write_text(json.dumps(metrics_doc, indent=2, sort_keys=True) + "\n")
    from recal.explorer import explorer_document, write_page
    from recal.metrics.reliability import reliability_data

    panels = [(name, reliability_data(*r.arrays(), seed=report.config.seed))
              for name, r in report.results.items()]
    if diagram:
        from recal.metrics import risk_coverage_curve
        from recal.plots import save_reliability_grid, save_risk_coverage

        save_reliability_grid(panels, out / "reliability.png", ncols=min(3, len(panels)))
        save_risk_coverage([(name, risk_coverage_curve(*r.arrays()))
                            for name, r in report.results.items()], out / "risk_coverage.png")
    _write_markdown(report, out, diagram)
    write_page(explorer_document(report, report.collapser, panels), out / "report.html")
    return out


def _write_markdown(report: MeasureReport, out: Path, diagram: bool) -> None:
    facts, table, examples = describe_run(report), metrics_rows(report), _examples(report)
    md = ["# Calibration report", ""]
    md += [f"- **{k}**: {v}" for k, v in facts]
    md += ["", "Lower is better for smooth_ece, ece and brier_score; higher for auroc. "
           "Each cell: estimate [interval]; a calibration error also shows its noise floor (what "
           "a perfectly calibrated predictor with the same confidences and n scores 95% of the "
           "time), marked (within) when the estimate does not exceed it: such a value is no "
           "evidence of miscalibration.", "", _markdown_table(table), ""]
    if diagram:
        md += ["![reliability diagrams](reliability.png)", ""]
    selective = metrics_rows(report, SELECTIVE_METRICS)
    md += ["## Selective prediction", "", _SELECTIVE_NOTE, "", _markdown_table(selective), ""]
    if diagram:
        md += ["![risk-coverage curves](risk_coverage.png)", ""]
    if examples:
        md += ["## Most confident wrong answers", "",
               _markdown_table([["question", "gold", "model's answer", "confidence"]] +
                               [[q, g, a, f"{c:.2f}"] for q, g, a, c in examples]), ""]
    md += ["Explore the run question by question: `report.html` (opens from disk, no server). "
           "Per-question scores: `scores.jsonl`; every metric with intervals: `metrics.json`.", ""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
