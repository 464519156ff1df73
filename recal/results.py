"""``benchmarks/RESULTS.md``: the headline tables of a bench run (and the synthetic world).

Written by the bench flow when its recipe sets ``results_md`` (``recal run recipes/bench.yaml``).
Figures are copied beside the Markdown file (``img/``) so that the page renders from the
repository; the run folders themselves stay out of version control.
"""

from __future__ import annotations

import math
import shutil
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from recal import __version__
from recal.bench import BenchReport, BenchRow
from recal.bench_report import transfer_table
from recal.tables import interval_cell

__all__ = ["write_results"]


def _ci(row: BenchRow | None, metric: str = "smooth_ece") -> str:
    if row is None or row.heldout is None:
        return "-"
    return interval_cell(row.heldout[metric])


def _est(row: BenchRow | None, metric: str = "smooth_ece") -> str:
    if row is None or row.heldout is None:
        return "-"
    value = row.heldout[metric].estimate
    return "-" if math.isnan(value) else f"{value:.3f}"


def _cells(report: BenchReport) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r.model, r.dataset) for r in report.rows))


def _find(report: BenchReport, model: str, dataset: str, scorer: str,
          method: str) -> BenchRow | None:
    for r in report.rows:
        if (r.model, r.dataset, r.scorer, r.method) == (model, dataset, scorer, method):
            return r
    return None


def _best(rows: Sequence[BenchRow]) -> BenchRow | None:
    """The row chosen without looking at the held-out questions: the lowest Brier score of
    cross-validation inside the calibration split (:func:`recal.repairs.selection_brier`; a
    proper scoring rule, so a constant guess of the base rate does not win on calibration
    alone). Its held-out figures are then an honest judgement of the choice, which the lowest
    held-out score among several methods would not be. Rows without that score (LoRA methods,
    refused fits) are not chosen."""
    scored = [r for r in rows if r.heldout is not None and r.method != "identity"
              and r.detail.get("selection_brier") is not None]
    return min(scored, key=lambda r: r.detail["selection_brier"]) if scored else None


def _brief(row: BenchRow | None) -> str:
    """``method: smECE [interval], AUROC a``."""
    if row is None:
        return "-"
    verdict = str(row.detail.get("verdict", "")).split(" (")[0]
    return f"{row.method}: {_ci(row)}, AUROC {_est(row, 'auroc')}" + (
        f"; {verdict}" if verdict else "")


def _headline(report: BenchReport, scorer: str) -> list[str]:
    lines = ["| model | dataset | questions | accuracy | unrepaired: smECE, AUROC "
             "| best recal repair | best peer | sampling temperature |",
             "|---|---|---|---|---|---|---|---|"]
    for model, dataset in _cells(report):
        rows = [r for r in report.rows if (r.model, r.dataset, r.scorer) ==
                (model, dataset, scorer)]
        base = _find(report, model, dataset, scorer, "identity")
        ours = _best([r for r in rows if r.family == "post-hoc"])
        peer = _best([r for r in rows if r.family == "peer"])
        temp = _find(report, model, dataset, scorer, "sampling_temperature")
        n = report.runs.get(f"{model}/{dataset}", {}).get("questions", "?")
        temp_txt = "-"
        if temp is not None and temp.heldout is not None:
            temp_txt = (f"T = {temp.detail.get('tau', float('nan')):g}: {_est(temp)} "
                        f"(accuracy {_est(temp, 'accuracy')})")
        lines.append(
            f"| {model} | {dataset} | {n} | {_est(base, 'accuracy')} | "
            f"{_ci(base)}, {_est(base, 'auroc')} | {_brief(ours)} | {_brief(peer)} | "
            f"{temp_txt} |")
    return lines


def _lora_table(report: BenchReport, scorer: str) -> list[str]:
    rows = [r for r in report.rows if r.family == "lora" and r.scorer == scorer]
    if not rows:
        return []
    lines = ["| model | dataset | method | readout | smECE | AUROC | Brier (unrepaired) "
             "| accuracy | trained on | epochs (best) | training s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = _find(report, r.model, r.dataset, scorer, "identity")
        if r.heldout is None:
            lines.append(f"| {r.model} | {r.dataset} | {r.method} | {r.error_text()} "
                         "| - | - | - | - | - | - | - |")
            continue
        d = r.detail
        lines.append(
            f"| {r.model} | {r.dataset} | {r.method} | {d.get('readout', '-')} | {_ci(r)} | "
            f"{_est(r, 'auroc')} | {_est(r, 'brier_score')} ({_est(base, 'brier_score')}) | "
            f"{_est(r, 'accuracy')} | {d.get('n_train', '?')} + {d.get('n_val', '?')} "
            f"questions | {d.get('epochs', '?')} ({d.get('best_epoch', '?')}) | "
            f"{d.get('train_seconds', float('nan')):.0f} |")
    return lines


def _method_table(report: BenchReport, scorer: str) -> list[str]:
    cells = _cells(report)
    methods = list(dict.fromkeys(r.method for r in report.rows if r.scorer == scorer))
    head = " | ".join(f"{Path(m).name} / {d}" for m, d in cells)
    lines = [f"| method | family | {head} |", "|---|---|" + "---|" * len(cells)]
    for method in methods:
        family = next(r.family for r in report.rows if r.method == method)
        values = " | ".join(_est(_find(report, m, d, scorer, method)) for m, d in cells)
        lines.append(f"| {method} | {family} | {values} |")
    return lines


def _scorer_table(report: BenchReport) -> list[str]:
    cells = _cells(report)
    head = " | ".join(f"{Path(m).name} / {d}" for m, d in cells)
    lines = [f"| scorer | {head} |", "|---|" + "---|" * len(cells)]
    for scorer in report.config.scorers:
        values = " | ".join(
            f"{_est(_find(report, m, d, scorer, 'identity'))} / "
            f"{_est(_find(report, m, d, scorer, 'identity'), 'auroc')}" for m, d in cells)
        lines.append(f"| {scorer} | {values} |")
    return lines


def _cost_table(report: BenchReport) -> list[str]:
    lines = ["| model | dataset | answers sampled | sampling s | answers/s |",
             "|---|---|---|---|---|"]
    for key, info in report.runs.items():
        model, _, dataset = key.partition("/")
        secs, answers = info.get("sampling_seconds"), info.get("answers")
        rate = f"{answers / secs:.1f}" if secs and answers else "-"
        lines.append(f"| {model} | {dataset} | {answers or '-'} | "
                     f"{f'{secs:.0f}' if secs else '-'} | {rate} |")
    fit = {}
    for r in report.rows:  # a LoRA row reused from an earlier run counts its training time
        fit.setdefault(r.method, []).append(max(r.fit_seconds,
                                                r.detail.get("train_seconds", 0.0)))
    lines += ["", "Median fit (and apply) time per method and cell: " + ", ".join(
        f"{m} {_duration(statistics.median(v))}" for m, v in fit.items()) + "."]
    return lines


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.0f} s"


def write_results(report: BenchReport, path: str | Path, *, synth_dir: Path | None = None,
                  command: str = "recal run recipes/bench.yaml",
                  figures: Sequence[str] = ("identity", "isotonic")) -> Path:
    """Write the headline tables of ``report`` (and the synthetic world's) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = path.parent / "img"
    cfg = report.config
    scorer = cfg.scorers[0]
    sampling = sum(info.get("sampling_seconds") or 0.0 for info in report.runs.values())
    lora = _lora_table(report, scorer)
    lines = [
        "# recal results", "",
        f"Regenerated by `{command}` (recal {__version__}, "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}). The bench took "
        f"{report.seconds / 60:.1f} min in this run; drawing its samples took "
        f"{sampling / 60:.1f} min when they were drawn (a second run reuses them, and the "
        "LoRA adapters). "
        f"Style {cfg.style}, M = {cfg.sampling.n_samples} at T = "
        f"{cfg.sampling.temperature:g}, the first {cfg.limit or 'all'} questions of each set; "
        f"every method is fitted on {cfg.calibration_fraction:.0%} of them and judged on the "
        f"rest, with {cfg.n_resamples}-resample bootstrap 95% intervals. Confidence: "
        f"`{scorer}` unless a table says otherwise.", ""]
    for name, reason in report.skipped.items():
        lines.append(f"- {name} skipped: {reason}")
    lines += ["## Headline: smooth ECE before and after repair (held out)", "",
              "Each cell: smooth ECE [95% interval] with its noise floor (marked within when the "
              "estimate does not exceed it), AUROC and the paired verdict against no repair, on "
              "the held-out questions. *Best* "
              "is chosen without them, by the lowest Brier score of 5-fold cross-validation "
              "inside the calibration split, for recal's maps and the peers alike; the held-out "
              "figures judge that choice. (A Brier score, not smooth ECE: a map that says the "
              "base rate to every question has a smooth ECE near 0 and an AUROC of 0.5.) The "
              "LoRA methods have their own table.", "",
              *_headline(report, scorer), "",
              f"## Every repair method ({scorer}, held-out smooth ECE)", "",
              *_method_table(report, scorer), "",
              *(["## LoRA methods (held out)", "",
                 "Trained on the calibration split (less a validation share that stops them "
                 "early), judged on the same held-out questions as every other row; the "
                 "distribution method is judged on the tuned model's own samples. Best epoch "
                 "0 means early stopping kept the untrained adapter (which changes nothing).",
                 "",
                 *lora, ""] if lora else []),
              "## Confidence scorers before repair (held-out smooth ECE / AUROC)", "",
              *_scorer_table(report), ""]
    if report.transfer:
        lines += ["## Transfer: fit on one set, judge on another", "",
                  "*survives*: the share of the in-domain gain in smooth ECE kept when the map "
                  "is fitted on the other set (1 all, 0 none, below 0 worse than no repair).",
                  "", transfer_table(report, methods=("temperature", "platt", "isotonic"))]
    lines += ["## Cost", "", *_cost_table(report), ""]
    out = Path(cfg.out)
    copied = []
    for method in figures:
        source = out / f"reliability-{method.replace(':', '-')}.png"
        if source.exists():
            img.mkdir(exist_ok=True)
            shutil.copyfile(source, img / f"bench-{source.name}")
            copied.append((method, f"img/bench-{source.name}"))
    if copied:
        lines += ["## Reliability diagrams", ""] + [f"![{m}]({p})" for m, p in copied] + [""]
    if synth_dir is not None and (synth_dir / "synth_report.md").exists():
        text = (synth_dir / "synth_report.md").read_text(encoding="utf-8").split("\n")
        body = []
        for line in text:
            if line.startswith("![") and "reliability.png" in line:
                if (synth_dir / "reliability.png").exists():
                    img.mkdir(exist_ok=True)
                    shutil.copyfile(synth_dir / "reliability.png", img / "synth-reliability.png")
                    body.append("![synthetic world](img/synth-reliability.png)")
                continue
            body.append("#" + line if line.startswith("#") else line)
        lines += body
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path
