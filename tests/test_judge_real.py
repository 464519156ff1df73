"""The LLM judge B with the real packaged chat model (SmolLM2-135M-Instruct): its classes and
its grading follow the verdicts the model gave."""

from __future__ import annotations

import pytest
from conftest import load_smollm2_or_skip

from recal.data.records import Question
from recal.semantic.judge import JudgeCollapser

pytestmark = pytest.mark.slow

FRANCE = Question("fr", "What is the capital of France?", ("Paris",))


@pytest.fixture(scope="module")
def smollm2():
    return load_smollm2_or_skip()


def test_judge_classes_follow_the_real_models_verdicts(smollm2):
    judge = JudgeCollapser(backend=smollm2)
    labels = judge.collapse(FRANCE, ["Paris", "London", "Paris", "Lyon"])
    q = FRANCE.question
    same = {pair: judge._verdicts[(q, *pair)] for pair in
            [("Paris", "London"), ("Paris", "Lyon")]}
    # Worked from the verdicts by the rule in the module doc: each answer joins the first
    # representative the judge equates it with; what joins Paris is graded right with it.
    expected_london = "paris" if same[("Paris", "London")] else "london"
    if same[("Paris", "Lyon")]:
        expected_lyon = "paris"
    elif not same[("Paris", "London")] and judge._verdicts[(q, "London", "Lyon")]:
        expected_lyon = "london"
    else:
        expected_lyon = "lyon"
    assert labels == ["paris", expected_london, "paris", expected_lyon]
    asked_london_lyon = not same[("Paris", "London")] and not same[("Paris", "Lyon")]
    assert judge.prompts_sent == 2 + asked_london_lyon
    assert 0 <= judge.unparsed <= judge.prompts_sent
    # The model's replies were read: at least one was a yes or a no.
    assert judge.unparsed < judge.prompts_sent, "SmolLM2 answered no judge prompt with yes/no"
