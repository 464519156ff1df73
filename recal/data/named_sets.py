"""Named public question sets: their registry (:data:`DATASETS`) and how each is found.

A named set is read from a local copy under a data folder (``data_dir`` or the ``RECAL_DATA_DIR``
environment variable) when one is there, and otherwise from the Hugging Face hub through the
optional ``datasets`` package (``pip install 'recal[hub]'``), imported only then. ``builtin`` is
packaged with recal.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from recal.data.fields import DEFAULT_FIELDS, FILE_SUFFIXES, FieldMap
from recal.data.files import Record, build_questions, derived_id, load_file
from recal.data.records import Question
from recal.registry import Registry

__all__ = ["DATASETS", "DATA_DIR_ENV", "DatasetSpec", "data_root", "load_named"]

DATA_DIR_ENV = "RECAL_DATA_DIR"
"""Environment variable naming the folder that holds local copies of the named sets."""

@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """A named public question set: where its local copy lies and where the hub keeps it."""

    name: str = field(metadata={"help": "Registry name, lower case; prefix of derived ids."})
    description: str = field(metadata={"help": "One line for listings."})
    local_path: str = field(
        metadata={
            "help": "Path of the local copy relative to the data folder (for the packaged set: "
            "relative to recal/data/); .jsonl, .json or .csv."
        }
    )
    fields: FieldMap = field(
        default=DEFAULT_FIELDS, metadata={"help": "How to read the local copy's rows."}
    )
    hub_id: str | None = field(
        default=None, metadata={"help": "Hugging Face dataset id; None when there is no hub copy."}
    )
    hub_config: str | None = field(default=None, metadata={"help": "Hub config name, if any."})
    hub_split: str = field(default="test", metadata={"help": "Hub split to read."})
    hub_fields: FieldMap | None = field(
        default=None,
        metadata={"help": "How to read hub rows; None means the same as the local copy."},
    )
    packaged: bool = field(
        default=False, metadata={"help": "True for the set shipped inside the recal package."}
    )

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower():
            raise ValueError(f"name must be a non-empty lower-case string, got {self.name!r}")
        if not self.local_path.lower().endswith(FILE_SUFFIXES):
            raise ValueError(
                f"local_path of {self.name!r} must end in .jsonl, .json or .csv, "
                f"got {self.local_path!r}"
            )
        if self.packaged and self.hub_id is not None:
            raise ValueError(f"the packaged set {self.name!r} cannot also name a hub copy")
        if self.hub_fields is None:
            object.__setattr__(self, "hub_fields", self.fields)

    def from_hub_row(self, row: Mapping[str, Any], index: int) -> Question:
        """Convert the ``index``-th (0-based) row of the hub split into a :class:`Question`."""
        fields = self.hub_fields or self.fields
        return fields.to_question(row, derived_id(self.name, index))


DATASETS: Registry[DatasetSpec] = Registry("dataset")
"""The named question sets ``load_questions`` knows, by name."""


def _register(spec: DatasetSpec) -> None:
    DATASETS.register(spec.name, spec, help=spec.description)


_register(
    DatasetSpec(
        name="builtin",
        description="recal's small packaged question set, for offline smoke runs",
        local_path="builtin/questions.jsonl",
        packaged=True,
    )
)
_register(
    DatasetSpec(
        name="triviaqa",
        description="TriviaQA trivia questions (local: 3,000-question subset; hub: rc.nocontext "
        "validation, 17,944)",
        local_path="triviaqa/triviaqa_sm_sub.jsonl",
        fields=FieldMap(
            id=None,
            question="context",
            question_regex=r"(?s)^Question:\s*(.+?)\s*\n\s*Answer:\s*$",
            answers="answer",
            aliases="aliases",
            metadata=None,
        ),
        hub_id="mandarjoshi/trivia_qa",
        hub_config="rc.nocontext",
        hub_split="validation",
        hub_fields=FieldMap(
            id="question_id",
            question="question",
            answers="answer.value",
            aliases="answer.aliases",
            metadata=None,
        ),
    )
)
_register(
    DatasetSpec(
        name="nq-open",
        description="Natural Questions, open-domain form (dev split, 3,610 questions)",
        local_path="nq_open/NQ-open.dev.jsonl",
        fields=FieldMap(id=None, answers="answer", metadata=None),
        hub_id="google-research-datasets/nq_open",
        hub_split="validation",
    )
)
_register(
    DatasetSpec(
        name="simpleqa",
        description="OpenAI SimpleQA, short factual questions (test set, 4,326)",
        local_path="simpleqa/simple_qa_test_set.csv",
        # The copy we know renames OpenAI's columns problem/answer to question/true_answer.
        fields=FieldMap(
            id=None,
            question=("question", "problem"),
            answers=("true_answer", "answer"),
            metadata="metadata",
        ),
        hub_id="basicv8vc/SimpleQA",
        hub_split="test",
        hub_fields=FieldMap(id=None, question="problem", answers="answer", metadata="metadata"),
    )
)
_register(
    DatasetSpec(
        name="gsm8k",
        description="GSM8K grade-school maths (test, 1,319); the gold is the number after ####",
        local_path="gsm8k/test.jsonl",
        fields=FieldMap(id=None, answers="answer", answer_regex=r"####\s*(.+?)\s*$", metadata=None),
        hub_id="openai/gsm8k",
        hub_config="main",
        hub_split="test",
    )
)
_register(
    DatasetSpec(
        name="sciq",
        description="SciQ science exam questions, correct answer only (test, 1,000)",
        local_path="sciq/sciq_test.jsonl",
        fields=FieldMap(id=None, answers="answer", metadata=None),
        hub_id="allenai/sciq",
        hub_split="test",
        hub_fields=FieldMap(id=None, answers="correct_answer", metadata=None),
    )
)
_register(
    DatasetSpec(
        name="popqa",
        description="PopQA entity questions (local: FlashRAG 1,000 sample; hub: FlashRAG test, "
        "14,267)",
        local_path="popqa/flashrag_test_1k_subsample.jsonl",
        fields=FieldMap(id="id", answers="golden_answers", metadata="metadata"),
        hub_id="RUC-NLPIR/FlashRAG_datasets",
        hub_config="popqa",
        hub_split="test",
    )
)


def data_root(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The folder holding local copies: ``data_dir``, else ``$RECAL_DATA_DIR``, else None."""
    if data_dir is not None:
        return Path(data_dir)
    from_env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(from_env) if from_env else None


def _load_packaged(spec: DatasetSpec, *, skip_bad: bool) -> list[Question]:
    resource = resources.files("recal").joinpath("data", *spec.local_path.split("/"))
    if not resource.is_file():
        raise FileNotFoundError(
            f"the packaged question set recal/data/{spec.local_path} is missing from this "
            "installation of recal; reinstall recal or pass a question file instead"
        )
    with resources.as_file(resource) as path:
        return load_file(path, spec.fields, skip_bad=skip_bad, id_prefix=spec.name)


def _offline_error(spec: DatasetSpec, root: Path | None, reason: str) -> RuntimeError:
    if root is None:
        where = f"no data folder was given (--data-dir or ${DATA_DIR_ENV})"
    else:
        where = f"there is no {root / spec.local_path}"
    return RuntimeError(
        f"dataset {spec.name!r} is not available offline: {where}, and {reason}. Install "
        "recal[hub] (pip install 'recal[hub]') on a machine with internet access, or pass "
        f"--data-dir pointing at a folder holding {spec.local_path}"
    )


def _load_from_hub(spec: DatasetSpec, root: Path | None, *, skip_bad: bool) -> list[Question]:
    if spec.hub_id is None:
        raise _offline_error(spec, root, "it has no copy on the hub")
    try:
        import datasets  # optional: recal[hub]
    except ImportError:
        raise _offline_error(spec, root, "the `datasets` package is not installed") from None
    try:
        table = datasets.load_dataset(spec.hub_id, spec.hub_config, split=spec.hub_split)
    except Exception as exc:  # no network, gated, renamed...: all mean "not reachable from here"
        reason = f"the hub copy {spec.hub_id} could not be loaded ({type(exc).__name__}: {exc})"
        raise _offline_error(spec, root, reason) from exc
    config = f"{spec.hub_config}/" if spec.hub_config else ""
    return build_questions(
        (Record(index + 1, index, row) for index, row in enumerate(table)),
        (spec.hub_fields or spec.fields).to_question,
        source=f"{spec.hub_id} ({config}{spec.hub_split}) from the hub",
        prefix=spec.name,
        skip_bad=skip_bad,
        unit="row",
    )


def load_named(
    spec: DatasetSpec, data_dir: str | os.PathLike[str] | None, *, skip_bad: bool
) -> list[Question]:
    """The questions of a named set: the packaged file, the local copy under the data folder,
    or else the hub (warning when a data folder was given but lacks the copy)."""
    if spec.packaged:
        return _load_packaged(spec, skip_bad=skip_bad)
    root = data_root(data_dir)
    if root is not None and (root / spec.local_path).is_file():
        return load_file(
            root / spec.local_path, spec.fields, skip_bad=skip_bad, id_prefix=spec.name
        )
    questions = _load_from_hub(spec, root, skip_bad=skip_bad)
    if root is not None:
        warnings.warn(
            f"no {spec.local_path} under {root}; read dataset {spec.name!r} from the hub instead",
            stacklevel=3,
        )
    return questions
