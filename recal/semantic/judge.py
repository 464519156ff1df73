"""An LLM as the judge of equivalence: the ``judge`` collapsing function.

A recal :class:`~recal.models.base.Backend` is asked, for two answers A and B to a question::

    Question: <question>
    Answer A: <A>
    Answer B: <B>
    Do A and B give the same answer? Reply yes or no.

as one user turn for chat models, or as plain text ending in ``Reply:`` for base models, and its
greedy reply (at most ``max_new_tokens`` tokens, one line) is read: the first word, case and
punctuation ignored, "yes" is a yes, "no" is a no, and anything else counts as no and is added
to :attr:`JudgeCollapser.unparsed`.

Clustering per question is greedy: texts in order, each joins the first existing class whose
representative (first member) the judge calls equivalent, else starts a new class. Texts whose
normalised answer spans (:func:`~recal.semantic.normalize.normalize_answer`) are equal join
without asking; an empty span is the "no answer" class ``""``. The judge sees the original texts
(stripped); labels are the representatives' normalised spans. The same classes are computed in
*rounds*, one ``generate`` call per class: the newest representative is compared with every
later span not yet placed, in one batch. Verdicts are memoised per (question, A, B), in that
order, so re-grading or re-clustering asks nothing twice.

A class is correct when its label matches a gold alias under the ``normalized`` grader, or the
judge calls it equivalent to some gold alias (all aliases asked in one batch). Classes that the
``normalized`` grader accepts join one class labelled with the first gold form
(:func:`recal.semantic.base.merge_correct`); those only the judge accepts are left to the
judge's own clustering, which already asks it whether two answers mean the same, so that
collapsing asks the judge nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from recal.data.records import Question
from recal.models.base import Backend
from recal.prompts import Prompt
from recal.samples import SamplingConfig
from recal.semantic.base import NO_ANSWER, Collapser, merge_correct
from recal.semantic.normalize import gold_forms, matches_gold, normalize_answer, normalize_text

__all__ = ["JudgeCollapser", "judge_prompt", "parse_verdict"]

_INSTRUCTION = "Do A and B give the same answer? Reply yes or no."
_FIRST_WORD = re.compile(r"[^\W\d_]+")


def judge_prompt(question: str, a: str, b: str, *, chat: bool) -> Prompt:
    """The prompt asking whether answers ``a`` and ``b`` to ``question`` mean the same."""
    body = f"Question: {question.strip()}\nAnswer A: {a.strip()}\nAnswer B: {b.strip()}\n"
    if chat:
        return Prompt(messages=(("user", body + _INSTRUCTION),))
    return Prompt(text=body + _INSTRUCTION + "\nReply:")


def parse_verdict(reply: str) -> bool | None:
    """True for a reply whose first word is "yes", False for "no", None for anything else."""
    match = _FIRST_WORD.search(reply.casefold())
    if match is None:
        return None
    return {"yes": True, "no": False}.get(match.group(0))


class JudgeCollapser(Collapser):
    """Classes of answers that ``backend`` judges equivalent (see the module doc).

    ``unparsed`` counts the replies that were neither yes nor no (taken as no); ``prompts_sent``
    and ``generate_calls`` count the questions put to the backend and the batches they went in.
    """

    name = "judge"

    def __init__(self, *, backend: Backend, max_new_tokens: int = 4) -> None:
        if not isinstance(backend, Backend):
            raise ValueError(
                f"backend must be a recal Backend instance, got {type(backend).__name__}")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        self.backend = backend
        self.config = SamplingConfig(n_samples=1, greedy=True, max_new_tokens=max_new_tokens,
                                     stop_at_newline=True)
        self.unparsed = 0
        self.prompts_sent = 0
        self.generate_calls = 0
        self._verdicts: dict[tuple[str, str, str], bool] = {}

    def judge(self, question: Question, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """The verdict on each (A, B) pair, asking the backend (in one batch) only for pairs it
        has not judged before."""
        keys = [(question.question, a.strip(), b.strip()) for a, b in pairs]
        todo = list(dict.fromkeys(k for k in keys if k not in self._verdicts))
        if todo:
            chat = self.backend.is_chat
            ids = [f"{question.id}#judge{i}" for i in range(len(todo))]
            prompts = [judge_prompt(q, a, b, chat=chat) for q, a, b in todo]
            replies: dict[str, str] = {}
            for record in self.backend.generate(ids, prompts, self.config):
                sample = record.greedy if record.greedy is not None else record.samples[0]
                replies[record.question_id] = sample.text
            self.generate_calls += 1
            self.prompts_sent += len(todo)
            for qid, key in zip(ids, todo, strict=True):
                if qid not in replies:
                    raise RuntimeError(
                        f"the judge backend returned no reply for prompt {qid!r}")
                verdict = parse_verdict(replies[qid])
                if verdict is None:
                    self.unparsed += 1
                self._verdicts[key] = bool(verdict)
        return [self._verdicts[k] for k in keys]

    def collapse(self, question: Question, texts: Sequence[str]) -> list[str]:
        spans = [normalize_answer(t, question.question) for t in texts]
        shown: dict[str, str] = {}  # span -> the first text with it, which the judge sees
        for span, text in zip(spans, texts, strict=True):
            if span:
                shown.setdefault(span, text)
        pending = list(shown)
        label_of: dict[str, str] = {NO_ANSWER: NO_ANSWER}
        while pending:
            rep, rest = pending[0], pending[1:]
            label_of[rep] = rep
            verdicts = self.judge(question, [(shown[rep], shown[s]) for s in rest])
            for span, same in zip(rest, verdicts, strict=True):
                if same:
                    label_of[span] = rep
            pending = [s for s, same in zip(rest, verdicts, strict=True) if not same]
        labels = [label_of[s] for s in spans]
        forms = gold_forms(question)
        if not forms:
            return labels
        return merge_correct(labels, lambda label: matches_gold(normalize_text(label), forms),
                             forms[0])

    def is_correct(self, question: Question, label: str) -> bool:
        label = normalize_text(label)
        if not label:
            return False
        if matches_gold(label, gold_forms(question)):
            return True
        return any(self.judge(question, [(label, alias) for alias in question.answers]))
