"""Normalisation keeps meaning: a hand-written table of answers and the classes they belong to.

Every expected class below is written from what the answers *mean*, not from the normaliser's
output: two texts in one group say the same thing and must get one label; texts in different
groups of one family say different things and must get different labels. The grading table then
asks, for a question and its gold aliases, whether an answer is right, again from meaning.
"""

from __future__ import annotations

import itertools

import pytest

from recal.data.loaders import load_questions
from recal.data.records import Question
from recal.semantic.normalize import NormalizedCollapser, normalize_answer, normalize_text

# Each family: groups of texts; within a group one meaning, across groups different meanings.
FAMILIES: dict[str, list[list[str]]] = {
    "grades": [["A+", "a+", " A+ "], ["A", "a"], ["A-", "A−", "A\u2013"], ["B+"], ["B"]],
    "blood groups": [
        ["O-", "O−", "O negative", "O Negative", "O neg", "O Rh-negative", "o negative"],
        ["O+", "O positive", "O pos"],
        ["AB+", "AB positive"], ["AB-", "AB negative"], ["O"], ["A negative", "A-"],
    ],
    "languages": [["C"], ["C++", "c++"], ["C#", "c#"], ["F#"], ["F"]],
    "dotted abbreviations": [
        ["U.S.A.", "USA", "U.S.A", "usa"], ["U.S.", "US", "U. S."],
        ["Washington, D.C.", "Washington DC", "Washington D.C."],
        ["J. K. Rowling", "J.K. Rowling", "JK Rowling"], ["C. S. Lewis", "C.S. Lewis", "CS Lewis"],
        ["J. R. R. Tolkien", "J.R.R. Tolkien", "JRR Tolkien"],
    ],
    "percentages": [["5%", "5 %", "5 percent", "5 per cent", "five percent", "5.0%"], ["5"],
                    ["50%"], ["0.05"]],
    "temperatures": [
        ["100°C", "100 °C", "100 ° C", "100 degrees Celsius", "100 degrees C", "100℃",
         "100 degrees centigrade", "one hundred degrees Celsius"],
        ["100°F", "100 degrees Fahrenheit", "100 °F"], ["100"], ["100 K", "100 kelvin"],
        ["-273.15 °C", "−273.15 °C", "-273.15 degrees Celsius"], ["273.15 °C"],
    ],
    "angles": [["90°", "90 degrees", "ninety degrees"], ["90"]],
    "units": [
        ["5 km", "5km", "5 kilometres", "5 kilometers", "five kilometres"], ["5 m", "5 metres"],
        ["5 kg", "5 kilograms", "5kg"], ["5 g", "5 grams"], ["5 s", "5 seconds"],
        ["5 min", "5 minutes"], ["5 h", "5 hours"], ["5 ft", "5 feet"], ["5 mi", "5 miles"],
        ["10 ml", "10 millilitres"], ["10 l", "10 litres", "10 liters"],
    ],
    "charges": [["Fe2+", "Fe²⁺", "fe2+"], ["Fe3+", "Fe³⁺"], ["Fe"], ["Na+"], ["Na"],
                ["Cl-", "Cl−"], ["Cl"]],
    "numbers": [["3.50", "3.5"], ["35"], ["-4", "−4"], ["4"], ["2,125", "2125"], ["212.5"],
                ["forty-two", "42", "forty two"], ["4 2", "four two"]],
}

CASES = [(family, g, text) for family, groups in FAMILIES.items()
         for g, group in enumerate(groups) for text in group]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize(("family", "group", "text"), CASES)
def test_same_meaning_same_label(family: str, group: int, text: str) -> None:
    # Every text of a group gets the label of the group's first text.
    first = FAMILIES[family][group][0]
    assert normalize_text(text) == normalize_text(first), (family, text, first)
    assert normalize_text(normalize_text(text)) == normalize_text(text)  # idempotent


@pytest.mark.parametrize("family", list(FAMILIES))
def test_different_meanings_different_labels(family: str) -> None:
    labels = [normalize_text(group[0]) for group in FAMILIES[family]]
    for (i, a), (j, b) in itertools.combinations(enumerate(labels), 2):
        assert a != b, (family, FAMILIES[family][i][0], FAMILIES[family][j][0])
    assert all(labels), family


def test_lower_case_a_positive_is_not_a_blood_group() -> None:
    # "a positive" in running text is an article and an adjective.
    assert normalize_text("a positive attitude") == "positive attitude"
    assert normalize_text("A positive") == normalize_text("A+")


def test_a_dash_after_a_word_is_not_a_minus_sign() -> None:
    assert normalize_text("Paris\u2014") == "paris"
    assert normalize_text("Jean-Paul") == "jean paul"
    assert normalize_text("Plan B. I think") == "plan b i think"  # not an abbreviation "BI"


def _q(question: str, *answers: str) -> Question:
    return Question(id="q", question=question, answers=list(answers))


DONOR = _q("Which blood type is known as the universal donor?", "O negative", "O-", "O−", "O neg")
BOIL_C = _q("At how many degrees Celsius does pure water boil at sea level?", "100")
BOIL_F = _q("At how many degrees Fahrenheit does pure water boil at sea level?", "212")
SHARE = _q("What percentage of the Earth's surface is covered by water?", "71%")
TENTH = _q("What is 10% of 50?", "5")
LANG = _q("Which programming language did Bjarne Stroustrup create?", "C++")
GRADE = _q("What grade is above an A in a US school?", "A+")
ION = _q("What is the charge state of iron in ferric chloride?", "Fe3+")
COUNTRY = _q("Which country has Washington, D.C. as its capital?", "United States", "U.S.A.")
EVEREST = _q("How tall is Mount Everest?", "8849", "8849 m")

GRADING = [
    (DONOR, "O negative", True), (DONOR, "O-", True), (DONOR, "O−.", True),
    (DONOR, "The universal donor is O negative.", True), (DONOR, "O Rh-negative", True),
    (DONOR, "O+", False), (DONOR, "O positive", False), (DONOR, "O", False),
    (DONOR, "AB+", False), (DONOR, "AB negative", False), (DONOR, "A negative", False),
    (BOIL_C, "100", True), (BOIL_C, "100°C", True), (BOIL_C, "100 degrees Celsius", True),
    (BOIL_C, "It boils at 100 degrees.", True), (BOIL_C, "100°F", False),
    (BOIL_C, "212", False), (BOIL_F, "212 °F", True), (BOIL_F, "212 degrees", True),
    (BOIL_F, "100 °C", False), (BOIL_F, "212 °C", False),
    (SHARE, "71%", True), (SHARE, "71 percent", True), (SHARE, "71 per cent", True),
    (SHARE, "71", True), (SHARE, "70%", False), (SHARE, "0.71", False),
    (TENTH, "5", True), (TENTH, "5%", False), (TENTH, "five", True), (TENTH, "50", False),
    (LANG, "C++", True), (LANG, "c++", True), (LANG, "C", False), (LANG, "C#", False),
    (GRADE, "A+", True), (GRADE, "A", False), (GRADE, "A-", False),
    (ION, "Fe3+", True), (ION, "Fe³⁺", True), (ION, "Fe2+", False), (ION, "Fe", False),
    (COUNTRY, "USA", True), (COUNTRY, "The U.S.A.", True), (COUNTRY, "UK", False),
    (COUNTRY, "United States of America", True),
    (EVEREST, "8849 metres", True), (EVEREST, "8,849 m", True), (EVEREST, "8848 m", False),
]


@pytest.mark.parametrize(("question", "answer", "correct"), GRADING)
def test_grading_follows_meaning(question: Question, answer: str, correct: bool) -> None:
    b = NormalizedCollapser()
    label = b.label(question, answer)
    assert b.is_correct(question, label) is correct, (question.question, answer, label)


def test_universal_donor_classes() -> None:
    # The bug of issue 21: O+ and "O positive" were graded correct for the gold O-.
    b = NormalizedCollapser()
    labels = b.collapse(DONOR, ["O-", "O negative", "O+", "O positive", "O", "AB+"])
    assert labels[0] == labels[1]
    assert len({labels[0], labels[2], labels[4], labels[5]}) == 4
    assert labels[2] == labels[3]


def test_units_the_question_names_are_a_restatement() -> None:
    q = "What is the boiling point of water at sea level in degrees Celsius?"
    assert normalize_answer("Water boils at 100 degrees Celsius at sea level.", q) == "100"
    assert normalize_answer("100°C", q) == "100"
    assert normalize_answer("100°F", q) == "100 °f"
    assert normalize_answer("71%", SHARE.question) == "71"
    assert normalize_answer("71%", "What is 71% of 100?") == "71%"


def test_every_builtin_alias_is_graded_correct_for_its_question() -> None:
    b = NormalizedCollapser()
    wrong = [(q.id, alias) for q in load_questions("builtin") for alias in q.answers
             if not b.is_correct(q, b.label(q, alias))]
    assert wrong == []


@pytest.mark.parametrize(("qid", "answer", "correct"), [
    # Confusions found reading the built-in set by eye.
    ("builtin-0118", "O positive", False), ("builtin-0118", "O+", False),
    ("builtin-0118", "O negative", True),
    ("builtin-0589", "Napoleon III", False), ("builtin-0589", "Napoleon I", True),
    ("builtin-0149", "Cleopatra III", False), ("builtin-0149", "Cleopatra VII", True),
    ("builtin-0635", "Vitamin D3", True), ("builtin-0635", "vitamin C", False),
    ("builtin-0154", "32 degrees", True), ("builtin-0154", "32 °C", False),
    ("builtin-0054", "100°C", True), ("builtin-0054", "100°F", False),
    ("builtin-0213", "J.R.R. Tolkien", True), ("builtin-0213", "J. R. R. Tolkien", True),
    ("builtin-0311", "Washington, D.C.", True), ("builtin-0077", "U.S.A.", True),
])
def test_builtin_confusions(qid: str, answer: str, correct: bool) -> None:
    question = next(q for q in load_questions("builtin") if q.id == qid)
    b = NormalizedCollapser()
    assert b.is_correct(question, b.label(question, answer)) is correct


def test_a_raw_label_with_the_unit_the_question_names_is_graded_right() -> None:
    # Only the bare number is a gold alias; the unit restates the question.
    q = _q("At how many degrees Celsius does pure water boil at sea level?", "100")
    b = NormalizedCollapser()
    assert b.is_correct(q, "100 °C") and b.is_correct(q, "100 degrees Celsius")
    assert not b.is_correct(q, "100 °F")
