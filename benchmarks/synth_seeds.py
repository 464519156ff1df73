"""Synthetic world across seeds: how much the headline smooth ECE of base / RL / DPO / CoT moves.

Each seed draws a new world, trains a new base model and post-trains new RL and DPO models
(``recal.synthetic.run_synthetic`` with ``seed`` set; repairs and diagrams off). The summary gives,
per (model, style), the mean, standard deviation, minimum and maximum over seeds of the sampled
smooth ECE, the true calibration error, mean confidence - accuracy and the noise floor's mean.

    .venv/bin/python benchmarks/synth_seeds.py                  # reduced world + cot, seeds 0-4
    .venv/bin/python benchmarks/synth_seeds.py --full --seeds 0 1 2   # synth_seeds_full.json

Writes benchmarks/results/synth_seeds.json; the last lines printed are ``name: value``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from recal.synthetic import SynthConfig, run_synthetic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "synth_seeds.json"


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--full", action="store_true",
                        help="the full world (default: the reduced world with the cot style)")
    parser.add_argument("--styles", default="concise,cot",
                        help="styles of the base model (reduced world only)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "synth-seeds")
    parser.add_argument("--results", type=Path, default=None,
                        help="where the JSON goes (default: benchmarks/results/synth_seeds.json, "
                             "synth_seeds_full.json with --full)")
    args = parser.parse_args()
    overrides: dict[str, Any] = {"repairs": False, "diagrams": False, "threads": args.threads}
    if not args.full:
        overrides["styles"] = tuple(s.strip() for s in args.styles.split(",") if s.strip())
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in args.seeds:
        start = time.perf_counter()
        report = run_synthetic(SynthConfig(reduced=not args.full, seed=seed, **overrides),
                               args.runs / f"seed{seed}")
        cfg = report.config
        floor = report.noise_floor[cfg.n_samples]  # type: ignore[index]
        rows = {}
        for row in report.rows:
            m = row.metrics
            rows[f"{row.model}_{row.style}"] = {
                "smooth_ece": m["smooth_ece"]["estimate"],
                "smooth_ece_low": m["smooth_ece"]["low"],
                "smooth_ece_high": m["smooth_ece"]["high"],
                "conf_minus_acc": m["mean_confidence"]["estimate"] - m["accuracy"]["estimate"],
                "accuracy": m["accuracy"]["estimate"],
                "true_calibration_error": row.true_calibration_error,
                "true_overconfidence": row.true_overconfidence}
        per_seed[seed] = {"rows": rows, "noise_floor": floor, "parameters": report.parameters,
                          "seconds": time.perf_counter() - start}
        print(f"seed {seed}: " + ", ".join(f"{k} {v['smooth_ece']:.3f}" for k, v in rows.items())
              + f"; floor {floor['mean']:.3f} ({per_seed[seed]['seconds']:.0f} s)", flush=True)
    keys = list(per_seed[args.seeds[0]]["rows"])
    summary = {
        key: {metric: _spread([per_seed[s]["rows"][key][metric] for s in args.seeds])
              for metric in ("smooth_ece", "true_calibration_error", "conf_minus_acc",
                             "accuracy")}
        for key in keys}
    summary["noise_floor"] = {"mean": _spread([per_seed[s]["noise_floor"]["mean"]
                                               for s in args.seeds])}
    doc = {"world": "full" if args.full else "reduced", "seeds": args.seeds,
           "styles": list(cfg.styles or ()), "n_entities": cfg.n_entities,
           "n_samples": cfg.n_samples, "parameters": per_seed[args.seeds[0]]["parameters"],
           "summary": summary, "per_seed": {str(s): v for s, v in per_seed.items()}}
    results = args.results or (RESULTS.with_name("synth_seeds_full.json") if args.full
                               else RESULTS)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    for key in keys:
        sm = summary[key]["smooth_ece"]
        print(f"{key}_smooth_ece_mean: {sm['mean']:.3f}")
        print(f"{key}_smooth_ece_std: {sm['std']:.3f}")
    print(f"noise_floor_mean: {summary['noise_floor']['mean']['mean']:.3f}")


if __name__ == "__main__":
    main()
