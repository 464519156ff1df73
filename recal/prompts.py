"""Prompt styles of the reference paper: concise, sentence and chain of thought (cot).

Chat models get the question and an instruction in one user turn, rendered later by the model's
own chat template; base (pretrained) models get plain k-shot text ``Q: ...\\nA: ...`` whose
answers show the style, and continue after the last ``A:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from recal.data.records import Question

__all__ = ["Style", "STYLES", "DEFAULT_MAX_NEW_TOKENS", "Prompt", "Exemplar", "EXEMPLARS",
           "build_prompt", "stops_at_newline", "PromptTooLongError"]

Style = Literal["concise", "sentence", "cot"]
STYLES: tuple[str, ...] = get_args(Style)

DEFAULT_MAX_NEW_TOKENS: dict[str, int] = {"concise": 32, "sentence": 48, "cot": 256}
"""Answer length caps by style: room for the answer, little for rambling past it."""

_CHAT_INSTRUCTIONS: dict[str, str] = {
    "concise": "Answer with only the answer (a few words), no explanation.",
    "sentence": "Answer in one complete sentence.",
    "cot": (
        "Think step by step, then give the final answer on the last line in the form "
        "'Answer: <answer>'."
    ),
}


class PromptTooLongError(ValueError):
    """A prompt has more tokens than the model may be given (its context less the answer's
    room, or a configured maximum); raised before any forward pass."""

    def __init__(self, question_id: str, tokens: int, limit: int, why: str) -> None:
        super().__init__(f"question {question_id!r}: its prompt has {tokens} tokens, more than "
                         f"the {limit} allowed ({why}); shorten it, or pass --skip-bad to skip "
                         "it")
        self.question_id, self.tokens, self.limit = question_id, tokens, limit


@dataclass(frozen=True)
class Prompt:
    """What a backend is asked: chat ``messages`` (role, content) or plain ``text``, never both."""

    messages: tuple[tuple[str, str], ...] | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.text is None):
            raise ValueError("a Prompt holds exactly one of messages or text")

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


@dataclass(frozen=True)
class Exemplar:
    """A worked example shown to base models, in every style."""

    question: str
    concise: str
    sentence: str
    cot: str

    def answer(self, style: str) -> str:
        return {"concise": self.concise, "sentence": self.sentence, "cot": self.cot}[style]


EXEMPLARS: tuple[Exemplar, ...] = (
    Exemplar(
        "What is the capital of Japan?",
        "Tokyo",
        "The capital of Japan is Tokyo.",
        "Japan is an island country in East Asia, and its seat of government is Tokyo. "
        "Answer: Tokyo",
    ),
    Exemplar(
        "Who painted the Mona Lisa?",
        "Leonardo da Vinci",
        "The Mona Lisa was painted by Leonardo da Vinci.",
        "The Mona Lisa is a Renaissance portrait made in Italy by Leonardo da Vinci. "
        "Answer: Leonardo da Vinci",
    ),
    Exemplar(
        "What is 7 times 8?",
        "56",
        "7 times 8 is 56.",
        "7 times 8 is 7 times 4 doubled; 7 times 4 is 28, and 28 doubled is 56. Answer: 56",
    ),
    Exemplar(
        "What is the boiling point of water at sea level in degrees Celsius?",
        "100",
        "Water boils at 100 degrees Celsius at sea level.",
        "At sea-level pressure pure water turns to steam at 100 degrees on the Celsius scale. "
        "Answer: 100",
    ),
    Exemplar(
        "Which planet is known as the Red Planet?",
        "Mars",
        "Mars is known as the Red Planet.",
        "The planet that looks red because of iron oxide dust on its surface is Mars. "
        "Answer: Mars",
    ),
)


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")


def stops_at_newline(style: str, *, chat: bool) -> bool:
    """Whether an answer in this style ends at its first line break.

    Concise and sentence answers are one line. Chain of thought from a chat model spans lines and
    ends at EOS; base-model exemplars keep the reasoning on one line, so it ends at the newline.
    """
    _check_style(style)
    return not (style == "cot" and chat)


def build_prompt(question: Question | str, style: str = "concise", *, chat: bool,
                 shots: int | None = None) -> Prompt:
    """The prompt for one question: a chat turn for chat models, k-shot text for base models.

    ``shots`` defaults to 0 for chat models and to every exemplar (5) for base models; an
    exemplar whose question is the one asked is left out.
    """
    _check_style(style)
    text = question.question if isinstance(question, Question) else question
    k = (0 if chat else len(EXEMPLARS)) if shots is None else shots
    if not 0 <= k <= len(EXEMPLARS):
        raise ValueError(f"shots must be between 0 and {len(EXEMPLARS)}, got {k}")
    examples = [e for e in EXEMPLARS if e.question.strip().lower() != text.strip().lower()][:k]
    if chat:
        messages: list[tuple[str, str]] = []
        for e in examples:
            messages.append(("user", f"{e.question}\n{_CHAT_INSTRUCTIONS[style]}"))
            messages.append(("assistant", e.answer(style)))
        messages.append(("user", f"{text}\n{_CHAT_INSTRUCTIONS[style]}"))
        return Prompt(messages=tuple(messages))
    lines = [f"Q: {e.question}\nA: {e.answer(style)}\n\n" for e in examples]
    return Prompt(text="".join(lines) + f"Q: {text}\nA:")
