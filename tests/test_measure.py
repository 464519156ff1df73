"""`recal measure` end to end on the tiny model, and the report folder it writes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recal.cli import app
from recal.data.records import Question
from recal.measure import MeasureConfig, compare_collapsers, measure_run, write_report
from recal.metrics import aurc, selective_accuracy
from recal.models.base import Backend, ModelIdentity
from recal.runstore import RunStore
from recal.samples import QuestionSamples, Sample, SamplingConfig
from recal.sampling import sample_run

QUESTIONS = [Question(f"q{i}", f"{'abcd'[i % 4]}{'ab'[i % 2]} {i}?", ("a", "b")) for i in range(12)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_backend) -> RunStore:
    out = tmp_path_factory.mktemp("run")
    return sample_run(tiny_backend, QUESTIONS, out=out, progress=False,
                      config=SamplingConfig(n_samples=8, max_new_tokens=6))


def test_measure_writes_every_part_of_the_report(tiny_run, tmp_path):
    report = measure_run(tiny_run, MeasureConfig(n_resamples=50))
    folder = write_report(report, tmp_path / "report")
    names = {p.name for p in folder.iterdir()}
    assert names >= {"scores.jsonl", "metrics.json", "reliability.png", "report.md", "report.html"}
    rows = [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [q.id for q in QUESTIONS]
    for row in rows:
        assert sum(row["classes"].values()) == 8
        modal = row["scorers"]["modal_share"]
        assert modal["confidence"] == max(row["classes"].values()) / 8
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["collapse"] == "normalized" and metrics["n_questions"] == len(QUESTIONS)
    assert set(metrics["scorers"]) == set(MeasureConfig().scorers)
    smece = metrics["scorers"]["modal_share"]["smooth_ece"]
    assert smece["low"] <= smece["high"] and 0 <= smece["estimate"] <= 1
    md = (folder / "report.md").read_text()
    assert "collapsing function B**: normalized" in md and "smooth_ece" in md
    assert (folder / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The selective view: its metrics (of the scores written beside them), table and plot.
    assert (folder / "risk_coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Selective prediction" in md and "selective_accuracy_10" in md
    conf = [r["scorers"]["modal_share"]["confidence"] for r in rows]
    right = [r["scorers"]["modal_share"]["correct"] for r in rows]
    modal_metrics = metrics["scorers"]["modal_share"]
    assert modal_metrics["aurc"]["estimate"] == pytest.approx(aurc(conf, right))
    assert modal_metrics["selective_accuracy_10"]["estimate"] == pytest.approx(
        selective_accuracy(conf, right))
    assert "prr" in modal_metrics


def test_compare_collapsers_measures_the_same_samples_twice(tiny_run):
    out = compare_collapsers(tiny_run, ["normalized", "numeric"], n_resamples=20)
    assert set(out) == {"normalized", "numeric"}
    for entry in out.values():
        assert len(entry["predictions"]) == len(QUESTIONS)
        assert "smooth_ece" in entry["metrics"]


def _text_sample(text: str) -> Sample:
    return Sample(text, (1,), (-0.5,), "stop")


def test_compare_collapsers_figures_follow_from_the_classes(tmp_path):
    """Two questions whose classes under each B are worked out by hand:
    - gold 5, answers 5 / five / 5.0 / 6: both Bs see 5, 5, 5, 6: modal share 3/4, correct;
    - gold Paris, answers Paris / paris / London / "The answer is 3": normalized sees paris
      twice (share 1/2, correct); numeric sees no number three times (share 3/4, wrong)."""
    questions = [Question("five", "What is 2 + 3?", ("5",)),
                 Question("paris", "What is the capital of France?", ("Paris",))]
    store = RunStore.create_or_resume(
        tmp_path / "run", {"model": {"name": "m", "config_hash": "h"}, "style": "concise"},
        questions)
    store.append(QuestionSamples("five", tuple(map(_text_sample, ["5", "five", "5.0", "6"]))))
    store.append(QuestionSamples("paris", tuple(map(_text_sample, [
        "Paris", "paris", "London", "The answer is 3"]))))
    out = compare_collapsers(store, ["normalized", "numeric"], n_resamples=20)
    norm, num = out["normalized"], out["numeric"]
    assert [p.confidence for p in norm["predictions"]] == [0.75, 0.5]
    assert [p.correct for p in norm["predictions"]] == [True, True]
    assert [p.confidence for p in num["predictions"]] == [0.75, 0.75]
    assert [p.correct for p in num["predictions"]] == [True, False]
    assert norm["metrics"]["accuracy"]["estimate"] == 1.0
    assert num["metrics"]["accuracy"]["estimate"] == 0.5
    assert num["delta"]["accuracy"] == -0.5 and norm["delta"]["accuracy"] == 0.0
    assert num["delta"]["mean_confidence"] == pytest.approx(0.75 - 0.625)
    assert (num["correct_agreement"], num["confidence_agreement"]) == (0.5, 0.5)
    assert (norm["correct_agreement"], norm["confidence_agreement"]) == (1.0, 1.0)


def test_measure_config_rejects_bad_settings():
    with pytest.raises(KeyError, match="did you mean 'modal_share'"):
        MeasureConfig(scorers=("modal_shares",))
    with pytest.raises(ValueError, match="scorers is empty"):
        MeasureConfig(scorers=())


def test_cli_measure_samples_then_reports(tiny_model_dir, tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps(q.to_dict()) + "\n" for q in QUESTIONS[:6]))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "measure", "--model", str(tiny_model_dir), "--dataset", str(data), "--samples", "6",
        "--max-new-tokens", "6", "--out", str(out), "--no-progress", "--resamples", "30"])
    assert result.exit_code == 0, result.output
    assert "| modal_share |" in result.output
    assert (out / "report-normalized" / "report.html").exists()
    bad = CliRunner().invoke(app, ["measure", "--model", str(tiny_model_dir), "--dataset",
                                   str(data), "--collapse", "normalised", "--out", str(out)])
    assert bad.exit_code == 2 and "did you mean 'normalized'" in bad.output


def test_cli_compare_prints_both_collapsing_functions(tiny_run):
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(tiny_run.path), "--collapse", "normalized",
                                 "--collapse", "numeric", "--resamples", "20"])
    assert result.exit_code == 0, result.output
    assert "| normalized |" in result.output and "| numeric |" in result.output
    assert "(+0.000)" in result.output  # the first B against itself
    one = runner.invoke(app, ["compare", str(tiny_run.path), "--collapse", "normalized"])
    assert one.exit_code == 2 and "at least two" in one.output


class _Replies(Backend):
    """Replies "70%" to the questions with an even number and "no idea" to the others."""

    identity = ModelIdentity("replies", "chat", "test", "none", "0")

    def generate(self, question_ids, prompts, config):
        for qid in question_ids:
            text = "70%" if int(qid.strip("q")) % 2 == 0 else "no idea"
            sample = Sample(text, (1,), (-0.1,), "stop")
            yield QuestionSamples(qid, (sample,), sample)


def test_unparsed_verbal_replies_are_counted_in_the_report(tiny_run, tmp_path):
    config = MeasureConfig(scorers=("modal_share", "verbalized"), n_resamples=20)
    report = measure_run(tiny_run, config, backend=_Replies())
    verbal = report.results["verbalized"].predictions
    assert [p.confidence for p in verbal] == [0.7, 0.5] * 6  # the unread ones get the fallback
    folder = write_report(report, tmp_path / "report", diagram=False)
    note = "verbalized: 6 of 12 replies unparsed (scored 0.5)"
    assert note in (folder / "report.md").read_text()
    assert json.loads((folder / "metrics.json").read_text())["notes"] == {"verbalized": note}
    assert report.results["modal_share"].note is None
