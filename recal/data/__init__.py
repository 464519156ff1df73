"""Question records and the loaders that read question sets from files, the package and the hub.

==============  ==============================================================
module          holds
==============  ==============================================================
records         :class:`Question` and :func:`questions_hash`
fields          :class:`FieldMap` (row fields -> question), :class:`DataFormatError`
files           the JSON Lines, JSON and CSV readers
named_sets      :data:`DATASETS`, the registry of named public sets
loaders         :func:`load_questions`, the one entry point (a name or a file)
==============  ==============================================================
"""

from recal.data.fields import DEFAULT_FIELDS, DataFormatError, FieldMap
from recal.data.files import load_csv, load_jsonl
from recal.data.loaders import load_questions
from recal.data.named_sets import DATA_DIR_ENV, DATASETS, DatasetSpec
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
