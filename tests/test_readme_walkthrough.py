"""The README's walk-through "Evaluate your own model on WIDER FACE" runs as written (issue 22).

A small WIDER-layout set is built here (synthetic images under real WIDER val names, official-layout .mat ground
truth); "your model" is the committed checkpoint copied to ``runs/mine/final.pth``. Every line of the README's
code block runs in that folder: ``retina ...`` lines through ``retina.cli.main``, others through bash.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import cv2
import pytest

from retina.cli import main
from retina.data.widerface import SETTINGS, ground_truth_from_boxes, read_retinaface_labels, write_ground_truth
from retina.weights import DEFAULT_WEIGHTS
from tests.conftest import REPO_ROOT
from tests.toy_faces import make_toy_split

HEADING = "### Evaluate your own model on WIDER FACE"
NAMES = ["0--Parade/0_Parade_marchingband_1_465", "0--Parade/0_Parade_Parade_0_628", "0--Parade/0_Parade_Parade_0_194",
         "1--Handshaking/1_Handshaking_Handshaking_1_35", "1--Handshaking/1_Handshaking_Handshaking_1_94",
         "1--Handshaking/1_Handshaking_Handshaking_1_134"]  # fmt: skip


def walkthrough() -> list[str]:
    """The command lines of the README's walk-through code block."""
    text = (REPO_ROOT / "README.md").read_text()
    after = text[text.index(HEADING) :]
    block = after[after.index("```bash\n") + len("```bash\n") :]
    return [line for line in block[: block.index("```")].splitlines() if line.strip()]


def build_wider(root: Path) -> Path:
    """``root/WIDER/WIDER_val/images/<event>/<name>.jpg`` and ``root/WIDER/ground_truth/*.mat``."""
    toy = make_toy_split(root / "toy", n=len(NAMES), size=96)
    wider = root / "WIDER"
    entries = []
    for name, image in zip(NAMES, read_retinaface_labels(toy / "label.txt"), strict=True):
        target = wider / "WIDER_val" / "images" / f"{name}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), cv2.imread(str(toy / "images" / image.path)))
        entries.append((f"{name}.jpg", image.boxes))
    keep = {s: [list(range(len(b))) for _, b in entries] for s in SETTINGS}
    write_ground_truth(wider / "ground_truth", ground_truth_from_boxes(entries, keep))
    return wider


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    build_wider(tmp_path)
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    shutil.copy(DEFAULT_WEIGHTS, tmp_path / "runs" / "mine" / "final.pth")
    monkeypatch.chdir(tmp_path)
    lines = walkthrough()
    assert len(lines) >= 6 and sum(line.startswith("retina ") for line in lines) >= 5
    for line in lines:
        if line.startswith("retina "):
            assert main(shlex.split(line)[1:]) == 0, line
        else:
            subprocess.run(["bash", "-c", line], cwd=tmp_path, check=True)
    out = capsys.readouterr().out
    mine, onnx = (json.loads((tmp_path / "results" / d / "results.json").read_text()) for d in ("mine", "mine_onnx"))
    assert mine["counts"]["images"] == len(NAMES) and mine["hard"] > 0
    for s in SETTINGS:
        assert onnx[s] == pytest.approx(mine[s], abs=1e-3)
    assert "95% interval of B - A" in out and "SUBSET: 2 of 6 images (two.txt)" in out
    assert "bootstrap interval" in out
    assert (tmp_path / "results" / "report" / "report.md").is_file()
