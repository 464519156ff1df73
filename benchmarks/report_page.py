"""How large the report page is, and how fast it opens, for 5,000 questions x M = 50.

A synthetic run is stored (seeded; no model): each question has a gold answer and its M sampled
answers are sentences drawn from a few candidate answers in several wordings ("typical"), or
all M texts distinct ("worst": every sample a different sentence). `recal measure`'s report
folder is written for each, and in the same run the page is compared with the obvious
alternative, the same document embedded as plain (escaped) JSON. Where Debian's chromium is
installed, the page is opened headless and the time until it is drawn is measured.

    .venv/bin/python benchmarks/report_page.py [--questions 5000] [--samples 50]

Writes benchmarks/results/report_page.json; the last line printed is the headline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recal.data.records import Question
from recal.explorer import explorer_document, render_page
from recal.measure import MeasureConfig, measure_run, write_report
from recal.runstore import RunStore
from recal.samples import QuestionSamples, Sample

RESULTS = Path(__file__).resolve().parent / "results" / "report_page.json"
WORDS = ("river", "mountain", "city", "island", "king", "queen", "poet", "planet", "metal",
         "ocean", "desert", "forest", "bridge", "tower", "empire", "war", "treaty", "element",
         "painter", "composer")
FORMS = ("{}", "{}.", "The answer is {}.", "It is {}.", "I think {}", "{}, of course.")


def _sample(text: str, rng: np.random.Generator) -> Sample:
    n = int(rng.integers(3, 12))
    return Sample(text=text, token_ids=tuple(range(n)),
                  logprobs=tuple(float(x) for x in -rng.exponential(0.5, n)), finish_reason="eos")


def build_run(folder: Path, n: int, m: int, worst: bool, seed: int = 0) -> RunStore:
    rng = np.random.default_rng(seed)
    questions = [Question(f"q{i}", f"Which {WORDS[i % len(WORDS)]} is number {i}?",
                          (f"{WORDS[(i * 7) % len(WORDS)]} {i}",)) for i in range(n)]
    manifest = {"model": {"name": "synthetic", "kind": "chat", "backend": "test",
                          "config_hash": "h"}, "style": "concise", "shots": 0,
                "questions": {"count": n, "dataset": "synthetic", "hash": "x"},
                "sampling": {"n_samples": m, "temperature": 1.0, "max_new_tokens": 32}}
    store = RunStore.create_or_resume(folder, manifest, questions)
    for i, q in enumerate(questions):
        if worst:
            texts = [f"{q.answers[0]} near the {WORDS[int(rng.integers(len(WORDS)))]} {i}-{j}"
                     for j in range(m)]
        else:
            options = [q.answers[0]] + [f"{WORDS[int(k)]} {int(k) + i}"
                                        for k in rng.integers(0, len(WORDS), 4)]
            weights = rng.dirichlet(np.ones(len(options)) * 0.7)
            picks = rng.choice(len(options), size=m, p=weights)
            texts = [FORMS[int(rng.integers(len(FORMS)))].format(options[p]) for p in picks]
        store.append(QuestionSamples(q.id, tuple(_sample(t, rng) for t in texts),
                                     greedy=_sample(texts[0], rng)))
    return RunStore.open(folder)


def open_seconds(page: Path) -> float | None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from browser import Chromium, find_chromium

    executable, _ = find_chromium()
    if executable is None:
        return None
    with Chromium.launch(executable) as browser:
        tab = browser.new_page()
        start = time.perf_counter()
        tab.goto(page.as_uri(), timeout=120)
        took = time.perf_counter() - start
        if tab.errors:
            raise RuntimeError(f"the page logged errors: {tab.errors}")
        return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    results: dict[str, dict[str, float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for regime in ("typical", "worst"):
            store = build_run(Path(tmp) / regime, args.questions, args.samples,
                              worst=regime == "worst")
            report = measure_run(store, MeasureConfig(n_resamples=100))
            start = time.perf_counter()
            folder = write_report(report, Path(tmp) / f"report-{regime}", diagram=False)
            write_s = time.perf_counter() - start
            page = folder / "report.html"
            plain = render_page(explorer_document(report, report.collapser), compress=False)
            results[regime] = {
                "page_mb": page.stat().st_size / 1e6,
                "plain_json_page_mb": len(plain.encode("utf-8")) / 1e6,
                "samples_jsonl_mb": (store.path / "samples.jsonl").stat().st_size / 1e6,
                "write_report_s": write_s,
                "open_s": open_seconds(page),
            }
            results[regime]["ratio_plain_over_page"] = (results[regime]["plain_json_page_mb"]
                                                        / results[regime]["page_mb"])
            print(regime, json.dumps(results[regime]))
    doc = {"questions": args.questions, "samples": args.samples, "results": results}
    RESULTS.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    typical, worst = results["typical"], results["worst"]
    print(f"report_page_mb_{args.questions}x{args.samples}: {typical['page_mb']:.2f} typical, "
          f"{worst['page_mb']:.2f} all-distinct ({typical['ratio_plain_over_page']:.1f}x and "
          f"{worst['ratio_plain_over_page']:.1f}x smaller than plain JSON)")


if __name__ == "__main__":
    main()
