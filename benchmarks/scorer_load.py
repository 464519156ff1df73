"""How fast an exported calibrated scorer loads, in a process that has no torch.

An artifact is exported for every recalibrator (fitted on 5,000 seeded synthetic predictions),
then, in the same run:

- warm: ``load_scorer(folder)`` in this process (median of 200 loads);
- cold: a fresh ``python -c`` that imports ``recal.scorer``, loads the artifact and scores one
  answer, minus a bare ``python -c pass`` (median of 5 each);
- the alternative: ``pickle.load`` of the same fitted recalibrator object (the obvious way to
  ship a scikit-learn-style estimator, and one that can run code when loaded).

    .venv/bin/python benchmarks/scorer_load.py

Writes benchmarks/results/scorer_load.json; the last line printed is the headline.
"""

from __future__ import annotations

import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recal.calibrators import RECALIBRATORS, get_recalibrator
from recal.scorer import CalibratedScorer, load_scorer

RESULTS = Path(__file__).resolve().parent / "results" / "scorer_load.json"


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    q = rng.beta(2, 2, 5000)
    correct = rng.random(5000) < q
    conf = q ** (1 / 3)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in RECALIBRATORS:
            recalibrator = get_recalibrator(name).fit(conf, correct)
            folder = CalibratedScorer(
                recalibrator=recalibrator, collapse="normalized", scorer="modal_share",
                style="concise", sampling={"n_samples": 20, "temperature": 1.0},
                model={"name": "smollm2-135m-instruct", "kind": "chat", "config_hash": "x"},
            ).save(Path(tmp) / name)
            pickled = Path(tmp) / f"{name}.pkl"
            pickled.write_bytes(pickle.dumps(recalibrator))
            load_scorer(folder)
            warm = _median_seconds(lambda f=folder: load_scorer(f), 200)
            unpickle = _median_seconds(lambda p=pickled: pickle.loads(p.read_bytes()), 200)
            code = (f"from recal.scorer import load_scorer; s = load_scorer({str(folder)!r}); "
                    "s.score_samples('q?', ['a', 'a', 'b'])")
            cold = _median_seconds(lambda c=code: subprocess.run([sys.executable, "-c", c],
                                                                 check=True), 5)
            bare = _median_seconds(lambda: subprocess.run([sys.executable, "-c", "pass"],
                                                          check=True), 5)
            results[name] = {"warm_load_ms": warm * 1e3, "pickle_load_ms": unpickle * 1e3,
                             "cold_import_load_score_ms": (cold - bare) * 1e3,
                             "file_bytes": (folder / "scorer.json").stat().st_size}
            print(f"{name:>12}: load {warm * 1e3:.2f} ms (pickle {unpickle * 1e3:.3f} ms); "
                  f"fresh process import+load+score {(cold - bare) * 1e3:.0f} ms", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    worst_cold = max(r["cold_import_load_score_ms"] for r in results.values())
    print(f"scorer_cold_import_load_score_ms_max: {worst_cold:.0f}")


if __name__ == "__main__":
    main()
