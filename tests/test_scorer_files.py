"""A scorer file names its adapter folder: only a folder inside the scorer's own is read."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from recal.calibrators import get_recalibrator
from recal.scorer import CalibratedScorer, ScorerFormatError, load_scorer


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
