"""The run store: resuming, refusing other settings, surviving a SIGKILL mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import spawn_logged, wait_for_lines

from recal.data.records import Question
from recal.runstore import RunFormatError, RunMismatchError, RunStore
from recal.samples import SamplingConfig
from recal.sampling import sample_run

QUESTIONS = [Question(f"q{i}", f"{'abcd'[i % 4]} {i}?", ("a",)) for i in range(8)]
CONFIG = SamplingConfig(n_samples=5, max_new_tokens=8)


def _records(path: Path) -> list[dict]:
    text = (path / "samples.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line]


def _draws(store: RunStore) -> dict[str, list[tuple[int, ...]]]:
    return {k: [s.token_ids for s in v.samples] for k, v in store.samples_by_id().items()}


def test_rerun_reuses_and_completes_a_partial_run(tiny_backend, tmp_path):
    full = sample_run(tiny_backend, QUESTIONS, out=tmp_path / "full", config=CONFIG,
                      progress=False)
    out = tmp_path / "run"
    sample_run(tiny_backend, QUESTIONS, out=out, config=CONFIG, progress=False)
    # a run stopped after three questions
    lines = (out / "samples.jsonl").read_text().splitlines(keepends=True)[:3]
    (out / "samples.jsonl").write_text("".join(lines))
    store = sample_run(tiny_backend, QUESTIONS, out=out, config=CONFIG, progress=False)
    after = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    assert after[:3] == lines and len(after) == len(QUESTIONS)  # kept, then completed
    assert _draws(store) == _draws(full)  # and the same answers an uninterrupted run draws
    before = (out / "samples.jsonl").read_bytes()
    sample_run(tiny_backend, QUESTIONS, out=out, config=CONFIG, progress=False)
    assert (out / "samples.jsonl").read_bytes() == before  # nothing resampled


def test_other_settings_are_refused_with_the_difference_named(tiny_backend, tmp_path):
    sample_run(tiny_backend, QUESTIONS[:2], out=tmp_path, config=CONFIG, progress=False)
    with pytest.raises(RunMismatchError, match=r"sampling: stored .*\"n_samples\": 5.*--overwrite"):
        sample_run(tiny_backend, QUESTIONS[:2], out=tmp_path,
                   config=SamplingConfig(n_samples=6, max_new_tokens=8), progress=False)
    with pytest.raises(RunMismatchError, match="style"):
        sample_run(tiny_backend, QUESTIONS[:2], out=tmp_path, config=CONFIG, style="sentence",
                   progress=False)
    store = sample_run(tiny_backend, QUESTIONS[:2], out=tmp_path, style="sentence",
                       config=CONFIG, overwrite=True, progress=False)
    assert store.manifest["style"] == "sentence" and len(store.done_ids()) == 2


def test_partial_last_line_is_cut_and_redone(tiny_backend, tmp_path):
    store = sample_run(tiny_backend, QUESTIONS[:4], out=tmp_path, config=CONFIG, progress=False)
    complete = (tmp_path / "samples.jsonl").read_text().splitlines(keepends=True)
    # what a kill in the middle of the fourth write leaves behind
    (tmp_path / "samples.jsonl").write_text("".join(complete[:3]) + complete[3][:40])
    assert len(RunStore.open(tmp_path).done_ids()) == 3  # readers ignore the partial line
    store = sample_run(tiny_backend, QUESTIONS[:4], out=tmp_path, config=CONFIG, progress=False)
    assert sorted(r["id"] for r in _records(tmp_path)) == [q.id for q in QUESTIONS[:4]]
    assert store.questions() == QUESTIONS[:4]


def test_damaged_files_give_clear_errors(tiny_backend, tmp_path):
    sample_run(tiny_backend, QUESTIONS[:3], out=tmp_path, config=CONFIG, progress=False)
    lines = (tmp_path / "samples.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "samples.jsonl").write_text(lines[0] + "{not json\n" + lines[2])
    with pytest.raises(RunFormatError, match="samples.jsonl line 2: damaged record"):
        RunStore.open(tmp_path).done_ids()
    (tmp_path / "samples.jsonl").write_text(lines[0] + lines[0])
    with pytest.raises(RunFormatError, match="holds question 'q.' twice"):
        RunStore.open(tmp_path).samples_by_id()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "schema": 99}))
    with pytest.raises(RunFormatError, match="schema 99.*upgrade recal"):
        RunStore.open(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a recal run folder"):
        RunStore.open(tmp_path / "nowhere")


def test_a_folder_that_is_not_a_run_is_not_touched(tiny_backend, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunMismatchError, match="not a recal run folder"):
        sample_run(tiny_backend, QUESTIONS[:1], out=tmp_path, config=CONFIG, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bad_question_lists_are_refused(tiny_backend, tmp_path):
    with pytest.raises(ValueError, match="questions is empty"):
        sample_run(tiny_backend, [], out=tmp_path, config=CONFIG)
    with pytest.raises(ValueError, match="id 'q0' more than once"):
        sample_run(tiny_backend, [QUESTIONS[0], QUESTIONS[0]], out=tmp_path, config=CONFIG)


def test_sigkill_mid_run_loses_and_duplicates_nothing(tiny_model_dir, tmp_path):
    """A real `recal sample` process killed with SIGKILL, then started again."""
    data = tmp_path / "questions.jsonl"
    questions = [Question(f"k{i}", f"{'abcd'[i % 4]}{'ab'[i % 2]} {i}?", ("a",))
                 for i in range(60)]
    data.write_text("".join(json.dumps(q.to_dict()) + "\n" for q in questions))
    cmd = [sys.executable, "-m", "recal.cli", "sample", "--model", str(tiny_model_dir),
           "--dataset", str(data), "--samples", "6", "--max-new-tokens", "40",
           "--batch-rows", "14", "--no-progress"]
    killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"
    log = tmp_path / "killed.log"
    proc = spawn_logged([*cmd, "--out", str(killed_out)], log)
    samples = wait_for_lines(proc, lambda: killed_out / "samples.jsonl", 5, log)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = samples.read_bytes().count(b"\n")
    assert 5 <= kept < len(questions)

    resumed = subprocess.run([*cmd, "--out", str(killed_out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean = subprocess.run([*cmd, "--out", str(clean_out)], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr

    ids = [r["id"] for r in _records(killed_out)]
    assert sorted(ids) == sorted(q.id for q in questions)  # all there, none twice
    by_id = {r["id"]: r for r in _records(killed_out)}
    # the resumed run drew exactly what an uninterrupted run draws
    for r in _records(clean_out):
        assert [s["token_ids"] for s in by_id[r["id"]]["samples"]] == [
            s["token_ids"] for s in r["samples"]]


def test_the_stored_question_hash_is_always_that_of_the_questions_written(tmp_path):
    from recal.data.records import questions_hash

    manifest = {"model": {"kind": "base", "backend": "test", "config_hash": "h"},
                "style": "concise", "shots": None,
                "sampling": {"n_samples": 2, "temperature": 1.0},
                "questions": {"dataset": "d", "count": 99, "hash": "stale"}}
    store = RunStore.create_or_resume(tmp_path, manifest, QUESTIONS[:3])
    stored = json.loads((tmp_path / "manifest.json").read_text())["questions"]
    assert stored == {"dataset": "d", "count": 3, "hash": questions_hash(QUESTIONS[:3])}
    assert RunStore.open(tmp_path).questions() == QUESTIONS[:3] == store.questions()


def test_a_run_that_checks_out_opens_and_reads(tiny_backend, tmp_path):
    sample_run(tiny_backend, QUESTIONS[:3], out=tmp_path, config=CONFIG, progress=False)
    store = RunStore.open(tmp_path)
    assert store.n_samples == CONFIG.n_samples
    assert {r.question_id for r in store} == {q.id for q in QUESTIONS[:3]}


def _manifest(config_hash: str = "h1", name: str = "m") -> dict:
    return {"model": {"name": name, "kind": "base", "backend": "test", "config_hash": config_hash},
            "style": "concise", "shots": None,
            "sampling": {"n_samples": 5, "temperature": 1.0, "max_new_tokens": 8, "greedy": False,
                         "seed": 0, "stop_at_newline": True, "tau_grid": []}}


def test_another_model_or_changed_questions_are_refused(tmp_path):
    RunStore.create_or_resume(tmp_path / "run", _manifest(), QUESTIONS[:3])
    # Other weights (config hash) under the same name: refused, the difference named.
    with pytest.raises(RunMismatchError, match=r"model: stored .*\"h1\".*asked .*\"h2\""):
        RunStore.create_or_resume(tmp_path / "run", _manifest("h2"), QUESTIONS[:3])
    # The same weights under another name (a path vs a registry name): the same run.
    RunStore.create_or_resume(tmp_path / "run", _manifest(name="/models/m"), QUESTIONS[:3])
    # A question file whose text changed, or that lost or gained a question: refused.
    edited = [QUESTIONS[0], Question("q1", "another text?", ("a",)), QUESTIONS[2]]
    for other in (edited, QUESTIONS[:2], QUESTIONS[:4]):
        with pytest.raises(RunMismatchError, match="questions: stored"):
            RunStore.create_or_resume(tmp_path / "run", _manifest(), other)
    # Nothing was changed by the refusals.
    assert [q.id for q in RunStore.open(tmp_path / "run").questions()] == ["q0", "q1", "q2"]


def test_a_manifest_with_a_non_finite_number_is_refused_before_anything_is_written(tmp_path):
    manifest = _manifest()
    manifest["sampling"] = {**manifest["sampling"], "temperature": float("nan")}
    with pytest.raises(ValueError, match="JSON compliant|not JSON"):
        RunStore.create_or_resume(tmp_path / "run", manifest, QUESTIONS[:2])
    assert not (tmp_path / "run").exists()  # the folder is not touched
