"""Model output is arbitrary Unicode: every file recal writes reads back exactly.

``str.splitlines`` breaks at U+2028, U+2029, U+0085, \\x0b, \\x0c and \\x1c-\\x1e; JSON written with
``ensure_ascii=False`` keeps the first three raw. These tests write such text through the real
run store, report and scorer artifact and read it back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recal.calibrators import get_recalibrator
from recal.cli import app
from recal.data.records import Question
from recal.lines import first_line, iter_jsonl, split_lines
from recal.measure import MeasureConfig, measure_run, write_report
from recal.runstore import RunFormatError, RunStore
from recal.samples import QuestionSamples, Sample
from recal.scorer import CalibratedScorer, load_scorer
from recal.semantic.normalize import extract_answer

# Every character str.splitlines breaks at, and other text a model or a dataset can hold.
SEPARATORS = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e\r"
AWKWARD = SEPARATORS + "\x00\u200f\u202e\u0301\U0001f600\ufeff\ud7ff\ue000\uffff"

def _manifest(n_samples: int) -> dict:
    """A run store's manifest for records of ``n_samples`` samples each (the store checks it)."""
    return {**MANIFEST, "sampling": {**MANIFEST["sampling"], "n_samples": n_samples}}


MANIFEST = {"model": {"name": "m", "kind": "chat", "backend": "test", "config_hash": "h"},
            "style": "concise", "shots": 0,
            "questions": {"count": 1, "dataset": "d\u2028", "hash": "x"},
            "sampling": {"n_samples": 2, "temperature": 1.0}}


def _sample(text: str) -> Sample:
    return Sample(text=text, token_ids=(1, 2), logprobs=(-0.5, -0.25), finish_reason="eos")


def _record(qid: str, texts: list[str]) -> QuestionSamples:
    return QuestionSamples(qid, tuple(_sample(t) for t in texts), greedy=_sample(texts[0]))


def test_a_sampled_line_separator_does_not_split_a_record(tmp_path):
    """The regression behind the README's first command failing after 30 minutes."""
    question = Question("q0", "Capital of France?", ("Paris",))
    store = RunStore.create_or_resume(tmp_path / "run", _manifest(4), [question])
    texts = ["Paris\u2028France", "Paris\u0085", "Lyon\u2029", "Paris"]
    store.append(_record("q0", texts))
    raw = (tmp_path / "run" / "samples.jsonl").read_text(encoding="utf-8")
    assert "\u2028" in raw and "\u0085" in raw  # written raw: the reader must cope
    assert len(raw.splitlines()) > 1  # what the old reader split on
    again = RunStore.open(tmp_path / "run")
    (record,) = list(again)
    assert [s.text for s in record.samples] == texts and record.greedy.text == texts[0]
    report = measure_run(again, MeasureConfig(scorers=("modal_share",), n_resamples=20))
    (item,) = report.items
    # "Paris\u2028France" is one line, so the answer span is the whole text up to the sentence end
    assert report.results["modal_share"].predictions[0].answer == "paris"
    assert sum(count for _, count in item.counts()) == len(texts)


def test_a_run_written_by_the_previous_writer_opens_unchanged(tmp_path):
    """Runs written before the fix (ensure_ascii=False) read without any migration."""
    question = Question("q0", "Q\u2028?", ("a\u0085",))
    store = RunStore.create_or_resume(tmp_path, _manifest(2), [question])
    record = _record("q0", ["a\u2028b", "c"])
    (tmp_path / "questions.jsonl").write_text(
        json.dumps(question.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_path / "samples.jsonl").write_text(
        json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n",
        encoding="utf-8")
    assert store.questions() == [question]
    assert list(RunStore.open(tmp_path)) == [record]


def test_a_damaged_line_is_named_and_a_partial_tail_is_not_a_record(tmp_path):
    store = RunStore.create_or_resume(tmp_path, _manifest(1), [Question("q0", "Q?", ("a",))])
    store.append(_record("q0", ["a\u2028"]))
    with (tmp_path / "samples.jsonl").open("ab") as f:
        f.write(b'{"id": "q1", "samples": [')  # a writer killed mid-line
    assert [r.question_id for r in RunStore.open(tmp_path)] == ["q0"]
    with (tmp_path / "samples.jsonl").open("ab") as f:
        f.write(b"\n\xff\xfe\n")
    with pytest.raises(RunFormatError, match=r"samples.jsonl line 2: damaged record"):
        list(RunStore.open(tmp_path))
    (tmp_path / "samples.jsonl").write_bytes(
        (tmp_path / "samples.jsonl").read_bytes().split(b"\n")[0] + b"\n\xff\n")
    with pytest.raises(RunFormatError, match=r"line 2: not UTF-8"):
        list(RunStore.open(tmp_path))


def test_one_definition_of_a_line_in_model_output():
    assert split_lines("a\u2028b\nc\u0085d") == ["a\u2028b", "c\u0085d"]
    assert first_line("x\u2029y\nz") == "x\u2029y"
    # answer extraction takes the first line at "\n" only
    assert extract_answer("Paris\nLyon") == "Paris"
    assert extract_answer("Paris\u2028Lyon\nRome") == "Paris\u2028Lyon"


def test_iter_jsonl_reads_the_bytes_it_was_given(tmp_path):
    file = tmp_path / "x.jsonl"
    file.write_bytes("\ufeff".encode() + b'{"a": "\xe2\x80\xa8"}\n\n{"b": 1}\n{"c"')
    assert list(iter_jsonl(file)) == [(1, {"a": "\u2028"}), (3, {"b": 1})]


unicode_text = st.text(
    alphabet=st.one_of(st.sampled_from(AWKWARD), st.characters(codec="utf-8")),
    min_size=1, max_size=40,
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=unicode_text, gold=st.lists(unicode_text, min_size=1, max_size=3),
       texts=st.lists(unicode_text, min_size=2, max_size=4), name=unicode_text)
@example(question="\u2028" * 10_000, gold=["\x00" + "\u0301" * 5000], name="\u202e" * 10_000,
         texts=["\U0001f600\u2029" * 5000, "\x1c\x1d\x1e\x85" * 2500])
def test_any_unicode_round_trips_through_every_file(tmp_path_factory, question, gold, texts,
                                                    name):
    folder = tmp_path_factory.mktemp("u")
    # a question and its gold answers need some text that is not whitespace
    q = Question("q\u2028" + name, "Q" + question, tuple("A" + g for g in gold),
                 metadata={"note": name})
    record = _record(q.id, texts)
    store = RunStore.create_or_resume(folder / "run", _manifest(len(texts)), [q])
    store.append(record)
    again = RunStore.open(folder / "run")
    assert again.questions() == [q]
    assert list(again) == [record]

    report = measure_run(again, MeasureConfig(scorers=("modal_share",), n_resamples=5))
    out = write_report(report, folder / "report", diagram=False)
    ((_, row),) = list(iter_jsonl(out / "scores.jsonl"))
    assert (row["id"], row["question"], row["gold"]) == (q.id, q.question, list(q.answers))
    assert sum(row["classes"].values()) == len(texts)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["run"] == report.run and metrics["n_questions"] == 1

    scorer = CalibratedScorer(
        recalibrator=get_recalibrator("identity").fit([0.2, 0.8], [0, 1]),
        collapse="normalized", scorer="modal_share", style="concise",
        sampling={"n_samples": 2, "temperature": 1.0}, model={"name": name, "kind": "chat"},
        metrics={"note": texts[0]})
    scorer.save(folder / "scorer")
    loaded = load_scorer(folder / "scorer")
    assert loaded.model == scorer.model and loaded.metrics == scorer.metrics


def test_recal_measure_end_to_end_on_unicode_questions(tiny_model_dir, tmp_path):
    # inside the text: the loader strips whitespace (U+2028 among it) around ids and answers
    questions = [Question(f"q{i}\u2028x", f"a{i}\u2028b\u0085c\u202e? \U0001f600",
                          ("a\u2029z", "b\x00")) for i in range(4)]
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps(q.to_dict(), ensure_ascii=False) + "\n"
                            for q in questions), encoding="utf-8")
    out = tmp_path / "run"
    args = ["measure", "--model", str(tiny_model_dir), "--dataset", str(data), "--samples", "4",
            "--max-new-tokens", "4", "--out", str(out), "--no-progress", "--resamples", "10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    store = RunStore.open(out)
    assert store.questions() == questions
    assert sorted(store.done_ids()) == sorted(q.id for q in questions)
    rows = [row for _, row in iter_jsonl(Path(out) / "report-normalized" / "scores.jsonl")]
    assert [(r["id"], r["question"]) for r in rows] == [(q.id, q.question) for q in questions]
    # a second measure reuses the stored run and reports the same numbers
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert sorted(store.done_ids()) == sorted(q.id for q in questions)
