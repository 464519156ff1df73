"""The bench's report: the tables of held-out metrics and costs, transfer, reliability figures.

    write_bench_report(run_bench(config))   # out/bench.json, out/bench.md, out/reliability-*.png
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recal.metrics import BootstrapResult
from recal.tables import interval_cell

if TYPE_CHECKING:
    from recal.bench import BenchReport

__all__ = ["bench_tables", "markdown_tables", "transfer_table", "write_bench_report"]


def _ci(result: BootstrapResult | None, digits: int = 3) -> str:
    return "-" if result is None else interval_cell(result)


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def _selective_cells(heldout: dict[str, BootstrapResult]) -> list[str]:
    """AURC, PRR and selective accuracy at 10% ("-" where a result lacks them or is nan)."""
    return [_fmt(heldout[m].estimate if m in heldout else float("nan"))
            for m in ("aurc", "prr", "selective_accuracy_10")]


def bench_tables(report: BenchReport, *, scorers: Sequence[str] | None = None,
                 methods: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The per model x dataset tables as data: per table a ``title``, a ``caption``, the
    ``header``, the ``rows`` (cells as text) and per row the ``figure`` drawn for its method
    (the stem of ``reliability-METHOD.png``; ``None`` when the row has none)."""
    tables: list[dict[str, Any]] = []
    keep_scorers = set(scorers) if scorers is not None else None
    keep_methods = set(methods) if methods is not None else None
    drawn = report.config.scorers[0] if report.config.scorers else None
    order = list(dict.fromkeys((r.model, r.dataset) for r in report.rows))
    for model, dataset in order:
        info = report.runs.get(f"{model}/{dataset}", {})
        secs = info.get("sampling_seconds")
        table: dict[str, Any] = {
            "title": f"{model} on {dataset}",
            "caption": f"{info.get('questions', '?')} questions, held-out half judged; sampling "
                       f"{_fmt(secs or float('nan'), 0)} s for {info.get('answers', '?')} "
                       "answers.",
            "header": ["scorer", "method", "smooth ECE", "ECE", "Brier", "AUROC", "AURC", "PRR",
                       "acc@10%",
                       "accuracy (before)", "confidence", "fit s", "sequences/q", "verdict"],
            "rows": [], "figures": []}
        for r in report.rows:
            if (r.model, r.dataset) != (model, dataset):
                continue
            if keep_scorers is not None and r.scorer not in keep_scorers:
                continue
            if keep_methods is not None and r.method not in keep_methods:
                continue
            if r.heldout is None:
                table["rows"].append([r.scorer, r.method, r.error_text()] + [""] * 11)
                table["figures"].append(None)
                continue
            h = r.heldout
            acc = h["accuracy"].estimate
            acc_txt = (f"{acc:.3f}" if abs(acc - r.accuracy_before) < 1e-9
                       else f"{acc:.3f} ({r.accuracy_before:.3f})")
            note = f" (T={r.detail['tau']:g})" if "tau" in r.detail else ""
            table["rows"].append([
                r.scorer, f"{r.method}{note}", _ci(h["smooth_ece"]),
                f"{h['ece'].estimate:.3f}", f"{h['brier_score'].estimate:.3f}",
                f"{h['auroc'].estimate:.3f}", *_selective_cells(h), acc_txt,
                f"{h['mean_confidence'].estimate:.3f}",
                f"{r.fit_seconds:.3f}", f"{r.sequences_per_question:g}",
                str(r.detail.get("verdict", "reference (no repair)"))])
            table["figures"].append(f"reliability-{r.method.replace(':', '-')}"
                                    if r.scorer == drawn and r.arrays is not None else None)
        tables.append(table)
    return tables


def markdown_tables(report: BenchReport, *, scorers: Sequence[str] | None = None,
                    methods: Sequence[str] | None = None) -> str:
    """The per model x dataset tables (held-out metrics, accuracy change, cost)."""
    lines: list[str] = []
    for table in bench_tables(report, scorers=scorers, methods=methods):
        lines += [f"### {table['title']}", "", table["caption"], "",
                  "| " + " | ".join(table["header"]) + " |",
                  "|---" * len(table["header"]) + "|"]
        for row in table["rows"]:
            if row[2] and not any(row[3:]):  # an error row: its text in one cell
                lines.append(f"| {row[0]} | {row[1]} | {row[2]} |" + " |" * (len(row) - 3))
            else:
                lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def transfer_table(report: BenchReport, methods: Sequence[str] | None = None) -> str:
    if not report.transfer:
        return ""
    keep = set(methods) if methods is not None else None
    lines = ["| model | method | fit on | judged on | unrepaired | in-domain fit | transferred "
             "| survives |", "|---|---|---|---|---|---|---|---|"]
    for t in report.transfer:
        if keep is not None and t.method not in keep:
            continue
        lines.append(f"| {t.model} | {t.method} | {t.source} | {t.target} | "
                     f"{t.unrepaired:.3f} | {t.in_domain:.3f} | {t.transferred:.3f} | "
                     f"{_fmt(t.survival, 2)} |")
    return "\n".join(lines) + "\n"


def write_bench_report(report: BenchReport, out: str | Path | None = None) -> Path:
    """Write bench.json, bench.md, bench.html (the tables sortable, rows linked to their
    diagrams) and (with ``diagrams``) one reliability figure per method."""
    out = Path(out or report.config.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "bench.json.tmp"
    tmp.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=float) + "\n")
    os.replace(tmp, out / "bench.json")
    figures = _figures(report, out) if report.config.diagrams else []
    text = ["# recal bench", "",
            f"Models: {', '.join(report.config.models)}. Datasets: "
            f"{', '.join(d for d in report.config.datasets if d not in report.skipped)}. "
            f"Style {report.config.style}, M = {report.config.sampling.n_samples}, "
            f"T = {report.config.sampling.temperature:g}. Every method is fitted on "
            f"{report.config.calibration_fraction:.0%} of each set's questions and judged on "
            f"the rest; intervals are {report.config.n_resamples}-resample bootstrap 95% "
            f"intervals. Total {report.seconds:.0f} s.", ""]
    for name, reason in report.skipped.items():
        text.append(f"- skipped {name}: {reason}")
    text += ["", markdown_tables(report)]
    if report.transfer:
        text += ["## Transfer", "", "Smooth ECE on the target's held-out half; *survives* is "
                 "the share of the in-domain gain kept when the map is fitted on the other set.",
                 "", transfer_table(report)]
    if figures:
        text += ["## Reliability diagrams", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    (out / "bench.md").write_text("\n".join(text) + "\n", encoding="utf-8")
    _write_bench_page(report, out, figures)
    return out


def _write_bench_page(report: BenchReport, out: Path, figures: Sequence[Path]) -> None:
    """bench.html: the same tables, sortable, each row linked to its method's diagram (the
    figures embedded, so the page stays one file)."""
    import base64

    from recal.explorer.page import write_page

    images = {p.stem: "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii")
              for p in figures}
    tables = bench_tables(report)
    for table in tables:
        table["figures"] = [f if f in images else None for f in table["figures"]]
    config = report.config
    facts = [["models", ", ".join(config.models)],
             ["datasets", ", ".join(d for d in config.datasets if d not in report.skipped)],
             ["sampling", f"style {config.style}, M = {config.sampling.n_samples}, "
                          f"T = {config.sampling.temperature:g}"],
             ["judged", f"fitted on {config.calibration_fraction:.0%} of each set's questions, "
                        f"judged on the rest; {config.n_resamples}-resample 95% intervals"],
             *(["skipped " + name, reason] for name, reason in report.skipped.items())]
    write_page({"kind": "tables", "title": "recal bench", "facts": facts, "tables": tables,
                "images": images}, out / "bench.html")


def _figures(report: BenchReport, out: Path) -> list[Path]:
    try:
        from recal.plots import reliability_data, save_reliability_grid
    except ImportError:  # matplotlib is optional at import time
        return []
    scorer = report.config.scorers[0]
    paths = []
    for method in dict.fromkeys(r.method for r in report.rows):
        panels = []
        for r in report.rows:
            if r.method != method or r.scorer != scorer or r.heldout is None:
                continue
            if r.arrays is None:
                continue
            conf, corr = r.arrays
            panels.append((f"{Path(r.model).name} / {r.dataset}",
                           reliability_data(conf, corr, n_resamples=100, seed=0)))
        if panels:
            safe = method.replace(":", "-")
            paths.append(save_reliability_grid(panels, out / f"reliability-{safe}.png"))
    return paths
