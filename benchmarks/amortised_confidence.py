"""Amortised confidence against sampling: cost of one forward pass vs M = 50 sampled answers, and
how far its held-out calibration is from the sampled modal share's.

    .venv/bin/python benchmarks/amortised_confidence.py --tuned runs/tune/amortised

``--tuned`` is a `recal tune --method amortised` output folder. The cost is measured here, in one
run on one machine: the wall time of the amortised readout (one batched forward pass per
question, the adapter on) and of sampling M answers (recal's batched sampler, the base model)
for the same held-out questions. The calibration figures are the tune report's held-out rows
(the same questions, the same bootstrap). Writes benchmarks/results/amortised_confidence.json
and prints ``name: value`` lines, the cost ratio last.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from recal.models.hf import load_transformers
from recal.prompts import build_prompt
from recal.samples import SamplingConfig
from recal.tuning import load_tuned

RESULTS = Path(__file__).parent / "results" / "amortised_confidence.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuned", type=Path, default=Path("runs/tune/amortised"))
    parser.add_argument("--run", type=Path, default=Path("runs/fit-smollm2-builtin400-m20"),
                        help="the run the adapter was trained on (its questions)")
    parser.add_argument("--questions", type=int, default=10, help="held-out questions timed")
    parser.add_argument("--samples", type=int, default=50, help="M of the sampling baseline")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    report = json.loads((args.tuned / "report.json").read_text())
    meta = json.loads((args.tuned / "adapter" / "recal_tuning.json").read_text())
    backend = load_transformers(meta["base_model"]["name"], kind=meta["base_model"]["kind"])
    tuned = load_tuned(args.tuned / "adapter", backend=backend)

    from recal.runstore import RunStore

    run = RunStore.open(args.run)
    by_id = {q.id: q for q in run.questions()}
    questions = [by_id[i] for i in meta["split"]["heldout"][: args.questions]]

    tuned.confidence(questions[:1])  # warm-up (first-call allocations), not timed
    start = time.perf_counter()
    tuned.confidence(questions)
    one_pass = time.perf_counter() - start

    config = SamplingConfig(n_samples=args.samples, greedy=False).resolved(
        meta["style"], chat=backend.is_chat)
    prompts = [build_prompt(q, meta["style"], chat=backend.is_chat, shots=meta.get("shots"))
               for q in questions]
    start = time.perf_counter()
    answers = sum(len(r.samples) for r in backend.generate([q.id for q in questions], prompts,
                                                            config))
    sampling = time.perf_counter() - start

    rows = report["heldout"]
    sampled, amortised = rows["modal share (sampled)"], rows["amortised (one pass)"]
    result = {
        "model": meta["base_model"]["name"], "questions_timed": len(questions),
        "samples_per_question": args.samples, "answers_sampled": answers,
        "threads": args.threads, "machine": platform.machine(),
        "one_pass_seconds": one_pass, "sampling_seconds": sampling,
        "one_pass_seconds_per_question": one_pass / len(questions),
        "sampling_seconds_per_question": sampling / len(questions),
        "cost_ratio": sampling / one_pass,
        "heldout_questions": report["extra"]["n_heldout_judged"],
        "calibration": {
            name: {m: {k: row[m][k] for k in ("estimate", "low", "high")}
                   for m in ("smooth_ece", "brier_score", "auroc")}
            for name, row in (("sampled_modal_share", sampled), ("amortised", amortised))},
        "smooth_ece_gap": amortised["smooth_ece"]["estimate"]
        - sampled["smooth_ece"]["estimate"],
        "auroc_gap": amortised["auroc"]["estimate"] - sampled["auroc"]["estimate"],
        "mae_vs_modal_share": report["extra"]["mae_vs_modal_share"],
        "pearson_vs_modal_share": report["extra"]["pearson_vs_modal_share"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    for key in ("one_pass_seconds_per_question", "sampling_seconds_per_question", "smooth_ece_gap",
                "auroc_gap", "mae_vs_modal_share", "pearson_vs_modal_share"):
        print(f"{key}: {result[key]:.4f}")
    print(f"cost_ratio: {result['cost_ratio']:.1f}")


if __name__ == "__main__":
    main()
