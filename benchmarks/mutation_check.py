"""Mutation check of recal's core: do the tests notice when the code is wrong?

Single mutations, one at a time, in the functions of the core modules (metrics, recalibrators,
confidence scorers, run store, normalisation):

- ``flip``: a comparison turned round (``<`` -> ``>=``, ``<=`` -> ``>``, ``==`` -> ``!=``, ...);
- ``op``: an arithmetic operator swapped (``+`` <-> ``-``, ``*`` <-> ``/``);
- ``drop``: a term dropped from a sum or difference (``a + b`` -> ``a``);
- ``const``: a numeric constant changed (``0`` -> ``1``, ``c`` -> ``c + 1`` for integers, ``c``
  -> ``c * 1.5`` for floats; booleans negated), except ``strict=`` and ``stacklevel=``
  arguments (equivalent by construction).

Each mutant is written into a temporary copy of the package (the worktree is never touched),
and the fast test files of that module run against it (``pytest -x``, a timeout per mutant). A
mutant is *killed* when a test fails or the run times out, *survives* when every test passes.
The unmutated copy is checked first: its tests must pass, or the check refuses to run.

Mutants are sampled (seeded) when there are more than ``--max-mutants``; the sample is spread
over the modules in proportion to their number of candidates. Some surviving mutants are
equivalent to the original (no test can kill them); they are listed for reading.

Writes benchmarks/results/mutation_check.json; the last line printed is
``mutants_killed: SHARE``.

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/mutation_check.py --max-mutants 70
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutation_check.json"

# module (relative to the repository) -> the fast test files that cover it
TARGETS: dict[str, tuple[str, ...]] = {
    "recal/metrics/point.py": ("tests/test_metrics.py",),
    "recal/metrics/binned.py": ("tests/test_metrics.py",),
    "recal/metrics/smooth.py": ("tests/test_metrics.py",),
    "recal/metrics/validation.py": ("tests/test_metrics.py",),
    "recal/metrics/resampling.py": ("tests/test_metrics.py", "tests/test_intervals.py"),
    "recal/metrics/intervals.py": ("tests/test_intervals.py", "tests/test_metrics.py"),
    "recal/metrics/paired.py": ("tests/test_paired.py",),
    "recal/calibrators/platt.py": ("tests/test_calibrators.py",),
    "recal/calibrators/temperature.py": ("tests/test_calibrators.py",),
    "recal/calibrators/isotonic.py": ("tests/test_calibrators.py",),
    "recal/calibrators/histogram.py": ("tests/test_calibrators.py",),
    "recal/calibrators/beta.py": ("tests/test_calibrators.py",),
    "recal/calibrators/_numeric.py": ("tests/test_calibrators.py",),
    "recal/confidence.py": ("tests/test_confidence.py", "tests/test_discrete_confidence.py"),
    "recal/runstore.py": ("tests/test_runstore.py",),
    "recal/semantic/normalize.py": ("tests/test_semantic.py",
                                    "tests/test_normalisation_table.py"),
}
# Slow tests left out of every mutant's run (they start subprocesses); named in the report.
DESELECT = ("sigkill",)

_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt,
         ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
         ast.In: ast.NotIn, ast.NotIn: ast.In}
_OP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the index-th mutation point of the module, in walk order
    kind: str
    line: int
    description: str


def _in_functions(tree: ast.Module) -> set[int]:
    """ids of the nodes inside function bodies (not their signatures or decorators)."""
    inside: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for stmt in fn.body:
                if (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                        and isinstance(stmt.value.value, str)):
                    continue  # a docstring
                inside.update(id(n) for n in ast.walk(stmt))
    return inside


def _points(tree: ast.Module) -> list[tuple[ast.AST, str, int, str]]:
    """(node, kind, variant, description) for every mutation point of the module."""
    inside = _in_functions(tree)
    skip: set[int] = set()
    for node in ast.walk(tree):  # text of messages and f-strings is not behaviour
        if isinstance(node, (ast.JoinedStr, ast.AnnAssign)):
            skip.update(id(n) for n in ast.walk(node))
        # zip(..., strict=True) -> False and warn(..., stacklevel=2) -> 3 change nothing where
        # the lengths agree: equivalent mutants by construction, left out.
        if isinstance(node, ast.keyword) and node.arg in ("strict", "stacklevel"):
            skip.update(id(n) for n in ast.walk(node))
    out: list[tuple[ast.AST, str, int, str]] = []
    for node in ast.walk(tree):
        if id(node) not in inside or id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                if type(op) in _FLIP:
                    out.append((node, "flip", k, f"{type(op).__name__} -> "
                                f"{_FLIP[type(op)].__name__}"))
        elif isinstance(node, ast.BinOp) and type(node.op) in _OP:
            out.append((node, "op", 0, f"{type(node.op).__name__} -> "
                        f"{_OP[type(node.op)].__name__}"))
            if isinstance(node.op, (ast.Add, ast.Sub)):
                out.append((node, "drop", 0, "drop the right-hand term"))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            out.append((node, "const", 0, f"change {node.value!r}"))
    return out


def _mutate(node: ast.AST, kind: str, variant: int) -> ast.AST:
    """The replacement for ``node`` (mutating it in place where that is simpler)."""
    if kind == "flip":
        node.ops[variant] = _FLIP[type(node.ops[variant])]()
        return node
    if kind == "op":
        node.op = _OP[type(node.op)]()
        return node
    if kind == "drop":
        return node.left
    value = node.value
    if isinstance(value, bool):
        new: object = not value
    elif isinstance(value, int):
        new = value + 1
    else:
        new = 1.0 if value == 0 else value * 1.5
    return ast.copy_location(ast.Constant(new), node)


def mutated_source(source: str, index: int) -> str:
    """``source`` with its index-th mutation point mutated (unparsed from the syntax tree)."""
    tree = ast.parse(source)
    node, kind, variant, _ = _points(tree)[index]
    replacement = _mutate(node, kind, variant)
    if replacement is not node:
        for parent in ast.walk(tree):
            for field, value in ast.iter_fields(parent):
                if value is node:
                    setattr(parent, field, replacement)
                elif isinstance(value, list):
                    for i, item in enumerate(value):
                        if item is node:
                            value[i] = replacement
    return ast.unparse(ast.fix_missing_locations(tree))


def list_mutants(root: Path) -> list[Mutant]:
    mutants = []
    for module in TARGETS:
        tree = ast.parse((root / module).read_text(encoding="utf-8"))
        for i, (node, kind, _, text) in enumerate(_points(tree)):
            mutants.append(Mutant(module, i, kind, getattr(node, "lineno", 0), text))
    return mutants


def sample(mutants: list[Mutant], limit: int, seed: int) -> list[Mutant]:
    """At most ``limit`` mutants, spread over modules in proportion to their candidates."""
    if len(mutants) <= limit:
        return mutants
    rng = random.Random(seed)
    by_module: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_module.setdefault(m.module, []).append(m)
    chosen: list[Mutant] = []
    for ms in by_module.values():
        k = max(1, round(limit * len(ms) / len(mutants)))
        chosen.extend(rng.sample(ms, min(k, len(ms))))
    return sorted(chosen, key=lambda m: (m.module, m.index))


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float]:
    """"pass", "fail" or "timeout" for the tests run against the copy, and the seconds taken."""
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "--no-header", "-k", " and ".join(f"not {d}" for d in DESELECT),
           *[str(copy / t) for t in tests]]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start
    return ("pass" if proc.returncode == 0 else "fail"), time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-mutants", type=int, default=70)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="most seconds per mutant's test run (a timeout counts as killed)")
    parser.add_argument("--only", default="", help="comma-separated module paths")
    args = parser.parse_args()

    targets = [m for m in TARGETS if not args.only or m in args.only.split(",")]
    all_mutants = [m for m in list_mutants(ROOT) if m.module in targets]
    chosen = sample(all_mutants, args.max_mutants, args.seed)
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="recal-mutants-") as tmp:
        copy = Path(tmp)
        shutil.copytree(ROOT / "recal", copy / "recal",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "tests", copy / "tests",
                        ignore=shutil.ignore_patterns("__pycache__"))
        # Baseline: the unmutated copy must pass each module's tests; a mutant's run may take
        # four times as long as the baseline (at least 30 s, at most --timeout) before it
        # counts as a timeout (an infinite loop, say).
        limits: dict[tuple[str, ...], float] = {}
        for tests in sorted({TARGETS[m] for m in targets}):
            outcome, seconds = run_tests(copy, tests, args.timeout * 3)
            print(f"baseline {', '.join(tests)}: {outcome} ({seconds:.0f} s)", flush=True)
            if outcome != "pass":
                raise SystemExit(f"the unmutated tests {tests} do not pass: fix them first")
            limits[tests] = min(args.timeout, max(30.0, 4 * seconds))
        for n, m in enumerate(chosen, 1):
            path = copy / m.module
            original = path.read_text(encoding="utf-8")
            path.write_text(mutated_source(original, m.index), encoding="utf-8")
            try:
                outcome, seconds = run_tests(copy, TARGETS[m.module], limits[TARGETS[m.module]])
            finally:
                path.write_text(original, encoding="utf-8")
            killed = outcome != "pass"
            results.append({**asdict(m), "outcome": outcome, "killed": killed,
                            "seconds": round(seconds, 1)})
            print(f"[{n}/{len(chosen)}] {m.module}:{m.line} {m.kind} {m.description}: "
                  f"{'killed' if killed else 'SURVIVED'} ({outcome}, {seconds:.0f} s)",
                  flush=True)
    killed = sum(r["killed"] for r in results)
    share = killed / len(results) if results else float("nan")
    per_module = {}
    for module in targets:
        rows = [r for r in results if r["module"] == module]
        if rows:
            per_module[module] = {"mutants": len(rows), "killed": sum(r["killed"] for r in rows),
                                  "candidates": sum(m.module == module for m in all_mutants)}
    report = {
        "what": "share of single mutations of recal's core that the fast tests kill",
        "candidates": len(all_mutants), "sampled": len(results), "seed": args.seed,
        "max_mutants": args.max_mutants, "timeout_s": args.timeout,
        "deselected_tests": list(DESELECT), "killed": killed, "share_killed": share,
        "timeouts": sum(r["outcome"] == "timeout" for r in results),
        "seconds": round(time.monotonic() - started, 1), "per_module": per_module,
        "survivors": [r for r in results if not r["killed"]], "mutants": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    print(f"{killed} of {len(results)} mutants killed ({len(all_mutants)} candidates); "
          f"survivors in {RESULTS.relative_to(ROOT)}")
    print(f"mutants_killed: {share:.3f}")


if __name__ == "__main__":
    main()
