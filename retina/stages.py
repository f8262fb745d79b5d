"""Where a training loop's time goes: wall and CPU seconds per named stage (``benchmarks/train_speed.py``).

``train(..., stages=StageTimer(warmup=5))`` brackets the loop's stages (data, input, forward, assign, loss,
backward, optimizer, log, checkpoint) and adds up their times from the iteration after ``warmup``. The CPU time is
this process's (every intra-op thread), not the data loader's worker processes': ``data`` is the time the loop
waited for a batch. Stages are not synchronised with a GPU, so the breakdown is meaningful on CPUs only. Without
a timer the engine uses :data:`NO_STAGES`, whose stages cost one function call each.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any


class StageTimer:
    """Accumulated wall and process-CPU seconds per stage, counted after ``warmup`` iterations."""

    def __init__(self, warmup: int = 0) -> None:
        self.warmup = warmup
        self.iterations = 0  # completed iterations, warm-up included
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.total_wall = 0.0
        self.total_cpu = 0.0
        self._clock: tuple[float, float] | None = None

    @property
    def counting(self) -> bool:
        return self.iterations >= self.warmup

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        if self._clock is None and self.counting:  # no warm-up: the totals start with the first stage
            self._clock = (wall, cpu)
        try:
            yield
        finally:
            if self.counting:
                self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
                self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu

    def iteration_done(self) -> None:
        """End of an iteration: the totals run from the end of the warm-up to the last iteration's end."""
        self.iterations += 1
        now = (time.perf_counter(), time.process_time())
        if self._clock is not None and self.iterations > self.warmup:
            self.total_wall += now[0] - self._clock[0]
            self.total_cpu += now[1] - self._clock[1]
            self._clock = now
        if self.iterations == self.warmup:
            self._clock = now

    def summary(self) -> dict[str, Any]:
        """Per stage: ms per iteration (wall, CPU) and share of the iteration's wall time; ``other`` is the rest."""
        n = max(0, self.iterations - self.warmup)
        if n == 0 or self.total_wall <= 0:
            return {"iterations": n, "stages": {}}
        stages = {
            name: {
                "wall_ms": 1e3 * self.wall[name] / n,
                "cpu_ms": 1e3 * self.cpu[name] / n,
                "share": self.wall[name] / self.total_wall,
            }
            for name in self.wall
        }
        rest = self.total_wall - sum(self.wall.values())
        stages["other"] = {
            "wall_ms": 1e3 * rest / n,
            "cpu_ms": 1e3 * (self.total_cpu - sum(self.cpu.values())) / n,
            "share": rest / self.total_wall,
        }
        return {
            "iterations": n,
            "iteration_wall_ms": 1e3 * self.total_wall / n,
            "iteration_cpu_ms": 1e3 * self.total_cpu / n,
            "stages": stages,
        }


class _NoStages:
    """The timer of a loop that is not profiled: every stage is a no-op."""

    _null = contextlib.nullcontext()

    def __call__(self, name: str) -> contextlib.nullcontext[None]:
        return self._null

    def iteration_done(self) -> None:
        pass


NO_STAGES: Any = _NoStages()
