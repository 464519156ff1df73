"""Confidence scorers: from a question's stored samples to (answer, confidence, correct).

Every scorer reads the same stored samples, already grouped into meaning classes by one
collapsing function B (:func:`classify`), so that many scorers are compared on one run:

=================  ===============================================  ======================
scorer             confidence                                       needs
=================  ===============================================  ======================
modal_share        share of the modal class among the M samples     samples
heldout_modal      share, in the second half of the samples, of     samples (M >= 2)
                   the modal class of the first half
semantic_entropy   exp(-H), H the entropy of the class shares       samples
greedy_likelihood  exp(mean log-prob per token) of the greedy       the greedy answer
                   answer
verbalized         the model's own 0-100% answer, read as a         the model
                   probability (:func:`parse_verbalized`)
p_true             P(yes) / (P(yes) + P(no)) when the model is      the model, next-token
                   asked whether the proposed answer is true        probabilities
=================  ===============================================  ======================

The answer judged is the modal class, except for greedy_likelihood (the greedy answer's class)
and heldout_modal (the first half's modal class). The plug-in modal share is biased upward on
hard questions, because the same samples choose the class and measure its share; the held-out
variant does not reuse them, so its share is an unbiased estimate of the probability the model
gives that class (Nakkiran et al. 2025, arXiv 2511.04869).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recal.data.records import Question
from recal.models.base import Backend, first_token_ids
from recal.prompts import Prompt
from recal.registry import Registry
from recal.runstore import RunStore
from recal.samples import QuestionSamples, SamplingConfig
from recal.semantic.base import Collapser, distribution

__all__ = [
    "Classified",
    "Prediction",
    "SCORERS",
    "SCORER_INPUTS",
    "Scorer",
    "classify",
    "classify_run",
    "get_scorer",
    "lacking_inputs",
    "parse_verbalized",
    "run_inputs",
    "unparsed_note",
    "yes_no_token_keys",
]


@dataclass(frozen=True)
class Classified:
    """A question's samples with the class B gave each of them (and the greedy answer)."""

    question: Question
    record: QuestionSamples
    labels: tuple[str, ...]
    greedy_label: str | None

    def counts(self) -> list[tuple[str, int]]:
        """Classes by count, largest first; ties go to the class seen first (deterministic)."""
        dist = distribution(self.labels)
        return list(zip(dist.classes, dist.counts, strict=True))

    def text_of(self, label: str) -> str:
        """A sampled text in the class (the first), to show or to ask the model about."""
        for text, lab in zip((s.text for s in self.record.samples), self.labels, strict=True):
            if lab == label:
                return text
        return label


@dataclass(frozen=True)
class Prediction:
    """What a scorer says about one question."""

    question_id: str
    answer: str
    """The predicted class label."""
    confidence: float
    correct: bool
    extra: dict[str, Any] = field(default_factory=dict)


DEFAULT_CONFIDENCES = ("modal_share", "heldout_modal", "semantic_entropy", "greedy_likelihood")
"""The confidence scorers `recal measure` reports unless told otherwise (none needs the model)."""


def unparsed_note(scorer: str, predictions: Sequence[Prediction]) -> str | None:
    """"verbalized: 12 of 100 replies unparsed (scored 0.5)" when some predictions carry
    ``extra['unparsed']`` (replies the scorer could not read and replaced by its fallback);
    ``None`` when every reply was read or the scorer reads no replies."""
    unparsed = [p for p in predictions if p.extra.get("unparsed")]
    if not unparsed:
        return None
    values = sorted({p.confidence for p in unparsed})
    shown = ", ".join(f"{v:g}" for v in values)
    return (f"{scorer}: {len(unparsed)} of {len(predictions)} replies unparsed "
            f"(scored {shown})")


def classify_run(store: RunStore, collapser: Collapser,
                 ids: Sequence[str] | None = None) -> list[Classified]:
    """The finished questions of a run (or those of ``ids``), in the run's question order."""
    records = store.samples_by_id()
    wanted = set(records) if ids is None else set(ids)
    missing = wanted - set(records)
    if missing:
        raise ValueError(f"{store.path} has no samples for {len(missing)} of the questions asked "
                         f"(first: {sorted(missing)[0]!r})")
    questions = [q for q in store.questions() if q.id in wanted]
    return classify(questions, [records[q.id] for q in questions], collapser)


def classify(questions: Sequence[Question], records: Sequence[QuestionSamples],
             collapser: Collapser) -> list[Classified]:
    """Group every question's samples (and its greedy answer) into classes under ``collapser``."""
    if len(questions) != len(records):
        raise ValueError(f"got {len(questions)} questions for {len(records)} sample records")
    out = []
    for q, rec in zip(questions, records, strict=True):
        if q.id != rec.question_id:
            raise ValueError(f"question {q.id!r} is paired with the samples of {rec.question_id!r}")
        texts = [s.text for s in rec.samples]
        if rec.greedy is not None:
            texts.append(rec.greedy.text)  # joins the sample classes under clustering Bs
        labels = collapser.collapse(q, texts)
        greedy = labels.pop() if rec.greedy is not None else None
        out.append(Classified(q, rec, tuple(labels), greedy))
    return out


SCORER_INPUTS: dict[str, str] = {
    "samples": "the M sampled answers of each question, grouped into classes",
    "two_samples": "at least 2 samples per question",
    "greedy": "the greedy answer of each question (sample with greedy=True)",
    "backend": "the model itself, asked again while scoring (pass a backend)",
    "next_token_logprobs": "a backend that exposes next-token log-probabilities",
    "token_logprobs": "the token log-probabilities of the stored answers",
}
"""What a confidence scorer may need, by the word a scorer's ``needs`` uses."""


def run_inputs(manifest: dict[str, Any]) -> frozenset[str]:
    """The inputs of :data:`SCORER_INPUTS` a stored run holds (the model is not among them): the
    samples always, two of them when M >= 2, the greedy answer when ``sampling.greedy``, token
    log-probabilities unless ``sampling.logprobs`` is false (an imported run without them)."""
    sampling = manifest.get("sampling") or {}
    held = {"samples"}
    if int(sampling.get("n_samples") or 0) >= 2:
        held.add("two_samples")
    if sampling.get("greedy"):
        held.add("greedy")
    if sampling.get("logprobs", True) is not False:
        held.add("token_logprobs")
    return frozenset(held)


def lacking_inputs(scorer: str, manifest: dict[str, Any], *, model: bool) -> str | None:
    """Why the confidence scorer ``scorer`` cannot run on the stored run of ``manifest``
    ("needs ..., which this run lacks"), or None when it can; ``model``: whether the model
    itself can be asked."""
    held = set(run_inputs(manifest)) | ({"backend", "next_token_logprobs"} if model else set())
    lacking = sorted(get_scorer(scorer).needs - held)
    if not lacking:
        return None
    source = (manifest.get("source") or {}).get("format")
    run = f"this run (imported from {source})" if source else "this run"
    return f"needs {'; '.join(SCORER_INPUTS[k] for k in lacking)}, which {run} lacks"


class Scorer(ABC):
    """Turns classified samples into predictions. Scorers that ask the model take a backend.

    ``needs`` declares the inputs (keys of :data:`SCORER_INPUTS`) a scorer reads, so callers can
    refuse a run that lacks them before any work; ``needs_backend`` follows from it.
    """

    name: str
    needs: frozenset[str] = frozenset({"samples"})
    needs_backend: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("needs_backend") and "backend" not in cls.needs:  # the older spelling
            cls.needs = frozenset(cls.needs) | {"backend"}
        unknown = set(cls.needs) - set(SCORER_INPUTS)
        if unknown:
            raise ValueError(f"scorer {cls.__name__} needs unknown input(s) {sorted(unknown)}; "
                             f"known: {', '.join(SCORER_INPUTS)}")
        cls.needs_backend = "backend" in cls.needs

    @abstractmethod
    def score(self, items: Sequence[Classified], collapser: Collapser,
              backend: Backend | None = None) -> list[Prediction]:
        ...

    def _backend(self, backend: Backend | None) -> Backend:
        if backend is None:
            raise ValueError(f"the {self.name} scorer asks the model: pass a backend")
        return backend


SCORERS: Registry[type[Scorer]] = Registry("confidence scorer")
"""Confidence scorers by name (the table in this module's docstring): Scorer subclasses whose
``name`` is the registered name, registered with ``@SCORERS.register(name, help=...)``."""


def get_scorer(name: str) -> Scorer:
    """A new scorer of the kind registered as ``name`` (unknown names: "did you mean" KeyError)."""
    return SCORERS.get(name)()


def _modal(item: Classified) -> tuple[str, int]:
    return item.counts()[0]


@SCORERS.register("modal_share", help="share of the modal class among the M samples")
class ModalShare(Scorer):
    """The plug-in confidence: the modal class's share of the M samples."""

    name = "modal_share"

    def score(self, items, collapser, backend=None):
        out = []
        for item in items:
            label, count = _modal(item)
            out.append(Prediction(item.question.id, label, count / len(item.labels),
                                  collapser.is_correct(item.question, label),
                                  {"classes": dict(item.counts())}))
        return out


@SCORERS.register("heldout_modal",
                 help="share, in the second half of the samples, of the first half's modal class")
class HeldOutModalShare(Scorer):
    """Modal class of the first half of the samples; confidence: its share in the second half."""

    name = "heldout_modal"
    needs = frozenset({"samples", "two_samples"})

    def score(self, items, collapser, backend=None):
        out = []
        for item in items:
            m = len(item.labels)
            if m < 2:
                raise ValueError(f"heldout_modal needs at least 2 samples per question, "
                                 f"question {item.question.id!r} has {m}")
            first, second = item.labels[: m // 2], item.labels[m // 2:]
            label = distribution(first).modal
            conf = second.count(label) / len(second)
            out.append(Prediction(item.question.id, label, conf,
                                  collapser.is_correct(item.question, label)))
        return out


@SCORERS.register("semantic_entropy", help="exp(-H), H the entropy of the class shares")
class SemanticEntropy(Scorer):
    """Confidence exp(-H) = 1 / (effective number of classes), H = -sum p_c log p_c
    (semantic entropy of Kuhn, Gal & Farquhar 2023, over the class shares)."""

    name = "semantic_entropy"

    def score(self, items, collapser, backend=None):
        out = []
        for item in items:
            counts = item.counts()
            m = len(item.labels)
            entropy = -sum(c / m * math.log(c / m) for _, c in counts)
            label = counts[0][0]
            out.append(Prediction(item.question.id, label, math.exp(-entropy),
                                  collapser.is_correct(item.question, label),
                                  {"entropy": entropy}))
        return out


@SCORERS.register("greedy_likelihood", help="exp(mean log-prob per token) of the greedy answer")
class GreedyLikelihood(Scorer):
    """exp of the greedy answer's mean log-probability per token (its stop token included)."""

    name = "greedy_likelihood"
    needs = frozenset({"samples", "greedy", "token_logprobs"})

    def score(self, items, collapser, backend=None):
        out = []
        for item in items:
            greedy = item.record.greedy
            if greedy is None or item.greedy_label is None:
                raise ValueError(f"question {item.question.id!r} has no greedy answer; sample "
                                 "with greedy=True for the greedy_likelihood scorer")
            if not greedy.logprobs:
                raise ValueError(f"greedy_likelihood: the greedy answer of question "
                                 f"{item.question.id!r} has no token log-probabilities (the "
                                 "backend returned none); use a scorer that reads the samples")
            conf = math.exp(greedy.logprob / len(greedy.logprobs))
            out.append(Prediction(item.question.id, item.greedy_label, conf,
                                  collapser.is_correct(item.question, item.greedy_label)))
        return out


_ASK = "Question: {q}\nProposed answer: {a}\n"
_VERBAL = ("How confident are you that the proposed answer is correct? Reply with a number "
           "from 0 to 100 (a percentage) and nothing else.")
_TRUE = "Is the proposed answer true? Reply with yes or no."


def _ask(question: str, answer: str, instruction: str, chat: bool, prefix: str) -> Prompt:
    body = _ASK.format(q=question, a=answer) + instruction
    return Prompt(messages=(("user", body),)) if chat else Prompt(text=body + f"\n{prefix}")


# A number (".9", "85", "7.5"), optionally a fraction ("7/10", "7 out of 10") or a percentage.
_NUMBER = re.compile(
    r"(?<![\d.])(\d+(?:\.\d+)?|\.\d+)(?![\d.]*\d)"
    r"(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)(?![\d.]*\d))?"
    r"\s*(%|percent)?",
    re.IGNORECASE)
# "50/50", "50-50": even odds, not the fraction 50/50 = 1.
_EVEN_ODDS = re.compile(r"(?<![\d.])50\s*[/-]\s*50(?![\d.]*\d)")


def parse_verbalized(text: str) -> float | None:
    """A 0-1 confidence from a reply such as '85', '85%', 'I am 90 percent sure', '0.7', '7/10'.

    The first readable number counts, read by these rules:

    * ``a/b`` or ``a out of b`` (``0 <= a <= b``, ``b > 0``): the fraction ``a / b``
      ('7/10' is 0.7, '85/100' is 0.85), except the idiom '50/50' (or '50-50'): even odds, 0.5;
    * a number with a percent sign or the word 'percent': that many percent, up to 100;
    * a bare number in [0, 1] ('0.7', '.9', '1', '0'): a probability, so '1' is certainty and
      '1%' is 0.01. The prompt asks for 0-100, but a reply of exactly '1' or '0.7' is how models
      state a probability; reading '1' as 1% would turn the most confident reply into the least;
    * a bare number in (1, 100]: a percentage ('85' is 0.85).

    Numbers above 100 (and fractions above 1) are not confidences: they are skipped, never
    clipped, so '1000' alone is unreadable. ``None`` when no number is readable; callers decide
    (and report) what an unreadable reply becomes.
    """
    if _EVEN_ODDS.search(text):
        return 0.5
    for match in _NUMBER.finditer(text):
        number, denominator, percent = match.groups()
        value = float(number)
        if denominator is not None:
            den = float(denominator)
            if den > 0 and value <= den:
                return value / den
            continue
        if percent is None and value <= 1:
            return value
        if value <= 100:
            return value / 100
    return None


@SCORERS.register("verbalized", help="the model's own 0-100% confidence in the modal answer")
class Verbalized(Scorer):
    """Asks the model for its confidence in the modal answer, in percent (greedy reply), read by
    :func:`parse_verbalized`.

    A reply with no readable number gets the confidence ``fallback`` (0.5) and is marked
    ``extra['unparsed'] = True``; :func:`unparsed_note` counts them for the report, which must
    show the count, since every such 0.5 is the scorer's guess and not the model's.
    """

    name = "verbalized"
    fallback: float = 0.5
    needs = frozenset({"samples", "backend"})

    def score(self, items, collapser, backend=None):
        model = self._backend(backend)
        labels = [_modal(item)[0] for item in items]
        prompts = [_ask(item.question.question, item.text_of(label), _VERBAL, model.is_chat,
                        "Confidence:") for item, label in zip(items, labels, strict=True)]
        config = SamplingConfig(n_samples=1, greedy=True, max_new_tokens=8, stop_at_newline=True)
        ids = [item.question.id for item in items]
        replies = {r.question_id: r.greedy.text for r in model.generate(ids, prompts, config)}
        out = []
        for item, label in zip(items, labels, strict=True):
            parsed = parse_verbalized(replies[item.question.id])
            out.append(Prediction(item.question.id, label,
                                  self.fallback if parsed is None else parsed,
                                  collapser.is_correct(item.question, label),
                                  {"reply": replies[item.question.id],
                                   "unparsed": parsed is None}))
        return out


_YES = ("Yes", "yes", " Yes", " yes", "YES")
_NO = ("No", "no", " No", " no", "NO")


def yes_no_token_keys(backend: Backend, candidates: Sequence[str]) -> list[object] | None:
    """The first token id of each candidate, as ``backend.next_token_logprobs`` reads it, when
    the backend has a tokenizer (``backend.tokenizer``: the transformers and vLLM backends);
    ``None`` when it has none (a server), whose values can then only be told apart by value.

    Spellings that begin with the same token ("Yes" and "Yes!") give the same next-token
    probability and must be counted once; two different tokens that happen to have the same
    log-probability must both count.
    """
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None:
        return None
    return list(first_token_ids(tokenizer, candidates))


def _sum_distinct(values: Sequence[float], keys: Sequence[object] | None) -> float:
    """sum of exp(value) over distinct keys (distinct values when there are no keys)."""
    if keys is None:
        return sum(math.exp(x) for x in set(values))
    seen: dict[object, float] = {}
    for key, value in zip(keys, values, strict=True):
        seen.setdefault(key, value)
    return sum(math.exp(x) for x in seen.values())


@SCORERS.register("p_true",
                 help="P(yes) / (P(yes) + P(no)), the model asked if its modal answer is true")
class PTrue(Scorer):
    """P(true) of Kadavath et al. 2022: the model is shown its modal answer and asked whether it
    is true; confidence = P(yes) / (P(yes) + P(no)) over the first answer token, summing the
    spellings of yes and of no, each first token once (:func:`yes_no_token_keys`; a backend
    without a tokenizer falls back to counting each distinct log-prob value once).

    When neither yes nor no has any probability (a server whose top tokens list neither), the
    confidence is ``fallback`` (0.5) and ``extra['unparsed']`` is True, counted by
    :func:`unparsed_note` like verbalized's unreadable replies."""

    name = "p_true"
    fallback: float = 0.5
    needs = frozenset({"samples", "backend", "next_token_logprobs"})

    def score(self, items, collapser, backend=None):
        model = self._backend(backend)
        labels = [_modal(item)[0] for item in items]
        prompts = [_ask(item.question.question, item.text_of(label), _TRUE, model.is_chat,
                        "Answer:") for item, label in zip(items, labels, strict=True)]
        logprobs = model.next_token_logprobs(prompts, _YES + _NO)
        keys = yes_no_token_keys(model, _YES + _NO)
        yes_keys = None if keys is None else keys[: len(_YES)]
        no_keys = None if keys is None else keys[len(_YES):]
        out = []
        for item, label, row in zip(items, labels, logprobs, strict=True):
            yes = _sum_distinct(row[: len(_YES)], yes_keys)
            no = _sum_distinct(row[len(_YES):], no_keys)
            seen = yes + no > 0  # a server lists neither among its top tokens: no reading
            out.append(Prediction(item.question.id, label,
                                  yes / (yes + no) if seen else self.fallback,
                                  collapser.is_correct(item.question, label),
                                  {"p_yes": yes, "p_no": no, "unparsed": not seen}))
        return out
