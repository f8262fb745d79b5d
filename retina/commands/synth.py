"""``retina synth --out DIR --split train|val --images N --seed S``: generate a SynthFace split.

Writes the WIDER FACE layouts (images, RetinaFace label.txt, official evaluation .mat files) plus
per-face metadata (meta.jsonl) and the generator record (synth.json). See ``retina.synth.splits``.
"""

from __future__ import annotations

import argparse
import json
import time

from retina.commands.args import non_negative_int, output_dir, output_file, positive_int
from retina.errors import RetinaError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=output_dir, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--split", required=True, choices=("train", "val", "test"), help="split name (changes the images)")
    p.add_argument("--images", required=True, type=positive_int, help="number of images (>= 1)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed >= 0 (same seed, same files)")
    p.add_argument(
        "--preset",
        default="default",
        help="generator preset: default (SynthFace v3, 640 wide), v2 (the look before v3), wider (1024), tiny",
    )
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes (output does not depend on it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--contact-sheet", type=output_file, default=None, help="also write a PNG contact sheet here")


def run(args: argparse.Namespace) -> int:
    from retina.synth.splits import SYNTH_PRESETS, generate_split

    if args.preset not in SYNTH_PRESETS:
        raise RetinaError(f"unknown preset {args.preset!r} (available: {', '.join(SYNTH_PRESETS)})")
    start = time.perf_counter()
    out = generate_split(
        args.out, SYNTH_PRESETS[args.preset], args.split, args.images, args.seed, args.workers, args.overwrite
    )
    info = json.loads((out / "synth.json").read_text())
    counts = info["counts"]
    print(
        f"SynthFace (synthetic data) {args.split}: {info['n_images']} images, {info['n_faces']} faces "
        f"(easy {counts['easy']}, medium {counts['medium']}, hard {counts['hard']}, ignored {counts['ignored']}) "
        f"-> {out} in {time.perf_counter() - start:.1f} s"
    )
    if args.contact_sheet is not None:
        from retina.synth.sheet import contact_sheet

        print(f"contact sheet -> {contact_sheet(out, args.contact_sheet)}")
    return 0
