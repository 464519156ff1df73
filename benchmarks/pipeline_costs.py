"""What recal's own work costs per question, and when it would matter at a million questions.

Everything that happens after sampling, on one core, on seeded synthetic runs shaped like a real
one (M = 20 samples plus the greedy answer per question, answers of a few to 32 tokens with their
token ids and log-probabilities, as ``recal sample`` stores them):

- collapsing: ``recal.confidence.classify`` with the ``normalized`` B on the built-in questions
  (answer spans in the shapes SmolLM2 gives: bare, "The answer is X.", the question restated,
  rambling wrong text), and with the ``numeric`` B on arithmetic questions; beside it the obvious
  alternative, lower-cased exact match;
- confidence scoring: ``modal_share``, ``heldout_modal``, ``semantic_entropy`` on the classified
  questions (each asks B's grader about the modal class);
- the run store (``recal.runstore``): appending every question (one write and one fsync each, as
  the sampler does) against one buffered write of the same lines without fsync; reading it back
  with every check against a plain ``json.loads`` loop; bytes on disk and Python memory held per
  question once read;
- the memory a queued request holds in a thread pool (the HTTP backend submits every request
  of the questions it is given before the first returns);
- the CPU recal's HTTP client spends per request and per question against a stub server that
  answers at once (a fleet's throughput cannot exceed what one client process sends);
- ``recal.metrics.compute_all`` (every metric, 1,000 bootstrap resamples, noise-floor
  intervals) at n = 1e4 and 1e5 predictions, modal-share confidences (k / 20) and continuous ones,
  seconds and peak traced memory; extrapolated to 1e6 with the slope measured between the two,
  then checked by running 1e6 itself (``--check-n 0`` skips that).

Times are CPU seconds of the one process (best of 2 or 3), except the run store's writes, which
wait for the disk and are wall seconds.

    .venv/bin/python benchmarks/pipeline_costs.py            # 2,000 questions, n = 1e4, 1e5
    .venv/bin/python benchmarks/pipeline_costs.py --run runs/RUN   # real answers (below)

``--run`` takes the factual answers from a real run folder (the README's first command makes one)
instead of synthesising them: real answers are longer and cost more to collapse.

Writes benchmarks/results/pipeline_costs.json; the last line printed is the headline: hours of
recal's own work for 1e6 questions on one core (collapsing with ``normalized``, the three
scorers, appending to and reading the run store, and ``compute_all`` on 1e6 predictions).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from recal.confidence import Classified, classify, get_scorer
from recal.data import load_questions
from recal.data.records import Question
from recal.lines import dumps_line
from recal.metrics import compute_all
from recal.runstore import RunStore
from recal.samples import QuestionSamples, Sample
from recal.semantic import NormalizedCollapser, NumericCollapser
from recal.semantic.base import Collapser

RESULTS = Path(__file__).resolve().parent / "results" / "pipeline_costs.json"
SCORERS = ("modal_share", "heldout_modal", "semantic_entropy")
RAMBLE = ("one", "can", "find", "another", "clever", "solution", "answer", "it", "is", "known",
          "that", "the", "a", "of", "in", "very", "probably", "named", "first", "called", "great",
          "city", "river", "old", "new", "north")


def best_of(repeats: int, fn: Callable[[], object],
            clock: Callable[[], float] = time.process_time) -> float:
    """The least time ``fn`` takes over ``repeats`` calls: CPU seconds of this process by
    default (the machines are shared, and every stage timed so is CPU-bound in one thread),
    wall seconds with ``clock=time.perf_counter`` (writes that wait for the disk)."""
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def peak_megabytes(fn: Callable[[], object]) -> tuple[float, Any]:
    """Peak Python allocation while ``fn`` runs (tracemalloc), and what it returned."""
    tracemalloc.start()
    out = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, out


def sample(text: str, rng: np.random.Generator) -> Sample:
    """A stored answer: token ids and log-probabilities of a plausible length for ``text``."""
    n = int(min(32, max(2, round(len(text) / 3.5) + 1)))  # about 3.5 characters a token + stop
    ids = tuple(int(i) for i in rng.integers(0, 49152, n))
    logprobs = tuple(float(x) for x in -rng.exponential(2.0, n))
    return Sample(text, ids, logprobs, "stop" if n < 32 else "length")


def factual_texts(q: Question, others: Sequence[str], m: int, rng: np.random.Generator,
                  ) -> list[str]:
    """M + 1 answers: a modal answer (the gold one with probability 0.5) in its several surface
    forms with a share drawn from Beta(2, 2), the rest wrong entities or rambling text."""
    modal = q.answers[0] if rng.random() < 0.5 else others[rng.integers(len(others))]
    stem = q.question.rstrip("?").split(" ", 2)[-1]  # "capital of India" from "What is the ..."
    forms = (modal, f"{modal}.", f"The answer is {modal}.", f"{modal.lower()}",
             f"The {stem} is {modal}.", f"I think it is {modal}")
    share = rng.beta(2.0, 2.0)
    texts = []
    for _ in range(m + 1):
        if rng.random() < share:
            texts.append(forms[rng.integers(len(forms))])
        elif rng.random() < 0.6:
            texts.append(f"The answer is {others[rng.integers(len(others))]}.")
        else:
            words = rng.choice(list(RAMBLE), int(rng.integers(3, 12)))
            texts.append(" ".join(words).capitalize())
    return texts


def numeric_question(i: int, m: int, rng: np.random.Generator) -> tuple[Question, list[str]]:
    a, b = (int(x) for x in rng.integers(2, 999, 2))
    q = Question(f"arith-{i:07d}", f"A shop has {a} apples and gets {b} more. How many now?",
                 (str(a + b),))
    share = rng.beta(2.0, 2.0)
    texts = []
    for _ in range(m + 1):
        c = a + b if rng.random() < share else a + b + int(rng.integers(-20, 21))
        forms = (f"{a} + {b} = {c}. The answer is {c}.", f"The shop has {a} + {b} = {c:,} apples."
                 f"\n#### {c}", f"{c}", f"So there are {c} apples now.")
        texts.append(forms[rng.integers(len(forms))])
    return q, texts


def synthetic_run(n: int, m: int, seed: int) -> dict[str, Any]:
    """Questions, records and texts of a synthetic run of ``n`` questions (built-in questions
    repeated under new ids) and of ``n`` arithmetic questions."""
    rng = np.random.default_rng(seed)
    builtin = load_questions("builtin")
    golds = [q.answers[0] for q in builtin]
    questions, records, numeric_q, numeric_r = [], [], [], []
    for i in range(n):
        base = builtin[i % len(builtin)]
        q = Question(f"{base.id}-{i // len(builtin)}", base.question, base.answers)
        texts = factual_texts(q, golds, m, rng)
        records.append(QuestionSamples(q.id, tuple(sample(t, rng) for t in texts[:m]),
                                       sample(texts[m], rng)))
        questions.append(q)
        nq, ntexts = numeric_question(i, m, rng)
        numeric_q.append(nq)
        numeric_r.append(QuestionSamples(nq.id, tuple(sample(t, rng) for t in ntexts[:m]),
                                         sample(ntexts[m], rng)))
    return {"questions": questions, "records": records,
            "numeric_questions": numeric_q, "numeric_records": numeric_r}


def stored_run(folder: Path, n: int, m: int, seed: int) -> dict[str, Any]:
    """The synthetic run with its factual questions and answers replaced by those of a real run
    folder (repeated under new ids up to ``n`` questions); the arithmetic ones stay synthetic."""
    store = RunStore.open(folder)
    if store.n_samples != m:
        raise SystemExit(f"{folder} holds M = {store.n_samples} samples per question; "
                         f"pass --samples {store.n_samples}")
    records = store.samples_by_id()
    real = [(q, records[q.id]) for q in store.questions() if q.id in records]
    if not real:
        raise SystemExit(f"{folder} holds no finished question")
    run = synthetic_run(n, m, seed)
    run["questions"], run["records"] = [], []
    for i in range(n):
        q, rec = real[i % len(real)]
        qid = f"{q.id}-{i // len(real)}"
        run["questions"].append(Question(qid, q.question, q.answers))
        run["records"].append(QuestionSamples(qid, rec.samples, rec.greedy))
    return run


class LowerExact(Collapser):
    """The obvious alternative to a real B: the lower-cased, stripped text is the class."""

    name = "lower_exact"

    def collapse(self, question: Question, texts: Sequence[str]) -> list[str]:
        return [t.strip().lower() for t in texts]

    def is_correct(self, question: Question, label: str) -> bool:
        return label in {a.lower() for a in question.answers}


def collapse_costs(run: dict[str, Any], repeats: int) -> tuple[dict[str, float], list[Classified]]:
    n = len(run["questions"])
    normalized = NormalizedCollapser()
    out = {
        "normalized": best_of(repeats, lambda: classify(run["questions"], run["records"],
                                                        normalized)) / n,
        "numeric": best_of(repeats, lambda: classify(run["numeric_questions"],
                                                     run["numeric_records"],
                                                     NumericCollapser())) / n,
        "lower_exact": best_of(repeats, lambda: classify(run["questions"], run["records"],
                                                         LowerExact())) / n,
    }
    return out, classify(run["questions"], run["records"], normalized)


def scoring_costs(items: list[Classified], repeats: int) -> dict[str, float]:
    collapser = NormalizedCollapser()
    return {name: best_of(repeats, lambda name=name: get_scorer(name).score(items, collapser))
            / len(items) for name in SCORERS}


def store_costs(run: dict[str, Any], folder: Path) -> dict[str, float]:
    questions, records = run["questions"], run["records"]
    n = len(records)
    manifest = {"model": {"backend": "synthetic", "config_hash": "0", "kind": "chat",
                          "name": "pipeline-costs"},
                "style": "concise", "shots": None,
                "sampling": {"n_samples": len(records[0].samples), "temperature": 1.0,
                             "greedy": True, "max_new_tokens": 32}}
    start = time.perf_counter()
    store = RunStore.create_or_resume(folder / "run", manifest, questions)
    for record in records:
        store.append(record)
    append = (time.perf_counter() - start) / n
    size = (folder / "run" / "samples.jsonl").stat().st_size

    def buffered() -> None:
        text = "".join(dumps_line(r.to_dict()) for r in records)
        (folder / "plain.jsonl").write_text(text, encoding="utf-8")

    plain_write = best_of(1, buffered, time.perf_counter) / n
    def read_store() -> dict[str, QuestionSamples]:
        return RunStore.open(folder / "run").samples_by_id()

    read = best_of(2, read_store) / n

    def plain_read() -> list[Any]:
        with (folder / "plain.jsonl").open(encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    plain = best_of(2, plain_read) / n
    held_mb, by_id = peak_megabytes(read_store)
    if len(by_id) != n:
        raise RuntimeError(f"the store read back {len(by_id)} of {n} questions")
    return {"append_fsync_s": append, "buffered_write_s": plain_write, "read_checked_s": read,
            "read_plain_json_s": plain, "bytes_on_disk": size / n,
            "peak_read_bytes": held_mb * 2**20 / n}


def pending_request_bytes(n: int) -> float:
    """Python memory per request queued on a thread pool before any runs: what the HTTP backend
    holds per request when a run's every request is submitted up front (one future and its job
    per sample request; the requests' bodies are built later, by the worker)."""
    gate = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1)
    pool.submit(gate.wait)  # the one worker waits, so every later job stays queued
    tracemalloc.start()
    futures = {pool.submit(len, (i, "question-id", i % 21)): (i, i % 21) for i in range(n)}
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    gate.set()
    pool.shutdown(wait=True, cancel_futures=True)
    del futures
    return peak / n


STUB_SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
honours_n = sys.argv[1] == "n"
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def _send(self, out):
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "stub", "object": "model"}]})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = body.get("n", 1) if honours_n else 1
        lp = {"content": [{"token": "t", "logprob": -0.5}] * 8} if body.get("logprobs") else None
        self._send({"object": "chat.completion", "choices": [
            {"index": i, "finish_reason": "stop", "logprobs": lp, "message": {
             "role": "assistant", "content": "The capital of India is New Delhi."}}
            for i in range(n)]})
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def http_client_costs(questions: Sequence[Question], m: int) -> dict[str, dict[str, float]]:
    """CPU seconds recal's HTTP client spends per request and per question against a stub server
    (another process) that answers at once: the client's own ceiling on a fleet's throughput,
    since its requests share one Python process. Servers that honour ``n`` (one request for the
    M samples plus one greedy request per question) and servers that do not (M + 1 requests)."""
    from recal.models.http import HTTPBackend, HTTPConfig
    from recal.prompts import build_prompt
    from recal.samples import SamplingConfig

    config = SamplingConfig(n_samples=m, max_new_tokens=32, stop_at_newline=True)
    prompts = [build_prompt(q, "concise", chat=True) for q in questions]
    ids = [q.id for q in questions]
    out = {}
    for mode in ("n", "single"):
        server = subprocess.Popen([sys.executable, "-c", STUB_SERVER, mode],
                                  stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline()) if server.stdout else 0
            backend = HTTPBackend(HTTPConfig(base_url=f"http://127.0.0.1:{port}/v1"))
            list(backend.generate(ids[:2], prompts[:2], config))  # connect, detect n
            wall, cpu = time.perf_counter(), time.process_time()
            got = list(backend.generate(ids, prompts, config))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            server.terminate()
            server.wait()
        requests = len(got) * (2 if mode == "n" else m + 1)
        out[mode] = {"client_cpu_s_per_request": cpu / requests,
                     "client_cpu_s_per_question": cpu / len(got),
                     "wall_s_per_question": wall / len(got), "requests": requests}
    return out


def metrics_predictions(n: int, seed: int, discrete: bool) -> tuple[np.ndarray, np.ndarray]:
    """Overconfident predictions: modal shares k / 20 (discrete) or continuous confidences."""
    rng = np.random.default_rng(seed)
    conf = rng.beta(4.0, 1.5, n)
    if discrete:
        conf = np.maximum(np.round(conf * 20), 1) / 20
    correct = rng.random(n) < np.clip(0.15 + 0.8 * conf**2, 0.0, 1.0)
    return conf, correct.astype(float)


def metric_costs(sizes: Sequence[int], check_n: int, resamples: int, seed: int,
                 ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("discrete", "continuous"):
        rows = {}
        for n in [*sizes, *([check_n] if check_n else [])]:
            conf, correct = metrics_predictions(n, seed, kind == "discrete")
            repeats = 2 if n <= 100_000 else 1
            def run(conf: np.ndarray = conf, correct: np.ndarray = correct) -> object:
                return compute_all(conf, correct, resamples, seed)

            seconds = best_of(repeats, run)
            peak, _ = peak_megabytes(run)
            rows[n] = {"seconds": seconds, "peak_traced_mb": peak,
                       "input_mb": (conf.nbytes + correct.nbytes) / 2**20}
        small, large = sorted(sizes)[-2:]
        slope = math.log(rows[large]["seconds"] / rows[small]["seconds"]) / math.log(large / small)
        mem_slope = (math.log(rows[large]["peak_traced_mb"] / rows[small]["peak_traced_mb"])
                     / math.log(large / small))
        entry: dict[str, Any] = {
            "by_n": {str(k): v for k, v in rows.items()},
            "time_slope": slope, "memory_slope": mem_slope,
            "extrapolated_1e6_seconds": rows[large]["seconds"] * (1e6 / large) ** slope,
            "extrapolated_1e6_peak_mb": rows[large]["peak_traced_mb"] * (1e6 / large) ** mem_slope,
        }
        out[kind] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=2000, help="questions per cost measure")
    parser.add_argument("--samples", type=int, default=20, help="M, samples per question")
    parser.add_argument("--sizes", default="10000,100000", help="n for compute_all, comma list")
    parser.add_argument("--check-n", type=int, default=1_000_000,
                        help="also run compute_all at this n to check the extrapolation (0: no)")
    parser.add_argument("--run", type=Path, default=None,
                        help="take the factual questions and answers from this run folder "
                        "(a real `recal sample` run) instead of synthesising them")
    parser.add_argument("--http-questions", type=int, default=200,
                        help="questions sent to the stub server")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]

    run = (stored_run(args.run, args.questions, args.samples, args.seed) if args.run
           else synthetic_run(args.questions, args.samples, args.seed))
    collapse, items = collapse_costs(run, repeats=2)
    scoring = scoring_costs(items, repeats=3)
    with tempfile.TemporaryDirectory() as tmp:
        store = store_costs(run, Path(tmp))
    metrics = metric_costs(sizes, args.check_n, args.resamples, args.seed)
    pending = pending_request_bytes(200_000)
    http = http_client_costs(run["questions"][: args.http_questions], args.samples)

    predictions = get_scorer("modal_share").score(items, NormalizedCollapser())
    confidences = np.array([p.confidence for p in predictions])
    per_question = (collapse["normalized"] + sum(scoring.values()) + store["append_fsync_s"]
                    + store["read_checked_s"])
    measured = metrics["discrete"]["by_n"].get(str(1_000_000))
    bootstrap_1e6 = (measured["seconds"] if measured
                     else metrics["discrete"]["extrapolated_1e6_seconds"])
    hours = (per_question * 1e6 + bootstrap_1e6) / 3600
    summary = {
        "settings": {"run": str(args.run) if args.run else "synthetic",
                     "questions": args.questions, "samples": args.samples, "sizes": sizes,
                     "check_n": args.check_n, "resamples": args.resamples, "seed": args.seed},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__,
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "factual_run": {"mean_classes_per_question": float(np.mean(
            [len(set(i.labels)) for i in items])),
            "modal_share_mean": float(confidences.mean()),
            "accuracy": float(np.mean([p.correct for p in predictions]))},
        "seconds_per_question": {"collapse": collapse, "score": scoring, "store": {
            k: v for k, v in store.items() if k.endswith("_s")}},
        "collapse_vs_lower_exact": collapse["normalized"] / collapse["lower_exact"],
        "store_append_vs_buffered": store["append_fsync_s"] / store["buffered_write_s"],
        "store_read_vs_plain_json": store["read_checked_s"] / store["read_plain_json_s"],
        "store_bytes_per_question": store["bytes_on_disk"],
        "store_read_peak_bytes_per_question": store["peak_read_bytes"],
        "compute_all": metrics,
        "http_pending_request_bytes": pending,
        "http_client": http,
        "per_question_seconds_total": per_question,
        "one_core_hours_per_1e6_questions": hours,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")

    us = 1e6
    print(f"{args.questions} questions x M = {args.samples} (+ greedy), one process, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print("collapse (us/question): " + ", ".join(f"{k} {v * us:.0f}" for k, v in collapse.items()))
    print("score (us/question): " + ", ".join(f"{k} {v * us:.0f}" for k, v in scoring.items()))
    print(f"store: append+fsync {store['append_fsync_s'] * us:.0f} us/question (buffered "
          f"{store['buffered_write_s'] * us:.0f}), read {store['read_checked_s'] * us:.0f} "
          f"(plain json {store['read_plain_json_s'] * us:.0f}); {store['bytes_on_disk']:.0f} B "
          f"on disk, {store['peak_read_bytes'] / 1024:.1f} KiB in memory per question")
    for kind, entry in metrics.items():
        cells = "; ".join(f"n={k}: {v['seconds']:.2f} s, {v['peak_traced_mb']:.0f} MB"
                          for k, v in entry["by_n"].items())
        print(f"compute_all {kind}: {cells}; slope {entry['time_slope']:.2f} -> 1e6 "
              f"{entry['extrapolated_1e6_seconds']:.1f} s, "
              f"{entry['extrapolated_1e6_peak_mb']:.0f} MB extrapolated")
    print(f"a queued HTTP request (future + job) holds {pending:.0f} B: "
          f"{pending * 21e6 / 2**30:.1f} GiB for 1e6 questions x 21 requests submitted at once")
    for mode, row in http.items():
        print(f"HTTP client, server {'honouring' if mode == 'n' else 'ignoring'} n: "
              f"{row['client_cpu_s_per_request'] * us:.0f} us CPU per request, "
              f"{row['client_cpu_s_per_question'] * 1e3:.1f} ms per question")
    print(f"one_core_hours_per_1e6_questions: {hours:.2f}")


if __name__ == "__main__":
    main()
