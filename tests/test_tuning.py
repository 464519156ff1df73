"""LoRA tuning methods on the tiny model: each trains in seconds and moves what it should."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_backend

from recal.data.records import Question
from recal.runstore import RunStore
from recal.samples import QuestionSamples, Sample
from recal.scorer import ScorerFormatError, load_scorer
from recal.tuning import (
    AmortisedConfig,
    ConfidenceHeadConfig,
    DistributionConfig,
    get_method,
    load_tuned,
    tune,
    tuning_split,
)
from recal.tuning.distribution import fit_sharpening, sharpen
from recal.tuning.sequences import AnswerRow, answer_logprobs, collate_answers

M = 8
SAMPLING = {"n_samples": M, "temperature": 1.0, "max_new_tokens": 8, "greedy": False, "seed": 0,
            "stop_at_newline": True, "tau_grid": []}


def _backend(sharpness: float = 1.0):
    """A fresh tiny model (tuning copies it, but a fresh one keeps tests independent).

    ``sharpness`` rescales the test model's very peaked output layer (x40 in conftest): yes/no
    logits that far apart saturate P(yes) at exactly 0 or 1, which no gradient can move."""
    backend = make_backend(chat=False)
    with torch.no_grad():
        backend.model.lm_head.weight.mul_(sharpness)
    return backend


def _sample(backend, text: str) -> Sample:
    tok = backend.tokenizer
    newline = tok("\n", add_special_tokens=False)["input_ids"][0]
    ids = (*tok(text, add_special_tokens=False)["input_ids"], newline)
    return Sample(text, ids, tuple(-0.1 for _ in ids), "stop")


def _store(path: Path, backend, n: int = 24) -> RunStore:
    """Even questions ('aaa k?') are easy: all M answers 'ab', which is right. Odd ones ('bbb
    k?') are hard: four classes of two answers, gold 'cd' (the second class: wrong modal)."""
    questions, records = [], []
    for i in range(n):
        easy = i % 2 == 0
        questions.append(Question(f"q{i}", f"{'aaa' if easy else 'bbb'} {i % 4}?",
                                  ("ab",) if easy else ("cd",)))
        texts = ["ab"] * M if easy else ["ab", "ab", "cd", "cd", "ef", "ef", "gh", "gh"]
        records.append(QuestionSamples(f"q{i}", tuple(_sample(backend, t) for t in texts)))
    manifest = {"model": backend.identity.to_dict(), "style": "concise", "shots": 0,
                "sampling": SAMPLING, "questions": {"dataset": "test", "count": n, "hash": "x"}}
    store = RunStore.create_or_resume(path, manifest, questions)
    for r in records:
        store.append(r)
    return store


# -- configs and split ---------------------------------------------------------------------------


def test_configs_check_their_fields():
    with pytest.raises(ValueError, match="target 'reference' needs a reference run"):
        DistributionConfig(target="reference")
    with pytest.raises(ValueError, match="val_fraction must be in"):
        AmortisedConfig(val_fraction=1.5)
    with pytest.raises(ValueError, match="yes and no must be two different"):
        ConfidenceHeadConfig(yes="No", no="No")
    with pytest.raises(KeyError, match="did you mean 'normalized'"):
        AmortisedConfig(collapse="normalised")
    with pytest.raises(KeyError, match="did you mean 'amortised'"):
        get_method("amortized")


def test_split_holds_out_the_same_questions_as_post_hoc_fit(tmp_path):
    from recal.calibrators import split_calibration
    from recal.confidence import classify_run
    from recal.semantic import get_collapser

    store = _store(tmp_path / "run", _backend(), n=40)
    items = classify_run(store, get_collapser("normalized"))
    split = tuning_split(items, 0.5, 0.25, seed=3)
    _, held = split_calibration(len(items), 0.5, 3)
    assert list(split.heldout_ids) == [items[i].question.id for i in held]
    assert not set(split.train_ids) & set(split.val_ids)
    assert sorted(split.train_ids + split.val_ids + split.heldout_ids) == sorted(
        it.question.id for it in items)
    assert len(split.val_ids) == 5


def test_sharpening_power_fits_the_direction_of_miscalibration():
    rng = np.random.default_rng(0)
    shares = [np.array([0.6, 0.4])] * 400
    # Modal share 0.6, right 90% of the time: underconfident, so beta > 1 sharpens.
    assert fit_sharpening(shares, rng.random(400) < 0.9) > 1.5
    # Right half of the time: overconfident, beta < 1 flattens toward 0.5.
    assert fit_sharpening(shares, rng.random(400) < 0.5) < 0.7
    assert sharpen(np.array([0.5, 0.25, 0.25]), 2.0) == pytest.approx([2 / 3, 1 / 6, 1 / 6])


# -- the three methods ---------------------------------------------------------------------------


def test_amortised_learns_which_questions_the_model_is_sure_of(tmp_path):
    store = _store(tmp_path / "run", _backend())
    config = AmortisedConfig(max_epochs=6, learning_rate=5e-3, head_learning_rate=2e-2,
                             n_resamples=50, calibration_fraction=0.7)
    report = tune(store, config, tmp_path / "out", backend=_backend(), progress=False)
    assert report.training.best_val_loss < report.training.initial_val_loss
    tuned = load_tuned(tmp_path / "out" / "adapter", backend=_backend())
    easy, hard = tuned.confidence(["aaa 0?", "aaa 2?"]), tuned.confidence(["bbb 1?", "bbb 3?"])
    # Targets: modal share 1 (easy) and 0.25 (hard); untrained, the head says the mean for all.
    assert easy.min() > hard.max()
    assert report.extra["pearson_vs_modal_share"] > 0.9
    assert set(report.heldout) == {"modal share (sampled)", "amortised (one pass)"}


def test_confidence_head_separates_right_from_wrong_answers(tmp_path):
    store = _store(tmp_path / "run", _backend())
    config = ConfidenceHeadConfig(yes="a", no="b", max_epochs=5, learning_rate=5e-3,
                                  n_resamples=50, calibration_fraction=0.7, kl_weight=0.1)
    report = tune(store, config, tmp_path / "out", backend=_backend(0.05), progress=False)
    assert report.training.best_val_loss < report.training.initial_val_loss
    tuned = load_tuned(tmp_path / "out" / "adapter", backend=_backend(0.05))
    right = tuned.confidence(["aaa 0?", "aaa 2?"], ["ab", "ab"])
    wrong = tuned.confidence(["bbb 1?", "bbb 3?"], ["ab", "ab"])
    assert right.min() > wrong.max()
    assert report.extra["answer_kl_per_token"] < 0.5
    # Held-out questions have the same two forms: the separation carries over to them.
    assert report.heldout["P(yes), tuned"]["auroc"].estimate == 1.0
    assert report.heldout["P(yes), frozen model"]["auroc"].estimate < 1.0


def test_confidence_head_regulariser_keeps_the_answers(tmp_path):
    store = _store(tmp_path / "run", _backend())
    kls = []
    for weight in (0.0, 5.0):
        config = ConfidenceHeadConfig(yes="a", no="b", max_epochs=3, learning_rate=1e-2,
                                      n_resamples=20, kl_weight=weight, patience=3)
        report = tune(store, config, tmp_path / f"out{weight}", backend=_backend(0.05),
                      progress=False)
        kls.append(report.extra["answer_kl_per_token"])
    assert kls[1] < kls[0]


def test_confidence_head_refuses_replies_outside_the_vocabulary(tmp_path):
    store = _store(tmp_path / "run", _backend())
    with pytest.raises(ValueError, match="'Yes' is not in model 'tiny'"):
        tune(store, ConfidenceHeadConfig(), tmp_path / "out", backend=_backend(), progress=False)


def _class_probability(backend, model, prompt: str, texts: list[str]) -> np.ndarray:
    from recal.prompts import build_prompt

    ids = backend.encode(build_prompt(prompt, "concise", chat=False, shots=0))
    rows = [AnswerRow(tuple(ids), _sample(backend, t).token_ids) for t in texts]
    with torch.no_grad():
        logp = answer_logprobs(model, collate_answers(rows, 0, 256)).numpy()
    p = np.exp(logp - logp.max())
    return p / p.sum()


def test_distribution_matching_moves_toward_a_known_target(tmp_path):
    """Target 'correct_mix' with mix 1: all mass on the correct class ('cd' on hard questions,
    which the model said only 2 times in 8)."""
    store = _store(tmp_path / "run", _backend())
    config = DistributionConfig(target="correct_mix", mix=1.0, max_epochs=6, learning_rate=1e-2,
                                n_resamples=20, eval_samples=4, eval_limit=4,
                                calibration_fraction=0.7)
    base = _backend()
    before = _class_probability(base, base.model, "bbb 1?", ["ab", "cd"])
    report = tune(store, config, tmp_path / "out", backend=base, progress=False)
    assert report.training.best_val_loss < report.training.initial_val_loss
    tuned = load_tuned(tmp_path / "out" / "adapter", backend=_backend())
    after = _class_probability(tuned.backend, tuned.model, "bbb 1?", ["ab", "cd"])
    assert after[1] > before[1] + 0.2
    assert report.extra["n_heldout_judged"] == 4
    assert (tmp_path / "out" / "heldout-samples" / "samples.jsonl").exists()
    assert "after (tuned model samples)" in report.heldout


def test_distribution_reference_target_matches_classes_as_text(tmp_path):
    """The reference run (another 'model') answers 'ab' to everything: the target is its
    distribution, represented by its texts in this model's tokens."""
    store = _store(tmp_path / "run", _backend())
    ref_backend = _backend()
    questions = store.questions()
    manifest = {**store.manifest, "model": {**store.manifest["model"], "config_hash": "other"}}
    ref = RunStore.create_or_resume(tmp_path / "ref", manifest, questions)
    for q in questions:
        ref.append(QuestionSamples(q.id, tuple(_sample(ref_backend, "ab") for _ in range(M))))
    config = DistributionConfig(target="reference", reference=str(tmp_path / "ref"),
                                max_epochs=5, learning_rate=1e-2, n_resamples=20,
                                eval_samples=2, eval_limit=2)
    base = _backend()
    before = _class_probability(base, base.model, "bbb 1?", ["cd", "ab"])
    tune(store, config, tmp_path / "out", backend=base, progress=False)
    tuned = load_tuned(tmp_path / "out" / "adapter", backend=_backend())
    after = _class_probability(tuned.backend, tuned.model, "bbb 1?", ["cd", "ab"])
    assert after[1] > before[1] + 0.2


# -- saving, loading, resuming, the scorer -------------------------------------------------------


@pytest.fixture(scope="module")
def amortised_out(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("amortised")
    store = _store(tmp / "run", _backend())
    config = AmortisedConfig(max_epochs=2, n_resamples=20)
    report = tune(store, config, tmp / "out", backend=_backend(), progress=False)
    return tmp, store, report


def test_adapter_folder_is_data_only_and_reloads_identically(amortised_out):
    tmp, _, report = amortised_out
    folder = tmp / "out" / "adapter"
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "head.safetensors",
            "recal_tuning.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]
    meta = json.loads((folder / "recal_tuning.json").read_text())
    assert meta["method"] == "amortised" and meta["split"]["heldout"]
    one = load_tuned(folder, backend=_backend()).confidence(["aaa 1?", "bbb 2?", "ccc?"])
    two = load_tuned(folder, backend=_backend()).confidence(["aaa 1?", "bbb 2?", "ccc?"])
    np.testing.assert_array_equal(one, two)
    expected = report.heldout["amortised (one pass)"]
    assert math.isfinite(expected["smooth_ece"].estimate)


def test_load_refuses_another_base_model(amortised_out):
    tmp, _, _ = amortised_out
    other = make_backend(chat=True)  # same weights' shapes, but a chat model: another identity
    object.__setattr__(other.identity, "config_hash", "0" * 16)
    with pytest.raises(ValueError, match="trained on a model with config hash"):
        load_tuned(tmp / "out" / "adapter", backend=other)


def test_scorer_artifact_references_the_adapter_by_hash(amortised_out):
    tmp, _, _ = amortised_out
    scorer = load_scorer(tmp / "out" / "scorer", backend=_backend())
    assert scorer.adapter is not None and scorer.adapter.method == "amortised"
    doc = json.loads((tmp / "out" / "scorer" / "scorer.json").read_text())
    assert doc["schema"] == 2 and doc["adapter"]["path"] == "adapter"
    tuned = load_tuned(tmp / "out" / "adapter", backend=_backend())
    expected = float(tuned.confidence(["aaa 1?"])[0])
    scored = scorer.score_samples("aaa 1?", ["ab", "ab", "cd"])
    assert scored.answer == "ab"
    assert scored.raw_confidence == pytest.approx(expected, abs=1e-6)  # not the share 2/3


def test_applying_a_tuned_scorer_to_a_run_writes_the_tuned_readout(amortised_out):
    """recal apply's function: every stored question scored through the artifact's own scoring,
    as score_samples scores it, and the held-out rows are the readouts tune judged."""
    from recal.repair import apply_scorer
    from recal.tuning import HeldoutScores

    tmp, store, report = amortised_out
    scorer = load_scorer(tmp / "out" / "scorer", backend=_backend())
    rows = apply_scorer(store, scorer)
    questions = {q.id: q for q in store.questions()}
    records = store.samples_by_id()
    assert [r.id for r in rows] == [q.id for q in store.questions()]
    for row in rows:
        direct = scorer.score_samples(questions[row.id], records[row.id].samples)
        assert (row.answer, row.raw_confidence, row.confidence) == (
            direct.answer, direct.raw_confidence, direct.confidence)
        assert row.correct == (row.answer == questions[row.id].answers[0])
    # the hard questions' modal share is 2/8; the tuned readout is not that share
    shares = {r.id: r.raw_confidence for r in rows if int(r.id[1:]) % 2}
    assert not all(v == pytest.approx(2 / M) for v in shares.values())
    held = HeldoutScores.load(tmp / "out" / "heldout.json")
    conf, _ = held.rows[held.tuned]
    by_id = {r.id: r for r in rows}
    np.testing.assert_allclose([by_id[i].raw_confidence for i in held.ids], conf, atol=1e-5)
    # the identity map: calibrated is the readout itself
    assert all(r.confidence == pytest.approx(r.raw_confidence) for r in rows)
    assert rows[0].to_dict().keys() == {"id", "answer", "confidence", "calibrated", "correct"}


def test_applying_a_scorer_refuses_another_models_run(amortised_out):
    from recal.repair import apply_scorer

    tmp, store, _ = amortised_out
    scorer = load_scorer(tmp / "out" / "scorer", backend=_backend())
    scorer.model = {**scorer.model, "config_hash": "0" * 16}
    with pytest.raises(ValueError, match="another model"):
        apply_scorer(store, scorer)


def test_scorer_with_a_changed_adapter_is_refused(amortised_out, tmp_path):
    import shutil

    tmp, _, _ = amortised_out
    copy = tmp_path / "scorer"
    shutil.copytree(tmp / "out" / "scorer", copy)
    with (copy / "adapter" / "head.safetensors").open("r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(ScorerFormatError, match="does not match the sha256"):
        load_scorer(copy)


def test_training_resumes_from_the_last_checkpoint(tmp_path):
    store = _store(tmp_path / "run", _backend())
    first = tune(store, AmortisedConfig(max_epochs=1, n_resamples=20), tmp_path / "out",
                 backend=_backend(), progress=False)
    assert first.training.epochs == 1 and not first.training.resumed
    again = tune(store, AmortisedConfig(max_epochs=3, n_resamples=20), tmp_path / "out",
                 backend=_backend(), progress=False)
    assert again.training.resumed and again.training.epochs == 3
    assert [h["epoch"] for h in again.training.history] == [1, 2, 3]
    assert again.training.history[0] == first.training.history[0]
    with pytest.raises(ValueError, match="holds a training run with other settings"):
        tune(store, AmortisedConfig(rank=4, n_resamples=20), tmp_path / "out",
             backend=_backend(), progress=False)
    other = _store(tmp_path / "run2", _backend(), n=20)  # other questions, same settings
    with pytest.raises(ValueError, match="holds a training run of another model, run or split"):
        tune(other, AmortisedConfig(max_epochs=3, n_resamples=20), tmp_path / "out",
             backend=_backend(), progress=False)


def test_cli_tune_writes_adapter_report_and_scorer(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from recal.cli import app
    from recal.models.hf import load_transformers

    _store(tmp_path / "run", load_transformers(str(tiny_model_dir)))
    result = CliRunner().invoke(app, ["tune", str(tmp_path / "run"), "--method", "amortised",
                                      "--epochs", "2", "--resamples", "20", "--out",
                                      str(tmp_path / "tuned"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "amortised (one pass)" in result.output
    for name in ("report.json", "table.md", "adapter/adapter_model.safetensors",
                 "scorer/scorer.json"):
        assert (tmp_path / "tuned" / name).exists()
    report = json.loads((tmp_path / "tuned" / "report.json").read_text())
    assert report["training"]["seconds"] > 0
    bad = CliRunner().invoke(app, ["tune", str(tmp_path / "run"), "--method", "amortized"])
    assert bad.exit_code == 2 and "did you mean 'amortised'" in bad.output


def test_sharpen_target_is_the_fitted_power_of_the_shares(tmp_path):
    from recal.confidence import classify_run
    from recal.semantic import get_collapser

    store = _store(tmp_path / "run", _backend())
    collapser = get_collapser("normalized")
    items = classify_run(store, collapser)
    method = get_method("distribution")(DistributionConfig(target="sharpen", max_classes=2))
    method.prepare(items[:12], items[:16], collapser, _backend(), "concise", 0)
    # A hard question has four tied classes: any power keeps them tied, and the two kept
    # (max_classes) share the mass equally.
    assert method.beta is not None and 0.2 <= method.beta <= 8.0
    hard = method.target_distribution(items[1], collapser)
    assert hard == pytest.approx({"ab": 0.25, "cd": 0.25, "ef": 0.25, "gh": 0.25})
    rows = method.rows(items[1:2])
    assert len(rows) == 2 and sum(r.weight for r in rows) == pytest.approx(1.0)
    assert all(r.answer[-1] == items[1].record.samples[0].token_ids[-1] for r in rows)


def test_post_hoc_scorers_keep_schema_1(tmp_path):
    from recal.calibrators import IdentityRecalibrator
    from recal.scorer import CalibratedScorer

    scorer = CalibratedScorer(IdentityRecalibrator().fit([0.0, 1.0], [0, 1]), "normalized",
                              "modal_share", "concise", dict(SAMPLING), {"name": "m"})
    doc = json.loads((scorer.save(tmp_path / "s") / "scorer.json").read_text())
    assert doc["schema"] == 1 and "adapter" not in doc
    assert load_scorer(tmp_path / "s").adapter is None


def test_cached_bottom_layers_give_the_full_models_outputs():
    """Training on cached frozen layers (train_layers < depth) computes what the whole model
    with the adapter computes, for answers (right-padded) and prompts (left-padded)."""
    import copy

    from recal.tuning.sequences import PromptRow, cache_bottom, collate_prompts, last_hidden
    from recal.tuning.trainer import make_peft

    backend = _backend()
    model = make_peft(copy.deepcopy(backend.model), AmortisedConfig(train_layers=1))
    with torch.no_grad():  # a non-zero adapter, so that the top layer's LoRA matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    assert all(".layers.1." in n for n, p in model.named_parameters() if p.requires_grad)
    answers = [AnswerRow((5, 6, 7, 8)[: 2 + i % 3], (9, 10, 2)[: 1 + i % 3]) for i in range(5)]
    cached = cache_bottom(backend.model, answers, 1, 0, 256, batch_size=2)
    full = answer_logprobs(model, collate_answers(answers, 0, 256))
    top = answer_logprobs(model, collate_answers(cached, 0, 256, top=1))
    torch.testing.assert_close(top, full)
    prompts = [PromptRow((5, 6, 7, 8, 9)[: 2 + i % 4]) for i in range(5)]
    cached_prompts = cache_bottom(backend.model, prompts, 1, 0, 256, batch_size=3)
    torch.testing.assert_close(last_hidden(model, collate_prompts(cached_prompts, 0, top=1)),
                               last_hidden(model, collate_prompts(prompts, 0)))
