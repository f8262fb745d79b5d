"""One measurement of ``benchmarks/train_speed.py`` in a fresh interpreter, on whichever ``retina`` is importable.

    python benchmarks/_train_run.py train '{"root": ..., "batch": 16, "size": 384, ...}'
    python benchmarks/_train_run.py data '{"root": ..., "size": 384, "images": 64}'

``train_speed.py`` runs this with ``PYTHONPATH`` set to the tree it measures: this checkout, or an older commit
exported to a temporary folder (the code before issue 23). It therefore imports only what both have, and prints
one JSON object on its last line. ``train``: a real training run (``retina.engine.train``, the synth-cpu recipe at
the given batch and input size) of a few iterations; the throughput of every logged interval from its metrics,
and, where the tree has ``retina.stages``, the breakdown of its loop by stage. ``data``: the CPU time of each
stage of the data pipeline, sample by sample, in this process.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run_train(a: dict[str, Any]) -> dict[str, Any]:
    import statistics

    import torch

    import retina.engine as engine
    from retina.config import TRAIN_PRESETS, preset
    from retina.data.dataset import SplitPaths
    from retina.engine import RunSpec, train

    if a["threads"]:
        torch.set_num_threads(a["threads"])
    base = TRAIN_PRESETS["synth-cpu"]
    cfg = dataclasses.replace(
        base,
        batch_size=a["batch"],
        max_iterations=a["iterations"],
        augment=dataclasses.replace(base.augment, image_size=a["size"]),
    )
    extra: dict[str, Any] = {}
    stages = None
    # Ask the tree's own train(): an editable install of another checkout can make its retina.stages findable here.
    if "stages" in inspect.signature(train).parameters:
        from retina.stages import StageTimer

        stages = StageTimer(warmup=a["log_every"])
        extra["stages"] = stages
    spec_fields = {"cpu_bf16": True} if a.get("cpu_bf16") else {}
    with tempfile.TemporaryDirectory(prefix="retina-train-speed-") as tmp:
        spec = RunSpec(
            out_dir=Path(tmp) / "run",
            data=SplitPaths.from_root(a["root"]),
            workers=a["workers"],
            checkpoint_every=10**9,  # the final checkpoint only: saving is not what is measured
            log_every=a["log_every"],
            progress=False,
            **spec_fields,
        )
        marks: list[tuple[float, float]] = []  # (wall, this process's CPU) at the start of every step
        step = engine._step

        def marked(*args: Any, **kwargs: Any) -> Any:
            marks.append((time.perf_counter(), time.process_time()))
            return step(*args, **kwargs)

        engine._step = marked  # the loop looks it up at each iteration: step to step is one whole iteration
        start = time.perf_counter()
        train(preset("mobilenet0.25"), cfg, spec, **extra)
        wall = time.perf_counter() - start
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    kept = marks[a["log_every"] :]  # after the first logged interval (start-up, worker start, warm-up)
    walls = [1e3 * (b[0] - a_[0]) for a_, b in itertools.pairwise(kept)]
    cpus = [1e3 * (b[1] - a_[1]) for a_, b in itertools.pairwise(kept)]
    out = {
        "images_per_s": [r["images_per_s"] for r in rows],
        "iteration_wall_ms": statistics.median(walls),
        "iteration_cpu_ms": statistics.median(cpus),  # the training process only (not its loader workers)
        "iterations_timed": len(walls),
        "wall_s": wall,
        "threads": torch.get_num_threads(),
    }
    if stages is not None:
        out["stages"] = stages.summary()
    return out


def run_data(a: dict[str, Any]) -> dict[str, Any]:
    """CPU ms per image of each data stage (the DataLoader's work), on one thread, as ``FaceDataset`` runs them."""
    import cv2
    import numpy as np
    import torch

    from retina.config import AugmentCfg
    from retina.data import transforms as T
    from retina.data.dataset import FaceDataset, SplitPaths, collate, to_sample
    from retina.images import read_image

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    cfg = AugmentCfg(image_size=a["size"])
    ds = FaceDataset(SplitPaths.from_root(a["root"]), cfg, 0)
    names = ("read", "labels", "crop", "photometric", "resize", "flip", "collate")
    cpu = dict.fromkeys(names, 0.0)
    batch = []
    n = min(a["images"], len(ds))
    for i in range(n):
        entry = ds.entries[i]
        clock = time.process_time()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.process_time()
            cpu[name] += now - clock
            clock = now

        image = read_image(ds.paths.images / entry.path)
        lap("read")
        rng = np.random.default_rng([0, 0, i])  # as FaceDataset seeds sample (epoch 0, index i)
        s = to_sample(image, entry)
        lap("labels")
        s = T.random_square_crop(s, cfg.crop_scales, rng)
        lap("crop")
        s = T.Sample(T.photometric(s.image, rng), s.boxes, s.landmarks, s.has_landmarks)
        lap("photometric")
        s = T.resize(s, cfg.image_size, cfg.min_face)
        lap("resize")
        if rng.random() < 0.5:
            s = T.hflip(s)
        lap("flip")
        batch.append((torch.from_numpy(s.image), s))
        if len(batch) == 16 or i == n - 1:
            clock = time.process_time()
            collate([(img, None) for img, _ in batch])
            lap("collate")
            batch = []
    return {"images": n, "cpu_ms_per_image": {k: 1e3 * v / n for k, v in cpu.items()}}


def main() -> None:
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    result = {"train": run_train, "data": run_data}[mode](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
