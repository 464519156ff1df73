"""The `recal` command: listing models, sampling, and errors a user can act on."""

from __future__ import annotations

import json
import re
from pathlib import Path

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


# --------------------------------------------------------------------------- the command set


def test_help_lists_every_command_in_order():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    order = ["models", "sample", "measure", "compare", "fit", "export", "apply", "tune", "synth",
             "run", "bench", "serve", "import"]
    listed = re.findall(r"^\W (\w+) +\S", result.output, flags=re.M)  # a line's first word
    assert listed == order, result.output


def _options(command: str) -> str:
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_confidence_scorers_and_exported_scorers_have_different_options():
    # --confidence NAME: a confidence scorer; --scorer FOLDER: an exported, calibrated scorer
    for command in ("measure", "compare", "fit", "export", "bench"):
        text = _options(command)
        assert "--confidence" in text and "--scorer" not in text, command
    for command in ("apply", "serve"):
        text = _options(command)
        assert "--scorer" in text and "--confidence" not in text, command
    old = runner.invoke(app, ["fit", "somewhere", "--scorer", "modal_share"])
    assert old.exit_code == 2 and "No such option: --scorer" in old.output


def test_a_misspelt_confidence_scorer_is_refused_before_any_model_loads(tmp_path):
    result = runner.invoke(app, ["measure", "--model", str(tmp_path / "no-model"),
                                 "--confidence", "modal_share,modal_shar", "--out",
                                 str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "did you mean 'modal_share'" in result.output
    assert "loading" not in result.output and not (tmp_path / "o").exists()


def test_option_errors_are_one_line(tmp_path):
    for extra, message in ((["--tau-grid", "0.5,x"], "--tau-grid must be comma-separated"),
                           (["--api-key", "k"], "apply to a server URL")):
        result = runner.invoke(app, ["sample", "--out", str(tmp_path / "o"), *extra])
        assert result.exit_code == 2 and message in result.output, result.output
        assert result.output.count("error:") == 1, result.output


# --------------------------------------------------------------------------- recal synth --recipe


def test_synth_recipe_errors_name_the_file_and_the_key(tmp_path):
    bad = tmp_path / "synth.yaml"
    bad.write_text("flow: synth\nreduced: true\nn_entitys: 3\n")
    result = runner.invoke(app, ["synth", "--recipe", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert f"{bad}: n_entitys: unknown key; did you mean 'n_entities'?" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_synth_options_win_over_the_recipe_and_errors_name_who_set_the_key(tmp_path):
    recipe = tmp_path / "synth.yaml"
    recipe.write_text("reduced: true\nseed: -2\n")  # no flow: key: taken as the synth flow
    result = runner.invoke(app, ["synth", "--recipe", str(recipe)])
    assert result.exit_code == 2 and f"{recipe}: seed must be a non-negative" in result.output
    result = runner.invoke(app, ["synth", "--recipe", str(recipe), "--seed", "-1"])
    assert result.exit_code == 2
    assert "the command line: seed must be a non-negative integer, got -1" in result.output
    other = tmp_path / "measure.yaml"
    other.write_text("flow: measure\n")
    result = runner.invoke(app, ["synth", "--recipe", str(other)])
    assert result.exit_code == 2 and "flow: this command runs the synth flow" in result.output


def test_sigterm_ends_recal_as_an_exit(monkeypatch):
    import os
    import signal

    from recal.cli import _exit_on_sigterm

    previous = signal.getsignal(signal.SIGTERM)
    try:
        _exit_on_sigterm()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # let the handler run
        except SystemExit as exc:
            assert exc.code == 128 + signal.SIGTERM
        else:
            raise AssertionError("SIGTERM did not end the command")
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- the API commands call


def test_default_run_folder_names_model_data_style_and_m():
    from recal.flows import default_run_folder

    assert default_run_folder("smollm2-135m-instruct", "builtin", "concise", 50, None) == \
        Path("runs/smollm2-135m-instruct-builtin-concise-m50")
    assert default_run_folder("/models/tiny.Q8_0.gguf", "/data/qs.jsonl", "cot", 5, 10) == \
        Path("runs/tiny.Q8_0-qs10-cot-m5")
    assert default_run_folder("http://127.0.0.1:8080/v1", "triviaqa", "sentence", 20, None) == \
        Path("runs/server-127.0.0.1-8080-triviaqa-sentence-m20")


def test_server_options_belong_to_a_server_url():
    import pytest

    from recal.flows import server_options

    assert server_options("http://h:1/v1", "m", None, 3) == {
        "served_model": "m", "api_key": None, "concurrency": 3}
    assert server_options("smollm2-135m-instruct", None, None, 8) == {}
    with pytest.raises(ValueError, match="apply to a server URL"):
        server_options("smollm2-135m-instruct", None, "secret", 8)


def _metric(estimate: float) -> dict[str, float]:
    return {"estimate": estimate, "low": estimate - 0.05, "high": estimate + 0.05}


def test_write_fit_stores_the_record_and_the_table(tmp_path):
    from recal.flows import write_fit

    shown = ("smooth_ece", "ece", "brier_score", "auroc", "accuracy")
    doc = {"config": {"cv_folds": None}, "n_heldout": 30, "n_calibration": 30,
           "base_rate_brier": 0.25,
           "methods": {"isotonic": {"heldout": {m: _metric(0.5) for m in shown},
                                    "verdict": "good"},
                       "sampling_temperature": {"heldout": {m: _metric(0.25) for m in shown},
                                                "verdict": "no better", "tau": 1.4}}}
    table = write_fit(doc, tmp_path / "fit")
    assert json.loads((tmp_path / "fit" / "fit.json").read_text()) == doc
    assert (tmp_path / "fit" / "table.md").read_text() == table + "\n"
    lines = table.splitlines()
    assert lines[0].startswith("Held-out: 30 questions (fitted on 30); base-rate Brier 0.250.")
    assert lines[2] == "| method | " + " | ".join(shown) + " | verdict |"
    assert lines[4] == "| isotonic | " + " | ".join(["0.500 [0.450, 0.550]"] * 5) + " | good |"
    assert lines[5].startswith("| sampling_temperature (tau = 1.4) | 0.250 [0.200, 0.300]")
    assert "mean_confidence" not in table
    cross = write_fit(dict(doc, config={"cv_folds": 5}), tmp_path / "cv")
    assert cross.startswith("Held-out: out of fold (5-fold), 30 questions;")
    page = (tmp_path / "fit" / "fit.html").read_text(encoding="utf-8")
    assert "data-format='json'" in page and "sampling_temperature (tau = 1.4)" in page


def test_tuning_config_refuses_an_option_the_method_does_not_take():
    import pytest

    from recal.flows import tuning_config

    config = tuning_config("amortised", {"target": "correct", "rank": None}, seed=3)
    assert (config.method, config.target, config.seed) == ("amortised", "correct", 3)
    with pytest.raises(ValueError, match="the amortised method takes no max_classes option"):
        tuning_config("amortised", {"max_classes": 4})
    with pytest.raises(KeyError, match="did you mean 'amortised'"):
        tuning_config("amortized", {})


def test_synth_runs_the_recipe_with_the_options_over_it(tmp_path, monkeypatch):
    import recal.synthetic.experiment as experiment

    seen = {}

    def fake_run(config, out):  # the synthetic world itself is tested in test_synthetic.py
        seen.update(config=config, out=out)
        Path(out).mkdir(parents=True)
        (Path(out) / "synth_report.md").write_text("# the synthetic report\n")

    monkeypatch.setattr(experiment, "run_synthetic", fake_run)
    recipe = tmp_path / "synth.yaml"
    recipe.write_text("flow: synth\nreduced: false\nseed: 1\nn_entities: 7\nout: runs/ignored\n")
    result = runner.invoke(app, ["synth", "--recipe", str(recipe), "--reduced", "--seed", "3",
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "# the synthetic report" in result.output
    config = seen["config"]
    assert isinstance(config, experiment.SynthConfig)
    assert (config.reduced, config.seed, config.n_entities) == (True, 3, 7)
    assert str(seen["out"]) == str(tmp_path / "o")
    monkeypatch.chdir(tmp_path)  # no recipe, no --out: the defaults, into runs/synth
    result = runner.invoke(app, ["synth", "--reduced", "-m", "12"])
    assert result.exit_code == 0, result.output
    assert seen["config"] == experiment.SynthConfig(reduced=True, n_samples=12)
    assert Path(seen["out"]) == Path("runs/synth")
