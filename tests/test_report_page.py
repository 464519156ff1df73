"""The report page (report.html): its data, its escaping, and the page itself in headless
Chromium (Debian's ``chromium``; installed by the ``browser`` fixture where apt-get may run).

The browser tests open the page a `recal measure` writes from disk, click reliability-diagram
bins and brush ranges like a person, and check what the page lists against ``scores.jsonl`` and
the binning that recal.metrics documents (edges ``linspace(0, 1, B + 1)``, bins ``[e_k,
e_k+1)``, 1.0 in the last).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from recal.data.records import Question
from recal.explorer import comparison_document, partition_changes, render_page, write_page
from recal.explorer.page import embed_json, pack
from recal.measure import MeasureConfig, measure_run, write_report
from recal.runstore import RunStore
from recal.samples import QuestionSamples, Sample
from recal.semantic import get_collapser

M = 10
EVIL = ["<script>alert(1)</script>", "</script><b>bold</b>", "a\u2028b\u2029c",
        "\u200f\u05e9\u05dc\u05d5\u05dd\u200e abc \u202e", "&amp; &lt;"]
MANIFEST = {"model": {"name": "m", "kind": "chat", "backend": "test", "config_hash": "h"},
            "style": "concise", "shots": 0, "questions": {"count": 0, "dataset": "d", "hash": "x"},
            "sampling": {"n_samples": M, "temperature": 1.0, "greedy": True}}


def _sample(text: str) -> Sample:
    return Sample(text=text, token_ids=(1, 2), logprobs=(-0.5, -0.25), finish_reason="eos")


def _texts(i: int, rng: np.random.Generator) -> list[str]:
    """Question i's M answers: k of them right (in two spellings), the rest wrong."""
    k = int(rng.integers(0, M + 1))
    right = [f"ans{i}" if j % 2 else f"Ans{i} city." for j in range(k)]
    wrong = [f"wrong{int(rng.integers(0, 3))}" for _ in range(M - k)]
    return [str(t) for t in rng.permutation(right + wrong)]


def make_run(folder: Path, n: int = 40, seed: int = 0) -> RunStore:
    rng = np.random.default_rng(seed)
    questions = [Question(f"q{i}", f"What is thing {i}?", (f"ans{i}", f"alias{i}"))
                 for i in range(n)]
    questions += [Question("evil", "Which <b>tag</b> \u2028 is it?", ("<script>",)),
                  Question("spread", "Pick one?", ("a",))]
    store = RunStore.create_or_resume(folder, {**MANIFEST, "questions": {
        "count": len(questions), "dataset": "d", "hash": "x"}}, questions)
    for q in questions:
        if q.id == "evil":
            texts = EVIL * 2
        elif q.id == "spread":
            texts = [f"option {c}" for c in "bcdefghijk"]  # one class per sample: ten-way tie
        else:
            texts = _texts(int(q.id[1:]), rng)
        store.append(QuestionSamples(q.id, tuple(_sample(t) for t in texts),
                                     greedy=_sample(texts[0])))
    return RunStore.open(folder)


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("explorer")
    report = measure_run(make_run(base / "run"), MeasureConfig(n_resamples=50))
    return write_report(report, base / "report")


# -- the data, without a browser -------------------------------------------------------------

def _document(page: str) -> dict:
    match = re.search(r"<script id='recal-data' type='application/json' "
                      r"data-format='([a-z0-9-]+)'>(.*?)</script>", page, re.S)
    assert match, "the page holds no data element"
    form, body = match.groups()
    if form == "json":
        return json.loads(body)
    return json.loads(gzip.decompress(base64.b64decode(body)))


def test_embedded_text_cannot_end_the_data_element_and_reads_back_exactly():
    value = {"t": EVIL + ["\ud800 lone surrogate", "</SCRIPT >", "<!--"]}
    text = embed_json(value)
    assert "<" not in text and ">" not in text and "&" not in text
    assert all(ord(c) < 128 for c in text)  # U+2028, RTL marks: escaped, never raw
    assert json.loads(text) == value
    assert json.loads(gzip.decompress(base64.b64decode(pack(value)))) == value
    assert set(pack(value)) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789+/=")


def test_page_data_follows_scores_jsonl(report_folder):
    doc = _document((report_folder / "report.html").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in
            (report_folder / "scores.jsonl").read_text(encoding="utf-8").split("\n") if line]
    assert [q["id"] for q in doc["questions"]] == [r["id"] for r in rows]
    for q, row in zip(doc["questions"], rows, strict=True):
        assert {c["label"]: c["n"] for c in q["classes"]} == row["classes"]
        assert sum(m[1] for c in q["classes"] for m in c["members"]) == M
        for j, name in enumerate(doc["scorers"]):
            answer, conf, ok = q["scores"][j]
            assert (answer, conf, ok) == (row["scorers"][name]["answer"],
                                          row["scorers"][name]["confidence"],
                                          row["scorers"][name]["correct"])
    q3 = next(q for q in doc["questions"] if q["id"] == "spread")
    assert q3["tie"] and len(q3["classes"]) == M


def test_merged_members_say_why_they_were_graded_correct(report_folder):
    doc = _document((report_folder / "report.html").read_text(encoding="utf-8"))
    q = next(q for q in doc["questions"]
             if any(m[0].startswith("Ans") for c in q["classes"] for m in c["members"]))
    gold = next(c for c in q["classes"] if c["correct"])
    i = q["id"][1:]
    assert [f"Ans{i} city.", f"ans{i}"] == sorted(m[0] for m in gold["members"])
    assert gold["why"][f"ans{i} city"] == f"starts with gold 'ans{i}' (+1 word)"
    assert gold["why"][f"ans{i}"] == f"equals gold 'ans{i}'"


def test_partition_changes_name_merges_and_splits():
    assert partition_changes(["a", "a", "b"], ["x", "x", "y"]) == {"merged": {}, "split": {}}
    assert partition_changes(["a", "b", "c"], ["x", "x", "c"]) == {
        "merged": {"x": ["a", "b"]}, "split": {}}
    assert partition_changes(["a", "a", "b"], ["x", "y", "b"]) == {
        "merged": {}, "split": {"a": ["x", "y"]}}
    with pytest.raises(ValueError, match="same samples"):
        partition_changes(["a"], ["a", "b"])


def test_large_documents_are_compressed_and_small_ones_are_not():
    small = {"kind": "run", "title": "t", "x": "y"}
    assert "data-format='json'" in render_page(small)
    big = {"kind": "run", "title": "t", "x": ["the same answer"] * 100_000}
    page = render_page(big)
    assert "data-format='gzip-base64'" in page and len(page) < 100_000
    assert _document(page) == big


# -- the page in a real browser (the `browser` fixture is in conftest.py) ---------------------

def open_page(browser, path: Path):
    page = browser.new_page(1280, 1000)
    page.goto(path.as_uri())
    assert page.eval("document.body.dataset.ready") == "1", page.errors
    return page


def listed_ids(page) -> list[str]:
    while page.eval("(() => { const b = document.querySelector('button.more');"
                    " if (b && !b.hidden) { b.click(); return true; } return false; })()"):
        pass
    return page.eval("[...document.querySelectorAll('tr.qrow')].map(r => r.dataset.id)")


def _scores(folder: Path) -> list[dict]:
    return [json.loads(line) for line in
            (folder / "scores.jsonl").read_text(encoding="utf-8").split("\n") if line]


def test_clicking_a_bin_lists_exactly_its_questions(browser, report_folder):
    page = open_page(browser, report_folder / "report.html")
    rows = _scores(report_folder)
    edges = np.linspace(0.0, 1.0, 11)
    for scorer in ("modal_share", "heldout_modal"):
        conf = np.array([r["scorers"][scorer]["confidence"] for r in rows])
        bins = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, 9)
        for k in sorted(set(bins.tolist()))[:4]:
            page.click(f"svg[data-scorer='{scorer}'] .bin[data-bin='{k}']")
            expected = [r["id"] for r, b in zip(rows, bins, strict=True) if b == k]
            assert listed_ids(page) == expected, (scorer, k)
            assert page.eval(f"document.querySelectorAll(\"svg[data-scorer='{scorer}'] "
                             f".bin.on\").length") == 1
    assert page.errors == []


def test_brushing_a_range_lists_the_questions_inside_it(browser, report_folder):
    page = open_page(browser, report_folder / "report.html")
    rows = _scores(report_folder)
    # the plot spans confidence 0..1 over x = 40..280 of the 300-wide diagram
    left, top, width = page.eval("(() => { const r = document.querySelector(\"svg[data-scorer="
                                 "'modal_share']\").getBoundingClientRect();"
                                 " return [r.left, r.top, r.width]; })()")
    lo, hi = 0.25, 0.75
    to_x = lambda c: left + (40 + 240 * c) * width / 300  # noqa: E731
    page.drag((to_x(lo), top + 100), (to_x(hi), top + 120))
    caption = page.eval("document.getElementById('count').textContent")
    shown = [float(x) for x in re.findall(r"\[([0-9.]+), ([0-9.]+)\]", caption)[0]]
    assert shown == pytest.approx([lo, hi], abs=0.01)
    # confidences are multiples of 1/M, far from the brushed ends: the rounded caption is exact
    expected = [r["id"] for r in rows
                if shown[0] <= r["scorers"]["modal_share"]["confidence"] <= shown[1]]
    assert listed_ids(page) == expected and expected
    assert page.errors == []


def test_filters_and_search(browser, report_folder):
    page = open_page(browser, report_folder / "report.html")
    rows = _scores(report_folder)

    def choose(value: str) -> list[str]:
        page.eval(f"(() => {{ const s = document.getElementById('filter'); s.value = "
                  f"{json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()")
        return listed_ids(page)

    assert choose("wrong") == [r["id"] for r in rows if not r["scorers"]["modal_share"]["correct"]]
    assert choose("confident_wrong") == [
        r["id"] for r in rows if not r["scorers"]["modal_share"]["correct"]
        and r["scorers"]["modal_share"]["confidence"] >= 0.8]
    ties = [r["id"] for r in rows
            if len(sorted(r["classes"].values())) > 1
            and sorted(r["classes"].values())[-1] == sorted(r["classes"].values())[-2]]
    assert choose("tie") == ties and "spread" in ties
    assert choose("one_per_sample") == ["spread"]
    choose("all")
    page.eval("(() => { const s = document.getElementById('search'); s.value = 'wrong2';"
              " s.dispatchEvent(new Event('input')); })()")
    assert listed_ids(page) == [r["id"] for r in rows if "wrong2" in r["classes"]]
    assert page.errors == []


def test_model_text_shows_as_text(browser, report_folder):
    page = open_page(browser, report_folder / "report.html")
    page.eval("(() => { const s = document.getElementById('search'); s.value = 'alert(1)';"
              " s.dispatchEvent(new Event('input')); })()")
    assert listed_ids(page) == ["evil"]
    page.click("tr.qrow[data-id='evil']")
    members = page.eval("[...document.querySelectorAll('.detail .member .txt')]"
                        ".map(e => e.textContent)")
    assert sorted(members) == sorted(EVIL)
    assert page.eval("document.querySelector('.detail bdi').textContent") == \
        "Which <b>tag</b> \u2028 is it?"
    # nothing from the data became markup: no element inside a shown text, no script made
    assert page.eval("document.querySelectorAll('.txt *, #app script').length") == 0
    badges = page.eval("[...document.querySelectorAll('.detail .badge')].map(e => e.textContent)")
    assert "U+2028 U+2029" in badges and any("U+200F" in b and "U+202E" in b for b in badges)
    assert page.errors == []


def _png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and raw RGB(A) rows of a PNG written by Chromium (8-bit, no interlace)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, head = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    assert head is not None
    return head[0], head[1], zlib.decompress(b"".join(chunks))


def test_screenshot_draws_the_diagrams_without_console_errors(browser, report_folder, tmp_path):
    page = open_page(browser, report_folder / "report.html")
    page.click("svg[data-scorer='modal_share'] .bin[data-bin='5']")
    page.click("tr.qrow")
    assert page.eval("document.querySelectorAll('.detail').length") == 1
    page.eval("window.scrollTo(0, 0)")
    shot = page.screenshot(tmp_path / "page.png")
    width, height, raw = _png_pixels(shot)
    assert (width, height) == (1280, 1000)
    # the diagram area is drawn: many distinct byte values, not a blank page
    assert len(set(raw[: len(raw) // 2])) > 50
    n_paths = page.eval("document.querySelectorAll('svg.diagram .bar').length")
    assert n_paths > 0
    assert page.errors == []


def test_comparison_page_lists_merges_and_splits(browser, report_folder, tmp_path):
    store = RunStore.open(report_folder.parent / "run")
    first = measure_run(store, MeasureConfig(scorers=("modal_share",), n_resamples=20))
    second = measure_run(store, MeasureConfig(collapse="numeric", scorers=("modal_share",),
                                              n_resamples=20))
    doc = comparison_document(first, second,
                              collapsers=(get_collapser("normalized"), get_collapser("numeric")))
    changed = [p["a"]["id"] for p in doc["pairs"]
               if p["changes"]["merged"] or p["changes"]["split"]]
    assert "spread" in changed  # ten answers, no number in any: numeric merges all ten
    spread = next(p for p in doc["pairs"] if p["a"]["id"] == "spread")
    assert list(spread["changes"]["merged"]) == [""] and spread["changes"]["split"] == {}
    assert sorted(spread["changes"]["merged"][""]) == sorted(c["label"]
                                                            for c in spread["a"]["classes"])
    assert len(spread["a"]["classes"]) == M and len(spread["b"]["classes"]) == 1
    path = write_page(doc, tmp_path / "compare.html")
    page = open_page(browser, path)
    page.eval("(() => { const s = document.getElementById('filter'); s.value = 'changed';"
              " s.dispatchEvent(new Event('change')); })()")
    assert listed_ids(page) == changed
    page.click("tr.qrow[data-id='spread']")
    assert "numeric merges" in page.eval("document.querySelector('.changes').textContent")
    assert page.errors == []


def test_cli_compare_writes_a_comparison_page(report_folder, tmp_path):
    from typer.testing import CliRunner

    from recal.cli import app

    run = report_folder.parent / "run"
    out = tmp_path / "compare.html"
    result = CliRunner().invoke(app, ["compare", str(run), "--collapse", "normalized",
                                      "--collapse", "numeric", "--resamples", "20",
                                      "--html", str(out)])
    assert result.exit_code == 0, result.output
    doc = _document(out.read_text(encoding="utf-8"))
    assert doc["kind"] == "compare" and doc["names"] == ["normalized", "numeric"]
    assert len(doc["pairs"]) == len(_scores(report_folder))
    two = CliRunner().invoke(app, ["compare", str(run), "--against", str(run),
                                   "--resamples", "20", "--html", str(tmp_path / "two.html")])
    assert two.exit_code == 0, two.output
    same = _document((tmp_path / "two.html").read_text(encoding="utf-8"))
    assert all(p["changes"] == {"merged": {}, "split": {}} and not p["flip"]
               for p in same["pairs"])  # a run against itself: nothing moves
    bad = CliRunner().invoke(app, ["compare", str(run), "--against", str(run)])
    assert bad.exit_code == 2 and "--html" in bad.output


def test_fit_page_sorts_by_value(browser, tmp_path):
    from recal.flows import write_fit

    def metric(x: float) -> dict:
        return {"estimate": x, "low": x - 0.05, "high": x + 0.05, "std": 0.02,
                "n_resamples": 100, "confidence_level": 0.95, "interval": "percentile"}

    values = {"platt": 0.12, "isotonic": 0.05, "identity": 0.3, "beta": 0.08}
    shown = ("smooth_ece", "ece", "brier_score", "auroc", "accuracy")
    doc = {"config": {"cv_folds": None}, "n_heldout": 30, "n_calibration": 30,
           "base_rate_brier": 0.25,
           "methods": {name: {"heldout": {m: metric(v) for m in shown}, "verdict": "good"}
                       for name, v in values.items()}}
    write_fit(doc, tmp_path / "fit")
    page = open_page(browser, tmp_path / "fit" / "fit.html")
    page.click("#table-0 th:nth-child(2)")  # smooth_ece, by value
    methods = page.eval("[...document.querySelectorAll('#table-0 tbody tr td:first-child')]"
                        ".map(e => e.textContent)")
    assert methods == sorted(values, key=values.get)
    assert page.errors == []


@pytest.mark.slow
def test_real_smollm2_report_opens_and_explains_a_question(browser, tmp_path):
    """The packaged SmolLM2-135M-Instruct's own answers, through `recal measure`'s report."""
    from recal.models import load_backend
    from recal.samples import SamplingConfig
    from recal.sampling import sample_run

    backend = load_backend("smollm2-135m-instruct")
    questions = [Question("fr", "What is the capital of France?", ("Paris",)),
                 Question("sum", "What is 2 + 3?", ("5", "five")),
                 Question("au", "What is the chemical symbol for gold?", ("Au",))]
    store = sample_run(backend, questions, out=tmp_path / "run",
                       config=SamplingConfig(n_samples=6, max_new_tokens=16), progress=False)
    folder = write_report(measure_run(store, MeasureConfig(n_resamples=50)), tmp_path / "report")
    rows = _scores(folder)
    fr = next(r for r in rows if r["id"] == "fr")
    conf = fr["scorers"]["modal_share"]["confidence"]
    k = int(np.clip(np.searchsorted(np.linspace(0, 1, 11), conf, side="right") - 1, 0, 9))
    page = open_page(browser, folder / "report.html")
    page.click(f"svg[data-scorer='modal_share'] .bin[data-bin='{k}']")
    assert "fr" in listed_ids(page)
    page.click("tr.qrow[data-id='fr']")
    texts = page.eval("[...document.querySelectorAll('.detail .member .txt')]"
                      ".map(e => e.textContent)")
    samples = store.samples_by_id()["fr"].samples
    assert sorted(set(texts)) == sorted({s.text for s in samples})  # the raw answers, all
    # seeded sampling: some answers say Paris, and they form one class, graded correct
    assert "paris" in fr["classes"]
    row = page.eval("[...document.querySelectorAll('.detail tr.cls')].map(r => "
                    "[r.children[1].textContent, r.children[3].textContent])")
    assert ["paris", "\u2713 correct"] in row
    assert page.errors == []


def test_grade_reasons_say_which_gold_form_matched_or_none():
    from recal.semantic.normalize import grade_reason

    forms = ["paris", "city of light"]
    assert grade_reason("paris", forms) == "equals gold 'paris'"
    assert grade_reason("paris france", forms) == "starts with gold 'paris' (+1 word)"
    assert grade_reason("city of light today", forms) == (
        "starts with gold 'city of light' (+1 word)")
    assert grade_reason("not paris", forms) == "matches no gold form ('paris', 'city of light')"
    assert grade_reason("paris or london", forms).startswith("matches no gold form")
    assert grade_reason("", forms) == "no answer"
    assert get_collapser("numeric").explain(Question("q", "2+3?", ("5",)), ["5"]) is None
