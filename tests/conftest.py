"""Shared fixtures: the read-only ``../shared/data`` folder (skip cleanly when a clone has none).

Also keeps the ``slow`` marker honest: tests that ran longer than ``SLOW_S`` without it are listed at the end
of the run (a note, not a failure: timings on shared machines are noisy).
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_file(relative: str) -> Path:
    """Path of a file under ``../shared/data``; skips the calling test when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs ../shared/data/{relative} (development material, absent from a user's clone)")
    return path


@pytest.fixture
def shared() -> type:
    """Access to ``shared_file`` as a fixture: ``shared.file("weights/...")``."""

    class _Shared:
        root = SHARED_DATA
        file = staticmethod(shared_file)

    return _Shared


SLOW_S = 5.0


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports = [r for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])]
    unmarked = [r for r in reports if r.when == "call" and r.duration > SLOW_S and "slow" not in r.keywords]
    if unmarked:
        terminalreporter.section(f"tests over {SLOW_S:g} s without the slow marker")
        for r in unmarked:
            terminalreporter.write_line(f"{r.duration:6.1f} s  {r.nodeid}")
