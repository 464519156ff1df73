"""`recal import` (recal.importing) and questions without gold answers (issue 15, items 1-2).

Expected values come from the files the tests write: the samples put in, the ids, the lines a
fault is on; the label-free figures from counting by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recal.cli import app
from recal.data import DataFormatError, load_questions
from recal.grades import UngradedError
from recal.importing import ImportFormatError, ImportSettings, import_run
from recal.runstore import RunStore

runner = CliRunner()


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def recal_rows(n: int = 8, m: int = 4, graded: bool = True) -> list[dict]:
    """Question i: (i % 4) + 1 of its m samples say 'yes', the others 'no'; gold 'yes'."""
    rows = []
    for i in range(n):
        right = (i % 4) + 1
        row = {"id": f"q{i}", "question": f"Is {i} a number?",
               "samples": ["yes"] * right + ["no"] * (m - right)}
        if graded:
            row["answers"] = ["yes"]
        rows.append(row)
    return rows


# -- questions without gold answers ---------------------------------------------------------------

def test_a_question_file_without_answers_is_an_ungraded_set(tmp_path):
    qs = load_questions(jsonl(tmp_path / "q.jsonl", [{"question": "A?"}, {"question": "B?"}]))
    assert [(q.question, q.answers, q.labelled) for q in qs] == [("A?", (), False),
                                                                  ("B?", (), False)]
    (tmp_path / "q.csv").write_text("id,question\n1,A?\n2,B?\n", encoding="utf-8")
    assert [q.id for q in load_questions(tmp_path / "q.csv")] == ["1", "2"]
    with pytest.raises(ValueError, match="no gold answer"):
        _ = qs[0].answer


def test_a_text_file_is_one_prompt_per_line_split_at_newline_only(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes("First?\r\nSecond\u2028still second?\n\nThird\x85too?".encode())
    qs = load_questions(path)
    assert [q.question for q in qs] == ["First?", "Second\u2028still second?", "Third\x85too?"]
    assert [q.id for q in qs] == ["prompts-0000", "prompts-0001", "prompts-0002"]
    assert not any(q.labelled for q in qs)


def test_a_file_mixing_graded_and_ungraded_rows_is_refused_at_the_row(tmp_path):
    path = jsonl(tmp_path / "mix.jsonl", [{"question": "A?", "answer": "a"}, {"question": "B?"}])
    with pytest.raises(DataFormatError) as info:
        load_questions(path)
    assert str(info.value).startswith(f"{path} line 2: no gold answer") and "line 1" in str(
        info.value)


def test_sampling_and_collapsing_work_on_ungraded_questions(tmp_path, tiny_chat_backend):
    from recal.confidence import classify_run
    from recal.samples import SamplingConfig
    from recal.sampling import sample_run
    from recal.semantic import get_collapser

    qs = load_questions(jsonl(tmp_path / "q.jsonl", [{"question": "A?"}, {"question": "B?"}]))
    store = sample_run(tiny_chat_backend, qs, out=tmp_path / "run", progress=False,
                       config=SamplingConfig(n_samples=3, max_new_tokens=4, greedy=False))
    items = classify_run(RunStore.open(store.path), get_collapser("normalized"))
    assert [len(i.labels) for i in items] == [3, 3]
    assert not any(i.question.labelled for i in items)


def test_measure_reports_the_label_free_parts_of_an_ungraded_run(tmp_path):
    run = tmp_path / "run"
    import_run(jsonl(tmp_path / "a.jsonl", recal_rows(graded=False)), run, format="recal")
    result = runner.invoke(app, ["measure", "--run", str(run), "--resamples", "50"])
    assert result.exit_code == 0, result.output
    assert "calibration needs grades" in result.output
    summary = json.loads((run / "report-normalized" / "summary.json").read_text())
    # modal shares 1/4 is a tie with 'no' (3/4 'no'), so: 3/4, 2/4 (tie: first seen), 3/4, 4/4
    modal = summary["confidence"]["modal_share"]
    assert modal["n"] == 8 and modal["mean"] == pytest.approx((0.75 + 0.5 + 0.75 + 1.0) / 4)
    assert summary["classes"]["classes_per_question"] == {"1": 2, "2": 6}
    assert summary["graded"] is False and "accuracy" not in json.dumps(summary["confidence"])


@pytest.mark.parametrize("command", [["fit"], ["export", "--method", "platt"]])
def test_fit_and_export_refuse_an_ungraded_run_in_one_line(tmp_path, command):
    run = tmp_path / "run"
    import_run(jsonl(tmp_path / "a.jsonl", recal_rows(graded=False)), run, format="recal")
    result = runner.invoke(app, [*command, str(run), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "8 of 8 questions have no gold answers" in line


def test_the_bench_refuses_an_ungraded_set_before_loading_a_model(tmp_path):
    from recal.bench import BenchConfig, run_bench

    path = tmp_path / "p.txt"
    path.write_text("".join(f"Prompt {i}?\n" for i in range(6)))

    def loader(name):
        raise AssertionError("no model should load")

    with pytest.raises(UngradedError, match="the bench needs graded questions"):
        run_bench(BenchConfig(datasets=(str(path),), out=str(tmp_path / "b"), progress=False),
                  loader=loader)


# -- the three formats ----------------------------------------------------------------------------

def test_recal_format_imports_and_records_what_it_was_told(tmp_path):
    rows = recal_rows()
    rows[0]["samples"][0] = {"text": "yes", "logprobs": [-0.5], "finish_reason": "length"}
    store = import_run(jsonl(tmp_path / "a.jsonl", rows), tmp_path / "run", format="recal",
                       settings=ImportSettings(model="m1", temperature=0.7))
    records = store.samples_by_id()
    assert [s.text for s in records["q2"].samples] == ["yes", "yes", "yes", "no"]
    assert records["q0"].samples[0].logprobs == (-0.5,)
    assert records["q0"].samples[0].finish_reason == "length"
    m = store.manifest
    assert m["model"]["name"] == "m1" and m["sampling"]["temperature"] == 0.7
    assert m["model"]["kind"] == "unknown" and m["sampling"]["max_new_tokens"] == "unknown"
    assert m["sampling"]["n_samples"] == 4 and m["sampling"]["logprobs"] is False
    assert m["source"]["format"] == "recal" and m["style"] == "unknown"


def test_an_imported_run_is_measured_fitted_and_exported(tmp_path):
    rows = recal_rows(n=40)
    for row in rows:
        row["greedy"] = {"text": "yes", "logprobs": [-0.3, -0.1]}
        row["samples"] = [{"text": t, "logprobs": [-1.0]} for t in row["samples"]]
    run = tmp_path / "run"
    import_run(jsonl(tmp_path / "a.jsonl", rows), run, format="recal")
    result = runner.invoke(app, ["measure", "--run", str(run), "--resamples", "50"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "report-normalized" / "metrics.json").read_text())
    # the modal class is 'yes' exactly when 3 or 4 of the 4 samples say it (i % 4 >= 2); the
    # 2-2 tie goes to 'yes', seen first: accuracy 30/40
    assert metrics["scorers"]["modal_share"]["accuracy"]["estimate"] == pytest.approx(0.75)
    assert "greedy_likelihood" in metrics["scorers"]  # log-probs were given
    assert runner.invoke(app, ["fit", str(run), "--resamples", "50"]).exit_code == 0
    result = runner.invoke(app, ["export", str(run), "--method", "platt", "--out",
                                 str(tmp_path / "scorer")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "scorer" / "scorer.json").read_text())["model"]["backend"] \
        == "import"


def test_scorers_that_need_log_probs_or_the_model_refuse_on_an_import_without_them(tmp_path):
    run = tmp_path / "run"
    import_run(jsonl(tmp_path / "a.jsonl", recal_rows()), run, format="recal")
    for scorer, words in (("greedy_likelihood", "greedy answer"), ("verbalized", "the model"),
                          ("p_true", "the model")):
        result = runner.invoke(app, ["measure", "--run", str(run), "--confidence", scorer])
        assert result.exit_code == 2 and words in result.output
        assert "imported from recal" in result.output
    result = runner.invoke(app, ["fit", str(run), "--confidence", "greedy_likelihood"])
    assert result.exit_code == 2 and "lacks" in result.output
    # the default list leaves them out, saying why, and reports the others
    result = runner.invoke(app, ["measure", "--run", str(run), "--resamples", "20"])
    assert result.exit_code == 0 and "greedy_likelihood left out" in result.output


def openai_line(custom_id: str, texts: list[str], model: str = "served-model",
                logprob: float | None = -0.25) -> dict:
    choices = [{"index": k, "message": {"role": "assistant", "content": t},
                "finish_reason": "stop",
                "logprobs": None if logprob is None else
                {"content": [{"token": t, "logprob": logprob, "top_logprobs": []}]}}
               for k, t in enumerate(texts)]
    return {"id": f"batch_req_{custom_id}", "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": "r",
                         "body": {"object": "chat.completion", "model": model,
                                  "choices": choices}}, "error": None}


def test_openai_batch_output_with_n_choices_or_repeated_requests(tmp_path):
    questions = jsonl(tmp_path / "qs.jsonl", [{"id": "a", "question": "A?", "answer": "x"},
                                              {"id": "b", "question": "B?", "answer": "y"}])
    answers = jsonl(tmp_path / "out.jsonl", [
        openai_line("a", ["x", "x", "z"]),          # one request with n = 3
        openai_line("b-0", ["y"]), openai_line("b-1", ["w"]), openai_line("b-2", ["y"]),
    ])
    store = import_run(answers, tmp_path / "run", format="openai", questions=questions)
    records = store.samples_by_id()
    assert [s.text for s in records["a"].samples] == ["x", "x", "z"]
    assert [s.text for s in records["b"].samples] == ["y", "w", "y"]
    assert records["b"].samples[1].logprobs == (-0.25,)
    assert store.manifest["model"]["name"] == "served-model"  # as the responses say
    assert store.manifest["sampling"]["temperature"] == "unknown"
    assert store.manifest["sampling"]["logprobs"] is True
    assert store.manifest["questions"]["dataset"] == "qs"


def test_openai_responses_without_log_probs_say_how_to_request_them(tmp_path):
    questions = jsonl(tmp_path / "qs.jsonl", [{"id": "a", "question": "A?", "answer": "x"}])
    answers = jsonl(tmp_path / "out.jsonl", [openai_line("a", ["x", "y"], logprob=None)])
    result = runner.invoke(app, ["import", str(answers), "-f", "openai", "--questions",
                                 str(questions), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "token log-probs: no" in result.output and "top_logprobs: 1" in result.output
    assert RunStore.open(tmp_path / "run").manifest["sampling"]["logprobs"] is False
    with_them = jsonl(tmp_path / "lp.jsonl", [openai_line("a", ["x", "y"])])
    result = runner.invoke(app, ["import", str(with_them), "-f", "openai", "--questions",
                                 str(questions), "--out", str(tmp_path / "run2")])
    assert result.exit_code == 0 and "token log-probs: yes" in result.output
    assert "top_logprobs" not in result.output


LM_EVAL_ROW = {
    "doc_id": 0, "doc": {"question": "Capital of France?", "answer": "Paris"},
    "target": "Paris",
    "arguments": {"gen_args_0": {"arg_0": "Q: Capital of France?\nA:",
                                 "arg_1": {"until": ["\n"], "do_sample": True,
                                           "temperature": 1.0, "max_gen_toks": 16}}},
    "resps": [["Paris", " Paris", "Lyon"]], "filtered_resps": ["Paris"], "filter": "none",
    "metrics": ["exact_match"], "doc_hash": "h", "prompt_hash": "p", "target_hash": "t",
    "exact_match": 1.0,
}


def lm_eval_rows() -> list[dict]:
    second = json.loads(json.dumps(LM_EVAL_ROW))
    second.update(doc_id=1, doc={"question": "Capital of Italy?", "answer": "Rome"},
                  target="Rome", resps=[["Rome", "Milan", "Rome"]])
    other_filter = dict(LM_EVAL_ROW, filter="maj", filtered_resps=["Paris"])
    # the older list layout of arguments, on the second document
    second["arguments"] = [["Q: Capital of Italy?\nA:", {"temperature": 1.0}]]
    return [LM_EVAL_ROW, other_filter, second]


def test_lm_eval_sample_log_with_repeats(tmp_path):
    log = jsonl(tmp_path / "samples_geo_2026-01-01.jsonl", lm_eval_rows())
    store = import_run(log, tmp_path / "run", format="lm-eval")
    questions = store.questions()
    assert [(q.id, q.question, q.answers) for q in questions] == [
        ("0", "Capital of France?", ("Paris",)), ("1", "Capital of Italy?", ("Rome",))]
    assert [s.text for s in store.samples_by_id()["0"].samples] == ["Paris", " Paris", "Lyon"]
    sampling = store.manifest["sampling"]
    assert sampling["temperature"] == 1.0 and sampling["max_new_tokens"] == 16
    assert sampling["logprobs"] is False and store.manifest["model"]["name"] == "unknown"
    result = runner.invoke(app, ["measure", "--run", str(tmp_path / "run"), "--resamples", "20"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "report-normalized" / "metrics.json").read_text())
    assert metrics["scorers"]["modal_share"]["accuracy"]["estimate"] == 1.0
    assert metrics["scorers"]["modal_share"]["mean_confidence"]["estimate"] == pytest.approx(
        2 / 3)


def test_the_cli_imports_each_format(tmp_path):
    jsonl(tmp_path / "a.jsonl", recal_rows())
    result = runner.invoke(app, ["import", str(tmp_path / "a.jsonl"), "--out",
                                 str(tmp_path / "r1"), "--model-name", "mine", "--kind", "chat"])
    assert result.exit_code == 0, result.output
    assert "8 questions x 4 samples" in result.output
    assert RunStore.open(tmp_path / "r1").manifest["model"]["kind"] == "chat"
    log = jsonl(tmp_path / "log.jsonl", lm_eval_rows())
    result = runner.invoke(app, ["import", str(log), "-f", "lm-eval", "--out",
                                 str(tmp_path / "r2"), "--responses", "filtered_resps"])
    assert result.exit_code == 0, result.output
    assert [s.text for s in RunStore.open(tmp_path / "r2").samples_by_id()["0"].samples] == \
        ["Paris"]
    result = runner.invoke(app, ["import", str(log), "-f", "lm-evl", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "lm-eval" in result.output  # did you mean


# -- bad files ------------------------------------------------------------------------------------

GOOD = {"id": "g", "question": "Q?", "samples": ["a", "b"]}

BAD_RECAL = [
    # rows, line, words in the reason, words in the fix
    ([GOOD, {"id": "x", "samples": ["a", "b"]}], 2, "missing question", "'question'"),
    ([GOOD, '{"id": "x", "question": "Q?" "samples": []}'], 2, "not JSON", "one JSON object"),
    ([GOOD, {"id": "x", "question": "Q?", "samples": ["a", {"logprobs": [-1]}]}], 2,
     "sample 2 of 'x' has no text", "answer text"),
    ([GOOD, {"id": "x", "question": "Q?", "samples": ["a"]}], 2,
     "'x' has 1 samples but 'g' (line 1) has 2", "same number of samples"),
    ([GOOD, {"id": "x", "question": "Q?", "samples": ["a", "b"]}, GOOD], 3,
     "duplicate id 'g' (first on line 1)", "its own id"),
    ([GOOD, {"id": "x", "question": "Q?", "samples": ["a", None]}], 2,
     "sample 2 of 'x' has no text", "answer text"),
]


def assert_one_line(exc: ImportFormatError, file: Path, line: int | None, reason: str,
                    fix: str) -> None:
    message = str(exc)
    assert "\n" not in message
    where = f"{file} line {line}: " if line is not None else f"{file}: "
    assert message.startswith(where), message
    assert reason in message and "fix: " in message and fix in message.split("fix: ")[1]


@pytest.mark.parametrize(("rows", "line", "reason", "fix"), BAD_RECAL)
def test_bad_recal_files_name_file_line_and_fix(tmp_path, rows, line, reason, fix):
    path = jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ImportFormatError) as info:
        import_run(path, tmp_path / "run", format="recal")
    assert_one_line(info.value, path, line, reason, fix)
    assert not (tmp_path / "run").exists()


def test_an_empty_file_is_refused(tmp_path):
    for fmt in ("recal", "lm-eval"):
        path = tmp_path / f"empty-{fmt}.jsonl"
        path.write_text("\n\n")
        with pytest.raises(ImportFormatError) as info:
            import_run(path, tmp_path / "run", format=fmt)
        assert_one_line(info.value, path, None, "holds no answers (the file is empty)",
                        "at least one")


def test_bad_openai_files_name_file_line_and_fix(tmp_path):
    questions = jsonl(tmp_path / "qs.jsonl", [{"id": "a", "question": "A?"},
                                              {"id": "b", "question": "B?"}])
    cases = [
        ([openai_line("a", ["x"]), openai_line("a", ["y"])], 2, "duplicate custom_id 'a'",
         "own custom_id"),
        ([openai_line("a", ["x"]), openai_line("zz", ["y"])], 2, "matches no question id",
         "custom_id"),
        ([openai_line("a", ["x", "y"]), openai_line("b", ["x"])], 2,
         "'b' has 1 samples but 'a' (line 1) has 2", "same number"),
        ([openai_line("a", ["x"]), "not json"], 2, "not JSON", "JSON object"),
        ([openai_line("a", ["x"]), openai_line("b", [None])], 2, "choice 0 of custom_id 'b' "
         "has no text", "answer text"),
        ([openai_line("a", ["x"])], None, "have no response (first: 'b')", "remove them"),
        ([openai_line("a", ["x"]), {"custom_id": "b", "response": {"status_code": 500},
                                    "error": None}], 2, "status 500", "rerun"),
    ]
    for rows, line, reason, fix in cases:
        path = jsonl(tmp_path / "out.jsonl", rows)
        with pytest.raises(ImportFormatError) as info:
            import_run(path, tmp_path / "run", format="openai", questions=questions)
        assert_one_line(info.value, path, line, reason, fix)
    bad_questions = jsonl(tmp_path / "bq.jsonl", [{"id": "a", "samples": []}])
    with pytest.raises(DataFormatError, match=r"bq\.jsonl line 1: missing question"):
        import_run(path, tmp_path / "run", format="openai", questions=bad_questions)


def test_bad_lm_eval_files_name_file_line_and_fix(tmp_path):
    no_question = dict(LM_EVAL_ROW, doc_id=1, doc={}, arguments=[])
    cases = [
        ([LM_EVAL_ROW, no_question], 2, "document 1 has no question", "--question-field"),
        ([LM_EVAL_ROW, LM_EVAL_ROW], 2, "duplicate doc_id '0' (first on line 1)", "once"),
        ([LM_EVAL_ROW, dict(LM_EVAL_ROW, doc_id=1, resps=[["a", "b"]])], 2,
         "'1' has 2 samples but '0' (line 1) has 3", "same number"),
        ([LM_EVAL_ROW, dict(LM_EVAL_ROW, doc_id=1, resps=[["a", 3, "b"]])], 2,
         "response 2 of document 1 has int instead of text", "answer text"),
        (["{oops"], 1, "not JSON", "JSON object"),
    ]
    for rows, line, reason, fix in cases:
        path = jsonl(tmp_path / "log.jsonl", rows)
        with pytest.raises(ImportFormatError) as info:
            import_run(path, tmp_path / "run", format="lm-eval")
        assert_one_line(info.value, path, line, reason, fix)


def test_the_cli_reports_a_bad_file_in_one_line(tmp_path):
    path = jsonl(tmp_path / "bad.jsonl", [GOOD, {"id": "x", "samples": ["a", "b"]}])
    result = runner.invoke(app, ["import", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert f"{path} line 2: missing question" in result.output


# -- nothing half-written -------------------------------------------------------------------------

def test_an_interrupted_import_leaves_no_run_and_keeps_the_earlier_one(tmp_path, monkeypatch):
    path = jsonl(tmp_path / "a.jsonl", recal_rows())
    out = tmp_path / "run"
    calls = []
    real_append = RunStore.append

    def dying_append(self, record):
        calls.append(record.question_id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_append(self, record)

    monkeypatch.setattr(RunStore, "append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        import_run(path, out, format="recal")
    assert not out.exists() and list(tmp_path.iterdir()) == [path]  # nothing left behind
    monkeypatch.setattr(RunStore, "append", real_append)
    import_run(path, out, format="recal", settings=ImportSettings(model="first"))
    monkeypatch.setattr(RunStore, "append", dying_append)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        import_run(path, out, format="recal", settings=ImportSettings(model="second"),
                   overwrite=True)
    kept = RunStore.open(out)
    assert kept.manifest["model"]["name"] == "first" and len(kept.samples_by_id()) == 8
    with pytest.raises(ValueError, match="holds a run"):
        import_run(path, out, format="recal")


# -- a real server's responses --------------------------------------------------------------------

def test_llama_cpp_server_responses_captured_imported_and_measured(llama_server, tmp_path):
    """Real chat completion responses of llama.cpp serving SmolLM2 (it answers one choice per
    request, so each question is asked M times: custom ids '<id>-<k>'), written as an OpenAI
    batch output file, imported, then measured."""
    from conftest import llama_questions

    from recal.models.http import HTTPBackend, HTTPConfig

    backend = HTTPBackend(HTTPConfig(base_url=llama_server.url))
    questions = llama_questions(6)
    # llama-cpp-python's server returns token log-probs only when top_logprobs is given (it
    # passes top_logprobs on as the number of alternatives, None meaning no log-probs at all)
    qfile = jsonl(tmp_path / "qs.jsonl", [q.to_dict() for q in questions])
    m, lines = 3, []
    for q in questions:
        for k in range(m):
            body = backend.request("POST", "chat/completions", {
                "model": backend.served_model, "max_tokens": 12, "temperature": 1.0,
                "logprobs": True, "top_logprobs": 1,
                "messages": [{"role": "user", "content": q.question}]})
            lines.append({"custom_id": f"{q.id}-{k}",
                          "response": {"status_code": 200, "body": body}, "error": None})
    answers = jsonl(tmp_path / "batch_output.jsonl", lines)
    result = runner.invoke(app, ["import", str(answers), "-f", "openai", "--questions",
                                 str(qfile), "--out", str(tmp_path / "run"),
                                 "--temperature", "1", "--max-new-tokens", "12"])
    assert result.exit_code == 0, result.output
    store = RunStore.open(tmp_path / "run")
    texts = [s.text for s in store.samples_by_id()[questions[0].id].samples]
    assert texts == [line["response"]["body"]["choices"][0]["message"]["content"]
                     for line in lines[:m]]
    assert store.manifest["sampling"]["logprobs"] is True
    first = lines[0]["response"]["body"]["choices"][0]["logprobs"]["content"]
    # the run store keeps log-probs to 6 decimals
    assert store.samples_by_id()[questions[0].id].samples[0].logprobs == pytest.approx(
        [t["logprob"] for t in first], abs=1e-6)
    assert all(x <= 0 for s in store.samples_by_id()[questions[0].id].samples
               for x in s.logprobs)
    result = runner.invoke(app, ["measure", "--run", str(tmp_path / "run"), "--resamples", "50"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "report-normalized" / "metrics.json").read_text())
    assert metrics["n_questions"] == 6
