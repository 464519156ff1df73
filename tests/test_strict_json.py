"""Strict JSON in what recal writes (JSON Lines records, canonical bytes) and what it reads from
files others may have edited (no NaN or Infinity, no key twice, bounded nesting)."""

from __future__ import annotations

import json
import math

import pytest

from recal.data.records import Question
from recal.lines import dumps_line, iter_jsonl
from recal.runstore import RunStore
from recal.samples import QuestionSamples, Sample
from recal.strict_json import MAX_DEPTH, StrictJSONError, canonical_json, finite_json, loads_strict


@pytest.mark.parametrize(("value", "where"), [
    (float("nan"), "nan at the top"),
    ([1.0, float("inf")], r"inf at \[1\]"),
    ({"samples": [{"logprobs": [-0.5, float("-inf")]}]}, r"-inf at samples\[0\].logprobs\[1\]"),
    ({"a": {"b": (0.1, float("nan"))}}, r"nan at a.b\[1\]"),
])
def test_dumps_line_refuses_nan_and_infinities_naming_where(value, where):
    with pytest.raises(ValueError, match=f"a record to write holds {where}: JSON has no NaN"):
        dumps_line(value)


def test_dumps_line_writes_finite_records_that_strict_parsers_read():
    record = {"text": "Paris\u2028ok é", "logprobs": [-0.0, -1e-300, -745.2], "n": 3,
              "none": None}
    line = dumps_line(record)
    assert line.endswith("\n") and line.count("\n") == 1
    assert loads_strict(line) == record
    assert json.loads(line) == record


def test_a_record_with_an_infinite_log_probability_is_refused_before_the_file_is_touched(
        tmp_path):
    manifest = {"model": {"name": "m", "kind": "base", "backend": "test", "config_hash": "h"},
                "style": "concise", "shots": None,
                "sampling": {"n_samples": 1, "temperature": 1.0, "max_new_tokens": 8,
                             "greedy": False, "seed": 0, "stop_at_newline": True,
                             "tau_grid": []}}
    questions = [Question("q0", "a?", ("a",)), Question("q1", "b?", ("b",))]
    store = RunStore.create_or_resume(tmp_path / "run", manifest, questions)
    good = QuestionSamples("q0", (Sample("a", (1,), (-0.25,), "stop"),))
    store.append(good)
    before = (tmp_path / "run" / "samples.jsonl").read_bytes()
    bad = QuestionSamples("q1", (Sample("b", (1, 2), (-0.5, -math.inf), "stop"),))
    with pytest.raises(ValueError, match=r"-inf at samples\[0\].logprobs\[1\]"):
        store.append(bad)
    assert (tmp_path / "run" / "samples.jsonl").read_bytes() == before
    assert [value["id"] for _, value in iter_jsonl(tmp_path / "run" / "samples.jsonl")] == ["q0"]


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": NaN}', r"NaN at line 1, key 'a' is not JSON"),
    ('{"a": 1,\n "b": [2, -Infinity]}', r"-Infinity at line 2 is not JSON"),
    ('{"x": Infinity}', r"Infinity at line 1, key 'x' is not JSON"),
    ('{"t": 1e999}', r"1e999 at line 1, key 't' is not a finite number"),
    ('{"t": -2E400}', r"-2E400 at line 1, key 't' is not a finite number"),
    ('{"a": 1, "a": 2}', r"key 'a' appears twice in one object"),
    ('{"o": {"k": 1, "k": 1}}', r"key 'k' appears twice"),
    ("[" * 100_000 + "]" * 100_000, f"nested deeper than {MAX_DEPTH} levels"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
    ('{"a": ', r"not valid JSON \(Expecting value at line 1, column 7\)"),
])
def test_loads_strict_refuses_what_is_not_strict_json(text, message):
    with pytest.raises(StrictJSONError, match=message) as info:
        loads_strict(text)
    assert "\n" not in str(info.value)


def test_loads_strict_reads_what_is():
    assert loads_strict('{"a": "NaN", "b": [1.5, -0.0, 1e300], "c": null}') == {
        "a": "NaN", "b": [1.5, -0.0, 1e300], "c": None}
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_strict(deep) == json.loads(deep)


def test_canonical_json_and_finite_json():
    assert canonical_json({"b": 1, "a": ["é", 0.5]}) == '{"a":["é",0.5],"b":1}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"a": float("nan")})
    assert finite_json({"a": (1.0, float("nan")), "b": {"c": float("-inf")}, "d": "x"}) == {
        "a": [1.0, None], "b": {"c": None}, "d": "x"}
