"""Sample answers for a question set into a resumable run store, with a progress bar.

    from recal.data import load_questions
    from recal.models import load_backend
    from recal.sampling import sample_run
    from recal.samples import SamplingConfig

    store = sample_run(load_backend("smollm2-135m-instruct"), load_questions("builtin"),
                       out="runs/x", config=SamplingConfig(n_samples=50))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from recal.data.records import Question, questions_hash
from recal.models.base import Backend
from recal.prompts import build_prompt
from recal.runstore import RunStore
from recal.samples import SamplingConfig

__all__ = ["sample_run"]


def sample_run(backend: Backend, questions: Sequence[Question], *, out: str | Path,
               config: SamplingConfig | None = None, style: str = "concise",
               shots: int | None = None, dataset: str = "custom", overwrite: bool = False,
               progress: bool = True) -> RunStore:
    """Sample every question not yet in the run at ``out``, storing each as it finishes.

    Running it again with the same settings reuses the stored samples and samples only what is
    missing (a killed run resumes); other settings on the same folder are refused with the
    difference named.
    """
    if not questions:
        raise ValueError("questions is empty: nothing to sample")
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"questions holds the id {dup!r} more than once")
    resolved = (config or SamplingConfig()).resolved(style, chat=backend.is_chat)
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
    todo = [q for q in questions if q.id not in done]
    if not todo:
        return store
    prompts = [build_prompt(q, style, chat=backend.is_chat, shots=shots) for q in todo]
    per_question = resolved.n_samples + int(resolved.greedy)
    bar = tqdm(total=len(questions), initial=len(done), unit="q", desc="sampling",
               disable=not progress, dynamic_ncols=True)
    start, answers = time.perf_counter(), 0
    try:
        for record in backend.generate([q.id for q in todo], prompts, resolved):
            store.append(record)
            answers += per_question
            bar.update(1)
            bar.set_postfix(answers_per_s=f"{answers / (time.perf_counter() - start):.1f}")
    except KeyboardInterrupt:
        bar.close()
        kept = len(store.done_ids())
        raise KeyboardInterrupt(f"interrupted: {kept} of {len(questions)} questions are stored "
                                f"in {store.path}; run the same command again to resume") from None
    bar.close()
    return store
