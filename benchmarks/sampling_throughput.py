"""Answers per second: recal's batched sampler against plain ``model.generate`` per question.

Both sample M answers per question at temperature T with no top-k/top-p truncation, at most
``--max-new-tokens`` tokens, stopping at EOS or at the end of the answer's line, on the same
questions of the built-in set and the same loaded model. Each method runs in a child process of
this one run, so that its peak memory (max RSS) is its own. Also measured in the same run: the
machine's achievable float32 matmul rate, against which decoded tokens per second are compared
(2 x parameters FLOPs per token).

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

RESULTS = Path(__file__).resolve().parent / "results" / "sampling_throughput.json"


def _questions(n: int):
    from recal.data.loaders import load_questions

    return load_questions("builtin", limit=n)


def _matmul_gflops(seconds: float = 3.0) -> float:
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
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

    backend = load_transformers(model)
    questions = _questions(n_questions)
    prompts = [build_prompt(q, "concise", chat=backend.is_chat) for q in questions]
    config = SamplingConfig(n_samples=m, temperature=temperature, max_new_tokens=max_new_tokens,
                            greedy=False).resolved("concise", chat=backend.is_chat)
    n_params = sum(p.numel() for p in backend.model.parameters())
    start = time.perf_counter()
    answers = tokens = 0
    if method == "recal":
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
        "parameters": n_params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)  # recal's concise default
    parser.add_argument("--child", choices=["recal", "generate"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = [args.model, args.questions, args.samples, args.temperature, args.max_new_tokens]
    if args.child:
        print(json.dumps(run_method(args.child, *settings)))
        return

    # Load once here so that both children find the converted cache warm.
    from recal.models.hf import load_transformers

    load_transformers(args.model)
    gflops = _matmul_gflops()
    results = {}
    for method in ("generate", "recal"):
        cmd = [sys.executable, __file__, "--child", method, "--model", args.model,
               "--questions", str(args.questions), "--samples", str(args.samples),
               "--temperature", str(args.temperature), "--max-new-tokens",
               str(args.max_new_tokens)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"the {method} run failed:\n{proc.stderr[-3000:]}")
        results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{method:>9}: {results[method]['answers_per_second']:.1f} answers/s, "
              f"{results[method]['tokens_per_second']:.0f} tokens/s, "
              f"peak RSS {results[method]['peak_rss_mb']:.0f} MB", flush=True)
    params = results["recal"]["parameters"]
    for r in results.values():
        r["roofline_fraction"] = r["tokens_per_second"] * 2 * params / (gflops * 1e9)
    speedup = results["recal"]["answers_per_second"] / results["generate"]["answers_per_second"]
    summary = {
        "settings": {"model": args.model, "questions": args.questions, "samples": args.samples,
                     "temperature": args.temperature, "max_new_tokens": args.max_new_tokens},
        "matmul_gflops": gflops, "results": results, "speedup": speedup,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"matmul roofline: {gflops:.1f} GFLOP/s; recal decodes at "
          f"{results['recal']['roofline_fraction']:.1%} of it, generate at "
          f"{results['generate']['roofline_fraction']:.1%}")
    print(f"sampling_speedup_vs_generate: {speedup:.2f}")


if __name__ == "__main__":
    main()
