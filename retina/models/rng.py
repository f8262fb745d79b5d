"""Optional modules draw their random initialisation beside the model's random stream, not from it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def isolated_rng() -> Iterator[None]:
    """Build an optional module (DCN offsets, the mesh head and decoder) in this block.

    Its draws start from the CPU generator's current state, which is restored on exit: every module built after
    it gets the numbers it would get without it, so models that differ by optional modules start, seed for seed,
    from the same values on every tensor they share (tests/test_paired_init.py).
    """
    with torch.random.fork_rng(devices=[]):
        yield
