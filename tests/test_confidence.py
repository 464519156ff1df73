"""Confidence scorers on constructed samples (known values) and on the tiny model (plumbing)."""

from __future__ import annotations

import math
import random

import pytest

from recal.confidence import SCORERS, classify, get_scorer, parse_verbalized
from recal.data.records import Question
from recal.models.base import Backend, ModelIdentity
from recal.samples import QuestionSamples, Sample
from recal.semantic import get_collapser

Q = Question("fr", "What is the capital of France?", ("Paris",))


def _sample(text: str, logprobs=(-0.5,)) -> Sample:
    return Sample(text=text, token_ids=tuple(range(len(logprobs))), logprobs=tuple(logprobs),
                  finish_reason="stop")


def _items(texts, greedy=None, question=Q):
    record = QuestionSamples(question.id, tuple(_sample(t) for t in texts), greedy)
    return classify([question], [record], get_collapser("normalized"))


def _score(name, texts, greedy=None, backend=None):
    collapser = get_collapser("normalized")
    return get_scorer(name).score(_items(texts, greedy), collapser, backend)[0]


def test_modal_share_counts_meanings_not_strings():
    p = _score("modal_share", ["Paris", "paris.", "The capital of France is Paris.", "London"])
    assert p.answer == "paris" and p.confidence == 0.75 and p.correct
    assert p.extra["classes"] == {"paris": 3, "london": 1}
    wrong = _score("modal_share", ["London", "London", "Paris"])
    assert wrong.answer == "london" and wrong.confidence == pytest.approx(2 / 3)
    assert not wrong.correct


def test_modal_ties_go_to_the_class_seen_first():
    p = _score("modal_share", ["London", "Paris", "Paris", "London"])
    assert p.answer == "london" and p.confidence == 0.5 and not p.correct


def test_heldout_modal_picks_on_one_half_and_measures_on_the_other():
    p = _score("heldout_modal", ["Paris", "Paris", "London", "Rome",
                                 "London", "London", "Paris", "London"])
    assert p.answer == "paris" and p.confidence == 0.25 and p.correct
    with pytest.raises(ValueError, match="at least 2 samples"):
        _score("heldout_modal", ["Paris"])


def test_heldout_modal_removes_the_upward_bias_of_the_plug_in():
    """Five equally likely answers: the true share of any answer is 0.2. The plug-in modal share
    of 10 samples averages far above it; the held-out share averages 0.2."""
    rng = random.Random(0)
    answers = ["Paris", "Lyon", "Nice", "Lille", "Metz"]
    items = []
    for i in range(400):
        q = Question(f"q{i}", "What is the capital of France?", ("Paris",))
        items += _items([rng.choice(answers) for _ in range(10)], question=q)
    collapser = get_collapser("normalized")
    plug_in = [p.confidence for p in get_scorer("modal_share").score(items, collapser)]
    held_out = [p.confidence for p in get_scorer("heldout_modal").score(items, collapser)]
    assert sum(plug_in) / len(plug_in) > 0.3
    assert abs(sum(held_out) / len(held_out) - 0.2) < 0.025


def test_semantic_entropy_is_exp_minus_entropy():
    assert _score("semantic_entropy", ["Paris", "London"]).confidence == pytest.approx(0.5)
    assert _score("semantic_entropy", ["Paris", "paris"]).confidence == pytest.approx(1.0)
    p = _score("semantic_entropy", ["a", "a", "b", "c"])
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert p.confidence == pytest.approx(math.exp(-h))


def test_greedy_likelihood_is_the_per_token_geometric_mean():
    greedy = _sample("Paris", logprobs=(-0.1, -0.3))
    p = _score("greedy_likelihood", ["London", "London"], greedy=greedy)
    assert p.answer == "paris" and p.correct and p.confidence == pytest.approx(math.exp(-0.2))
    with pytest.raises(ValueError, match="no greedy answer"):
        _score("greedy_likelihood", ["Paris"])


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("85", 0.85), ("85%", 0.85), ("I am 90 percent sure.", 0.9), ("0.7", 0.7),
     ("Confidence: 100", 1.0), ("about 5 %", 0.05), ("no idea", None), ("250", None),
     ("7.5%", 0.075),
     # A bare number in [0, 1] is a probability, whatever its spelling; "1%" is one percent.
     ("1", 1.0), ("0", 0.0), ("1%", 0.01), (".9", 0.9), ("Confidence: .85", 0.85),
     # Fractions are fractions, not the first number on its own.
     ("7/10", 0.7), ("7 / 10", 0.7), ("85/100", 0.85), ("3 out of 4", 0.75), ("11/10", None),
     ("10/10", 1.0), ("50/50", 0.5), ("It's 50-50.", 0.5),
     # Numbers above 100 are not confidences: never clipped to 1, never cut to their first digits.
     ("1000", None), ("100.5", None), ("1000, I mean 80", 0.8)],
)
def test_parse_verbalized(reply, expected):
    got = parse_verbalized(reply)
    assert got == (None if expected is None else pytest.approx(expected))


class _FixedBackend(Backend):
    """Answers every yes/no question with fixed probabilities; replies '70%' when asked."""

    def __init__(self, p_yes: float) -> None:
        self.identity = ModelIdentity("fixed", "chat", "test", "none", "0")
        self.p_yes = p_yes

    def generate(self, question_ids, prompts, config):
        for qid in question_ids:
            yield QuestionSamples(qid, (_sample("70%"),), _sample("70%"))

    def next_token_logprobs(self, prompts, candidates):
        yes = {"Yes": self.p_yes, "No": 1 - self.p_yes}
        return [[math.log(yes[c]) if c in yes else -50.0 for c in candidates] for _ in prompts]


def test_p_true_and_verbalized_read_the_model():
    assert _score("p_true", ["Paris"], backend=_FixedBackend(0.8)).confidence == pytest.approx(
        0.8, abs=1e-6)
    p = _score("verbalized", ["Paris", "Lyon", "Paris"], backend=_FixedBackend(0.5))
    assert p.confidence == pytest.approx(0.7) and p.answer == "paris" and p.correct
    with pytest.raises(ValueError, match="pass a backend"):
        _score("p_true", ["Paris"])


def test_model_scorers_run_on_a_real_tiny_model(tiny_chat_backend):
    # What the scorers report must follow from what the model said, by their definitions.
    p = _score("p_true", ["Paris", "Lyon"], backend=tiny_chat_backend)
    yes, no = p.extra["p_yes"], p.extra["p_no"]
    assert yes >= 0 and no >= 0 and yes + no <= 1 + 1e-9
    if p.extra["unparsed"]:
        assert yes + no == 0 and p.confidence == 0.5
    else:
        assert p.confidence == pytest.approx(yes / (yes + no))
    v = _score("verbalized", ["Paris", "Lyon"], backend=tiny_chat_backend)
    parsed = parse_verbalized(v.extra["reply"])
    assert v.extra["unparsed"] == (parsed is None)
    assert v.confidence == (0.5 if parsed is None else parsed)


def test_registry_suggests_close_names():
    assert set(SCORERS) >= {"modal_share", "heldout_modal", "semantic_entropy",
                            "greedy_likelihood", "verbalized", "p_true"}
    with pytest.raises(KeyError, match="did you mean 'modal_share'"):
        get_scorer("modal-share")


def test_classify_refuses_mismatched_records():
    record = QuestionSamples("other", (_sample("Paris"),))
    with pytest.raises(ValueError, match="paired with the samples of 'other'"):
        classify([Q], [record], get_collapser("normalized"))


def test_greedy_likelihood_refuses_an_answer_without_logprobs():
    """A server that returns no log-probabilities gives a greedy answer with none: there is no
    likelihood to report, and 1.0 (exp of an empty mean) would be the most confident claim."""
    bare = Sample(text="Paris", token_ids=(), logprobs=(), finish_reason="stop")
    with pytest.raises(ValueError, match=r"greedy_likelihood.*no token log-probabilities"):
        _score("greedy_likelihood", ["Paris"], greedy=bare)


class _MuteBackend(_FixedBackend):
    """Replies something with no number in it to every confidence question."""

    def generate(self, question_ids, prompts, config):
        for i, qid in enumerate(question_ids):
            text = "70%" if i == 0 else "I cannot say."
            yield QuestionSamples(qid, (_sample(text),), _sample(text))


def test_verbalized_marks_and_counts_unparsed_replies():
    from recal.confidence import unparsed_note

    collapser = get_collapser("normalized")
    questions = [Question(f"q{i}", "What is the capital of France?", ("Paris",))
                 for i in range(3)]
    items = [it for q in questions for it in _items(["Paris"], question=q)]
    preds = get_scorer("verbalized").score(items, collapser, _MuteBackend(0.5))
    assert [p.extra["unparsed"] for p in preds] == [False, True, True]
    assert preds[0].confidence == pytest.approx(0.7)
    assert unparsed_note("verbalized", preds) == "verbalized: 2 of 3 replies unparsed (scored 0.5)"
    assert unparsed_note("verbalized", preds[:1]) is None
    assert unparsed_note("modal_share", get_scorer("modal_share").score(items, collapser)) is None


class _Tokenizer:
    """Maps each candidate to a first token id: "Yes" and "YES" share token 1 (say, "Y"), every
    other spelling has its own token."""

    ids = {"Yes": 1, "YES": 1, "yes": 2, " Yes": 3, " yes": 4,
           "No": 5, "NO": 6, "no": 7, " No": 8, " no": 9}

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.ids[text]]}


class _TokenBackend(_FixedBackend):
    """Next-token probabilities by first token: P(token 1) = 0.3 ("Yes" and "YES" both read it),
    P("yes") = 0.1; "No", "NO" and "no" are three different tokens of probability 0.1 each."""

    tokenizer = _Tokenizer()
    probs = {1: 0.3, 2: 0.1, 5: 0.1, 6: 0.1, 7: 0.1}

    def next_token_logprobs(self, prompts, candidates):
        firsts = [self.tokenizer(c)["input_ids"][0] for c in candidates]
        return [[math.log(self.probs.get(t, 1e-30)) for t in firsts] for _ in prompts]


def test_p_true_counts_each_first_token_once_by_id_not_by_value():
    """P(yes) = P(token 1) + P("yes") = 0.4 (token 1 read twice, counted once); P(no) = 0.3 from
    three distinct tokens whose log-probs are equal (de-duplicating by value would count 0.1)."""
    p = _score("p_true", ["Paris"], backend=_TokenBackend(0.5))
    assert p.extra["p_yes"] == pytest.approx(0.4, rel=1e-9)
    assert p.extra["p_no"] == pytest.approx(0.3, rel=1e-9)
    assert p.confidence == pytest.approx(0.4 / 0.7)


class _SilentServer(_FixedBackend):
    """A server whose top tokens list no spelling of yes or no (every candidate -inf)."""

    def next_token_logprobs(self, prompts, candidates):
        return [[-math.inf] * len(candidates) for _ in prompts]


def test_p_true_marks_a_reply_with_neither_yes_nor_no_as_unparsed():
    from recal.confidence import unparsed_note

    p = _score("p_true", ["Paris"], backend=_SilentServer(0.5))
    assert p.confidence == 0.5 and p.extra["unparsed"]
    assert unparsed_note("p_true", [p]) == "p_true: 1 of 1 replies unparsed (scored 0.5)"
    assert not _score("p_true", ["Paris"], backend=_FixedBackend(0.8)).extra["unparsed"]


def test_classify_run_reads_a_run_in_its_question_order_and_refuses_missing_ids(tmp_path):
    from recal.confidence import classify_run
    from recal.runstore import RunStore

    questions = [Question(f"q{i}", f"Question {i}?", ("a",)) for i in range(3)]
    manifest = {"model": {"name": "m", "config_hash": "h"}, "style": "concise"}
    store = RunStore.create_or_resume(tmp_path / "run", manifest, questions)
    for q in reversed(questions[1:]):  # stored out of order; q0 never answered
        store.append(QuestionSamples(q.id, (_sample("a"), _sample("b"), _sample("a"))))
    collapser = get_collapser("normalized")
    items = classify_run(store, collapser)
    assert [it.question.id for it in items] == ["q1", "q2"]
    assert [it.question.id for it in classify_run(store, collapser, ["q2"])] == ["q2"]
    with pytest.raises(ValueError, match=r"no samples for 1 of the questions asked.*'q0'"):
        classify_run(store, collapser, ["q0", "q1"])
