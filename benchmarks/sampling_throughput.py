"""Answers per second: recal's batched sampler against plain ``model.generate`` per question.

Both sample M answers per question at temperature T with no top-k/top-p truncation, at most
``--max-new-tokens`` tokens, stopping at EOS or at the end of the answer's line, on the same
questions of the built-in set and the same loaded model. recal runs twice: with float32 weights
(the exact model, as ``generate`` runs it) and with bfloat16 weights (recal's default on CPUs with
native bfloat16). Each method runs in a child process of this one run, so that its peak memory
(max RSS) is its own. Also measured in the same run: the machine's achievable float32 and bfloat16
matmul rates, against which decoded tokens per second are compared (2 x parameters FLOPs per
token), and what bfloat16 does to the log-probabilities: recal's float32 samples are scored again,
token by token, by both precisions (mean and 99th percentile of |difference| per token and per
answer, and the mean KL divergence of the next-token distributions).

    .venv/bin/python benchmarks/sampling_throughput.py    # M = 20, 24 questions, 32 tokens

Writes benchmarks/results/sampling_throughput.json; the last line printed is the headline.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("generate", "recal-float32", "recal-bfloat16")
RESULTS = Path(__file__).resolve().parent / "results" / "sampling_throughput.json"


def _questions(n: int):
    from recal.data.loaders import load_questions

    return load_questions("builtin", limit=n)


def _matmul_gflops(seconds: float = 3.0, dtype: str = "float32") -> float:
    import torch

    a = torch.randn(1024, 1024, dtype=getattr(torch, dtype))
    b = torch.randn(1024, 1024, dtype=getattr(torch, dtype))
    torch.mm(a, b)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        done += 1
    return 2 * 1024**3 * done / (time.perf_counter() - start) / 1e9


def run_method(method: str, model: str, n_questions: int, m: int, temperature: float,
               max_new_tokens: int) -> dict:
    import torch

    from recal.models.hf import load_transformers
    from recal.prompts import build_prompt
    from recal.samples import SamplingConfig

    if method == "precision":
        return precision(model, n_questions, temperature, max_new_tokens)
    dtype = "bfloat16" if method == "recal-bfloat16" else "float32"
    backend = load_transformers(model, dtype=dtype)
    questions = _questions(n_questions)
    prompts = [build_prompt(q, "concise", chat=backend.is_chat) for q in questions]
    config = SamplingConfig(n_samples=m, temperature=temperature, max_new_tokens=max_new_tokens,
                            greedy=False).resolved("concise", chat=backend.is_chat)
    n_params = sum(p.numel() for p in backend.model.parameters())
    start = time.perf_counter()
    answers = tokens = 0
    if method.startswith("recal"):
        for result in backend.generate([q.id for q in questions], prompts, config):
            answers += len(result.samples)
            tokens += sum(len(s.token_ids) for s in result.samples)
    else:
        tok, mdl = backend.tokenizer, backend.model
        stop_ids = sorted(backend._stop_ids)
        for prompt in prompts:
            ids = torch.tensor([backend.encode(prompt)])
            with torch.inference_mode():
                out = mdl.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                    temperature=temperature, top_k=0, top_p=1.0, num_return_sequences=m,
                    max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=stop_ids[0],
                    stop_strings=["\n"], tokenizer=tok)
            new = out[:, ids.shape[1]:]
            answers += new.shape[0]
            # tokens that carry an answer (up to and including its stop token), as recal counts
            for row in new.tolist():
                n = len(row)
                for k, t in enumerate(row):
                    if t in stop_ids or "\n" in tok.decode([t]):
                        n = k + 1
                        break
                tokens += n
    seconds = time.perf_counter() - start
    return {
        "method": method, "answers": answers, "tokens": tokens, "seconds": seconds,
        "answers_per_second": answers / seconds, "tokens_per_second": tokens / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": n_params, "dtype": dtype,
    }


def precision(model: str, n_questions: int, temperature: float, max_new_tokens: int) -> dict:
    """bfloat16 against float32 on the same answers: recal's float32 samples (4 per question)
    scored token by token by both precisions."""
    import numpy as np
    import torch

    from recal.models.hf import load_transformers
    from recal.prompts import build_prompt
    from recal.samples import SamplingConfig

    exact = load_transformers(model, dtype="float32")
    fast = load_transformers(model, dtype="bfloat16")
    questions = _questions(n_questions)
    prompts = [build_prompt(q, "concise", chat=exact.is_chat) for q in questions]
    config = SamplingConfig(n_samples=4, temperature=temperature, max_new_tokens=max_new_tokens,
                            greedy=False).resolved("concise", chat=exact.is_chat)
    token_diff, answer_diff, kl = [], [], []
    with torch.inference_mode():
        prompt_of = {q.id: p for q, p in zip(questions, prompts, strict=True)}
        for result in exact.generate([q.id for q in questions], prompts, config):  # any order
            prompt = exact.encode(prompt_of[result.question_id])
            for sample in result.samples:
                ids = torch.tensor([prompt + list(sample.token_ids)])
                target = torch.tensor(sample.token_ids)[:, None]
                rows = slice(len(prompt) - 1, ids.shape[1] - 1)
                ref = torch.log_softmax(exact.model(ids).logits[0, rows].float(), -1)
                low = torch.log_softmax(fast.model(ids).logits[0, rows].float(), -1)
                diff = (low.gather(1, target) - ref.gather(1, target))[:, 0]
                token_diff += diff.abs().tolist()
                answer_diff.append(abs(float(diff.sum())))
                kl += (ref.exp() * (ref - low)).sum(-1).tolist()
    return {"method": "precision", "tokens": len(token_diff), "answers": len(answer_diff),
            "token_abs_diff_mean": float(np.mean(token_diff)),
            "token_abs_diff_p99": float(np.percentile(token_diff, 99)),
            "answer_abs_diff_mean": float(np.mean(answer_diff)),
            "answer_abs_diff_p99": float(np.percentile(answer_diff, 99)),
            "next_token_kl_mean": float(np.mean(kl))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)  # recal's concise default
    parser.add_argument("--child", choices=list(METHODS) + ["precision"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = [args.model, args.questions, args.samples, args.temperature, args.max_new_tokens]
    if args.child:
        print(json.dumps(run_method(args.child, *settings)))
        return

    # Load once here so that the children find the converted cache warm; every child and the
    # matmul rates use the same thread count (the idle cores now, as recal chooses them).
    import os

    import torch

    from recal.models.hf import choose_threads, load_transformers

    threads = choose_threads()
    load_transformers(args.model)
    torch.set_num_threads(threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    gflops = {d: _matmul_gflops(dtype=d) for d in ("float32", "bfloat16")}
    results = {}
    for method in (*METHODS, "precision"):
        cmd = [sys.executable, __file__, "--child", method, "--model", args.model,
               "--questions", str(args.questions), "--samples", str(args.samples),
               "--temperature", str(args.temperature), "--max-new-tokens",
               str(args.max_new_tokens)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"the {method} run failed:\n{proc.stderr[-3000:]}")
        results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
        if method == "precision":
            continue
        print(f"{method:>14}: {results[method]['answers_per_second']:.1f} answers/s, "
              f"{results[method]['tokens_per_second']:.0f} tokens/s, "
              f"peak RSS {results[method]['peak_rss_mb']:.0f} MB", flush=True)
    precision_row = results.pop("precision")
    params = results["recal-float32"]["parameters"]
    for r in results.values():
        r["roofline_fraction"] = r["tokens_per_second"] * 2 * params / (gflops[r["dtype"]] * 1e9)
    base = results["generate"]
    speedups = {k: r["answers_per_second"] / base["answers_per_second"]
                for k, r in results.items() if k != "generate"}
    memory = {k: r["peak_rss_mb"] / base["peak_rss_mb"] for k, r in results.items()}
    summary = {
        "settings": {"model": args.model, "questions": args.questions, "samples": args.samples,
                     "temperature": args.temperature, "max_new_tokens": args.max_new_tokens},
        "threads": threads, "matmul_gflops": gflops, "results": results,
        "speedup_vs_generate": speedups,
        "peak_memory_vs_generate": memory, "bfloat16_vs_float32": precision_row,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{threads} torch thread(s) for every method and for the matmul rates")
    for k in speedups:
        print(f"{k}: {speedups[k]:.2f}x generate's answers/s, decoding at "
              f"{results[k]['roofline_fraction']:.0%} of the {results[k]['dtype']} matmul rate "
              f"({gflops[results[k]['dtype']]:.0f} GFLOP/s), peak memory {memory[k]:.2f}x")
    print(f"generate decodes at {base['roofline_fraction']:.0%} of the float32 matmul rate")
    print(f"bfloat16 vs float32 log-probabilities: mean |diff| "
          f"{precision_row['token_abs_diff_mean']:.3f} nats per token (p99 "
          f"{precision_row['token_abs_diff_p99']:.3f}), {precision_row['answer_abs_diff_mean']:.3f}"
          f" per answer; next-token KL {precision_row['next_token_kl_mean']:.1e}")
    print(f"sampling_speedup_vs_generate: {speedups['recal-bfloat16']:.2f}")


if __name__ == "__main__":
    main()
