"""What the report page shows, as plain JSON-ready records built from a measured run.

The page (:mod:`recal.explorer.page`) draws everything from one document:

- ``facts`` and ``table``: the run's description and the headline metrics with intervals and
  noise floors, the same cells as ``report.md`` (:func:`recal.tables.interval_cell`);
- ``diagrams``: per confidence scorer, :func:`recal.metrics.reliability.reliability_data`'s bins,
  smoothed curve with its band and histogram, and each question's bin (the binning of
  :func:`recal.metrics.binned_ece`);
- ``questions``: per question the gold answers, every meaning class with its count, grade and
  member answers (each distinct raw sampled text once, with how often it was sampled and, where B
  can say, the span B read from it and why the grader accepted or refused it), the greedy answer
  and each scorer's answer, confidence and correctness.

:func:`comparison_document` puts two measured runs (or two collapsing functions on one run)
side by side, question by question: what ``recal compare`` reports, and which classes merged or
split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from recal.confidence import Classified
from recal.flows import finite_json
from recal.measure import (
    HEADLINE_METRICS,
    MeasureConfig,
    MeasureReport,
    describe_run,
    measure_run,
    metrics_rows,
)
from recal.metrics.binned import width_bin_index
from recal.metrics.reliability import ReliabilityData, reliability_data
from recal.runstore import RunStore
from recal.semantic.base import Collapser, get_collapser

__all__ = ["explorer_document", "comparison_document", "compare_runs", "question_records",
           "diagram_record", "partition_changes"]


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def diagram_record(data: ReliabilityData, confidence: np.ndarray) -> dict[str, Any]:
    """A reliability diagram as lists (nan -> null) plus each question's bin."""
    return {
        "bin_edges": [float(e) for e in data.bin_edges],
        "bin_confidence": [_finite(v) for v in data.bin_confidence],
        "bin_accuracy": [_finite(v) for v in data.bin_accuracy],
        "bin_count": [int(v) for v in data.bin_count],
        "grid": [round(float(v), 5) for v in data.grid],
        "curve": [round(float(v), 5) for v in data.curve],
        "band_low": [round(float(v), 5) for v in data.band_low],
        "band_high": [round(float(v), 5) for v in data.band_high],
        "hist_edges": [float(e) for e in data.hist_edges],
        "hist_counts": [int(v) for v in data.hist_counts],
        "smooth_ece": float(data.smooth_ece), "binned_ece": float(data.binned_ece),
        "accuracy": float(data.accuracy), "mean_confidence": float(data.mean_confidence),
        "band_level": float(data.confidence_level),
        "question_bin": [int(b) for b in width_bin_index(confidence, data.n_bins)],
    }


def _classes(item: Classified, collapser: Collapser | None) -> list[dict[str, Any]]:
    texts = [s.text for s in item.record.samples]
    explained = collapser.explain(item.question, texts) if collapser is not None else None
    members: dict[str, dict[str, list[Any]]] = {}
    reasons: dict[str, dict[str, str]] = {}
    for i, (text, label) in enumerate(zip(texts, item.labels, strict=True)):
        span, reason = explained[i] if explained is not None else (None, None)
        entry = members.setdefault(label, {}).setdefault(text, [text, 0, span])
        entry[1] += 1
        if reason is not None:
            reasons.setdefault(label, {})[span if span is not None else label] = reason
    out = []
    for label, count in item.counts():
        rows = sorted(members[label].values(), key=lambda m: -m[1])
        out.append({
            "label": label, "n": count,
            "correct": collapser.is_correct(item.question, label) if collapser else None,
            # a member's span only when it differs from the class label (saves bytes)
            "members": [[t, n] if s is None or s == label else [t, n, s] for t, n, s in rows],
            "why": reasons.get(label, {}),
        })
    return out


def question_records(report: MeasureReport, collapser: Collapser | None) -> list[dict[str, Any]]:
    """One record per question, in the run's order (the order of ``scores.jsonl``)."""
    scorers = list(report.results)
    records = []
    for i, item in enumerate(report.items):
        classes = _classes(item, collapser)
        counts = [c["n"] for c in classes]
        greedy = item.record.greedy
        records.append({
            "id": item.question.id, "question": item.question.question,
            "gold": list(item.question.answers), "classes": classes,
            "m": len(item.labels),
            "tie": len(counts) > 1 and counts[0] == counts[1],
            "greedy": item.greedy_label,
            "greedy_text": greedy.text if greedy is not None else None,
            "scores": [[report.results[s].predictions[i].answer,
                        report.results[s].predictions[i].confidence,
                        bool(report.results[s].predictions[i].correct)] for s in scorers],
        })
    return records


def explorer_document(report: MeasureReport, collapser: Collapser | None,
                      panels: Sequence[tuple[str, ReliabilityData]] | None = None,
                      ) -> dict[str, Any]:
    """Everything the page of one measured run shows (see the module doc).

    ``panels``: the reliability data already computed for ``reliability.png``, per scorer;
    computed here when not given.
    """
    if panels is None:
        panels = [(name, reliability_data(*r.arrays(), seed=report.config.seed))
                  for name, r in report.results.items()]
    rows = metrics_rows(report)
    return {
        "kind": "run", "title": "Calibration report",
        "facts": [list(f) for f in describe_run(report)],
        "table": {"header": rows[0], "rows": rows[1:]},
        "metrics": finite_json({name: {m: asdict(v) for m, v in r.metrics.items()
                                       if m in HEADLINE_METRICS}
                                for name, r in report.results.items()}),
        "scorers": list(report.results),
        "collapse": report.collapse,
        "diagrams": {name: diagram_record(data, report.results[name].arrays()[0])
                     for name, data in panels},
        "questions": question_records(report, collapser),
    }


def partition_changes(a: Sequence[str], b: Sequence[str]) -> dict[str, Any]:
    """How two labellings of the same samples differ: the classes of ``a`` that ``b`` merges
    (``merged``: b label -> the a labels it joins) and those it splits (``split``: a label ->
    the b labels it divides into). Empty when the partitions are equal (labels may differ)."""
    if len(a) != len(b):
        raise ValueError(f"the two labellings have {len(a)} and {len(b)} samples; "
                         "merges and splits are defined on the same samples only")
    a_to_b: dict[str, list[str]] = {}
    b_to_a: dict[str, list[str]] = {}
    for x, y in zip(a, b, strict=True):
        if y not in a_to_b.setdefault(x, []):
            a_to_b[x].append(y)
        if x not in b_to_a.setdefault(y, []):
            b_to_a[y].append(x)
    return {"merged": {y: xs for y, xs in b_to_a.items() if len(xs) > 1},
            "split": {x: ys for x, ys in a_to_b.items() if len(ys) > 1}}


def comparison_document(first: MeasureReport, second: MeasureReport, *,
                        names: tuple[str, str] | None = None,
                        collapsers: tuple[Collapser | None, Collapser | None] = (None, None),
                        scorer: str | None = None) -> dict[str, Any]:
    """Two measured runs (or one run under two collapsing functions) side by side.

    Questions are matched by id (those in both). ``scorer``: the confidence scorer compared
    (default: the first both share). When both hold the same sampled texts, each question also
    lists the classes the second B merges or splits (:func:`partition_changes`).
    """
    shared = [s for s in first.results if s in second.results]
    if not shared:
        raise ValueError("the two reports share no confidence scorer to compare")
    scorer = scorer or shared[0]
    if scorer not in shared:
        raise ValueError(f"scorer {scorer!r} is not in both reports (both have: "
                         f"{', '.join(shared)})")
    names = names or (first.collapse, second.collapse)
    if names[0] == names[1]:
        names = (f"{names[0]} (1)", f"{names[1]} (2)")
    index_b = {item.question.id: i for i, item in enumerate(second.items)}
    recs_a = question_records(first, collapsers[0])
    recs_b = question_records(second, collapsers[1])
    sa, sb = list(first.results).index(scorer), list(second.results).index(scorer)
    pairs = []
    for i, item in enumerate(first.items):
        j = index_b.get(item.question.id)
        if j is None:
            continue
        other = second.items[j]
        same = [s.text for s in item.record.samples] == [s.text for s in other.record.samples]
        ra, rb = recs_a[i], recs_b[j]
        pairs.append({
            "a": ra, "b": rb, "same_samples": same,
            "changes": partition_changes(item.labels, other.labels) if same else None,
            "delta": _finite(rb["scores"][sb][1] - ra["scores"][sa][1]),
            "flip": ra["scores"][sa][2] != rb["scores"][sb][2],
        })
    if not pairs:
        raise ValueError("the two reports share no question id")
    rows_a, rows_b = metrics_rows(first), metrics_rows(second)
    row = {r[0]: r for r in rows_a[1:]}[scorer], {r[0]: r for r in rows_b[1:]}[scorer]
    agree = sum(not p["flip"] for p in pairs) / len(pairs)
    return {
        "kind": "compare", "title": f"Comparison: {names[0]} vs {names[1]}",
        "names": list(names), "scorer": scorer, "scorer_index": [sa, sb],
        "scorers": shared, "scorers_a": list(first.results), "scorers_b": list(second.results),
        "facts": [["first", f"{names[0]}: {first.run} (B = {first.collapse})"],
                  ["second", f"{names[1]}: {second.run} (B = {second.collapse})"],
                  ["confidence scorer", scorer],
                  ["questions compared", str(len(pairs))],
                  ["same verdict", f"{agree:.1%}"]],
        "table": {"header": ["run", *rows_a[0][1:]],
                  "rows": [[names[0], *row[0][1:]], [names[1], *row[1][1:]]]},
        "pairs": pairs,
    }


def compare_runs(first: RunStore, second: RunStore | None, collapses: Sequence[str], *,
                 scorer: str = "modal_share", n_resamples: int = 1000, seed: int = 0,
                 ) -> dict[str, Any]:
    """The comparison document of ``first`` under ``collapses[0]`` and ``collapses[1]`` (when
    ``second`` is None), or of ``first`` and ``second`` under ``collapses[0]``."""
    if second is None and len(collapses) < 2:
        raise ValueError("name two collapsing functions to compare one run, or a second run")
    b_first = collapses[0]
    b_second = collapses[0] if second is not None else collapses[1]
    reports, collapsers = [], []
    for store, name in ((first, b_first), (second or first, b_second)):
        collapser = get_collapser(name)
        config = MeasureConfig(collapse=name, scorers=(scorer,), n_resamples=n_resamples,
                               seed=seed)
        reports.append(measure_run(store, config, collapser=collapser))
        collapsers.append(collapser)
    names = ((b_first, b_second) if second is None else
             (first.path.name, second.path.name))
    return comparison_document(reports[0], reports[1], names=names,
                               collapsers=(collapsers[0], collapsers[1]), scorer=scorer)
