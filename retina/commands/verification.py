"""``retina verification``: face verification by alignment source (paper table 4) on SynthFace-ID or LFW."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from retina.commands.args import add_allow_dirty, default_file, positive_float


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lfw-pairs", type=Path, help="LFW pairs.txt (with --lfw-images) instead of SynthFace-ID")
    p.add_argument("--lfw-images", type=Path, help="LFW image folder (<name>/<name>_NNNN.jpg)")
    p.add_argument("--synth-preset", default="default", help="SynthFace-ID preset (default: default)")
    p.add_argument("--embedder", type=Path, help="our ArcFace checkpoint (default: the committed one)")
    p.add_argument("--onnx", type=Path, help="an ONNX face-recognition model instead (112x112 aligned crops)")
    p.add_argument("--onnx-layout", default="nchw", choices=("nchw", "nhwc"))
    p.add_argument("--onnx-channels", default="rgb", choices=("rgb", "bgr"))
    p.add_argument("--onnx-mean", type=float, default=127.5)
    p.add_argument("--onnx-std", type=positive_float, default=127.5)
    p.add_argument("--weights", type=Path, help="RetinaFace checkpoint (default: the committed one)")
    p.add_argument("--mtcnn-weights", type=Path, help="folder with MTCNN's pnet.pt, rnet.pt, onet.pt")
    p.add_argument("--out", type=Path, default=Path("results") / "verification", help="default results/verification")
    p.add_argument("--publish", action="store_true", help="also write the record into reports/records/verification/ "
                   "(only from a clean tree)")  # fmt: skip
    add_allow_dirty(p)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from retina.results import require_clean_tree, require_one_clean_commit
    from retina.verify import experiment
    from retina.weights import DEFAULT_EMBEDDER, DEFAULT_WEIGHTS

    if args.publish:  # before the run, and the record again after it
        require_clean_tree("retina verification --publish", args.allow_dirty)
    args.weights = default_file(args.weights, DEFAULT_WEIGHTS)
    if args.onnx is None:
        args.embedder = default_file(args.embedder, DEFAULT_EMBEDDER, "--embedder", "ArcFace")
    record = experiment.run(args)
    if args.mtcnn_weights is None:
        print("note: MTCNN row not run (pass --mtcnn-weights DIR holding pnet.pt, rnet.pt, onet.pt)", file=sys.stderr)
    if args.publish:
        require_one_clean_commit("retina verification --publish", {"the record": [record["provenance"]["git"]]},
                                 args.allow_dirty)  # fmt: skip
    paths = experiment.write(record, args.out, args.publish)
    print(experiment.markdown(record["table"]))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
