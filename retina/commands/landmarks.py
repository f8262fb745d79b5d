"""``retina landmarks``: landmark accuracy of RetinaFace (and MTCNN) on a split with true landmarks (paper 4.5)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from retina.commands.args import (
    add_allow_dirty,
    default_file,
    fraction,
    iou_threshold,
    non_negative_float,
    positive_int,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, help="split with images/ and label.txt (default: SynthFace val)")
    p.add_argument("--weights", type=Path, help="RetinaFace checkpoint (default: the committed one)")
    p.add_argument("--score-threshold", type=fraction, default=0.5, help="RetinaFace detections kept (default 0.5)")
    p.add_argument("--mtcnn-weights", type=Path, help="folder with MTCNN's pnet.pt, rnet.pt, onet.pt")
    p.add_argument("--min-face", type=non_negative_float, default=20.0, help="smallest true face height evaluated (px)")
    p.add_argument("--match-iou", type=iou_threshold, default=0.3, help="IoU that ties a detection to a true face")
    p.add_argument("--max-images", type=positive_int, help="only the first N images")
    p.add_argument("--out", type=Path, default=Path("results") / "landmarks", help="default results/landmarks")
    p.add_argument("--publish", action="store_true", help="also write the record into reports/records/landmarks/ "
                   "(only from a clean tree)")  # fmt: skip
    add_allow_dirty(p)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from retina.results import require_clean_tree, require_one_clean_commit
    from retina.verify import landmark_job
    from retina.weights import DEFAULT_WEIGHTS

    if args.publish:  # before the run, and the record again after it
        require_clean_tree("retina landmarks --publish", args.allow_dirty)
    args.weights = default_file(args.weights, DEFAULT_WEIGHTS)
    if args.mtcnn_weights is None:
        print("note: MTCNN not run (pass --mtcnn-weights DIR holding pnet.pt, rnet.pt, onet.pt)", file=sys.stderr)
    record = landmark_job.run(args)
    if args.publish:
        require_one_clean_commit("retina landmarks --publish", {"the record": [record["provenance"]["git"]]},
                                 args.allow_dirty)  # fmt: skip
    paths = landmark_job.write(record, args.out, args.publish)
    print(record["table"])
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
