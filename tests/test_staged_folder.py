"""retina.results.staged_folder: a folder appears complete or not at all, and a stopped run leaves nothing behind
(an error, Ctrl-C, SIGTERM: in-process and by killing a real SynthFace generation)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from retina.results import REPO_ROOT, staged_folder


def _siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_success_replaces_the_folder_in_one_piece(tmp_path: Path) -> None:
    out = tmp_path / "split"
    for before, text in ((None, "first"), ("first", "second")):
        with staged_folder(out) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".split.") and tmp.name.endswith(".tmp")
            assert (out / "a.txt").read_text() == before if before else not out.exists()  # the old one until the end
            (tmp / "a.txt").write_text(text)
        assert (out / "a.txt").read_text() == text and _siblings(tmp_path) == ["split"]


@pytest.mark.parametrize("stop", [ValueError("bad"), KeyboardInterrupt(), SystemExit(143)])
def test_a_stop_inside_removes_the_staging_folder(tmp_path: Path, stop: BaseException) -> None:
    out = tmp_path / "split"
    with pytest.raises(type(stop)), staged_folder(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "images" / "0.jpg").write_bytes(b"half")
        raise stop
    assert _siblings(tmp_path) == []


_SLEEP_INSIDE = """
import sys, time
from pathlib import Path
from retina.results import staged_folder
with staged_folder(Path(sys.argv[1])) as tmp:
    (tmp / "part.txt").write_text("x")
    print("inside", flush=True)
    time.sleep(60)
"""

_GENERATE = """
import sys
from pathlib import Path
from retina.synth.splits import SYNTH_PRESETS, generate_split
generate_split(Path(sys.argv[1]), SYNTH_PRESETS["tiny"], "val", 400, seed=0, workers=int(sys.argv[2]))
"""


def _terminate_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120.0) -> int:
    """Send SIGTERM once ``ready()`` holds; the process's exit status."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the child never got going"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def _child(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip


def test_sigterm_inside_removes_the_staging_folder(tmp_path: Path) -> None:
    out = tmp_path / "split"
    proc = _child(_SLEEP_INSIDE, str(out))
    assert proc.stdout is not None and proc.stdout.readline() == "inside\n"
    assert len(_siblings(tmp_path)) == 1  # the staging folder, while the child sleeps in it
    assert _terminate_when(proc, lambda: True) == 128 + signal.SIGTERM
    assert _siblings(tmp_path) == []


@pytest.mark.slow
def test_sigterm_during_synthface_generation_leaves_nothing(tmp_path: Path) -> None:
    # 2 worker processes, as the cached splits are made: their pending jobs are dropped, the staging folder removed
    out = tmp_path / "val"

    def images_written() -> bool:
        return any(p.name.endswith(".tmp") and any((p / "images").rglob("*.jpg")) for p in tmp_path.iterdir())

    proc = _child(_GENERATE, str(out), "2")
    assert _terminate_when(proc, images_written) == 128 + signal.SIGTERM
    assert _siblings(tmp_path) == []
