"""Semantic calibration of the two packaged real models on the built-in set (the README table).

For each (model, style): sample M answers per question (reusing runs/ when they exist), collapse
them with the normalised-match B, score every question with each sample-based scorer, and report
every metric with a 95% bootstrap interval. The first side-by-side test here of the reference
paper's claim: a base model answering directly is calibrated, a chat model need not be.

    .venv/bin/python benchmarks/calibration_real_models.py      # M = 50, 100 questions
    .venv/bin/python benchmarks/calibration_real_models.py --questions 40 --samples 10   # quick

Writes benchmarks/results/calibration_real_models.json and docs/img/reliability-*.png; the last
line printed is the headline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from recal.data.loaders import load_questions
from recal.measure import HEADLINE_METRICS, MeasureConfig, measure_run, write_report
from recal.models import load_backend
from recal.samples import SamplingConfig
from recal.sampling import sample_run

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "calibration_real_models.json"
IMAGES = ROOT / "docs" / "img"
SETTINGS = (("smollm2-135m-instruct", "concise"), ("gemma3-270m", "concise"),
            ("smollm2-135m-instruct", "sentence"), ("gemma3-270m", "sentence"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    parser.add_argument("--only", nargs="*", help="model:style pairs to run (default: all)")
    args = parser.parse_args()
    questions = load_questions("builtin", limit=args.questions)
    summary = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    summary.setdefault("runs", {})
    settings = [s for s in SETTINGS if not args.only or f"{s[0]}:{s[1]}" in args.only]
    backends = {}
    for model, style in settings:
        backend = backends.get(model) or backends.setdefault(model, load_backend(model))
        out = args.runs / f"{model}-builtin{args.questions}-{style}-m{args.samples}"
        start = time.perf_counter()
        store = sample_run(backend, questions, out=out, style=style, dataset="builtin",
                           config=SamplingConfig(n_samples=args.samples))
        sampled_s = time.perf_counter() - start
        report = measure_run(store, MeasureConfig())
        folder = write_report(report, out / "report-normalized")
        IMAGES.mkdir(parents=True, exist_ok=True)
        image = IMAGES / f"reliability-{model}-{style}.png"
        shutil.copyfile(folder / "reliability.png", image)
        key = f"{model}:{style}"
        summary["runs"][key] = {
            "model": model, "kind": backend.identity.kind, "style": style,
            "questions": len(questions), "samples": args.samples, "collapse": "normalized",
            "sampling_seconds": sampled_s, "image": str(image.relative_to(ROOT)),
            "scorers": {name: {m: {"estimate": r.metrics[m].estimate, "low": r.metrics[m].low,
                                   "high": r.metrics[m].high} for m in HEADLINE_METRICS}
                        for name, r in report.results.items()},
        }
        modal = summary["runs"][key]["scorers"]["modal_share"]
        print(f"{key}: smooth ECE {modal['smooth_ece']['estimate']:.3f} "
              f"[{modal['smooth_ece']['low']:.3f}, {modal['smooth_ece']['high']:.3f}], "
              f"accuracy {modal['accuracy']['estimate']:.3f}, "
              f"mean confidence {modal['mean_confidence']['estimate']:.3f}", flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    last = summary["runs"][f"{settings[-1][0]}:{settings[-1][1]}"]
    print(f"{settings[-1][0]}_{settings[-1][1]}_modal_smooth_ece: "
          f"{last['scorers']['modal_share']['smooth_ece']['estimate']:.3f}")


if __name__ == "__main__":
    main()
