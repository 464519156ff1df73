"""Tests for recal.data.loaders: file loaders, field maps, errors and the named sets."""

from __future__ import annotations

import json
import re
import sys
import types
import warnings
from pathlib import Path

import pytest

from recal.data import (
    DATASETS,
    DataFormatError,
    FieldMap,
    Question,
    load_csv,
    load_jsonl,
    load_questions,
    questions_hash,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BUILTIN = Path(__file__).resolve().parents[1] / "recal" / "data" / "builtin" / "questions.jsonl"


def write_jsonl(path: Path, rows: list[object]) -> Path:
    """Rows may be objects (dumped as JSON) or raw strings (written as they are)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- good files


def test_jsonl_default_fields(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "qs.jsonl",
        [
            {"id": "a", "question": " What is 2+2? ", "answers": ["4", " four ", "", "4"]},
            "",
            {"question": "Capital of France?", "answer": "Paris", "metadata": {"topic": "geo"}},
        ],
    )
    questions = load_jsonl(path)
    assert questions == [
        Question(id="a", question="What is 2+2?", answers=("4", "four")),
        Question(
            id="qs-0001",
            question="Capital of France?",
            answers=("Paris",),
            metadata={"topic": "geo"},
        ),
    ]


def test_jsonl_field_mapping_and_aliases(tmp_path: Path) -> None:
    fields = FieldMap(id="qid", question="prompt", answers="gold", aliases="also")
    path = write_jsonl(
        tmp_path / "mapped.jsonl",
        [
            {
                "qid": 7,
                "prompt": "Largest planet?",
                "gold": "Jupiter",
                "also": ["jupiter", "Jupiter"],
            },
            {"qid": "x", "prompt": "Year?", "gold": 1969, "also": "nineteen sixty-nine"},
        ],
    )
    first, second = load_jsonl(path, fields)
    assert first.id == "7"
    assert first.answers == ("Jupiter", "jupiter")
    assert second.answers == ("1969", "nineteen sixty-nine")


def test_dotted_fields_reach_into_nested_objects(tmp_path: Path) -> None:
    fields = FieldMap(answers="answer.value", aliases="answer.aliases")
    path = write_jsonl(
        tmp_path / "nested.jsonl",
        [{"question": "Q?", "answer": {"value": "A", "aliases": ["A", "a1"]}}],
    )
    assert load_jsonl(path, fields)[0].answers == ("A", "a1")


def test_answer_regex_extracts_gsm8k_gold(tmp_path: Path) -> None:
    fields = FieldMap(answers="answer", answer_regex=r"####\s*(.+?)\s*$")
    path = write_jsonl(
        tmp_path / "math.jsonl",
        [{"question": "6*7?", "answer": "6 * 7 = <<6*7=42>>42\n#### 42"}],
    )
    assert load_jsonl(path, fields)[0].answers == ("42",)


def test_question_regex_extracts_question(tmp_path: Path) -> None:
    fields = FieldMap(
        question="context", question_regex=r"(?s)^Question:\s*(.+?)\s*\n\s*Answer:\s*$"
    )
    path = write_jsonl(
        tmp_path / "tqa.jsonl",
        [{"context": "Question: Who wrote Hamlet?\nAnswer:", "answer": "Shakespeare"}],
    )
    assert load_jsonl(path, fields)[0].question == "Who wrote Hamlet?"


def test_line_separator_inside_a_json_string_is_not_a_new_row(tmp_path: Path) -> None:
    path = tmp_path / "sep.jsonl"
    row = json.dumps({"question": "a\u2028b?", "answer": "c"}, ensure_ascii=False)
    path.write_text(row + "\n", encoding="utf-8")
    assert load_jsonl(path)[0].question == "a\u2028b?"


def test_csv_field_mapping_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(
        "\ufeffmetadata,problem,answer,alt\n"
        "\"{'topic': 'Art'}\",\"Who painted\nthe Mona Lisa?\",Leonardo da Vinci,Leonardo\n"
        "\n"
        ",Boiling point of water in C?, 100 ,\n",
        encoding="utf-8",
    )
    fields = FieldMap(question="problem", answers="answer", aliases="alt")
    first, second = load_csv(path, fields)
    assert first == Question(
        id="data-0000",
        question="Who painted\nthe Mona Lisa?",
        answers=("Leonardo da Vinci", "Leonardo"),
        metadata={"topic": "Art"},
    )
    assert second.id == "data-0001"
    assert second.answers == ("100",)
    assert second.metadata == {}


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "arr.json"
    path.write_text(
        json.dumps([{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answers": ["A2"]}])
    )
    assert [q.id for q in load_questions(path)] == ["arr-0000", "arr-0001"]


def test_load_questions_reads_paths_and_limits(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "five.jsonl", [{"question": f"Q{i}?", "answer": str(i)} for i in range(5)]
    )
    questions = load_questions(str(path), limit=2)
    assert [q.answer for q in questions] == ["0", "1"]
    assert questions_hash(load_questions(str(path))) == questions_hash(load_questions(path))
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        load_questions(str(path), limit=0)


def test_load_questions_with_fields(tmp_path: Path) -> None:
    path = tmp_path / "custom.csv"
    path.write_text("q,a\nWhy?,Because\n", encoding="utf-8")
    questions = load_questions(str(path), fields=FieldMap(question="q", answers="a"))
    assert questions[0].answers == ("Because",)


# --------------------------------------------------------------------------- malformed rows

GOOD = {"question": "Fine?", "answer": "yes"}

JSONL_CASES = [
    # rows, bad line, words in the reason
    (['{"question": "Q?" "answer": "A"}'], 1, "invalid JSON (Expecting ',' delimiter at column"),
    ([GOOD, "", "[1, 2]"], 3, "expected a JSON object, got a list"),
    ([GOOD, {"answer": "A"}], 2, "missing question (no field 'question')"),
    (
        [GOOD, GOOD | {"id": "b"}, {"question": "  ", "answer": "A"}],
        3,
        "missing question (field 'question' is empty)",
    ),
    ([{"question": "Q?", "answer": " "}], 1, "no gold answer (field 'answer' is empty)"),
    ([GOOD, {"question": "Q?", "answers": []}], 2, "no gold answer (field 'answers' is empty)"),
    # no answers field on one row of a graded file (on every row: an ungraded set)
    ([GOOD, {"question": "Q?"}], 2, "no gold answer (no field 'answers' or 'answer') but line 1"),
    ([{"question": "Q?", "answer": {"x": 1}}], 1, "field 'answer' holds an object"),
    ([{"question": ["Q?"], "answer": "A"}], 1, "question field 'question' holds a list"),
    (
        [{"id": "x", **GOOD}, GOOD, {"id": "x", **GOOD}],
        3,
        "duplicate id 'x' (first used on line 1)",
    ),
]


@pytest.mark.parametrize(("rows", "line", "reason"), JSONL_CASES)
def test_bad_jsonl_rows_name_file_and_line(
    tmp_path: Path, rows: list[object], line: int, reason: str
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataFormatError) as info:
        load_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path} line {line}: ")
    assert "bad.jsonl" in message
    assert reason in message
    assert info.value.line == line


def test_answer_regex_without_match_is_a_bad_row(tmp_path: Path) -> None:
    fields = FieldMap(answers="answer", answer_regex=r"####\s*(.+?)\s*$")
    path = write_jsonl(tmp_path / "math.jsonl", [{"question": "1+1?", "answer": "2"}])
    with pytest.raises(DataFormatError, match=r"math\.jsonl line 1: no gold answer .*answer_regex"):
        load_jsonl(path, fields)


CSV_CASES = [
    # text, bad line, words in the reason
    ('problem,answer\n"multi\nline?",A\n,B\n', 4, "missing question (field 'problem' is empty)"),
    ("problem,answer\nQ1?,A\nQ2?,A\n\nQ3?,\n", 5, "no gold answer (field 'answer' is empty)"),
    ("problem,answer\nQ1?,A,extra\n", 2, "has 3 fields but the header has 2 columns"),
    ("id,problem,answer\n1,Q?,A\n1,Q2?,B\n", 3, "duplicate id '1' (first used on line 2)"),
    ("problem,solution\nQ?,A\n", 1, "no answers column 'answer' in the header"),
    ("question,answer\nQ?,A\n", 1, "no question column 'problem' in the header"),
]


@pytest.mark.parametrize(("text", "line", "reason"), CSV_CASES)
def test_bad_csv_rows_name_file_and_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        load_csv(path, FieldMap(question="problem", answers="answer"))
    assert str(info.value).startswith(f"{path} line {line}: ")
    assert reason in str(info.value)


def test_skip_bad_skips_and_warns_once(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [GOOD | {"id": "1"}, "not json", GOOD | {"id": "2"}, {"question": "Q?"}],
    )
    with pytest.warns(UserWarning) as caught:
        questions = load_jsonl(path, skip_bad=True)
    assert [q.id for q in questions] == ["1", "2"]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "skipped 2 of 4 rows" in message
    assert "mixed.jsonl line 2: invalid JSON" in message


def test_skip_bad_keeps_derived_ids_stable(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ids.jsonl", ["{oops", GOOD])
    with pytest.warns(UserWarning):
        assert load_jsonl(path, skip_bad=True)[0].id == "ids-0001"


def test_all_rows_bad_raises_even_with_skip_bad(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "allbad.jsonl", ["nope", "[]"])
    with pytest.raises(DataFormatError, match=r"allbad\.jsonl: all 2 rows are bad"):
        load_jsonl(path, skip_bad=True)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.jsonl", ""),
        ("blank.jsonl", "\n  \n\n"),
        ("empty.csv", ""),
        ("header.csv", "question,answer\n"),
    ],
)
def test_empty_file_raises(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError, match=re.escape(name)):
        load_questions(str(path), skip_bad=True)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl does not exist"):
        load_questions(str(tmp_path / "nowhere.jsonl"))
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        load_csv(tmp_path / "nowhere.csv")


def test_file_with_unknown_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "questions.tsv"
    path.write_text("Q?\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"cannot tell the format .*\.csv or \.txt"):
        load_questions(str(path))


# --------------------------------------------------------------------------- FieldMap checks


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"answer_regex": "(unclosed"}, "answer_regex '\\(unclosed' is not a valid regex"),
        ({"answer_regex": "#### .*"}, "must have exactly one capturing group, it has 0"),
        ({"question_regex": "(a)(b)"}, "question_regex .* it has 2"),
        ({"question": ""}, "question must be a field name"),
        ({"answers": ()}, "answers must be a field name"),
        ({"aliases": " "}, "aliases must be a field name or None"),
        ({"question": "q", "answers": "q"}, "both name the field 'q'"),
    ],
)
def test_fieldmap_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FieldMap(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- named sets


def test_unknown_dataset_suggests_close_name() -> None:
    with pytest.raises(KeyError, match="did you mean 'triviaqa'"):
        load_questions("trivia")


def test_named_set_refuses_fields() -> None:
    with pytest.raises(ValueError, match="fields applies to question files"):
        load_questions("gsm8k", fields=FieldMap())


def test_named_set_without_local_copy_or_datasets_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECAL_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(RuntimeError) as info:
        load_questions("gsm8k")
    message = str(info.value)
    assert "not available offline" in message
    assert "recal[hub]" in message
    assert "--data-dir" in message
    assert "gsm8k/test.jsonl" in message


def test_named_set_reads_local_copy_from_env_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gsm8k").mkdir()
    write_jsonl(
        tmp_path / "gsm8k" / "test.jsonl",
        [{"question": f"Q{i}?", "answer": f"work\n#### {i}"} for i in range(9)],
    )
    monkeypatch.setenv("RECAL_DATA_DIR", str(tmp_path))
    questions = load_questions("gsm8k", limit=8)
    assert len(questions) == 8
    assert questions[7].id == "gsm8k-0007"
    assert questions[7].answers == ("7",)


def fake_datasets(rows: list[dict[str, object]] | Exception) -> types.ModuleType:
    module = types.ModuleType("datasets")

    def load_dataset(path: str, name: str | None = None, *, split: str) -> list[dict[str, object]]:
        module.calls.append((path, name, split))  # type: ignore[attr-defined]
        if isinstance(rows, Exception):
            raise rows
        return rows

    module.calls = []  # type: ignore[attr-defined]
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    return module


def test_named_set_falls_back_to_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = fake_datasets(
        [{"question_id": "tc_1", "question": "Who?", "answer": {"value": "Him", "aliases": ["He"]}}]
    )
    monkeypatch.setitem(sys.modules, "datasets", module)
    with pytest.warns(UserWarning, match="from the hub"):
        questions = load_questions("triviaqa", data_dir=tmp_path)
    assert module.calls == [("mandarjoshi/trivia_qa", "rc.nocontext", "validation")]
    assert questions == [Question(id="tc_1", question="Who?", answers=("Him", "He"))]


def test_unreachable_hub_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECAL_DATA_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(ConnectionError("offline")))
    with pytest.raises(RuntimeError, match=r"not available offline.*ConnectionError: offline"):
        load_questions("nq-open")


def test_bad_hub_rows_name_the_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECAL_DATA_DIR", raising=False)
    rows = [{"question": "Q?", "answer": "#### 1"}, {"question": "Q2?", "answer": "no marker"}]
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(rows))
    with pytest.raises(DataFormatError, match=r"openai/gsm8k \(main/test\) from the hub row 2: "):
        load_questions("gsm8k")


def test_every_named_set_is_registered() -> None:
    assert set(DATASETS) == {"builtin", "triviaqa", "nq-open", "simpleqa", "gsm8k", "sciq", "popqa"}


def test_builtin_set_loads() -> None:
    if not BUILTIN.is_file():
        pytest.skip("the packaged builtin question set is not written yet")
    questions = load_questions("builtin")
    assert questions
    assert len({q.id for q in questions}) == len(questions)
    assert load_questions(limit=1) == questions[:1]


# Real public sets in ../shared/data: documented row counts and one known row each.
REAL_SETS = [
    ("gsm8k", 1319),
    ("nq-open", 3610),
    ("simpleqa", 4326),
    ("triviaqa", 3000),
    ("sciq", 1000),
    ("popqa", 1000),
]


@pytest.fixture(scope="module")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.mark.parametrize(("name", "rows"), REAL_SETS)
def test_real_set_row_counts(shared_data: Path, name: str, rows: int) -> None:
    if not (shared_data / DATASETS.get(name).local_path).is_file():
        pytest.skip(f"no local copy of {name}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no row of the real files may be skipped
        questions = load_questions(name, data_dir=shared_data)
    assert len(questions) == rows
    assert all(q.answers and all(a.strip() for a in q.answers) for q in questions)
    assert all(q.question.strip() for q in questions)


def load_real(shared_data: Path, name: str) -> list[Question]:
    if not (shared_data / DATASETS.get(name).local_path).is_file():
        pytest.skip(f"no local copy of {name}")
    return load_questions(name, data_dir=shared_data)


def test_real_gsm8k(shared_data: Path) -> None:
    questions = load_real(shared_data, "gsm8k")
    assert questions[0].id == "gsm8k-0000"
    assert questions[0].answers == ("18",)
    assert questions[0].question.startswith("Janet")
    assert all(re.fullmatch(r"-?[\d,]+(\.\d+)?", q.answer) for q in questions)


def test_real_nq_open(shared_data: Path) -> None:
    first = load_real(shared_data, "nq-open")[0]
    assert first.question == "when was the last time anyone was on the moon"
    assert first.answers == ("14 December 1972 UTC", "December 1972")


def test_real_simpleqa(shared_data: Path) -> None:
    first = load_real(shared_data, "simpleqa")[0]
    assert first.question == "Who received the IEEE Frank Rosenblatt Award in 2010?"
    assert first.answers == ("Michio Sugeno",)
    assert first.metadata["topic"] == "Science and technology"


def test_real_triviaqa(shared_data: Path) -> None:
    questions = load_real(shared_data, "triviaqa")
    first = questions[0]
    assert first.question == (
        "Brunswick, Lancastrian and Pearl Pickler are types of which vegetable?"
    )
    assert first.answer == "Onion"
    assert "Allium cepa" in first.answers
    assert not any(q.question.startswith("Question:") or "Answer:" in q.question for q in questions)


def test_real_sciq(shared_data: Path) -> None:
    first = load_real(shared_data, "sciq")[0]
    assert first.answers == ("oxidants",)


def test_real_popqa(shared_data: Path) -> None:
    first = load_real(shared_data, "popqa")[0]
    assert first.id == "test_10207"
    assert first.answers == ("Ralph Rainger", "Ralph Reichenthal")
    assert first.metadata["prop"] == "composer"


def test_the_split_modules_keep_the_old_import_paths() -> None:
    import recal.data
    from recal.data import fields, files, loaders, named_sets

    for name in loaders.__all__:  # `from recal.data.loaders import X` keeps working
        assert getattr(loaders, name) is getattr(recal.data, name)
    assert loaders.DataFormatError is fields.DataFormatError
    assert loaders.load_jsonl is files.load_jsonl and loaders.DATASETS is named_sets.DATASETS
    for module in (fields, files, loaders, named_sets):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert source.count("\n") < 500, f"{module.__name__} grew past 500 lines"
        assert not re.search(r"^from recal\S* import .*\b_[a-z]", source, re.M), module.__name__
