"""Samples per second through recal's HTTP backend against naive sequential requests, in one run,
to the same llama.cpp server (llama-cpp-python serving the packaged SmolLM2 GGUF on loopback).

Both ask for the same single-choice requests (the server answers one choice whatever ``n``
asks): M samples of each question at T = 1, untruncated, at most ``--max-new-tokens`` tokens,
stopping at the end of the line. "naive" sends them one after another with a plain client, as a
hand-written loop would; the backend sends them ``concurrency`` at a time (retries, seeds, the
run store's per-question records included). The server's own settings are recorded beside the
figures: llama-cpp-python runs one model instance behind a lock, so concurrency overlaps the
HTTP, JSON and tokenisation work of one request with the decoding of another but never decodes
two requests at once. The last configuration adds a second server process (a replica, one
thread each) and lets the backend spread its requests over both (``--model URL1,URL2``): what
concurrency buys when the server side can work in parallel.

    .venv/bin/python benchmarks/http_throughput.py     # 12 questions x M = 8, 16 tokens

Writes benchmarks/results/http_throughput.json; the last line printed is the headline.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "http_throughput.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(threads: int) -> tuple[subprocess.Popen, str, list[str]]:
    from recal.models.packaged import fetch_gguf

    port = _free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model",
            str(fetch_gguf("smollm2-135m-instruct")), "--model_alias", "smollm2", "--host",
            "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads),
            "--n_threads_batch", str(threads), "--verbose", "False"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2):
                return process, url, args[3:]
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("llama_cpp.server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--samples", "-m", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--concurrency", default="1,4,8",
                        help="comma-separated concurrency levels of the backend")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    parser.add_argument("--replicas", type=int, default=2,
                        help="servers in the replica configuration (1: skip it)")
    args = parser.parse_args()

    import httpx

    from recal.data import load_questions
    from recal.models.http import HTTPBackend, HTTPConfig, _request_seed, load_http
    from recal.prompts import build_prompt
    from recal.samples import SamplingConfig

    questions = load_questions("builtin")[::30][:args.questions]
    config = SamplingConfig(n_samples=args.samples, greedy=False,
                            max_new_tokens=args.max_new_tokens).resolved("concise", chat=True)
    prompts = [build_prompt(q, "concise", chat=True) for q in questions]
    total = len(questions) * args.samples
    process, url, server_args = start_server(args.threads)
    others: list[subprocess.Popen] = []
    results: dict = {}
    try:
        warm = HTTPBackend(HTTPConfig(base_url=url))
        list(warm.generate(["warm"], prompts[:1], config))  # load pages, fill caches
        # naive: one request after another, the body recal would send
        with httpx.Client(timeout=120) as client:
            start = time.perf_counter()
            for q, prompt in zip(questions, prompts, strict=True):
                for j in range(args.samples):
                    body = warm._body(prompt, config, n=1, greedy=False,
                                      seed=_request_seed(config.seed, q.id, j))
                    client.post(f"{url}/chat/completions", json=body).raise_for_status()
            naive = time.perf_counter() - start
        results["naive_sequential"] = {"seconds": naive, "samples_per_s": total / naive}
        print(f"naive sequential: {total / naive:.2f} samples/s ({naive:.1f} s)", flush=True)
        for level in (int(c) for c in args.concurrency.split(",")):
            backend = HTTPBackend(HTTPConfig(base_url=url, concurrency=level))
            start = time.perf_counter()
            records = list(backend.generate([q.id for q in questions], prompts, config))
            seconds = time.perf_counter() - start
            assert sum(len(r.samples) for r in records) == total
            results[f"backend_c{level}"] = {
                "seconds": seconds, "samples_per_s": total / seconds,
                "requests": backend.stats.requests, "retries": backend.stats.retries,
                "honours_n": backend.capabilities.honours_n if backend.capabilities else None}
            print(f"backend, concurrency {level}: {total / seconds:.2f} samples/s "
                  f"({seconds:.1f} s)", flush=True)
        if args.replicas > 1:
            extra = [start_server(args.threads) for _ in range(args.replicas - 1)]
            others.extend(p for p, _, _ in extra)
            backend = load_http(",".join([url, *(u for _, u, _ in extra)]),
                                concurrency=2 * args.replicas)
            list(backend.generate(["warm"], prompts[:1], config))
            backend.stats.per_server.clear()
            start = time.perf_counter()
            records = list(backend.generate([q.id for q in questions], prompts, config))
            seconds = time.perf_counter() - start
            assert sum(len(r.samples) for r in records) == total
            results[f"backend_{args.replicas}_replicas"] = {
                "seconds": seconds, "samples_per_s": total / seconds,
                "concurrency": 2 * args.replicas,
                "requests_per_server": sorted(backend.stats.per_server.values())}
            print(f"backend over {args.replicas} server processes, concurrency "
                  f"{2 * args.replicas}: {total / seconds:.2f} samples/s ({seconds:.1f} s)",
                  flush=True)
    finally:
        for p in [process, *others]:
            p.terminate()
            p.wait(timeout=20)
    naive_rate = results["naive_sequential"]["samples_per_s"]
    best = max((v for k, v in results.items() if k.startswith("backend_c")),
               key=lambda v: v["samples_per_s"])
    speedup = best["samples_per_s"] / naive_rate
    replicated = results.get(f"backend_{args.replicas}_replicas")
    doc = {
        "benchmark": "http_throughput",
        "server": "llama-cpp-python " + _version("llama_cpp") + " (llama_cpp.server), "
                  "SmolLM2-135M-Instruct Q4_1 GGUF",
        "server_args": server_args,
        "questions": len(questions), "samples_per_question": args.samples,
        "max_new_tokens": args.max_new_tokens, "machine": f"{platform.machine()}, "
        f"{_cores()} cores",
        "results": results,
        "http_speedup": speedup,
        "http_speedup_replicas": (replicated["samples_per_s"] / naive_rate
                                  if replicated else None),
        "note": "llama-cpp-python's server decodes one request at a time (one model behind a "
                "lock) and answers one choice whatever n asks, so concurrency against one "
                "server overlaps only request handling with decoding; http_speedup_replicas "
                "spreads the requests over that many server processes (the same naive "
                "baseline against one).",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    if replicated:
        print(f"http_speedup_{args.replicas}_replicas: "
              f"{replicated['samples_per_s'] / naive_rate:.2f}")
    print(f"http_speedup: {speedup:.2f}")


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:
        return "?"


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    main()
