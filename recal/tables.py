"""Plain-text tables the command line prints (and ``recal fit`` stores as table.md), built from
the Python API's results, so that a script and the CLI show the same numbers the same way."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["packaged_models_table", "compare_table", "fit_rows", "fit_table", "export_summary",
           "abstention_summary"]


def packaged_models_table(root: Path) -> list[str]:
    """One line per packaged model: name, kind, whether it is cached in ``root``, description."""
    from recal.models.packaged import PACKAGED_MODELS

    lines = []
    for name, spec in PACKAGED_MODELS.items():
        converted = (root / name / "hf" / "config.json").exists()
        fetched = (root / name / spec.gguf_name).exists()
        state = "ready" if converted else ("fetched" if fetched else "not fetched")
        lines.append(f"{name:<24} {spec.kind:<5} {state:<12} {spec.description}")
    return lines


def interval_cell(result: Any) -> str:
    """``0.084 [0.000, 0.190]``, and for a calibration error its noise floor: ``, floor 0.106
    (within)`` when the estimate is no larger than what a perfectly calibrated predictor with
    the same confidences and n scores 95% of the time. ``result``: a BootstrapResult or its
    dict (``metrics.json``, ``fit.json``)."""
    get = result.get if isinstance(result, dict) else lambda k, d=None: getattr(result, k, d)
    estimate, low, high = get("estimate"), get("low"), get("high")
    text = f"{estimate:.3f} [{low:.3f}, {high:.3f}]"
    floor = get("noise_floor")
    if floor is not None and math.isfinite(floor):
        text += f", floor {floor:.3f}" + (" (within)" if estimate <= floor else "")
    return text


def _cell(metric: dict[str, float]) -> str:
    return interval_cell(metric)


def compare_table(result: dict[str, dict[str, Any]], confidence: str) -> str:
    """:func:`recal.measure.compare_collapsers`'s result: one row per collapsing function B, each
    headline metric with its interval and its change from the first B."""
    from recal.measure import HEADLINE_METRICS

    first = next(iter(result))
    lines = [f"confidence scorer {confidence}; each cell: estimate [interval] "
             f"(change from {first})",
             "| B | " + " | ".join(HEADLINE_METRICS) + " | same verdict |",
             "|---" * (len(HEADLINE_METRICS) + 2) + "|"]
    for name, entry in result.items():
        cells = [f"{_cell(entry['metrics'][m])} ({entry['delta'][m]:+.3f})"
                 for m in HEADLINE_METRICS]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {entry['correct_agreement']:.1%} |")
    return "\n".join(lines)


def fit_rows(doc: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    """:func:`fit_table`'s caption, header and rows (cells as text)."""
    from recal.measure import HEADLINE_METRICS

    shown = [m for m in HEADLINE_METRICS if m != "mean_confidence"]
    split = (f"out of fold ({doc['config']['cv_folds']}-fold), {doc['n_heldout']} questions"
             if doc["config"].get("cv_folds") else
             f"{doc['n_heldout']} questions (fitted on {doc['n_calibration']})")
    caption = (f"Held-out: {split}; "
               f"base-rate Brier {doc['base_rate_brier']:.3f}. Each cell: estimate [95% interval].")
    rows = []
    for name, entry in doc["methods"].items():
        label = name + (f" (tau = {entry['tau']:g})" if "tau" in entry else "")
        cells = [_cell(entry["heldout"][m]) if entry["heldout"] else "-" for m in shown]
        rows.append([label, *cells, str(entry["verdict"])])
    confirmed = doc.get("sampling_temperature_confirmed")
    if confirmed:
        cells = [_cell(confirmed["heldout"][m]) for m in shown]
        rows.append([f"sampling_temperature resampled (tau = {confirmed['tau']:g})", *cells,
                     "confirmation"])
    return caption, ["method", *shown, "verdict"], rows


def fit_table(doc: dict[str, Any]) -> str:
    """:meth:`recal.repair.FitReport.to_dict`'s held-out metrics, one row per repair method (and
    the resampled confirmation of the sampling temperature, when the document holds one)."""
    caption, header, rows = fit_rows(doc)
    lines = [caption, "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def export_summary(method: str, metrics: dict[str, Any], folder: Path) -> str:
    """One line on an exported scorer: its verdict and held-out smooth ECE, Brier and AUROC."""
    held = metrics["heldout"]
    return (f"exported {method} ({metrics['verdict']}) to {folder}: held-out smooth "
            f"ECE {held['smooth_ece']['estimate']:.3f}, Brier "
            f"{held['brier_score']['estimate']:.3f}, AUROC {held['auroc']['estimate']:.3f}")


def abstention_summary(rule: dict[str, Any] | None) -> str:
    """One line on a scorer's abstention threshold: the target, its guarantee, the threshold and
    what it gave on the calibration and held-out splits."""
    if rule is None:
        return "abstention: none (the scorer was exported without one)"
    head = (f"abstention (risk <= {rule['target_risk']:g} with probability "
            f"{1 - rule['delta']:g}): ")
    if rule.get("threshold") is None:
        return head + f"no threshold; {rule.get('reason', '')}"
    held = rule.get("heldout") or {}

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    calibrated = rule.get("calibrated_threshold")
    return (head + f"answer when raw confidence >= {rule['threshold']:.4g}"
            + (f" (calibrated {calibrated:.3f})" if calibrated is not None else "")
            + f"; calibration risk {pct(rule.get('calibration_risk'))} at coverage "
            f"{pct(rule.get('calibration_coverage'))}; held-out risk {pct(held.get('risk'))} at "
            f"coverage {pct(held.get('coverage'))} of {held.get('n', 0)}")
