"""Sample answers for a question set into a resumable run store, with a progress bar.

    from recal.data import load_questions
    from recal.models import load_backend
    from recal.sampling import sample_run
    from recal.samples import SamplingConfig

    store = sample_run(load_backend("smollm2-135m-instruct"), load_questions("builtin"),
                       out="runs/x", config=SamplingConfig(n_samples=50))
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from recal.data.records import Question, questions_hash
from recal.models.base import Backend
from recal.prompts import Prompt, PromptTooLongError, build_prompt
from recal.runstore import RunStore
from recal.samples import SamplingConfig

__all__ = ["sample_run", "check_prompts"]


def check_prompts(backend: Backend, questions: Sequence[Question], prompts: Sequence[Prompt],
                  config: SamplingConfig, *, skip_bad: bool = False,
                  warn: Callable[[str], None] | None = None) -> list[int]:
    """Indices of the questions whose prompts fit the backend's prompt limit (checked before any
    forward pass, for backends that count tokens). A prompt over the limit raises
    :class:`recal.prompts.PromptTooLongError` naming its question, or with ``skip_bad`` is left
    out with one warning naming every question skipped."""
    check = getattr(backend, "check_prompt", None)
    if check is None:  # a server counts its own tokens and refuses what does not fit
        return list(range(len(questions)))
    keep, skipped = [], []
    for i, (q, p) in enumerate(zip(questions, prompts, strict=True)):
        try:
            check(q.id, p, config.max_new_tokens or 0)
        except PromptTooLongError as exc:
            if not skip_bad:
                raise
            skipped.append(f"{q.id} ({exc.tokens} > {exc.limit} tokens)")
            continue
        keep.append(i)
    if skipped:
        message = (f"skipped {len(skipped)} question(s) whose prompt is too long: "
                   f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}")
        if warn is not None:
            warn(message)
        else:
            warnings.warn(message, stacklevel=3)
    if not keep:
        raise ValueError("every question's prompt is too long for the model: nothing to sample")
    return keep


def sample_run(backend: Backend, questions: Sequence[Question], *, out: str | Path,
               config: SamplingConfig | None = None, style: str = "concise",
               shots: int | None = None, dataset: str = "custom", overwrite: bool = False,
               progress: bool = True, skip_bad: bool = False,
               warn: Callable[[str], None] | None = None) -> RunStore:
    """Sample every question not yet in the run at ``out``, storing each as it finishes.

    Running it again with the same settings reuses the stored samples and samples only what is
    missing (a killed run resumes); other settings on the same folder are refused with the
    difference named. Every prompt is checked against the backend's prompt limit before the run
    folder is touched: one too long is refused naming its question, or with ``skip_bad`` left
    out of the run (see :func:`check_prompts`).
    """
    if not questions:
        raise ValueError("questions is empty: nothing to sample")
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"questions holds the id {dup!r} more than once")
    resolved = (config or SamplingConfig()).resolved(style, chat=backend.is_chat)
    all_prompts = [build_prompt(q, style, chat=backend.is_chat, shots=shots) for q in questions]
    keep = check_prompts(backend, questions, all_prompts, resolved, skip_bad=skip_bad, warn=warn)
    if len(keep) < len(questions):
        questions = [questions[i] for i in keep]
        all_prompts = [all_prompts[i] for i in keep]
    manifest = {
        "model": backend.identity.to_dict(),
        "style": style,
        "shots": shots,
        "sampling": resolved.identity(),
        "questions": {"dataset": dataset, "count": len(questions),
                      "hash": questions_hash(questions)},
    }
    store = RunStore.create_or_resume(out, manifest, questions, overwrite=overwrite)
    done = store.done_ids()
    todo_at = [i for i, q in enumerate(questions) if q.id not in done]
    if not todo_at:
        return store
    todo = [questions[i] for i in todo_at]
    prompts = [all_prompts[i] for i in todo_at]
    per_question = resolved.n_samples + int(resolved.greedy)
    # Counted in answers, its rate averaged over the whole run (smoothing=0): questions finish in
    # bursts, one batch at a time, so a rate from the last update alone swings by hours.
    bar = tqdm(total=len(questions) * per_question, initial=len(done) * per_question,
               unit="answers", unit_scale=False, desc="sampling", smoothing=0,
               disable=not progress, dynamic_ncols=True)
    start, answers = time.perf_counter(), 0
    try:
        for record in backend.generate([q.id for q in todo], prompts, resolved):
            store.append(record)
            answers += per_question
            bar.update(per_question)
    except KeyboardInterrupt:
        bar.close()
        kept = len(store.done_ids())
        raise KeyboardInterrupt(f"interrupted: {kept} of {len(questions)} questions are stored "
                                f"in {store.path}; run the same command again to resume") from None
    except SystemExit:  # SIGTERM (recal.cli): every finished question is already on disk
        bar.close()
        kept = len(store.done_ids())
        print(f"stopped: {kept} of {len(questions)} questions are stored in {store.path}; "
              "run the same command again to resume", file=sys.stderr)
        raise
    bar.close()
    if progress:
        seconds = time.perf_counter() - start
        print(f"sampled {answers} answers ({len(todo)} questions) in {seconds:.0f} s: "
              f"{answers / max(seconds, 1e-9):.1f} answers/s", file=sys.stderr)
    return store
