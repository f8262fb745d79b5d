"""Shared fixtures: the read-only ``../shared/data`` folder (skip cleanly when a clone has none)."""

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
