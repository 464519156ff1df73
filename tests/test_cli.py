"""The `recal` command: listing models, sampling, and errors a user can act on."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from recal.cli import app

runner = CliRunner()


def test_models_lists_the_packaged_models(tmp_path, monkeypatch):
    monkeypatch.setenv("RECAL_CACHE_DIR", str(tmp_path))
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert "smollm2-135m-instruct" in result.output and "gemma3-270m" in result.output
    assert "not fetched" in result.output and str(tmp_path) in result.output


def test_sample_writes_a_run_folder(tiny_model_dir, tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"id": "a", "question": "abc?", "answers": ["a"]}\n'
                    '{"id": "b", "question": "bad?", "answers": ["b"]}\n')
    out = tmp_path / "run"
    args = ["sample", "--model", str(tiny_model_dir), "--dataset", str(data), "--samples", "4",
            "--out", str(out), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 questions x 4 samples stored" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sampling"]["n_samples"] == 4 and manifest["style"] == "concise"
    assert manifest["model"]["kind"] == "base" and manifest["questions"]["count"] == 2
    again = runner.invoke(app, [*args[:-3], "--samples", "5", "--out", str(out), "--no-progress"])
    assert again.exit_code == 2 and "other settings" in again.output


def test_sample_errors_are_one_clear_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "q?", "answers": ["x"]}\n{"id": "b", "question": ""}\n')
    cases = [
        (["--dataset", str(bad)], "bad.jsonl line 2"),
        (["--dataset", str(tmp_path / "none.jsonl")], "none.jsonl"),
        (["--dataset", "trivia"], "did you mean 'triviaqa'"),
        (["--dataset", str(bad), "--skip-bad", "--style", "poem"],
         "--style must be one of concise, sentence, cot"),
        (["--kind", "instruct"], "--kind must be 'chat' or 'base'"),
        (["--temperature", "0"], "temperature must be > 0"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["sample", "--model", str(tiny_model_dir), "--out",
                                     str(tmp_path / "o"), "--no-progress", *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output, (extra, result.output)
        assert "Traceback" not in result.output
