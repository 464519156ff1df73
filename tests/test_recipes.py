"""YAML recipes: every shipped recipe resolves; includes, overrides and errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recal.bench import BenchConfig
from recal.cli import app
from recal.flows import BenchFlow, MeasureFlow, RecalibrateFlow, SynthFlow
from recal.recipes import RecipeError, load_recipe, parse_override

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_the_project_ships_a_recipe_for_each_common_flow():
    flows = {load_recipe(p).flow for p in RECIPES}
    assert {"measure", "recalibrate", "synth", "bench"} <= flows


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads_and_resolves(path):
    recipe = load_recipe(path)
    config = recipe.config
    expected = {"measure": MeasureFlow, "recalibrate": RecalibrateFlow, "synth": SynthFlow,
                "bench": BenchFlow}[recipe.flow]
    assert isinstance(config, expected)
    assert config.out  # every flow writes somewhere
    if isinstance(config, SynthFlow):
        resolved = config.synth_config().resolved()  # every size filled in
        assert resolved.train_steps and resolved.n_samples
    if isinstance(config, BenchConfig):
        assert config.models and config.datasets


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_includes_merge_key_by_key_and_the_command_line_wins(tmp_path):
    _write(tmp_path / "base.yaml", "flow: measure\nmodel: {name: gemma3-270m}\n"
           "sampling: {n_samples: 50, temperature: 0.7}\nout: runs/base\n")
    _write(tmp_path / "variant.yaml", "include: base.yaml\nsampling: {n_samples: 10}\n")
    config = load_recipe(tmp_path / "variant.yaml").config
    assert config.model.name == "gemma3-270m"  # from the included file
    assert config.sampling.n_samples == 10  # this file over the included one
    assert config.sampling.temperature == 0.7  # a mapping merges key by key
    assert config.measure.collapse == "normalized"  # the flow's default
    over = load_recipe(tmp_path / "variant.yaml",
                       overrides=["sampling.n_samples=5", "out=runs/x", "style=sentence"]).config
    assert (over.sampling.n_samples, over.out, over.style) == (5, "runs/x", "sentence")


def test_lists_become_tuples_and_a_single_value_a_list_of_one(tmp_path):
    path = _write(tmp_path / "b.yaml", "flow: bench\nmodels: smollm2-135m-instruct\n"
                  "datasets: [builtin]\nsampling: {tau_grid: [0.5, 1]}\n")
    config = load_recipe(path).config
    assert config.models == ("smollm2-135m-instruct",)
    assert config.sampling.tau_grid == (0.5, 1.0)


@pytest.mark.parametrize(("text", "message"), [
    ("flow: measure\nsampling: {n_sampels: 5}\n",
     "{file}: sampling.n_sampels: unknown key; did you mean 'n_samples'?"),
    ("flow: measure\nsampling: {n_samples: many}\n",
     "{file}: sampling.n_samples: expected an integer, got 'many'"),
    ("flow: measure\nstyle: consice\n", "{file}: style: expected one of"),
    ("flow: measure\nsampling: {temperature: -1}\n", "{file}: sampling: temperature must be > 0"),
    ("flow: measure\nmeasure: {scorers: [modal_shar]}\n", "did you mean 'modal_share'"),
    ("flow: measur\n", "{file}: flow: unknown flow 'measur'; did you mean 'measure'?"),
    ("model: {name: x}\n", "{file}: flow: missing"),
    ("flow: measure\nsampling: 5\n", "{file}: sampling: expected a section"),
    ("flow: bench\nmethods: [isotonic, isotonc]\n", "did you mean 'isotonic'"),
    ("flow: measure\nsampling: {n_samples: 5\n", "{file}: not valid YAML (line"),
    ("- flow\n- measure\n", "{file}: a recipe must be a mapping"),
    ("flow: measure\ninclude: [nothere.yaml]\n", "{file}: include: recipe file"),
    ("flow: synth\nseed: -1\n", "{file}: seed must be a non-negative integer"),
    ("flow: measure\ndata: {limit: true}\n", "{file}: data.limit: expected"),
])
def test_malformed_recipes_name_the_file_and_the_key(tmp_path, text, message):
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert message.format(file=path) in str(err.value)


def test_errors_name_the_included_file_that_set_the_key(tmp_path):
    _write(tmp_path / "base.yaml", "flow: measure\nsampling: {n_samples: lots}\n")
    path = _write(tmp_path / "top.yaml", "include: base.yaml\nout: runs/x\n")
    with pytest.raises(RecipeError, match="base.yaml: sampling.n_samples: expected an integer"):
        load_recipe(path)
    # the same key set again on the command line: now the command line is named
    with pytest.raises(RecipeError, match="the command line: sampling.n_samples"):
        load_recipe(path, overrides=["sampling.n_samples=[1, 2]"])
    assert load_recipe(path, overrides=["sampling.n_samples=3"]).config.sampling.n_samples == 3


def test_include_cycles_and_bad_overrides_are_refused(tmp_path):
    _write(tmp_path / "a.yaml", "include: b.yaml\nflow: measure\n")
    _write(tmp_path / "b.yaml", "include: a.yaml\n")
    with pytest.raises(RecipeError, match="include each other"):
        load_recipe(tmp_path / "a.yaml")
    ok = _write(tmp_path / "ok.yaml", "flow: measure\nstyle: concise\n")
    for bad in ("sampling.n_samples", "=3", "sampling..x=1"):
        with pytest.raises(RecipeError, match="key=value"):
            load_recipe(ok, overrides=[bad])
    with pytest.raises(RecipeError, match="the command line: style.x: style is not a section"):
        load_recipe(ok, overrides=["style.x=1"])
    with pytest.raises(RecipeError, match="the command line: shots: expected"):
        load_recipe(ok, overrides=["shots.x=1"])  # a new section where a number belongs
    assert parse_override("data.name=triviaqa") == ("data.name", "triviaqa")


def test_recipes_are_read_without_running_code(tmp_path):
    path = _write(tmp_path / "evil.yaml",
                  "flow: measure\nout: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_recal_run_measures_the_tiny_model_and_resumes(tiny_model_dir, tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"{'abc'[i % 3]} {i}?",
                                        "answers": ["a"]}) + "\n" for i in range(6)))
    path = _write(tmp_path / "m.yaml", f"flow: measure\nmodel: {{name: {tiny_model_dir}}}\n"
                  f"data: {{name: {data}}}\nsampling: {{n_samples: 4, max_new_tokens: 2}}\n"
                  f"measure: {{scorers: [modal_share], n_resamples: 20}}\n"
                  f"out: {tmp_path / 'run'}\nprogress: false\n")
    runner = CliRunner()
    shown = runner.invoke(app, ["run", str(path), "--show", "--set", "sampling.n_samples=3"])
    assert shown.exit_code == 0 and "n_samples: 3" in shown.output
    assert not (tmp_path / "run").exists()  # --show runs nothing
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())
    assert "modal_share" in json.dumps(metrics)
    lines = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 6
    again = runner.invoke(app, ["run", str(path)])  # everything stored: nothing resampled
    assert again.exit_code == 0
    assert (tmp_path / "run" / "samples.jsonl").read_text().splitlines() == lines
    bad = runner.invoke(app, ["run", str(path), "--set", "sampling.n_sampels=3"])
    assert bad.exit_code == 2 and "did you mean 'n_samples'" in bad.output


def test_a_command_reads_its_flow_through_the_same_loader(tmp_path):
    # `recal synth --recipe FILE --seed 3` is load_recipe(FILE, flow="synth", overrides=[...])
    path = _write(tmp_path / "s.yaml", "reduced: true\nseed: 1\nm_sweep: [5, 10]\n")
    config = load_recipe(path, flow="synth").config
    assert isinstance(config, SynthFlow) and config.seed == 1 and config.m_sweep == (5, 10)
    over = load_recipe(path, flow="synth", overrides=[("seed", 3), "n_samples=7"]).config
    assert (over.seed, over.n_samples, over.reduced) == (3, 7, True)
    assert load_recipe(mapping={}, flow="synth").config == SynthFlow()
    with pytest.raises(RecipeError, match="the command line: seed: expected an integer"):
        load_recipe(path, flow="synth", overrides=[("seed", "three")])
    other = _write(tmp_path / "m.yaml", "flow: measure\n")
    with pytest.raises(RecipeError, match=f"{other}: flow: this command runs the synth flow, "
                                          "got 'measure'"):
        load_recipe(other, flow="synth")
    assert load_recipe(path, overrides=["flow=synth"]).flow == "synth"  # `recal run` as well
    with pytest.raises(RecipeError, match="flow: missing"):
        load_recipe(path)  # `recal run` needs the flow named


def test_a_config_check_names_the_file_that_set_the_key(tmp_path):
    _write(tmp_path / "base.yaml", "flow: measure\nsampling: {temperature: -1}\n")
    path = _write(tmp_path / "top.yaml", "include: base.yaml\nsampling: {n_samples: 5}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value).startswith(f"{tmp_path / 'base.yaml'}: sampling: temperature must be")
    synth = _write(tmp_path / "s.yaml", "flow: synth\nreduced: true\nseed: 1\n")
    with pytest.raises(RecipeError, match="^the command line: seed must be a non-negative"):
        load_recipe(synth, overrides=["seed=-1"])


def test_resolved_recipe_is_plain_yaml():
    import yaml

    recipe = load_recipe(mapping={"flow": "measure", "sampling": {"tau_grid": [0.5, 1]}})
    resolved = recipe.resolved()
    assert resolved["flow"] == "measure"
    assert resolved["sampling"]["tau_grid"] == [0.5, 1.0] and resolved["out"] == recipe.config.out
    assert yaml.safe_load(yaml.safe_dump(resolved)) == resolved  # no tuples, no objects
