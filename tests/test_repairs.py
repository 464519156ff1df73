"""The registry of repair methods: one interface, defaults from it, a contract for every entry."""

from __future__ import annotations

import numpy as np
import pytest

from recal.calibrators import IsotonicRecalibrator, get_recalibrator
from recal.confidence import Classified, Prediction
from recal.judged import JudgedRun, Split
from recal.repair import DEFAULT_METHODS
from recal.repairs import (
    FAMILIES,
    REPAIR_METHODS,
    RepairMethod,
    RepairTask,
    default_methods,
    register_repair,
)
from recal.repairs.base import _DEFAULTS


def _task(n: int = 80, seed: int = 0) -> RepairTask:
    """A judged run of n questions whose confidence c is right with probability c ** 3."""
    from recal.data.records import Question
    from recal.samples import QuestionSamples
    from recal.semantic import get_collapser

    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 1.0, n)
    corr = rng.random(n) < conf ** 3
    items = [Classified(Question(f"q{i}", "?", ("a",)), QuestionSamples(f"q{i}", ()), (), None)
             for i in range(n)]
    predictions = [Prediction(f"q{i}", "a", float(c), bool(k))
                   for i, (c, k) in enumerate(zip(conf, corr, strict=True))]
    judged = JudgedRun(items, get_collapser("normalized"), "modal_share", predictions,
                       Split.random(0.5, seed), n_resamples=20)
    return RepairTask(judged)


def test_default_lists_come_from_the_registry():
    assert DEFAULT_METHODS == ("identity", "temperature", "platt", "isotonic", "histogram",
                               "beta")
    assert default_methods("post-hoc", "sampling") == (*DEFAULT_METHODS, "sampling_temperature")
    assert all(name.startswith(("netcal:", "sklearn:")) for name in default_methods("peer"))
    assert not default_methods("lora")  # they train: asked for by name
    with pytest.raises(ValueError, match="unknown family"):
        default_methods("posthoc")


def test_every_entry_has_a_known_family_and_unknown_names_get_a_suggestion():
    for name, method in REPAIR_METHODS.items():
        assert method.family in FAMILIES, name
    with pytest.raises(KeyError, match="did you mean 'isotonic'"):
        REPAIR_METHODS.get("isotonc")


@pytest.mark.parametrize("name", [n for n, m in REPAIR_METHODS.items()
                                  if m.family in ("post-hoc", "peer")])
def test_every_map_gives_probabilities_for_the_heldout_questions(name):
    if name.startswith("netcal"):
        pytest.importorskip("netcal")
    task = _task()
    outcome = REPAIR_METHODS.get(name).run(task)
    held_conf, held_corr = task.judged.heldout()
    assert outcome is not None and outcome.confidence.shape == held_conf.shape
    assert np.all((outcome.confidence >= 0) & (outcome.confidence <= 1))
    np.testing.assert_array_equal(outcome.correct, held_corr)  # maps keep the answers
    assert outcome.sequences_factor == 1.0 and outcome.extra_sequences == 0.0


def test_a_post_hoc_entry_is_its_recalibrator_fitted_on_the_calibration_split():
    task = _task()
    outcome = REPAIR_METHODS.get("isotonic").run(task)
    cal_conf, cal_corr = task.judged.calibration()
    direct = IsotonicRecalibrator().fit(cal_conf, cal_corr)
    np.testing.assert_allclose(outcome.confidence, direct.predict_proba(task.judged.heldout()[0]))
    assert outcome.state == direct.to_dict()  # serialisable: what export writes
    assert get_recalibrator("isotonic").from_dict(outcome.state).predict_proba([0.5]).shape == (1,)


def test_sampling_and_lora_entries_skip_tasks_they_do_not_apply_to():
    task = _task()  # no run store, hence no temperature grid
    assert REPAIR_METHODS.get("sampling_temperature").run(task) is None
    other = _task()
    other.judged.scorer = "semantic_entropy"
    assert REPAIR_METHODS.get("lora:amortised").run(other) is None


def test_a_new_method_is_one_class_and_one_registration():
    class Half(RepairMethod):
        family = "post-hoc"

        def fit_predict(self, cal_conf, cal_corr, conf):
            return np.full(len(conf), 0.5)

    try:
        register_repair("half", Half(), default=True, help="half the confidence")
        assert default_methods("post-hoc")[-1] == "half"
        outcome = REPAIR_METHODS.get("half").run(_task())
        assert outcome is not None and set(outcome.confidence) == {0.5}
        with pytest.raises(ValueError, match="already registered"):
            register_repair("half", Half(), help="half the confidence")
    finally:
        REPAIR_METHODS._entries.pop("half", None)
        if "half" in _DEFAULTS:
            _DEFAULTS.remove("half")
