"""Scorer files read as untrusted data: the adapter folder they name (only one inside the
scorer's own is read), strict JSON, every field's type and range, and the optional signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recal.calibrators import get_recalibrator
from recal.scorer import (
    AdapterRef,
    CalibratedScorer,
    ScorerFormatError,
    ScorerSignatureError,
    folder_sha256,
    load_scorer,
)
from recal.scorer_format import ADAPTER_METHODS, read_document, signing_key


def _scorer_with_adapter(tmp_path: Path, adapter_path: str) -> Path:
    scorer = CalibratedScorer(
        recalibrator=get_recalibrator("identity").fit([0.2, 0.8], [0, 1]),
        collapse="normalized", scorer="modal_share", style="concise",
        sampling={"n_samples": 4, "temperature": 1.0}, model={"name": "m", "kind": "chat"})
    folder = scorer.save(tmp_path / "scorer")
    file = folder / "scorer.json"
    doc = json.loads(file.read_text())
    doc["schema"] = 2
    doc["adapter"] = {"method": "amortised", "path": adapter_path, "sha256": "0" * 64}
    # what someone who edits the file by hand does: recompute the content hash (sorted JSON)
    body = {k: v for k, v in doc.items() if k != "content_sha256"}
    doc["content_sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    file.write_text(json.dumps(doc))
    return folder


@pytest.mark.parametrize("where", ["/", "/proc/self", "../..", "..", ".", "adapter/../.."])
def test_an_adapter_path_outside_the_scorer_is_refused_before_any_read(tmp_path, where):
    folder = _scorer_with_adapter(tmp_path, where)
    opened: list[str] = []

    def audit(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(audit)  # hooks cannot be removed: it only records
    start = len(opened)
    with pytest.raises(ScorerFormatError, match="must name a folder inside the scorer's folder"):
        load_scorer(folder)
    outside = [p for p in opened[start:]
               if not Path(p).resolve().is_relative_to(folder.resolve())
               and not p.endswith((".py", ".pyc"))]
    assert outside == []


def test_a_link_out_of_the_adapter_folder_is_refused(tmp_path):
    folder = _scorer_with_adapter(tmp_path, "adapter")
    (folder / "adapter").mkdir()
    (folder / "adapter" / "weights").symlink_to("/etc/hostname")
    with pytest.raises(ScorerFormatError, match="a link that leads outside it"):
        load_scorer(folder)


def test_an_adapter_inside_with_the_wrong_hash_is_refused(tmp_path):
    folder = _scorer_with_adapter(tmp_path, "adapter")
    (folder / "adapter").mkdir()
    (folder / "adapter" / "weights").write_bytes(b"x")
    with pytest.raises(ScorerFormatError, match="does not match the sha256"):
        load_scorer(folder)


# --------------------------------------------------------------------------- strict fields


def _plain_scorer(tmp_path: Path, method: str = "isotonic", *, abstention: bool = True,
                  **save: Any) -> Path:
    """A scorer fitted on 20 hand-made points (10 right, 10 wrong, overlapping)."""
    conf = [i / 20 for i in range(20)]
    correct = [int(i >= 6 and i % 3 != 0) for i in range(20)]
    rule = {"target_risk": 0.1, "delta": 0.1, "threshold": 0.9, "n_calibration": 20,
            "calibration_answered": 2, "calibration_errors": 0, "risk_upper_bound": 0.68,
            "calibrated_threshold": 0.9, "reason": "", "method": "m", "heldout": None}
    scorer = CalibratedScorer(
        recalibrator=get_recalibrator(method).fit(conf, correct),
        collapse="normalized", scorer="modal_share", style="concise",
        sampling={"n_samples": 4, "temperature": 1.0}, model={"name": "m", "kind": "chat"},
        metrics={"heldout": {"auroc": float("nan"), "ece": 0.1}},
        abstention=rule if abstention else None)
    return scorer.save(tmp_path / "scorer", **save)


def _rehash(doc: dict[str, Any]) -> dict[str, Any]:
    """What someone who edits the file by hand does: recompute the content hash."""
    body = {k: v for k, v in doc.items() if k != "content_sha256"}
    doc["content_sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return doc


def _edit(folder: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    file = folder / "scorer.json"
    doc = json.loads(file.read_text())
    change(doc)
    file.write_text(json.dumps(_rehash(doc), indent=2))
    return file


def _one_line_refusal(folder: Path, match: str, **kwargs: Any) -> str:
    with pytest.raises(ScorerFormatError) as info:
        load_scorer(folder, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message
    assert re.search(match, message), message
    return message


def test_undefined_metrics_are_written_as_null_and_read_back(tmp_path):
    folder = _plain_scorer(tmp_path)
    text = (folder / "scorer.json").read_text()
    assert "NaN" not in text
    json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} written"))
    loaded = load_scorer(folder)
    assert loaded.metrics["heldout"] == {"auroc": None, "ece": 0.1}
    assert loaded.abstention is not None and loaded.abstention["threshold"] == 0.9


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for part in parents:
            doc = doc[part]
        doc[last] = value
    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for part in parents:
            doc = doc[part]
        del doc[last]
    return change


FIELD_CASES = [
    # wrong types and ranges of the scorer's own fields
    ("schema 0", "isotonic", _set("schema", 0), r"key 'schema' must be a positive integer"),
    ("schema text", "isotonic", _set("schema", "1"), r"key 'schema' must be a positive integer"),
    ("schema true", "isotonic", _set("schema", True), r"key 'schema' must be a positive integer"),
    ("n_samples -5", "isotonic", _set("sampling.n_samples", -5),
     r"key 'sampling.n_samples' must be an integer >= 1, got -5"),
    ("n_samples 4.0", "isotonic", _set("sampling.n_samples", 4.0),
     r"key 'sampling.n_samples' must be an integer >= 1, got 4.0"),
    ("n_samples true", "isotonic", _set("sampling.n_samples", True),
     r"key 'sampling.n_samples' must be an integer"),
    ("sampling T 0", "isotonic", _set("sampling.temperature", 0),
     r"key 'sampling.temperature' must be a number > 0, got 0"),
    ("sampling T -1", "isotonic", _set("sampling.temperature", -1.0),
     r"key 'sampling.temperature' must be a number > 0"),
    ("sampling T text", "isotonic", _set("sampling.temperature", "1"),
     r"key 'sampling.temperature' must be a number > 0, got '1'"),
    ("sampling typo", "isotonic", _set("sampling.temprature", 1.0),
     r"key 'sampling.temprature' is not a sampling setting; did you mean 'temperature'"),
    ("tau_grid negative", "isotonic", _set("sampling.tau_grid", [1.0, -1.0]),
     r"key 'sampling': tau_grid must hold positive temperatures"),
    ("shots -1", "isotonic", _set("prompt.shots", -1), r"key 'prompt.shots' must be an integer"),
    ("style typo", "isotonic", _set("prompt.style", "consise"),
     r"key 'prompt.style': unknown prompt style 'consise'; did you mean 'concise'"),
    ("collapse typo", "isotonic", _set("collapse.name", "normalised"),
     r"key 'collapse.name': unknown collapsing function 'normalised'; did you mean "
     r"'normalized'"),
    ("collapse options", "isotonic", _set("collapse.options", "x"),
     r"key 'collapse.options' must be an object"),
    ("scorer typo", "isotonic", _set("scorer", "modal_shar"),
     r"key 'scorer': unknown confidence scorer 'modal_shar'; did you mean 'modal_share'"),
    ("model missing", "isotonic", _drop("model"), r"key 'model' is missing"),
    ("model name", "isotonic", _set("model.name", 3),
     r"key 'model.name' must be a non-empty string, got 3"),
    ("model kind", "isotonic", _set("model.kind", "instruct"),
     r"key 'model.kind': unknown model kind 'instruct'"),
    ("metrics list", "isotonic", _set("metrics", []), r"key 'metrics' must be an object"),
    ("abstention threshold 1.5", "isotonic", _set("abstention.threshold", 1.5),
     r"key 'abstention.threshold' must be a number in \[0, 1\], got 1.5"),
    ("abstention threshold -0.1", "isotonic", _set("abstention.threshold", -0.1),
     r"key 'abstention.threshold' must be a number in \[0, 1\]"),
    ("abstention risk 0", "isotonic", _set("abstention.target_risk", 0),
     r"key 'abstention.target_risk' must be a number in \(0, 1\)"),
    ("abstention counts", "isotonic", _set("abstention.calibration_errors", 5),
     r"key 'abstention.calibration_answered' must be between calibration_errors \(5\)"),
    ("adapter method typo", "isotonic",
     _set("adapter", {"method": "amortized", "path": "adapter", "sha256": "0" * 64}),
     r"key 'adapter.method': unknown tuning method 'amortized'; did you mean 'amortised'"),
    ("adapter hash", "isotonic",
     _set("adapter", {"method": "amortised", "path": "adapter", "sha256": "xyz"}),
     r"key 'adapter.sha256' must be 64 lower-case hex digits"),
    # the recalibrator's state, checked when it is built
    ("unknown method", "isotonic", _set("recalibrator.name", "isotonik"),
     r"\(recalibrator\): key 'name': .*did you mean 'isotonic'"),
    ("temperature 0", "temperature", _set("recalibrator.state.temperature", 0.0),
     r"\(recalibrator\): key 'state.temperature' must be positive, got 0.0"),
    ("temperature -2", "temperature", _set("recalibrator.state.temperature", -2.0),
     r"key 'state.temperature' must be positive"),
    ("temperature text", "temperature", _set("recalibrator.state.temperature", "2"),
     r"key 'state.temperature' must be a finite number, got '2'"),
    ("isotonic not monotone", "isotonic", _set("recalibrator.state.y_thresholds",
                                               [0.0, 0.9, 0.5, 0.9, 1.0]),
     r"key 'state.y_thresholds' must be non-decreasing"),
    ("isotonic thresholds outside", "isotonic", _set("recalibrator.state.x_thresholds",
                                                     [-0.5, 0.2, 0.4, 0.6, 1.0]),
     r"key 'state.x_thresholds' must increase strictly within \[0, 1\]"),
    ("isotonic y above 1", "isotonic", _set("recalibrator.state.y_thresholds",
                                            [0.0, 0.2, 0.4, 0.6, 1.5]),
     r"key 'state.y_thresholds' must be non-decreasing within \[0, 1\]"),
    ("histogram value", "histogram", _set("recalibrator.state.values", [1.5] * 10),
     r"key 'state.values' must lie in \[0, 1\]"),
    ("platt slope", "platt", _set("recalibrator.state.slope", -1.0),
     r"key 'state.slope' must be >= 0"),
    ("n_fit 0", "platt", _set("recalibrator.state.n_fit", 0),
     r"key 'state.n_fit' must be a positive integer"),
]


@pytest.mark.parametrize(("method", "change", "match"), [c[1:] for c in FIELD_CASES],
                         ids=[c[0] for c in FIELD_CASES])
def test_a_field_out_of_type_or_range_is_refused_naming_file_and_key(tmp_path, method, change,
                                                                     match):
    folder = _plain_scorer(tmp_path, method)
    if method == "isotonic":  # the cases above assume a 5-step isotonic table
        doc = json.loads((folder / "scorer.json").read_text())
        assert len(doc["recalibrator"]["state"]["x_thresholds"]) == 5
    _edit(folder, change)
    _one_line_refusal(folder, match)


TEXT_CASES = [
    ("NaN", lambda t: t.replace('"ece": 0.1', '"ece": NaN'), r"NaN at line \d+, key 'ece'"),
    ("Infinity", lambda t: t.replace('"ece": 0.1', '"ece": Infinity'),
     r"Infinity at line \d+, key 'ece' is not JSON"),
    ("-Infinity", lambda t: t.replace('"temperature": 1.0', '"temperature": -Infinity'),
     r"-Infinity at line \d+, key 'temperature'"),
    ("1e999", lambda t: t.replace('"ece": 0.1', '"ece": 1e999'),
     r"1e999 at line \d+, key 'ece' is not a finite number"),
    ("duplicate key", lambda t: t.replace('"scorer": "modal_share"',
                                          '"scorer": "modal_share", "scorer": "p_true"'),
     r"key 'scorer' appears twice"),
    ("nesting bomb", lambda t: t.replace('"ece": 0.1', '"ece": ' + "[" * 100_000 + "]" * 100_000),
     r"nested deeper than 64 levels"),
    ("shallower bomb", lambda t: t.replace('"ece": 0.1', '"ece": ' + "[" * 200 + "]" * 200),
     r"nested deeper than 64 levels"),
    ("a list", lambda t: "[" + t + "]", r"does not hold a scorer \(a JSON object\)"),
    ("truncated", lambda t: t[: len(t) // 2], r"not valid JSON"),
]


@pytest.mark.parametrize(("change", "match"), [c[1:] for c in TEXT_CASES],
                         ids=[c[0] for c in TEXT_CASES])
def test_text_that_is_not_strict_json_is_refused_in_one_line(tmp_path, change, match):
    folder = _plain_scorer(tmp_path)
    file = folder / "scorer.json"
    text = file.read_text()
    changed = change(text)
    assert changed != text
    file.write_text(changed)
    _one_line_refusal(folder, match)


def test_bytes_that_are_not_utf8_or_too_many_are_refused(tmp_path):
    folder = _plain_scorer(tmp_path)
    file = folder / "scorer.json"
    file.write_bytes(file.read_bytes().replace(b"modal_share", b"modal\xffshare"))
    _one_line_refusal(folder, "not UTF-8 text")
    with pytest.raises(ScorerFormatError, match="more than the 100 a recal file"):
        read_document(file, limit=100)


def test_adapter_methods_are_the_tuning_registry(tmp_path):
    pytest.importorskip("torch")
    from recal.tuning import TUNING_METHODS, get_method

    get_method("amortised")  # imports (registers) every method
    assert set(ADAPTER_METHODS) == set(TUNING_METHODS.names())


# --------------------------------------------------------------------------- signatures

SIGNING_KEY = "team-key-0123456789abcdef"


def test_a_signed_scorer_loads_with_its_key_and_without_one(tmp_path):
    folder = _plain_scorer(tmp_path, key=SIGNING_KEY)
    body = json.loads((folder / "signature.json").read_text())
    assert body["algorithm"] == "hmac-sha256" and len(body["hmac"]) == 64
    a = load_scorer(folder, key=SIGNING_KEY)
    b = load_scorer(folder)
    assert a.recalibrator.to_dict() == b.recalibrator.to_dict()
    # the MAC is HMAC-SHA256 over the canonical JSON, as the docs say (recomputed here by hand)
    doc = json.loads((folder / "scorer.json").read_text())
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hmac.new(SIGNING_KEY.encode(), b"recal scorer signature 1\n" + canonical.encode(),
                        hashlib.sha256).hexdigest()
    assert body["hmac"] == expected


def test_a_key_refuses_unsigned_tampered_and_foreign_scorers(tmp_path):
    unsigned = _plain_scorer(tmp_path / "u")
    _one_line_refusal(unsigned, r"is not signed \(no signature.json", key=SIGNING_KEY)
    with pytest.raises(ScorerSignatureError):
        load_scorer(unsigned, key=SIGNING_KEY)

    tampered = _plain_scorer(tmp_path / "t", key=SIGNING_KEY)
    _edit(tampered, _set("abstention.threshold", 0.1))  # a valid file with its hash recomputed
    assert load_scorer(tampered).abstention["threshold"] == 0.1  # the hash alone cannot tell
    _one_line_refusal(tampered, "does not match its signature", key=SIGNING_KEY)

    foreign = _plain_scorer(tmp_path / "f", key="another-key-0123456789")
    _one_line_refusal(foreign, "does not match its signature", key=SIGNING_KEY)

    garbage = _plain_scorer(tmp_path / "g", key=SIGNING_KEY)
    (garbage / "signature.json").write_text('{"algorithm": "md5", "hmac": "00"}')
    with pytest.raises(ScorerSignatureError, match="not a recal signature"):
        load_scorer(garbage, key=SIGNING_KEY)

    with pytest.raises(ValueError, match="at least 16 bytes"):
        load_scorer(garbage, key="short")


def test_saving_again_without_a_key_drops_the_old_signature(tmp_path):
    folder = _plain_scorer(tmp_path, key=SIGNING_KEY)
    load_scorer(folder).save(folder)
    assert not (folder / "signature.json").exists()
    _one_line_refusal(folder, "is not signed", key=SIGNING_KEY)


def test_the_signature_covers_the_adapter_bytes(tmp_path):
    source = tmp_path / "trained"
    source.mkdir()
    (source / "adapter_model.safetensors").write_bytes(b"\x08\x00weights")
    (source / "adapter_config.json").write_text("{}")
    scorer = CalibratedScorer(
        recalibrator=get_recalibrator("identity").fit([0.2, 0.8], [0, 1]),
        collapse="normalized", scorer="modal_share", style="concise",
        sampling={"n_samples": 4, "temperature": 1.0}, model={"name": "m", "kind": "chat"},
        adapter=AdapterRef("amortised", str(source), folder_sha256(source)))
    folder = scorer.save(tmp_path / "scorer", key=SIGNING_KEY)
    assert load_scorer(folder, key=SIGNING_KEY).adapter.path == "adapter"
    weights = folder / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"\x08\x00evil!!!")
    _one_line_refusal(folder, "does not match the sha256")
    # whoever also rewrites the adapter's hash and the content hash still lacks the key
    new_hash = folder_sha256(folder / "adapter")
    _edit(folder, _set("adapter.sha256", new_hash))
    load_scorer(folder)  # consistent without a key
    _one_line_refusal(folder, "does not match its signature", key=SIGNING_KEY)


def test_signing_key_reads_the_environment(monkeypatch):
    monkeypatch.delenv("RECAL_SIGNING_KEY", raising=False)
    assert signing_key() is None  # no key: scorers are neither signed nor checked
    with pytest.raises(ValueError, match="MY_KEY is not set"):
        signing_key("MY_KEY")
    monkeypatch.setenv("MY_KEY", "short")
    with pytest.raises(ValueError, match=r"\$MY_KEY has 5 characters; use at least 16"):
        signing_key("MY_KEY")
    monkeypatch.setenv("RECAL_SIGNING_KEY", SIGNING_KEY)
    assert signing_key() == SIGNING_KEY.encode()
