"""Post-hoc repair on a run with known overconfidence; the exported scorer artifact."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, replace

import numpy as np
import pytest
from typer.testing import CliRunner

from recal.cli import app
from recal.data.records import Question
from recal.repair import FitConfig, export_scorer, fit_methods
from recal.runstore import RunStore
from recal.samples import QuestionSamples, Sample
from recal.scorer import ScorerFormatError, load_scorer

M = 20


def _sample(text: str) -> Sample:
    return Sample(text=text, token_ids=(1, 2), logprobs=(-0.5, -0.1), finish_reason="stop")


@pytest.fixture(scope="module")
def overconfident_run(tmp_path_factory) -> RunStore:
    """600 questions whose modal share c is right with probability c**4 (overconfident)."""
    rng = np.random.default_rng(0)
    questions, records = [], []
    for i in range(600):
        share = int(rng.integers(M // 2 + 1, M + 1))
        right = rng.random() < (share / M) ** 4
        modal, other = ("Paris", "Lyon") if right else ("Lyon", "Paris")
        texts = [modal] * share + [other] * (M - share)
        questions.append(Question(f"q{i}", "What is the capital of France?", ("Paris",)))
        records.append(QuestionSamples(f"q{i}", tuple(_sample(t) for t in texts), _sample(modal)))
    manifest = {"model": {"name": "fake", "kind": "chat", "backend": "test", "source": "test",
                          "config_hash": "0123456789abcdef"},
                "style": "concise", "shots": None,
                "sampling": {"n_samples": M, "temperature": 1.0, "max_new_tokens": 8,
                             "stop_at_newline": True, "greedy": True, "seed": 0, "tau_grid": []},
                "questions": {"dataset": "synthetic", "count": 600, "hash": "x"}}
    store = RunStore.create_or_resume(tmp_path_factory.mktemp("run"), manifest, questions)
    for record in records:
        store.append(record)
    return store


def test_every_method_is_judged_on_questions_it_was_not_fitted_on(overconfident_run):
    report = fit_methods(overconfident_run, FitConfig(n_resamples=200))
    assert not set(report.calibration_ids) & set(report.heldout_ids)
    assert len(report.calibration_ids) + len(report.heldout_ids) == 600
    by_name = {r.method: r for r in report.results}
    assert list(by_name) == list(FitConfig().methods)
    none = by_name["identity"].heldout
    assert by_name["identity"].verdict.startswith("reference")
    assert none["smooth_ece"].estimate > 0.2  # the construction is badly overconfident
    for name in ("platt", "isotonic", "histogram", "beta"):
        repaired = by_name[name].heldout
        assert repaired["smooth_ece"].estimate < 0.08, name
        assert repaired["brier_score"].estimate < report.base_rate_brier, name
        # paired on the same held-out questions: smooth ECE and Brier both fall, beyond the noise
        assert by_name[name].verdict.startswith("better ("), (name, by_name[name].verdict)
        # a post-hoc map never changes which answer is given
        assert repaired["accuracy"].estimate == none["accuracy"].estimate
    assert by_name["temperature"].heldout["smooth_ece"].estimate < none["smooth_ece"].estimate
    doc = report.to_dict()
    json.dumps(doc)  # all data
    assert doc["methods"]["isotonic"]["recalibrator"]["name"] == "isotonic"


def test_fit_config_rejects_bad_settings():
    with pytest.raises(KeyError, match="did you mean 'isotonic'"):
        FitConfig(methods=("isotonik",))
    with pytest.raises(ValueError, match="calibration_fraction must be in"):
        FitConfig(calibration_fraction=1.0)


def test_exported_scorer_round_trips_and_refuses_tampering(overconfident_run, tmp_path):
    artifact = export_scorer(overconfident_run, "isotonic", FitConfig(n_resamples=100))
    folder = artifact.save(tmp_path / "scorer")
    loaded = load_scorer(folder)
    texts = ["Paris", "paris.", "Lyon", "Paris"]
    a = artifact.score_samples("What is the capital of France?", texts)
    b = loaded.score_samples("What is the capital of France?", texts)
    assert a == b and a.answer == "paris" and a.raw_confidence == 0.75
    assert a.confidence < a.raw_confidence  # the map learned the overconfidence
    conf = np.linspace(0, 1, 101)
    assert np.array_equal(artifact.recalibrator.predict_proba(conf),
                          loaded.recalibrator.predict_proba(conf))
    assert loaded.metrics["heldout"]["smooth_ece"]["estimate"] < 0.08
    # The abstention threshold: a modal share c is right with probability c**4, so only a
    # unanimous share (c = 1, always right) keeps the risk under 0.1 (19 of 20 errs 19% of the
    # time): the threshold is 1, its held-out risk 0, its coverage about 1/10 (shares 11-20).
    rule = loaded.abstention
    assert rule == artifact.abstention and rule["target_risk"] == 0.1 and rule["delta"] == 0.1
    assert rule["threshold"] == 1.0 and rule["calibration_errors"] == 0
    assert rule["heldout"]["risk"] == 0.0 and 0.05 < rule["heldout"]["coverage"] < 0.16
    assert rule["heldout"]["n"] == 300 and rule["n_calibration"] == 300

    file = folder / "scorer.json"
    text = file.read_text()
    file.write_text(text.replace('"isotonic"', '"isotonjc"', 1))
    with pytest.raises(ScorerFormatError, match="content_sha256"):
        load_scorer(folder)
    doc = json.loads(text)
    file.write_text(json.dumps({**doc, "schema": 99}))
    with pytest.raises(ScorerFormatError, match="schema 99.*upgrade recal"):
        load_scorer(folder)
    file.write_text(text[: len(text) // 2])
    with pytest.raises(ScorerFormatError, match="not valid JSON"):
        load_scorer(folder)
    with pytest.raises(FileNotFoundError, match="recal export"):
        load_scorer(tmp_path / "nowhere")


def test_scorer_loads_without_torch_or_sklearn(overconfident_run, tmp_path):
    folder = export_scorer(overconfident_run, "beta", FitConfig(n_resamples=50)).save(tmp_path)
    code = ("import sys; from recal.scorer import load_scorer; "
            f"s = load_scorer({str(folder)!r}); "
            "print(s.score_samples('q?', ['a', 'a', 'b']).confidence); "
            "print(sorted(m for m in ('torch', 'sklearn', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert 0 <= float(out[0]) <= 1 and out[1] == "[]"


def test_scorer_samples_the_model_itself(tiny_run_for_scorer, tiny_backend):
    # the tiny model answers nothing right, so only the identity map can be fitted on its run
    artifact = export_scorer(tiny_run_for_scorer, "identity", FitConfig(n_resamples=20))
    scored = replace(artifact, backend=tiny_backend).score("abc?")
    assert sum(scored.classes.values()) == 6  # M = 6 fresh samples from the model
    assert scored.confidence == pytest.approx(max(scored.classes.values()) / 6)


@pytest.fixture
def tiny_run_for_scorer(tiny_backend, tmp_path):
    from recal.samples import SamplingConfig
    from recal.sampling import sample_run

    questions = [Question(f"t{i}", f"{'abcd'[i % 4]} {i}?", ("a",)) for i in range(10)]
    return sample_run(tiny_backend, questions, out=tmp_path / "tiny", progress=False,
                      config=SamplingConfig(n_samples=6, max_new_tokens=4))


def test_cli_fit_export_apply(overconfident_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["fit", str(overconfident_run.path), "--resamples", "100",
                                 "--out", str(tmp_path / "fit")])
    assert result.exit_code == 0, result.output
    assert "| isotonic |" in result.output and "base-rate Brier" in result.output
    assert (tmp_path / "fit" / "fit.json").exists()
    result = runner.invoke(app, ["export", str(overconfident_run.path), "--method", "platt",
                                 "--out", str(tmp_path / "scorer"), "--target-risk", "0.25"])
    assert result.exit_code == 0, result.output
    assert "abstention (risk <= 0.25 with probability 0.9): answer when raw confidence >=" \
        in result.output and "held-out risk" in result.output
    bad = runner.invoke(app, ["export", str(overconfident_run.path), "--risk-delta", "0",
                              "--out", str(tmp_path / "other")])
    assert bad.exit_code == 2 and "delta must be a probability" in bad.output
    result = runner.invoke(app, ["apply", str(overconfident_run.path), "--scorer",
                                 str(tmp_path / "scorer"), "--out", str(tmp_path / "cal.jsonl")])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "cal.jsonl").read_text().splitlines()]
    assert len(rows) == 600 and all(0 <= r["calibrated"] <= 1 for r in rows)
    bad = runner.invoke(app, ["fit", str(overconfident_run.path), "--methods", "isotonik"])
    assert bad.exit_code == 2 and "did you mean 'isotonic'" in bad.output


def test_cross_fitting_judges_every_question_out_of_fold(overconfident_run):
    report = fit_methods(overconfident_run, FitConfig(cv_folds=5, n_resamples=50,
                                                      methods=("identity", "isotonic")))
    assert len(report.heldout_ids) == 600
    iso = {r.method: r for r in report.results}["isotonic"]
    assert iso.heldout["smooth_ece"].estimate < 0.08
    assert iso.heldout["brier_score"].estimate < report.base_rate_brier
    with pytest.raises(ValueError, match="cv_folds must be at least 2"):
        FitConfig(cv_folds=1)


def test_cli_fit_refits_and_confirms_the_sampling_temperature(tiny_model_dir, tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(
        json.dumps({"id": f"s{i}", "question": f"{'abcd'[i % 4]}{'abc'[i % 3]} {i}?",
                    "answers": ["a"]}) + "\n" for i in range(16)))
    run = tmp_path / "run"
    runner = CliRunner()
    sampled = runner.invoke(app, ["sample", "--model", str(tiny_model_dir), "--dataset",
                                  str(data), "--samples", "12", "--max-new-tokens", "2",
                                  "--tau-grid", "0.8,1.25", "--out", str(run), "--no-progress"])
    assert sampled.exit_code == 0, sampled.output
    result = runner.invoke(app, ["fit", str(run), "--resamples", "50", "--confirm",
                                 "--methods", "identity,platt"])
    assert result.exit_code == 0, result.output
    doc = json.loads((run / "fit-normalized-modal_share" / "fit.json").read_text())
    tau = doc["methods"]["sampling_temperature"]["tau"]
    assert tau in (0.8, 1.25)  # the grid leaves out T0 = 1, so there is always a move to confirm
    assert doc["sampling_temperature_confirmed"]["tau"] == tau
    assert "sampling_temperature resampled" in result.output
    assert (run / f"resampled-tau{tau:g}" / "samples.jsonl").exists()


def test_confirm_temperature_resamples_the_heldout_questions(tiny_backend, tmp_path):
    """The Python API behind `recal fit --confirm`: the held-out questions sampled afresh at the
    refitted T with the run's other settings, and their modal share measured."""
    from recal.measure import MeasureConfig, measure_run
    from recal.repair import confirm_temperature
    from recal.samples import SamplingConfig
    from recal.sampling import sample_run

    questions = [Question(f"s{i}", f"{'abcd'[i % 4]}{'abc'[i % 3]} {i}?", ("a",))
                 for i in range(16)]
    store = sample_run(tiny_backend, questions, out=tmp_path / "run", progress=False,
                       config=SamplingConfig(n_samples=12, max_new_tokens=2,
                                             tau_grid=(0.8, 1.25)))
    report = fit_methods(store, FitConfig(methods=("identity",), n_resamples=50))
    tau = report.temperature.tau_
    confirmed = confirm_temperature(store, report, backend=tiny_backend)
    assert confirmed["tau"] == tau in (0.8, 1.25)
    resampled = RunStore.open(tmp_path / "run" / f"resampled-tau{tau:g}")
    assert resampled.manifest["sampling"]["temperature"] == tau
    assert [q.id for q in resampled.questions()] == report.heldout_ids
    # the same draws, made by hand: the held-out questions at T = tau, same seed and M
    direct = sample_run(tiny_backend, [q for q in questions if q.id in report.heldout_ids],
                        out=tmp_path / "direct", progress=False,
                        config=SamplingConfig(n_samples=12, max_new_tokens=2, temperature=tau))
    expected = measure_run(direct, MeasureConfig(scorers=("modal_share",), n_resamples=50))
    metrics = expected.results["modal_share"].metrics
    for name in ("smooth_ece", "brier_score", "accuracy", "mean_confidence"):  # (AUROC: nan
        assert confirmed["heldout"][name] == asdict(metrics[name])        # when all are wrong)
    without = fit_methods(store, FitConfig(methods=("identity",), sampling_temperature=False))
    with pytest.raises(ValueError, match="nothing to confirm"):
        confirm_temperature(store, without, backend=tiny_backend)


def test_methods_are_judged_against_the_unrepaired_confidence(overconfident_run):
    report = fit_methods(overconfident_run, FitConfig(methods=("isotonic",), n_resamples=50))
    [iso] = report.results
    assert iso.verdict.startswith("better (")  # not the reference, though the only method


def test_fit_runs_peer_methods_from_the_registry_and_refuses_others(overconfident_run):
    report = fit_methods(overconfident_run, FitConfig(methods=("identity", "sklearn:platt"),
                                                      n_resamples=50))
    identity, peer = report.results
    assert peer.method == "sklearn:platt" and peer.recalibrator is None
    assert peer.verdict.startswith("better (")  # a logistic map repairs the c ** 4 overconfidence
    assert peer.heldout["smooth_ece"].estimate < identity.heldout["smooth_ece"].estimate
    with pytest.raises(ValueError, match="is a lora repair"):
        FitConfig(methods=("lora:amortised",))
    with pytest.raises(ValueError, match="is a sampling repair"):
        FitConfig(methods=("sampling_temperature",))
    with pytest.raises(ValueError, match="cv_folds cross-fits"):
        FitConfig(methods=("sklearn:platt",), cv_folds=3)
    with pytest.raises(KeyError, match="did you mean 'platt'"):
        FitConfig(methods=("plat",))
    with pytest.raises(ValueError, match="not one of recal's recalibrators"):
        export_scorer(overconfident_run, "sklearn:platt")


@pytest.fixture(scope="module")
def never_right_run(tmp_path_factory) -> RunStore:
    """40 questions whose modal answer is always wrong: a one-class calibration split."""
    questions, records = [], []
    for i in range(40):
        share = 10 + i % 10
        texts = ["Lyon"] * share + ["Nice"] * (M - share)
        questions.append(Question(f"q{i}", "What is the capital of France?", ("Paris",)))
        records.append(QuestionSamples(f"q{i}", tuple(_sample(t) for t in texts), _sample("Lyon")))
    manifest = {"model": {"name": "fake", "kind": "chat", "backend": "test", "source": "test",
                          "config_hash": "0123456789abcdef"},
                "style": "concise", "shots": None,
                "sampling": {"n_samples": M, "temperature": 1.0, "max_new_tokens": 8,
                             "stop_at_newline": True, "greedy": True, "seed": 0, "tau_grid": []},
                "questions": {"dataset": "synthetic", "count": 40, "hash": "x"}}
    store = RunStore.create_or_resume(tmp_path_factory.mktemp("never"), manifest, questions)
    for record in records:
        store.append(record)
    return store


def test_a_one_class_split_is_not_fitted_not_shown_as_a_repair(never_right_run, tmp_path):
    methods = ("identity", "temperature", "platt", "isotonic", "sklearn:platt", "netcal:beta")
    report = fit_methods(never_right_run, FitConfig(methods=methods, n_resamples=50))
    by_name = {r.method: r for r in report.results}
    assert list(by_name) == list(methods)
    assert by_name["identity"].heldout  # the unrepaired reference is always shown
    for name in methods[1:]:
        row = by_name[name]
        assert row.heldout == {} and row.recalibrator is None, name
        assert row.verdict.startswith("not fitted: the calibration split has no correct answer")
    with pytest.raises(ValueError, match="temperature: not fitted"):
        export_scorer(never_right_run, "temperature", FitConfig(n_resamples=20))
    result = CliRunner().invoke(app, ["fit", str(never_right_run.path), "--methods",
                                      "identity,isotonic", "--resamples", "20",
                                      "--out", str(tmp_path / "fit")])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("| isotonic"))
    assert "| - |" in row and "not fitted" in row


def test_best_is_chosen_on_the_calibration_split_only(overconfident_run):
    """Selection never looks at the held-out questions: their labels can change (here: all
    flipped) without changing any method's selection score or the choice."""
    import copy

    from recal.repair import choose_method
    from recal.repairs import REPAIR_METHODS, RepairTask, selection_brier

    report = fit_methods(overconfident_run, FitConfig(n_resamples=50))
    best, scores = choose_method(report)
    assert set(scores) == set(FitConfig().methods)
    assert best == min(scores, key=lambda m: scores[m]) and best != "identity"
    flipped = copy.copy(report.judged)
    flipped.correct = report.judged.correct.copy()
    flipped.correct[flipped.heldout_idx] = 1 - flipped.correct[flipped.heldout_idx]
    for name, score in scores.items():
        again = selection_brier(REPAIR_METHODS.get(name), RepairTask(flipped))
        assert again == pytest.approx(score, abs=1e-12), name
    # the exported scorer keeps the scores it was chosen on apart from its held-out figures
    artifact = export_scorer(overconfident_run, best, FitConfig(n_resamples=50), selection=scores)
    assert artifact.metrics["selection"]["chosen"] == best
    assert artifact.metrics["selection"]["scores"] == scores
    assert "selection" not in artifact.metrics["heldout"]


def test_no_export_when_no_repair_beats_the_identity_in_cross_validation(tmp_path):
    """A calibrated predictor: cross-validation on the calibration split prefers no repair."""
    from recal.repair import FitReport, MethodResult, choose_method

    report = FitReport(FitConfig(), {}, [], [], 0.5, 0.25)
    report.results = [MethodResult("identity", {}, False, "reference",
                                   detail={"selection_brier": 0.20}),
                      MethodResult("isotonic", {}, False, "good",
                                   detail={"selection_brier": 0.21})]
    with pytest.raises(ValueError, match="no repair beats the unrepaired confidence"):
        choose_method(report)


def _recalibrate_flow(model_dir, data, out, export):
    from recal.flows import DataSection, ModelSection, RecalibrateFlow
    from recal.samples import SamplingConfig

    return RecalibrateFlow(model=ModelSection(name=str(model_dir)),
                           data=DataSection(name=str(data)), progress=False,
                           sampling=SamplingConfig(n_samples=6, max_new_tokens=4),
                           fit=FitConfig(n_resamples=20, methods=("identity", "platt",
                                                                  "isotonic")),
                           export=export, out=str(out))


def test_recalibrate_flow_fits_chooses_and_exports(tiny_model_dir, tmp_path):
    """The recalibrate flow end to end on the tiny model: a named method is exported as asked;
    'best' exports the method cross-validation on the calibration split chooses, or, when no
    repair beats no repair there, refuses with the reason and writes no scorer."""
    from recal.confidence import classify_run
    from recal.flows import run_recalibrate
    from recal.repair import choose_method
    from recal.semantic import get_collapser

    def write(golds):
        data.write_text("".join(json.dumps(Question(
            f"k{i}", f"{'abcd'[i % 4]}{'ab'[i % 2]} {i}?", (golds[i],)).to_dict()) + "\n"
            for i in range(60)))

    # First a run to learn what the tiny model answers; then the gold of every other question
    # is its modal answer (right), the rest get an answer it never gives (wrong).
    data = tmp_path / "q.jsonl"
    write(["zz"] * 60)
    probe = run_recalibrate(_recalibrate_flow(tiny_model_dir, data, tmp_path / "probe", None))
    modal = [it.counts()[0][0] for it in classify_run(RunStore.open(probe),
                                                   get_collapser("normalized"))]
    write([modal[i] if i % 2 == 0 and modal[i].strip("<>_ ") else "zz" for i in range(60)])
    out = run_recalibrate(_recalibrate_flow(tiny_model_dir, data, tmp_path / "named", "platt"))
    assert set(json.loads((out / "fit.json").read_text())["methods"]) >= {"identity", "platt"}
    scorer = load_scorer(out / "scorer")
    assert scorer.recalibrator.name == "platt"

    store = RunStore.open(out)  # the same samples: "best" is judged on them
    report = fit_methods(store, FitConfig(n_resamples=20, methods=("identity", "platt",
                                                                   "isotonic")))
    try:
        best, _ = choose_method(report)
    except ValueError as exc:
        best, reason = None, str(exc)
    flow = _recalibrate_flow(tiny_model_dir, data, out, "best")
    if best is None:
        (out / "scorer" / "scorer.json").unlink()
        with pytest.raises(ValueError, match="no repair beats the unrepaired confidence"):
            run_recalibrate(flow)
        assert "no repair beats" in reason and not (out / "scorer" / "scorer.json").exists()
    else:
        assert load_scorer(run_recalibrate(flow) / "scorer").recalibrator.name == best
