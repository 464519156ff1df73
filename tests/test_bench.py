"""recal bench: scorers x repair methods on the same samples, peers, transfer, costs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import make_backend, spawn_logged, wait_for_lines
from typer.testing import CliRunner

from recal.bench import BenchConfig, TransferRow, run_bench, write_bench_report
from recal.cli import app
from recal.data.records import Question
from recal.models.base import Backend, ModelIdentity
from recal.prompts import Prompt
from recal.repairs import REPAIR_METHODS
from recal.samples import QuestionSamples, Sample, SamplingConfig

GOLD = ["a", "b", "c", "d", "e", "f"]  # half the tiny model's letters: right about half the time


def _write_set(path: Path, prefix: str, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"{prefix}{i}", "question":
                                        f"{'abcd'[i % 4]}{'abc'[i % 3]} {i}?", "answers": GOLD})
                            + "\n" for i in range(n)))
    return path


class ScriptedBackend(Backend):
    """A stand-in model whose miscalibration is set by the test: the modal share of question i is
    drawn at random and the modal answer is right with probability share ** power."""

    def __init__(self, power: float, seed: int = 0) -> None:
        self.power = power
        self.seed = seed
        self.identity = ModelIdentity(f"scripted-{power}", "chat", "test", "test",
                                      f"scripted{power}")

    def generate(self, question_ids: Sequence[str], prompts: Sequence[Prompt],
                 config: SamplingConfig) -> Iterator[QuestionSamples]:
        m = config.n_samples
        for qid in question_ids:
            rng = np.random.default_rng([self.seed, int(qid.strip("abcdefghijklmnopqrstuvwxyz"))])
            share = int(rng.integers(m // 2 + 1, m + 1))
            right = rng.random() < (share / m) ** self.power
            modal, other = ("a", "zz") if right else ("zz", "a")
            texts = [modal] * share + [other] * (m - share)

            def sample(text: str) -> Sample:
                return Sample(text, (1,), (-0.1,), "stop")

            yield QuestionSamples(qid, tuple(sample(t) for t in texts), sample(modal))


def _counting_loader() -> tuple[list[str], Callable[[str], Backend]]:
    """A loader of the tiny model that records each load (a stored run needs none)."""
    loads: list[str] = []

    def loader(name: str) -> Backend:
        loads.append(name)
        return make_backend(chat=False)

    return loads, loader


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    """The tiny random model benchmarked end to end on two small sets."""
    root = tmp_path_factory.mktemp("bench")
    sets = (str(_write_set(root / "one.jsonl", "o", 24)), str(_write_set(root / "two.jsonl",
                                                                          "t", 24)))
    loads, loader = _counting_loader()

    config = BenchConfig(
        models=("tiny",), datasets=sets, limit=None,
        sampling=SamplingConfig(n_samples=8, max_new_tokens=1, tau_grid=(0.8, 1.0, 1.25)),
        methods=("identity", "platt", "isotonic", "sampling_temperature"),
        peers=("netcal:isotonic", "sklearn:isotonic"),
        scorers=("modal_share", "greedy_likelihood"), n_resamples=50, out=str(root / "out"),
        progress=False)
    report = run_bench(config, loader=loader)
    write_bench_report(report)
    return config, report, loads, loader


def test_tiny_bench_runs_end_to_end(tiny_bench):
    config, report, loads, _ = tiny_bench
    out = Path(config.out)
    assert loads == ["tiny"]  # one load for both sets
    # every scorer x method, except the sampling temperature, which needs the modal share
    seen = {(r.dataset, r.scorer, r.method) for r in report.rows}
    for dataset in config.datasets:
        for scorer in config.scorers:
            for method in ("identity", "platt", "isotonic", "netcal:isotonic", "sklearn:isotonic"):
                assert (dataset, scorer, method) in seen
        assert (dataset, "modal_share", "sampling_temperature") in seen
        assert (dataset, "greedy_likelihood", "sampling_temperature") not in seen
    for row in report.rows:
        assert row.sequences_per_question == (1 if row.scorer == "greedy_likelihood" else 8)
        if row.method in ("identity", "sampling_temperature"):
            assert row.error is None, row.error
            assert len(row.arrays[0]) == 12  # judged on the held-out half only
        else:
            # the tiny random model answers nothing right (its answers are mostly empty): every
            # map that reads the labels, recal's and the peers', is refused, never shown as a
            # repair (it used to fall back to the identity silently)
            assert row.heldout is None and row.error.startswith(
                "not fitted: the calibration split has no correct answer (12 questions;"), row
    doc = json.loads((out / "bench.json").read_text())
    assert len(doc["rows"]) == len(report.rows)
    assert set(doc["runs"]) == {f"tiny/{d}" for d in config.datasets}
    assert all(r["sampling_seconds"] > 0 and r["answers"] == 24 * 9 for r in doc["runs"].values())
    md = (out / "bench.md").read_text()
    assert "| modal_share | sampling_temperature (T=" in md
    assert "| modal_share | isotonic | not fitted: the calibration split has no correct" in md
    # The selective view beside the calibration metrics; every row as wide as the header. No
    # answer is right, so AURC is 1 and PRR undefined ("-").
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert "| AUROC | AURC | PRR | acc@10% |" in table[0]
    assert {line.count("|") for line in table} == {table[0].count("|")}
    identity = next(line for line in table if line.startswith("| modal_share | identity |"))
    assert "| 1.000 | - | 0.000 |" in identity
    assert (out / "reliability-identity.png").stat().st_size > 5000


def test_bench_page_sorts_its_tables_and_shows_a_rows_diagram(tiny_bench, browser):
    config, report, _, _ = tiny_bench
    page = browser.new_page()
    page.goto((Path(config.out) / "bench.html").as_uri())
    assert page.eval("document.body.dataset.ready") == "1"
    column = "#table-0 tbody tr td:nth-child(2)"
    shown = page.eval(f"[...document.querySelectorAll('{column}')].map(e => e.textContent)")
    first = [r for r in report.rows if r.dataset == config.datasets[0]]
    assert len(shown) == len(first)
    page.click("#table-0 th:nth-child(2)")  # sort by method
    after = page.eval(f"[...document.querySelectorAll('{column}')].map(e => e.textContent)")
    assert after == sorted(shown)
    page.click("#table-0 th:nth-child(2)")  # and the other way round
    assert page.eval(f"[...document.querySelectorAll('{column}')].map(e => e.textContent)") \
        == sorted(shown, reverse=True)
    page.click("#table-0 tr.linked")
    src = page.eval("document.querySelector('figure.figure img').src")
    assert src.startswith("data:image/png;base64,")
    assert page.eval("document.querySelector('figure.figure img').naturalWidth") > 100
    assert page.errors == []


def test_second_run_reuses_the_stored_samples(tiny_bench):
    config, report, loads, loader = tiny_bench
    before = len(loads)
    again = run_bench(config, loader=loader)
    assert len(loads) == before  # nothing sampled, so no model was loaded
    first = {(r.dataset, r.scorer, r.method): r.estimate("smooth_ece") for r in report.rows}
    second = {(r.dataset, r.scorer, r.method): r.estimate("smooth_ece") for r in again.rows}
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] or np.isnan(first[k]) for k in first)


@pytest.fixture(scope="module")
def scripted_two_sets(tmp_path_factory):
    """A model overconfident by construction (right with probability share ** 4), on two sets."""
    root = tmp_path_factory.mktemp("scripted")
    sets = tuple(str(_write_set(root / f"{name}.jsonl", name[0], 200)) for name in ("one", "two"))
    config = BenchConfig(models=("over",), datasets=sets, limit=None,
                         sampling=SamplingConfig(n_samples=20), scorers=("modal_share",),
                         methods=("identity", "platt", "isotonic", "sampling_temperature"),
                         peers=("netcal:isotonic", "sklearn:isotonic"), n_resamples=50,
                         out=str(root / "out"), progress=False)
    report = run_bench(config, loader=lambda model: ScriptedBackend(4.0))
    write_bench_report(report)
    return config, report


def test_transfer_fits_on_one_set_and_judges_on_the_other(scripted_two_sets):
    config, report = scripted_two_sets
    pairs = {(t.source, t.target, t.method) for t in report.transfer}
    one, two = config.datasets
    assert (one, two, "isotonic") in pairs and (two, one, "isotonic") in pairs
    assert not any(t.method == "sampling_temperature" for t in report.transfer)  # not a map
    rows = {(r.dataset, r.method): r for r in report.rows if r.scorer == "modal_share"}
    for t in report.transfer:
        # Its reference figures are the target's own rows: no repair, and the in-domain fit.
        assert t.unrepaired == pytest.approx(rows[(t.target, "identity")].estimate("smooth_ece"))
        assert t.in_domain == pytest.approx(rows[(t.target, t.method)].estimate("smooth_ece"))
        # Both sets share one miscalibration (right with probability share ** 4): a map
        # fitted on one set repairs the other, most of the in-domain gain survives.
        if t.method == "identity":  # no repair transfers as no repair
            assert t.transferred == pytest.approx(t.unrepaired)
            continue
        assert t.transferred < t.unrepaired, t
        assert t.survival > 0.5, t


def _scripted_bench(tmp_path: Path, powers: dict[str, float], **kw) -> tuple:
    sets = {}
    for name in powers:
        sets[name] = str(_write_set(tmp_path / f"{name}.jsonl", name[0], 400))

    def loader(model: str) -> Backend:
        return ScriptedBackend(powers[model])

    config = BenchConfig(models=tuple(powers), datasets=tuple(sets.values())[:1], limit=None,
                         sampling=SamplingConfig(n_samples=20), scorers=("modal_share",),
                         methods=("identity", "temperature", "platt", "isotonic", "beta"),
                         n_resamples=100, out=str(tmp_path / "out"), progress=False,
                         diagrams=False, **kw)
    return config, run_bench(config, loader=loader)


def test_repairs_fix_a_known_overconfidence_and_match_the_peer_libraries(tmp_path):
    _, report = _scripted_bench(tmp_path, {"over": 4.0})
    by = {r.method: r for r in report.rows}
    unrepaired = by["identity"].estimate("smooth_ece")
    assert unrepaired > 0.2  # share**4: strongly overconfident
    for method in ("temperature", "platt", "isotonic", "beta", "netcal:temperature",
                   "netcal:beta", "netcal:isotonic", "sklearn:isotonic", "sklearn:platt"):
        assert by[method].estimate("smooth_ece") < unrepaired / 2, method
    # recal's isotonic map is fitted with scikit-learn: the same held-out confidences
    assert np.array_equal(by["isotonic"].arrays[0], by["sklearn:isotonic"].arrays[0])
    # one binary logistic model on logit(p); recal reads a share k/M as (k + 1/2)/(M + 1) (no
    # clipping constant), netcal clips it: the two maps differ near 1 but judge alike
    assert by["platt"].estimate("brier_score") == pytest.approx(
        by["netcal:logistic"].estimate("brier_score"), abs=0.005)
    assert by["isotonic"].family == "post-hoc" and by["sklearn:isotonic"].family == "peer"


def test_transfer_survival_tells_a_shared_miscalibration_from_a_different_one():
    same = TransferRow("m", "modal_share", "isotonic", "a", "b", unrepaired=0.30,
                       in_domain=0.05, transferred=0.07)
    other = TransferRow("m", "modal_share", "isotonic", "a", "b", unrepaired=0.30,
                        in_domain=0.05, transferred=0.40)
    assert same.survival == pytest.approx(0.92)
    assert other.survival < 0
    assert np.isnan(TransferRow("m", "s", "x", "a", "b", 0.05, 0.045, 0.06).survival)


def test_a_failing_method_is_recorded_not_fatal(tmp_path, monkeypatch):
    method = REPAIR_METHODS.get("netcal:temperature")

    def boom(*args, **kwargs):
        raise RuntimeError("optimiser diverged")

    monkeypatch.setattr(method, "fit_predict", boom)
    _, report = _scripted_bench(tmp_path, {"over": 4.0}, peers=("netcal:temperature",))
    [row] = [r for r in report.rows if r.method == "netcal:temperature"]
    assert row.heldout is None and "optimiser diverged" in row.error
    assert any(r.method == "isotonic" and r.heldout for r in report.rows)


def test_missing_named_sets_are_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("RECAL_DATA_DIR", raising=False)
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)  # no hub library either
    data = _write_set(tmp_path / "local.jsonl", "l", 8)

    def loader(model: str) -> Backend:
        return ScriptedBackend(1.0)

    config = BenchConfig(models=("s",), datasets=("triviaqa", str(data)), limit=None,
                         data_dir=str(tmp_path / "nowhere"), sampling=SamplingConfig(n_samples=4),
                         scorers=("modal_share",), methods=("identity",), peers=(),
                         n_resamples=10, out=str(tmp_path / "out"), progress=False,
                         diagrams=False)
    report = run_bench(config, loader=loader)
    assert "not available offline" in report.skipped["triviaqa"]
    assert {r.dataset for r in report.rows} == {str(data)}
    strict = BenchConfig(**{**config.__dict__, "missing_datasets": "error"})
    with pytest.raises(RuntimeError):
        run_bench(strict, loader=loader)


@pytest.mark.parametrize(("change", "message"), [
    ({"methods": ("isotonc",)}, "did you mean 'isotonic'"),
    ({"peers": ("netcal:temprature",)}, "did you mean 'netcal:temperature'"),
    ({"scorers": ("modal",)}, "unknown confidence scorer"),
    ({"models": ()}, "models is empty"),
    ({"datasets": ("builtin", "builtin")}, "names 'builtin' twice"),
    ({"limit": 2}, "limit must be at least 4"),
    ({"calibration_fraction": 1.0}, "calibration_fraction"),
    ({"tuning": {"max_epoch": 2}}, "did you mean 'max_epochs'"),
    ({"tuning": {"seed": 3}}, "set by the bench"),
    ({"tuning": {"max_epochs": 0}}, "max_epochs must be at least 1"),
    ({"tuning_datasets": ("sciq",)}, "that datasets does not"),
])
def test_bench_config_refuses_bad_settings(change, message):
    with pytest.raises((ValueError, KeyError), match=message):
        BenchConfig(**change)


def test_lora_methods_train_on_the_calibration_split_and_are_reused(tmp_path):
    """The LoRA methods on the tiny model: one row each (on the modal share), judged on the
    bench's held-out questions, restricted to tuning_datasets, and reused on a second run."""
    sets = (str(_write_set(tmp_path / "one.jsonl", "o", 16)),
            str(_write_set(tmp_path / "two.jsonl", "t", 16)))
    loads, loader = _counting_loader()

    config = BenchConfig(
        models=("tiny",), datasets=sets, limit=None,
        sampling=SamplingConfig(n_samples=6, max_new_tokens=1),
        scorers=("modal_share", "greedy_likelihood"),
        methods=("identity", "lora:confidence_head", "lora:amortised", "lora:distribution"),
        peers=(), tuning={"yes": "a", "no": "b", "max_epochs": 2, "learning_rate": 1e-2,
                          "eval_samples": 3},
        tuning_datasets=sets[:1], n_resamples=20, out=str(tmp_path / "out"), progress=False,
        diagrams=False)
    report = run_bench(config, loader=loader)
    lora = [r for r in report.rows if r.family == "lora"]
    assert sorted(r.method for r in lora) == ["lora:amortised", "lora:confidence_head",
                                              "lora:distribution"]
    identity = next(r for r in report.rows if r.method == "identity"
                    and r.scorer == "modal_share" and r.dataset == sets[0])
    for row in lora:
        assert row.error is None, row.error
        assert (row.dataset, row.scorer) == (sets[0], "modal_share")
        assert row.detail["reused"] is False and row.detail["n_train"] + row.detail["n_val"] == 8
        assert len(row.arrays[0]) == 8 and np.all((row.arrays[0] >= 0) & (row.arrays[0] <= 1))
        assert not np.array_equal(row.arrays[0], identity.arrays[0])  # its own readout
        folder = Path(config.out) / "tuned" / Path(report.runs[f"tiny/{sets[0]}"]["run"]).name
        [adapter] = folder.glob(f"{row.method.split(':')[1]}-*/adapter/recal_tuning.json")
    by = {r.method: r for r in lora}
    # the confidence head and the amortised head judge the stored modal answers; the
    # distribution method judges the tuned model's own samples (3 per question, not 6)
    assert np.array_equal(by["lora:confidence_head"].arrays[1], identity.arrays[1])
    assert by["lora:confidence_head"].sequences_per_question == 7
    assert by["lora:distribution"].sequences_per_question == 3
    assert not any(t.method.startswith("lora:") for t in report.transfer)
    from recal.results import write_results

    page = write_results(report, tmp_path / "RESULTS.md").read_text()
    assert "## LoRA methods (held out)" in page
    for row in lora:
        assert (f"| tiny | {sets[0]} | {row.method} | {row.detail['readout']} | "
                f"{row.heldout['smooth_ece'].estimate:.3f}") in page

    loads.clear()
    again = run_bench(config, loader=loader)
    assert loads == []  # samples and adapters stored: no model load
    for row in (r for r in again.rows if r.family == "lora"):
        assert row.detail["reused"] is True
        assert np.array_equal(row.arrays[0], by[row.method].arrays[0])
    changed = BenchConfig(**{**config.__dict__, "tuning": {**config.tuning, "rank": 4},
                             "methods": ("lora:amortised",)})
    [retrained] = [r for r in run_bench(changed, loader=loader).rows if r.family == "lora"]
    assert retrained.error is None, retrained.error
    assert retrained.detail["reused"] is False and loads == ["tiny"]


def test_cli_bench_on_the_tiny_model(tiny_model_dir, tmp_path):
    data = _write_set(tmp_path / "q.jsonl", "q", 12)
    result = CliRunner().invoke(app, [
        "bench", "--model", str(tiny_model_dir), "--dataset", str(data), "--limit", "12",
        "--samples", "4", "--tau-grid", "", "--methods", "identity,isotonic", "--peers", "",
        "--confidence", "modal_share", "--no-diagrams", "--out", str(tmp_path / "out"),
        "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "| modal_share | isotonic |" in result.output
    bad = CliRunner().invoke(app, ["bench", "--methods", "isotonc", "--out",
                                   str(tmp_path / "x")])
    assert bad.exit_code == 2 and "did you mean 'isotonic'" in bad.output
    for option, message in (("max_epoch=2", "did you mean 'max_epochs'"),
                            ("max_epochs", "must look like key=value")):
        bad = CliRunner().invoke(app, ["bench", "--tuning", option, "--out", str(tmp_path / "x")])
        assert bad.exit_code == 2 and message in bad.output, bad.output


def test_results_page_holds_the_headline_tables(scripted_two_sets, tmp_path):
    from recal.results import write_results

    config, report = scripted_two_sets
    path = write_results(report, tmp_path / "RESULTS.md")
    text = path.read_text()
    assert "## Headline: smooth ECE before and after repair (held out)" in text
    for dataset in config.datasets:
        assert f"| over | {dataset} | 200 |" in text
    assert "| sklearn:isotonic | peer |" in text and "## Transfer" in text
    assert (tmp_path / "img" / "bench-reliability-isotonic.png").exists()
    assert "![isotonic](img/bench-reliability-isotonic.png)" in text


def test_a_terminated_bench_keeps_its_samples_and_their_sampling_time(tiny_model_dir, tmp_path):
    """SIGTERM (kill, a scheduler's stop) mid-sampling: the answers drawn so far and the time
    they took stay on disk, and a second bench resumes from them."""
    import os
    import signal
    import subprocess
    import sys

    data = _write_set(tmp_path / "q.jsonl", "q", 60)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "recal.cli", "bench", "--model", str(tiny_model_dir),
           "--dataset", str(data), "--limit", "60", "--samples", "6", "--tau-grid", "",
           "--methods", "identity", "--peers", "", "--confidence", "modal_share",
           "--no-diagrams", "--no-transfer", "--no-progress", "--out", str(out)]
    log = tmp_path / "bench.log"
    proc = spawn_logged(cmd, log)
    samples = wait_for_lines(
        proc, lambda: next(iter(out.glob("runs/*/samples.jsonl")), None), 5, log)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    kept = samples.read_bytes().count(b"\n")
    assert 5 <= kept < 60
    [cost] = json.loads((out / "costs.json").read_text()).values()
    assert cost["answers"] == kept * 7 and cost["sampling_seconds"] > 0  # 6 samples + greedy
    resumed = subprocess.run(cmd, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    [cost] = json.loads((out / "costs.json").read_text()).values()
    assert cost["answers"] == 60 * 7


def test_a_bench_with_other_sampling_settings_never_reuses_a_stored_run(tmp_path):
    """Each setting that changes the samples gets its own run folder (issue: a bench at T = 0.5
    followed by one at T = 2.0 reported the first run's samples as the second's)."""
    from dataclasses import replace

    from recal.bench import _run_name

    data = str(_write_set(tmp_path / "q.jsonl", "q", 8))
    loads: list[str] = []

    def loader(model: str) -> Backend:
        loads.append(model)
        return ScriptedBackend(2.0)

    base = BenchConfig(models=("s",), datasets=(data,), limit=None,
                       sampling=SamplingConfig(n_samples=4), scorers=("modal_share",),
                       methods=("identity",), peers=(), n_resamples=10,
                       out=str(tmp_path / "out"), progress=False, diagrams=False, transfer=False)
    first = run_bench(base, loader=loader).runs[f"s/{data}"]["run"]
    again = run_bench(base, loader=loader).runs[f"s/{data}"]["run"]
    assert again == first and loads == ["s"]  # the same settings: reused, no model load
    seen = {first}
    for changed in (replace(base, sampling=replace(base.sampling, temperature=0.5)),
                    replace(base, sampling=replace(base.sampling, seed=1)),
                    replace(base, sampling=replace(base.sampling, max_new_tokens=7)),
                    replace(base, style="sentence")):
        run = run_bench(changed, loader=loader).runs[f"s/{data}"]["run"]
        assert run not in seen, changed
        seen.add(run)
    questions = [Question(f"q{i}", "x?", ("a",)) for i in range(4)]
    other = [Question(f"q{i}", "y?", ("a",)) for i in range(4)]
    assert _run_name("m", "d", questions, base) != _run_name("m", "d", other, base)
    two = {_run_name(f"http://127.0.0.1:{port}/v1", "d", questions, base) for port in (80, 81)}
    assert len(two) == 2 and all(name.startswith("127.0.0.1-") for name in two)


class _NumericScripted(ScriptedBackend):
    """Like ScriptedBackend, in words only a numeric B reads right: the final number is the
    gold 42 when right ("The total is 40 + 2, so 42"), 41 when wrong."""

    def generate(self, question_ids, prompts, config):
        for record in super().generate(question_ids, prompts, config):
            def numeric(s: Sample) -> Sample:
                final = 42 if s.text == "a" else 41
                return Sample(f"The total is 40 + 2, so {final}", s.token_ids, s.logprobs,
                              s.finish_reason)

            yield QuestionSamples(record.question_id, tuple(map(numeric, record.samples)),
                                  numeric(record.greedy))


def test_bench_with_two_models_on_gsm8k_uses_the_numeric_b(tmp_path):
    data = tmp_path / "gsm8k.jsonl"  # the stem names the set: GSM8K's B is numeric
    data.write_text("".join(json.dumps({"id": f"g{i}", "question": f"What is 40 + 2 ({i})?",
                                        "answers": ["42"]}) + "\n" for i in range(300)))
    powers = {"calibrated": 1.0, "overconfident": 6.0}
    config = BenchConfig(models=tuple(powers), datasets=(str(data),), limit=None,
                         sampling=SamplingConfig(n_samples=20), scorers=("modal_share",),
                         methods=("identity", "isotonic"), peers=(), n_resamples=50,
                         diagrams=False, out=str(tmp_path / "out"), progress=False)
    assert config.collapse_for(str(data)) == "numeric"
    report = run_bench(config, loader=lambda name: _NumericScripted(powers[name]))
    rows = {(r.model, r.method): r for r in report.rows}
    assert {m for m, _ in rows} == set(powers)
    for model, power in powers.items():
        # Right with probability share ** power, share uniform on 11..20 of 20: the expected
        # accuracy is the mean of (k / 20) ** power; a normalized B would grade all wrong.
        expected = np.mean([(k / 20) ** power for k in range(11, 21)])
        assert rows[(model, "identity")].accuracy_before == pytest.approx(expected, abs=0.1)
    ece = {m: rows[(m, "identity")].estimate("smooth_ece") for m in powers}
    assert ece["overconfident"] > ece["calibrated"] + 0.1
    # Each model has its own run: neither reused the other's samples.
    assert len(list((tmp_path / "out").glob("runs/*/samples.jsonl"))) == 2
