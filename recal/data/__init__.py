"""Question records and the loaders that read question sets from files, the package and the hub."""

from recal.data.loaders import (
    DATA_DIR_ENV,
    DATASETS,
    DEFAULT_FIELDS,
    DataFormatError,
    DatasetSpec,
    FieldMap,
    load_csv,
    load_jsonl,
    load_questions,
)
from recal.data.records import Question, questions_hash

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DEFAULT_FIELDS",
    "DataFormatError",
    "DatasetSpec",
    "FieldMap",
    "Question",
    "load_csv",
    "load_jsonl",
    "load_questions",
    "questions_hash",
]
