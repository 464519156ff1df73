"""A seeded synthetic question-answering world whose true answer distributions are known.

Each *entity* (a made-up name such as "zorpik") has one value per *attribute* (its colour, where
it lives), but the world is uncertain: a fact is either certain (one value with p = 1) or split
between two or three values with known probabilities (0.6/0.4, 0.5/0.3/0.2, ...). Each fact is
asked in three styles, told apart by the question's opening words, as a base model sees them in
plain ``Q: <question>\\nA: <answer>\\n`` text:

- ``concise``: "what color is the zorpik?" -> "blue", "Blue.", ... (several surface forms of one
  meaning, so the collapsing function matters);
- ``sentence``: "in a sentence, what color is the zorpik?" -> "it is blue.", "The zorpik is Blue.";
- ``cot``: "step by step, what color is the zorpik?" -> "4 7 1 Answer: blue": a scratchpad of
  one to four random digits whose sum picks the answer: when the last digit of the sum is below
  8 (about 80% of scratchpads) the answer is the first of the fact's possible values in a seeded
  arbitrary order (``Fact.cot_order``), otherwise one of the others. The model cannot foresee the
  digits, and the scratchpad's outcome is not the fact's probabilities, so chain-of-thought
  answers commit to one value more often than the world supports it: chain of thought is
  miscalibrated, as the reference paper finds for real models. (A plain parity rule, which
  spreads the answers uniformly over the possible values, is *not* enough: a uniform guesser's
  modal answer is right with probability about 1/k, its confidence, so it stays calibrated.)

The *gold* answer of a question is the world's realised value, drawn once from the fact's true
distribution (seeded), so that a model whose answer distribution equals the truth is calibrated:
its modal answer is right with probability p(mode), which is its confidence. (Taking the most
probable value as gold instead would make a perfect model look underconfident: right always,
with confidence p(mode) < 1.) The true distribution, the most probable value and the realised
value are all in each question's metadata.

The training corpus samples answers from the true distributions, stratified so that each
question's answer counts match its probabilities exactly (a model that fits the corpus fits the
truth, without a sampling error of its own).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from recal.data.records import Question

__all__ = ["SynthStyle", "SYNTH_STYLES", "PROFILES", "ATTRIBUTES", "WorldConfig", "Fact",
           "World", "make_world", "question_text", "prompt_text", "surface_forms", "cot_answer",
           "cot_value", "cot_distribution"]

SynthStyle = Literal["concise", "sentence", "cot"]
SYNTH_STYLES: tuple[str, ...] = ("concise", "sentence", "cot")

PROFILES: tuple[tuple[float, ...], ...] = (
    (1.0,), (1.0,), (0.9, 0.1), (0.8, 0.2), (0.7, 0.3), (0.6, 0.4), (0.5, 0.5),
    (0.5, 0.3, 0.2), (0.4, 0.4, 0.2), (0.4, 0.3, 0.3), (0.6, 0.2, 0.2),
)
"""The true distributions facts draw from (values are shuffled onto them); every probability
is a multiple of 0.1, so a corpus with 10k answers per question can match it exactly."""

ATTRIBUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "color": ("what color is the {e}?",
              ("red", "blue", "green", "yellow", "purple", "orange", "black", "white")),
    "home": ("where does the {e} live?",
             ("forest", "river", "desert", "mountain", "cave", "island", "valley", "swamp")),
}
"""attribute -> (question template, possible values)."""

_STYLE_PREFIX = {"concise": "", "sentence": "in a sentence, ", "cot": "step by step, "}
_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u"]


def question_text(entity: str, attribute: str, style: str) -> str:
    """The question as asked in ``style`` (the opening words name the style)."""
    if style not in _STYLE_PREFIX:
        raise ValueError(f"style must be one of {', '.join(SYNTH_STYLES)}, got {style!r}")
    if attribute not in ATTRIBUTES:
        raise ValueError(f"attribute must be one of {', '.join(ATTRIBUTES)}, got {attribute!r}")
    return _STYLE_PREFIX[style] + ATTRIBUTES[attribute][0].format(e=entity)


def prompt_text(question: str) -> str:
    """The base-model prompt the synthetic model is trained on (``build_prompt`` with 0 shots)."""
    return f"Q: {question}\nA:"


@dataclass(frozen=True)
class WorldConfig:
    """The size and seed of a synthetic world."""

    n_entities: int = 60
    """Made-up entities; each has one fact per attribute (2 attributes)."""
    seed: int = 0
    """Seeds the entities, their distributions and the realised (gold) values."""
    profiles: tuple[tuple[float, ...], ...] = PROFILES
    """True distributions to draw facts from, each a tuple of probabilities summing to 1."""

    def __post_init__(self) -> None:
        if not isinstance(self.n_entities, int) or self.n_entities < 1:
            raise ValueError(f"n_entities must be a positive integer, got {self.n_entities!r}")
        if self.n_entities > 2000:
            raise ValueError(f"n_entities must be at most 2000 (the name space), "
                             f"got {self.n_entities}")
        if not self.profiles:
            raise ValueError("profiles is empty: give at least one true distribution")
        for p in self.profiles:
            if not p or any(x <= 0 for x in p) or abs(sum(p) - 1) > 1e-9 or len(p) > 3:
                raise ValueError(f"each profile must hold 1 to 3 positive probabilities summing "
                                 f"to 1, got {p!r}")


@dataclass(frozen=True)
class Fact:
    """One uncertain fact: an entity's attribute, its true distribution and realised value."""

    entity: str
    attribute: str
    values: tuple[str, ...]
    """The possible values, most probable first."""
    probs: tuple[float, ...]
    """Their true probabilities (sum to 1, non-increasing)."""
    gold: str
    """The realised value, drawn from ``probs``."""
    cot_order: tuple[str, ...] = ()
    """The values in the order the chain-of-thought rule indexes them (default: ``values``)."""

    @property
    def mode(self) -> str:
        return self.values[0]

    @property
    def distribution(self) -> dict[str, float]:
        return dict(zip(self.values, self.probs, strict=True))

    def key(self) -> str:
        return f"{self.entity}-{self.attribute}"


def surface_forms(fact: Fact, value: str, style: str) -> list[str]:
    """Every way the world writes ``value`` as an answer in ``style`` (all one meaning)."""
    cap = value.capitalize()
    if style == "concise":
        return [value, cap, f"{cap}.", f"{value}."]
    if fact.attribute == "color":
        return [f"it is {value}.", f"It is {cap}.", f"the {fact.entity} is {value}.",
                f"The {fact.entity} is {value}."]
    return [f"it lives in the {value}.", f"It lives in the {cap}.",
            f"the {fact.entity} lives in the {value}.", f"The {fact.entity} lives in the {value}."]


def cot_answer(fact: Fact, digits: Sequence[int], form: str) -> str:
    """A chain-of-thought answer: the digits, then the value their sum picks, in ``form``."""
    return " ".join(str(d) for d in digits) + f" Answer: {form}"


_COT_FIRST = 8
"""A scratchpad whose digit sum ends in a digit below this leads to the first value."""


def _cot_index(digit_sum: int, k: int) -> int:
    if k == 1 or digit_sum % 10 < _COT_FIRST:
        return 0
    return 1 + (digit_sum // 10) % (k - 1)


def cot_value(fact: Fact, digits: Sequence[int]) -> str:
    """The value a scratchpad leads to (see the module docstring for the rule)."""
    order = fact.cot_order or fact.values
    return order[_cot_index(sum(digits), len(order))]


def cot_distribution(fact: Fact) -> dict[str, float]:
    """The exact distribution of chain-of-thought answers over uniform scratchpads of 1 to 4
    digits (the answer distribution the corpus teaches in the ``cot`` style)."""
    order = fact.cot_order or fact.values
    out = dict.fromkeys(order, 0.0)
    sums = {0: 1.0}
    for _length in range(1, 5):  # the sum of `length` uniform digits, exactly
        nxt: dict[int, float] = {}
        for total, p in sums.items():
            for d in range(10):
                nxt[total + d] = nxt.get(total + d, 0.0) + p / 10
        sums = nxt
        for total, p in sums.items():
            out[order[_cot_index(total, len(order))]] += p / 4
    return out


@dataclass
class World:
    """The facts of a synthetic world, its questions and its training corpus."""

    config: WorldConfig
    facts: list[Fact] = field(default_factory=list)

    def questions(self, style: str = "concise") -> list[Question]:
        """One ``Question`` per fact, in ``style``: gold = the realised value and its forms."""
        out = []
        for f in self.facts:
            forms = surface_forms(f, f.gold, "concise")
            truth = cot_distribution(f) if style == "cot" else f.distribution
            out.append(Question(
                id=f"{style}-{f.key()}",
                question=question_text(f.entity, f.attribute, style),
                answers=tuple(forms),
                metadata={"true_distribution": f.distribution, "mode": f.mode, "gold": f.gold,
                          "style": style, "answer_distribution": truth,
                          "entity": f.entity, "attribute": f.attribute},
            ))
        return out

    def answers(self, fact: Fact, style: str, n: int, rng: random.Random) -> list[str]:
        """``n`` training answers for ``fact`` in ``style``, stratified on the truth."""
        if style == "cot":
            out = []
            for _ in range(n):
                digits = [rng.randrange(10) for _ in range(rng.randint(1, 4))]
                value = cot_value(fact, digits)
                out.append(cot_answer(fact, digits, rng.choice(surface_forms(fact, value,
                                                                             "concise"))))
            return out
        counts = [round(p * n) for p in fact.probs]
        counts[0] += n - sum(counts)
        values = [v for v, c in zip(fact.values, counts, strict=True) for _ in range(c)]
        return [rng.choice(surface_forms(fact, v, style)) for v in values]

    def corpus(self, per_question: int = 20, styles: Sequence[str] = SYNTH_STYLES,
               seed: int = 0) -> list[str]:
        """Training texts ``Q: <question>\\nA: <answer>\\n``, ``per_question`` per fact and style,
        shuffled. Concise and sentence answers match the true probabilities exactly when
        ``per_question`` is a multiple of 10."""
        if per_question < 1:
            raise ValueError(f"per_question must be positive, got {per_question}")
        rng = random.Random(seed)
        texts = []
        for f in self.facts:
            for style in styles:
                prompt = prompt_text(question_text(f.entity, f.attribute, style))
                texts += [f"{prompt} {a}\n" for a in self.answers(f, style, per_question, rng)]
        rng.shuffle(texts)
        return texts


def _names(n: int, rng: random.Random) -> list[str]:
    names: set[str] = set()
    out = []
    while len(out) < n:
        name = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(2))
        name += rng.choice(["k", "n", "r", "x", "m"])
        if name not in names:
            names.add(name)
            out.append(name)
    return out


def make_world(config: WorldConfig | None = None) -> World:
    """A world of ``config.n_entities`` entities, each with one fact per attribute."""
    config = config or WorldConfig()
    rng = random.Random(config.seed)
    world = World(config)
    for entity in _names(config.n_entities, rng):
        for attribute, (_, pool) in ATTRIBUTES.items():
            probs = tuple(sorted(rng.choice(config.profiles), reverse=True))
            values = tuple(rng.sample(pool, len(probs)))
            gold = rng.choices(values, weights=probs)[0]
            cot_order = tuple(rng.sample(values, len(values)))
            world.facts.append(Fact(entity, attribute, values, probs, gold, cot_order))
    return world
