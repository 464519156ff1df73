"""The fault suite (issue 17): bad inputs a careless or hostile user or client can give, each
answered with one clear line (or an OpenAI-shaped 400 from ``recal serve``) and nothing lost.

Every case is a function of a :class:`Faults` context that returns what the user is told; the
test checks it holds the expected words. ``benchmarks/fault_suite.py`` runs the same cases and
prints the tally ``bad_inputs_handled: N/N``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import refused_url, spawn_logged, wait_for_lines

from recal.data.records import Question
from recal.prompts import PromptTooLongError
from recal.runstore import RunFormatError, RunStore
from recal.samples import SamplingConfig
from recal.sampling import sample_run

QUESTIONS = [Question(f"q{i}", f"{'abcd'[i % 4]} {i}?", ("a",)) for i in range(4)]
CONFIG = SamplingConfig(n_samples=3, max_new_tokens=4)
BIG = "a" * 1_000_000  # a 1 MB question
KEY = "fault-suite-key-0123"


@dataclass
class Faults:
    """What the cases share: the tiny backends and model folder, and a fresh folder per case."""

    backend: Any
    chat_backend: Any
    model_dir: Path
    root: Path
    counter: list[int] = field(default_factory=lambda: [0])

    def folder(self) -> Path:
        self.counter[0] += 1
        path = self.root / f"case{self.counter[0]}"
        path.mkdir(parents=True)
        return path

    def run(self, out: Path | None = None, questions: list[Question] = QUESTIONS) -> RunStore:
        return sample_run(self.backend, questions, out=out or self.folder() / "run",
                          config=CONFIG, progress=False)


def _raises(exc_type: type[BaseException] | tuple[type[BaseException], ...],
            work: Callable[[], Any]) -> str:
    try:
        work()
    except exc_type as exc:
        message = str(exc)
        assert "\n" not in message.strip(), f"not one line: {message!r}"
        return message
    raise AssertionError(f"no {exc_type} raised")


def _cli(args: list[str], env: dict[str, str] | None = None) -> str:
    """``recal ARGS`` in process: exit code 2 and exactly one line on stderr, no traceback."""
    from typer.testing import CliRunner

    from recal.cli import app

    with warnings.catch_warnings():  # a library's warning is not the error line
        warnings.simplefilter("ignore")
        result = CliRunner().invoke(app, args, env=env)
    output = result.output
    assert result.exit_code == 2, (result.exit_code, output, result.exception)
    lines = [line for line in output.splitlines()
             if line.strip() and not line.startswith("loading ")]  # the slow step announced
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


# --------------------------------------------------------------------------- unbounded prompts

def big_question_refused_naming_it(f: Faults) -> str:
    out = f.folder() / "run"
    questions = [*QUESTIONS, Question("huge-1", BIG, ("a",))]
    start = time.perf_counter()
    message = _raises(PromptTooLongError, lambda: sample_run(
        f.backend, questions, out=out, config=CONFIG, progress=False))
    assert time.perf_counter() - start < 30
    assert not out.exists(), "the run folder was touched before the check"
    return message


def big_question_skipped_with_skip_bad(f: Faults) -> str:
    heard: list[str] = []
    questions = [*QUESTIONS, Question("huge-1", BIG, ("a",))]
    store = sample_run(f.backend, questions, out=f.folder() / "run", config=CONFIG,
                       progress=False, skip_bad=True, warn=heard.append)
    assert store.done_ids() == {q.id for q in QUESTIONS}  # the others are all there
    assert len(heard) == 1
    return heard[0]


def prompt_over_max_prompt_tokens(f: Faults) -> str:
    from recal.models.hf import TransformersBackend

    capped = TransformersBackend(f.backend.model, f.backend.tokenizer, f.backend.identity,
                                 max_prompt_tokens=8)
    return _raises(PromptTooLongError, lambda: sample_run(
        capped, [Question("long-q", "abcdabcdabcd?", ("a",))], out=f.folder() / "run",
        config=CONFIG, progress=False))


def big_question_through_the_cli(f: Faults) -> str:
    data = f.folder() / "big.jsonl"
    rows = [*QUESTIONS, Question("huge-1", BIG, ("a",))]
    data.write_text("".join(json.dumps(q.to_dict()) + "\n" for q in rows))
    return _cli(["sample", "--model", str(f.model_dir), "--dataset", str(data), "--samples", "2",
                 "--max-new-tokens", "4", "--no-progress", "--out", str(data.parent / "run")])


def max_prompt_tokens_through_the_cli(f: Faults) -> str:
    data = f.folder() / "q.jsonl"
    rows = [*QUESTIONS, Question("long-q", "abcd " * 30, ("a",))]  # 5-shot prompts: ~270
    data.write_text("".join(json.dumps(q.to_dict()) + "\n" for q in rows))
    return _cli(["sample", "--model", str(f.model_dir), "--dataset", str(data), "--samples", "2",
                 "--max-new-tokens", "4", "--no-progress", "--max-prompt-tokens", "320",
                 "--out", str(data.parent / "run")])


def max_prompt_tokens_for_a_server(f: Faults) -> str:
    with refused_url() as url:
        return _cli(["sample", "--model", url, "--max-prompt-tokens", "30",
                     "--out", str(f.root / "unused")])


def sampling_past_its_deadline_stops(f: Faults) -> str:
    from recal.models.stop import SamplingStopped, sampling_deadline

    def work() -> None:
        with sampling_deadline(0.0):
            f.run()
    return _raises(SamplingStopped, work)


# --------------------------------------------------------------------------- run stores

def _edit_manifest(store: RunStore, edit: Callable[[dict[str, Any]], Any]) -> None:
    path = store.path / "manifest.json"
    doc = json.loads(path.read_text())
    new = edit(doc)
    path.write_text(json.dumps(doc if new is None else new))


def manifest_n_samples_edited(f: Faults) -> str:
    store = f.run()
    _edit_manifest(store, lambda d: d["sampling"].update(n_samples=50))
    return _raises(RunFormatError, lambda: list(RunStore.open(store.path)))


def manifest_greedy_edited(f: Faults) -> str:
    store = f.run()
    _edit_manifest(store, lambda d: d["sampling"].update(greedy=False))
    return _raises(RunFormatError, lambda: list(RunStore.open(store.path)))


def manifest_temperature_not_a_number(f: Faults) -> str:
    store = f.run()
    _edit_manifest(store, lambda d: d["sampling"].update(temperature=-1))
    return _raises(RunFormatError, lambda: RunStore.open(store.path))


def manifest_is_a_list(f: Faults) -> str:
    store = f.run()
    _edit_manifest(store, lambda d: [])
    return _raises(RunFormatError, lambda: RunStore.open(store.path))


def manifest_sampling_is_a_string(f: Faults) -> str:
    store = f.run()
    _edit_manifest(store, lambda d: d.update(sampling="abc"))
    return _raises(RunFormatError, lambda: RunStore.open(store.path))


def gold_answer_edited(f: Faults) -> str:
    store = f.run()
    path = store.path / "questions.jsonl"
    path.write_text(path.read_text().replace('"answers":["a"]', '"answers":["b"]', 1))
    assert '"answers":["b"]' in path.read_text()
    return _raises(RunFormatError, lambda: RunStore.open(store.path))


def record_of_an_unknown_question(f: Faults) -> str:
    store = f.run()
    samples = store.path / "samples.jsonl"
    line = samples.read_text().splitlines()[0]
    samples.write_text(samples.read_text() + line.replace('"id":"q', '"id":"zz', 1) + "\n")
    return _raises(RunFormatError, lambda: RunStore.open(store.path).samples_by_id())


def edited_run_refused_on_resume(f: Faults) -> str:
    store = f.run()
    _edit_manifest(store, lambda d: d["sampling"].update(n_samples=50))
    # resumed with the settings the edited manifest claims: its records give it away
    return _raises(RunFormatError, lambda: sample_run(
        f.backend, QUESTIONS, out=store.path, config=SamplingConfig(n_samples=50,
                                                                    max_new_tokens=4),
        progress=False))


def edited_run_through_the_cli(f: Faults) -> str:
    store = f.run()
    _edit_manifest(store, lambda d: d["sampling"].update(n_samples=50))
    return _cli(["fit", str(store.path)])


# --------------------------------------------------------------------------- command line

def sample_out_is_a_file(f: Faults) -> str:
    target = f.folder() / "afile"
    target.write_text("mine")
    message = _cli(["sample", "--model", str(f.root / "no-such-model"), "--out", str(target)])
    assert target.read_text() == "mine"
    return message  # refused before the (missing) model is looked for


def sample_out_is_not_a_run(f: Faults) -> str:
    folder = f.folder()
    (folder / "notes.txt").write_text("mine")
    return _cli(["sample", "--model", str(f.root / "no-such-model"), "--out", str(folder)])


def sample_out_is_a_damaged_run(f: Faults) -> str:
    store = f.run()
    _edit_manifest(store, lambda d: d.update(sampling="abc"))
    return _cli(["sample", "--model", str(f.root / "no-such-model"), "--out", str(store.path)])


def dataset_is_a_folder(f: Faults) -> str:
    return _cli(["sample", "--model", str(f.model_dir), "--dataset", str(f.folder()),
                 "--out", str(f.root / "unused")])


def tau_grid_not_numbers(f: Faults) -> str:
    return _cli(["sample", "--tau-grid", "0.5,abc", "--out", str(f.root / "unused")])


def export_out_is_a_file(f: Faults) -> str:
    store = f.run(questions=[Question(f"e{i}", f"{'abcd'[i % 4]} {i}?", ("a",))
                             for i in range(24)])
    target = f.folder() / "afile"
    target.write_text("mine")
    message = _cli(["export", str(store.path), "--method", "identity", "--out", str(target)])
    assert target.read_text() == "mine"
    return message


def export_out_unwritable(f: Faults) -> str:
    store = f.run(questions=[Question(f"e{i}", f"{'abcd'[i % 4]} {i}?", ("a",))
                             for i in range(24)])
    blocker = f.folder() / "afile"
    blocker.write_text("mine")  # a folder cannot be made inside a file
    return _cli(["export", str(store.path), "--method", "identity",
                 "--out", str(blocker / "scorer")])


def fit_out_unwritable(f: Faults) -> str:
    store = f.run(questions=[Question(f"e{i}", f"{'abcd'[i % 4]} {i}?", ("a",))
                             for i in range(24)])
    blocker = f.folder() / "afile"
    blocker.write_text("mine")
    return _cli(["fit", str(store.path), "--methods", "histogram", "--resamples", "20",
                 "--out", str(blocker / "fit")])


def csv_unterminated_quote(f: Faults) -> str:
    from recal.data.loaders import load_questions

    data = f.folder() / "bad.csv"
    data.write_text('question,answer\nq1,a1\n"what is a,b\nq3,a3\nq4,a4\n')
    for skip_bad in (False, True):  # --skip-bad must not swallow the rows after it
        message = _raises(ValueError, lambda s=skip_bad: load_questions(str(data), skip_bad=s))
    return message


def overwrite_removes_derived_files(f: Faults) -> str:
    store = f.run()
    (store.path / "calibrated.jsonl").write_text("{}\n")
    (store.path / "fit-normalized-modal_share").mkdir()
    (store.path / "fit-normalized-modal_share" / "fit.json").write_text("{}")
    (store.path / "mine.txt").write_text("kept")
    sample_run(f.backend, QUESTIONS[:2], out=store.path, config=CONFIG, progress=False,
               overwrite=True)
    left = sorted(p.name for p in store.path.iterdir())
    assert left == ["manifest.json", "mine.txt", "questions.jsonl", "samples.jsonl"], left
    return "derived files removed: " + ", ".join(left)


# --------------------------------------------------------------------------- recal serve

def _stub_service(backend: Any) -> Any:
    """A ConfidenceService on the tiny chat model with a stand-in scorer (no fit needed: every
    request below is refused before the scorer is used)."""
    from recal.serve import ConfidenceService

    scorer = SimpleNamespace(
        model={"config_hash": backend.identity.config_hash, "name": "tiny"}, adapter=None,
        sampling={"n_samples": 2, "max_new_tokens": 4}, style="concise", shots=None,
        backend=None, recalibrator=SimpleNamespace(name="platt"), scorer="modal_share",
        collapse="exact", collapse_options={}, metrics={})
    return ConfidenceService(scorer, backend)  # type: ignore[arg-type]


class _Counting:
    """The chat backend, counting its forward passes (none may run for a refused request)."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.calls = backend, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.backend.generate(*args, **kwargs)


def _post(f: Faults, body: Any, *, raw: bytes | None = None, patch: dict[str, Any] | None = None,
          status: int = 400) -> str:
    from fastapi.testclient import TestClient

    from recal.serve import ServeConfig, create_app

    counting = _Counting(f.chat_backend)
    service = _stub_service(f.chat_backend)
    service.backend = counting
    for name, value in (patch or {}).items():
        setattr(service, name, value)
    client = TestClient(create_app(service, ServeConfig(api_key=KEY)),
                        raise_server_exceptions=False)
    start = time.perf_counter()
    response = client.post("/v1/chat/completions",
                           content=raw if raw is not None else json.dumps(body),
                           headers={"Authorization": f"Bearer {KEY}",
                                    "Content-Type": "application/json"})
    seconds = time.perf_counter() - start
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]  # OpenAI's shape
    assert set(error) == {"message", "type", "code", "param"}, error
    if status == 400:
        assert counting.calls == 0, "the model ran for a refused request"
        assert seconds < 1.0, f"took {seconds:.2f} s to refuse"
    return f"{response.status_code} {error['param']}: {error['message']}"


def _chat(**fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "abc?"}], **fields}


SERVE_FIELDS = [("temperature", -1), ("temperature", 2.5), ("temperature", "hot"),
                ("top_p", 1.5), ("top_p", -0.1), ("max_tokens", 0), ("max_tokens", -3),
                ("n", 0), ("n", -1), ("n", 1.5), ("presence_penalty", 9),
                ("frequency_penalty", -9), ("seed", -1), ("logprobs", "yes"),
                ("top_logprobs", 50), ("stop", ["a", "b", "c", "d", "e"]), ("user", 7)]


def _serve_field_case(key: str, value: Any) -> Callable[[Faults], str]:
    def case(f: Faults) -> str:
        message = _post(f, _chat(**{key: value}))
        assert message.startswith(f"400 {key}:"), message
        return message
    case.__name__ = f"serve_{key}_{value!r}"
    return case


def serve_nan_literal(f: Faults) -> str:
    return _post(f, None, raw=b'{"messages":[{"role":"user","content":"abc?"}],'
                              b'"temperature":NaN}')


def serve_infinity_literal(f: Faults) -> str:
    return _post(f, None, raw=b'{"messages":[{"role":"user","content":"abc?"}],'
                              b'"max_tokens":Infinity}')


def serve_60kb_prompt(f: Faults) -> str:
    return _post(f, {"messages": [{"role": "user", "content": "ab " * 20_000}]})


def serve_internal_error_is_openai_shaped(f: Faults) -> str:
    def broken(body: Any) -> Any:
        raise ZeroDivisionError("a bug")
    return _post(f, _chat(), patch={"answer": broken}, status=500)


def serve_open_host_without_key(f: Faults) -> str:
    from recal.serve.app import check_listen

    check_listen("127.0.0.1", None)  # loopback: no key needed
    check_listen("0.0.0.0", None, insecure_no_key=True)  # explicitly open
    check_listen("0.0.0.0", KEY)
    return _raises(ValueError, lambda: check_listen("0.0.0.0", None))


def serve_open_host_through_the_cli(f: Faults) -> str:
    # refused before the (missing) scorer is read
    return _cli(["serve", "--host", "0.0.0.0", "--scorer", str(f.root / "no-scorer")])


# --------------------------------------------------------------------------- scorer artifacts

SIGNING_KEY = "fault-suite-signing-key-0123"


def _exported_scorer(f: Faults, env: dict[str, str] | None = None) -> tuple[Path, Path]:
    """A run of the tiny model and an identity scorer exported from it (the tiny model answers
    nothing right, so no map that reads the labels can be fitted)."""
    from typer.testing import CliRunner

    from recal.cli import app

    store = f.run(questions=[Question(f"e{i}", f"{'abcd'[i % 4]} {i}?", ("a",))
                             for i in range(24)])
    out = store.path.parent / "scorer"
    result = CliRunner().invoke(app, ["export", str(store.path), "--method", "identity",
                                      "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    return store.path, out


def _edit_scorer(folder: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Edit scorer.json as a careful hand would: the content hash recomputed."""
    import hashlib

    file = folder / "scorer.json"
    doc = json.loads(file.read_text())
    edit(doc)
    body = {k: v for k, v in doc.items() if k != "content_sha256"}
    doc["content_sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    file.write_text(json.dumps(doc))


def export_sign_key_env_unset(f: Faults) -> str:
    store = f.run()
    out = store.path.parent / "scorer"
    message = _cli(["export", str(store.path), "--method", "identity", "--out", str(out),
                    "--sign-key-env", "RECAL_NO_SUCH_KEY"], env={"RECAL_NO_SUCH_KEY": ""})
    assert not out.exists()  # refused before any work
    return message


def apply_unsigned_scorer_with_a_key(f: Faults) -> str:
    run, scorer = _exported_scorer(f, env={"RECAL_SIGNING_KEY": ""})
    message = _cli(["apply", str(run), "--scorer", str(scorer)],
                   env={"RECAL_SIGNING_KEY": SIGNING_KEY})
    assert not (run / "calibrated.jsonl").exists()
    return message


def serve_tampered_signed_scorer(f: Faults) -> str:
    env = {"RECAL_SIGNING_KEY": SIGNING_KEY}
    _, scorer = _exported_scorer(f, env=env)
    assert (scorer / "signature.json").is_file()
    _edit_scorer(scorer, lambda doc: doc["sampling"].update(n_samples=1))
    return _cli(["serve", "--scorer", str(scorer)], env=env)  # refused before the model loads


def apply_scorer_with_nan(f: Faults) -> str:
    run, scorer = _exported_scorer(f, env={"RECAL_SIGNING_KEY": ""})
    file = scorer / "scorer.json"
    file.write_text(file.read_text().replace('"temperature": 1.0', '"temperature": NaN'))
    return _cli(["apply", str(run), "--scorer", str(scorer)], env={"RECAL_SIGNING_KEY": ""})


def apply_scorer_with_temperature_0(f: Faults) -> str:
    run, scorer = _exported_scorer(f, env={"RECAL_SIGNING_KEY": ""})
    _edit_scorer(scorer, lambda doc: doc["sampling"].update(temperature=0))
    return _cli(["apply", str(run), "--scorer", str(scorer)], env={"RECAL_SIGNING_KEY": ""})


def scorer_nesting_bomb(f: Faults) -> str:
    from recal.scorer import ScorerFormatError, load_scorer

    folder = f.folder()
    (folder / "scorer.json").write_text('{"schema": 1, "metrics": ' + "[" * 100_000
                                        + "]" * 100_000 + "}")
    return _raises(ScorerFormatError, lambda: load_scorer(folder))


# --------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Faults], str]
    expect: str
    """Words the user must be told (case-insensitive)."""


CASES: list[Case] = [
    Case("sample: a 1 MB question", big_question_refused_naming_it, "question 'huge-1'"),
    Case("sample: a 1 MB question, --skip-bad", big_question_skipped_with_skip_bad, "huge-1"),
    Case("sample: over max_prompt_tokens", prompt_over_max_prompt_tokens, "max_prompt_tokens"),
    Case("sample: a 1 MB question via the CLI", big_question_through_the_cli, "'huge-1'"),
    Case("sample: --max-prompt-tokens via the CLI", max_prompt_tokens_through_the_cli,
         "'long-q'"),
    Case("sample: --max-prompt-tokens with a server", max_prompt_tokens_for_a_server,
         "applies to a model run in process"),
    Case("sample: past its deadline", sampling_past_its_deadline_stops, "deadline"),
    Case("run: n_samples edited", manifest_n_samples_edited, "sampling.n_samples = 50"),
    Case("run: greedy edited", manifest_greedy_edited, "sampling.greedy"),
    Case("run: temperature -1", manifest_temperature_not_a_number, "sampling.temperature"),
    Case("run: manifest []", manifest_is_a_list, "must hold a JSON object"),
    Case("run: sampling 'abc'", manifest_sampling_is_a_string, "sampling must be an object"),
    Case("run: gold answer edited", gold_answer_edited, "questions.hash"),
    Case("run: record of an unknown question", record_of_an_unknown_question,
         "is not in questions.jsonl"),
    Case("run: edited run resumed", edited_run_refused_on_resume, "sampling.n_samples"),
    Case("run: edited run via the CLI", edited_run_through_the_cli, "sampling.n_samples"),
    Case("cli: sample --out a file", sample_out_is_a_file, "is a file"),
    Case("cli: sample --out not a run", sample_out_is_not_a_run, "not a recal run folder"),
    Case("cli: sample --out a damaged run", sample_out_is_a_damaged_run, "sampling must be"),
    Case("cli: --dataset a folder", dataset_is_a_folder, "dataset"),
    Case("cli: --tau-grid 0.5,abc", tau_grid_not_numbers, "--tau-grid must be"),
    Case("cli: export --out a file", export_out_is_a_file, "is a file"),
    Case("cli: export --out unwritable", export_out_unwritable, "not a directory"),
    Case("cli: fit --out unwritable", fit_out_unwritable, "not a directory"),
    Case("data: CSV unterminated quote", csv_unterminated_quote,
         "line 3: a quoted field is never closed"),
    Case("run: --overwrite leaves no derived files", overwrite_removes_derived_files,
         "derived files removed"),
    *[Case(f"serve: {k}={v!r}", _serve_field_case(k, v), k) for k, v in SERVE_FIELDS],
    Case("serve: NaN literal", serve_nan_literal, "NaN"),
    Case("serve: Infinity literal", serve_infinity_literal, "Infinity"),
    Case("serve: 60 KB prompt", serve_60kb_prompt, "at most"),
    Case("serve: a bug answers an OpenAI-shaped 500", serve_internal_error_is_openai_shaped,
         "internal error"),
    Case("serve: --host 0.0.0.0 without a key", serve_open_host_without_key,
         "--insecure-no-key"),
    Case("serve: --host 0.0.0.0 via the CLI", serve_open_host_through_the_cli,
         "--insecure-no-key"),
    Case("scorer: export --sign-key-env of an unset variable", export_sign_key_env_unset,
         "RECAL_NO_SUCH_KEY is not set"),
    Case("scorer: apply an unsigned scorer with a key", apply_unsigned_scorer_with_a_key,
         "is not signed"),
    Case("scorer: serve a signed scorer edited since", serve_tampered_signed_scorer,
         "does not match its signature"),
    Case("scorer: a NaN literal", apply_scorer_with_nan, "NaN at line"),
    Case("scorer: sampling temperature 0", apply_scorer_with_temperature_0,
         "'sampling.temperature' must be a number > 0"),
    Case("scorer: a nesting bomb", scorer_nesting_bomb, "nested deeper than"),
]


def make_faults(root: Path) -> Faults:
    """The context from the tiny models of ``tests/conftest.py``."""
    from conftest import make_backend

    backend = make_backend(chat=False)
    model_dir = root / "tiny-model"
    backend.model.save_pretrained(model_dir)
    backend.tokenizer.save_pretrained(model_dir)
    return Faults(backend, make_backend(chat=True), model_dir, root)


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Faults:
    return make_faults(tmp_path_factory.mktemp("faults"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_handled(case: Case, faults: Faults) -> None:
    told = case.run(faults)
    assert case.expect.lower() in told.lower(), told
    assert "Traceback" not in told


# --------------------------------------------------------------------------- SIGTERM

def sigterm_stops_sampling_and_the_run_resumes(f: Faults) -> str:
    """A real ``recal sample`` stopped with SIGTERM mid-run: it ends within 5 s, and the same
    command again completes the run with what an uninterrupted run draws."""
    folder = f.folder()
    data = folder / "questions.jsonl"
    questions = [Question(f"k{i}", f"{'abcd'[i % 4]}{'ab'[i % 2]} {i}?", ("a",))
                 for i in range(60)]
    data.write_text("".join(json.dumps(q.to_dict()) + "\n" for q in questions))
    cmd = [sys.executable, "-m", "recal.cli", "sample", "--model", str(f.model_dir),
           "--dataset", str(data), "--samples", "6", "--max-new-tokens", "60",
           "--batch-rows", "14", "--no-progress"]
    out = folder / "stopped"
    log = folder / "stopped.log"
    proc = spawn_logged([*cmd, "--out", str(out)], log)
    samples = wait_for_lines(proc, lambda: out / "samples.jsonl", 3, log)
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("recal sample still ran 5 s after SIGTERM") from None
    seconds = time.monotonic() - start
    stderr = log.read_text(errors="replace")
    assert "Traceback" not in stderr, stderr
    kept = [json.loads(line) for line in samples.read_text().splitlines()]
    assert 3 <= len(kept) < len(questions)
    resumed = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    again = {r.question_id: r for r in RunStore.open(out)}
    assert sorted(again) == sorted(q.id for q in questions)  # none lost, none twice
    for row in kept:  # what was stored before the stop is unchanged
        assert [s["token_ids"] for s in row["samples"]] == [
            list(s.token_ids) for s in again[row["id"]].samples]
    return f"stopped {seconds:.1f} s after SIGTERM with {len(kept)} questions kept: " + (
        stderr.strip().splitlines()[-1] if stderr.strip() else "")


_SERVE_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import make_backend
from test_faults import _stub_service
from recal.serve import ServeConfig
from recal.serve.app import run_server
service = _stub_service(make_backend(chat=True))
service.sampling = service.sampling.__class__(n_samples=64, max_new_tokens=400,
                                              stop_at_newline=False, greedy=False)
def busy(body):
    from recal.prompts import Prompt
    while True:  # a long answer: 64 rows x 400 tokens, over and over
        list(service.backend.generate(["r"], [Prompt(messages=(("user", "ab?"),))],
                                      service.sampling))
service.answer = busy
run_server(service, ServeConfig(request_timeout=600), port={port})
"""


def sigterm_stops_a_busy_server(f: Faults) -> str:
    import socket
    import threading
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = _SERVE_SCRIPT.format(tests=str(Path(__file__).parent), port=port)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    log = f.folder() / "serve.log"
    proc = spawn_logged([sys.executable, "-c", script], log, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    body = json.dumps(_chat()).encode()

    def ask() -> None:
        request = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with contextlib.suppress(OSError):  # the server stops before it answers
            urllib.request.urlopen(request, timeout=30).read()
    threading.Thread(target=ask, daemon=True).start()
    time.sleep(1.5)  # the request is computing
    assert proc.poll() is None, log.read_text(errors="replace")
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("recal serve still ran 5 s after SIGTERM") from None
    seconds = time.monotonic() - start
    return f"stopped {seconds:.1f} s after SIGTERM while computing"


SIGNAL_CASES: list[Case] = [
    Case("sample: SIGTERM mid-run, then resumed", sigterm_stops_sampling_and_the_run_resumes,
         "after SIGTERM"),
    Case("serve: SIGTERM while computing", sigterm_stops_a_busy_server, "after SIGTERM"),
]


@pytest.mark.parametrize("case", SIGNAL_CASES, ids=[c.name for c in SIGNAL_CASES])
def test_sigterm_stops_within_seconds(case: Case, faults: Faults) -> None:
    told = case.run(faults)
    assert case.expect.lower() in told.lower(), told


def test_strict_json_in_responses_and_logs() -> None:
    from recal.flows import finite_json
    from recal.serve.app import JsonLogFormatter, _StrictJSON

    doc = {"a": math.nan, "b": [math.inf, 1.0], "c": {"d": -math.inf}}
    assert json.loads(_StrictJSON(doc).body) == {"a": None, "b": [None, 1.0], "c": {"d": None}}
    assert finite_json(doc) == {"a": None, "b": [None, 1.0], "c": {"d": None}}
    import logging

    record = logging.LogRecord("x", logging.INFO, "f", 1, "request", None, None)
    record.fields = {"confidence": math.nan}
    assert json.loads(JsonLogFormatter().format(record))["confidence"] is None


def test_a_scorer_exported_with_a_key_applies_with_it(faults: Faults) -> None:
    from typer.testing import CliRunner

    from recal.cli import app

    run, scorer = _exported_scorer(faults, env={"TEAM_KEY": SIGNING_KEY,
                                                "RECAL_SIGNING_KEY": ""})
    assert not (scorer / "signature.json").exists()  # no key named, none in the default
    result = CliRunner().invoke(app, ["export", str(run), "--method", "identity", "--out",
                                      str(scorer), "--sign-key-env", "TEAM_KEY"],
                                env={"TEAM_KEY": SIGNING_KEY})
    assert result.exit_code == 0 and "signed:" in result.output, result.output
    result = CliRunner().invoke(app, ["apply", str(run), "--scorer", str(scorer),
                                      "--sign-key-env", "TEAM_KEY"], env={"TEAM_KEY": SIGNING_KEY})
    assert result.exit_code == 0, result.output
    assert len((run / "calibrated.jsonl").read_text().splitlines()) == 24
