"""Checks on the packaged offline question set, recal/data/builtin/questions.jsonl."""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib.resources import files

import pytest

CATEGORIES = {
    "capital",
    "chemistry",
    "author",
    "units",
    "arithmetic",
    "everyday",
    "geography",
    "science",
    "history",
    "language",
}
DIFFICULTIES = {"easy", "medium", "hard"}
KEYS = {"id", "question", "answers", "metadata"}
ID_PATTERN = re.compile(r"^builtin-\d{4}$")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    resource = files("recal") / "data/builtin/questions.jsonl"
    text = resource.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_has_enough_rows(rows: list[dict]) -> None:
    assert len(rows) >= 500


def test_ids_are_unique_and_consecutive(rows: list[dict]) -> None:
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert all(ID_PATTERN.match(i) for i in ids)
    assert ids == [f"builtin-{n:04d}" for n in range(1, len(rows) + 1)]


def test_questions_are_unique_case_insensitively(rows: list[dict]) -> None:
    counts = Counter(row["question"].strip().casefold() for row in rows)
    duplicates = [q for q, n in counts.items() if n > 1]
    assert not duplicates


def test_row_shape(rows: list[dict]) -> None:
    for row in rows:
        assert set(row) == KEYS, row
        question = row["question"]
        assert isinstance(question, str) and question.strip(), row
        answers = row["answers"]
        assert isinstance(answers, list) and answers, row
        for answer in answers:
            assert isinstance(answer, str) and answer, row
            assert answer == answer.strip(), row
        metadata = row["metadata"]
        assert isinstance(metadata, dict), row
        assert metadata.get("category") in CATEGORIES, row
        assert metadata.get("difficulty") in DIFFICULTIES, row


def test_every_category_is_well_represented(rows: list[dict]) -> None:
    counts = Counter(row["metadata"]["category"] for row in rows)
    assert set(counts) == CATEGORIES
    thin = {cat: n for cat, n in counts.items() if n < 25}
    assert not thin
