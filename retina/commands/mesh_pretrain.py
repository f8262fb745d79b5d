"""``retina mesh-pretrain``: pre-train the dense branch's mesh decoder (``retina.mesh.pretrain``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from retina.commands.args import add_allow_dirty, non_negative_int, output_dir, positive_int

# retina.mesh.pretrain.PRETRAIN_PRESETS, restated so that parsing stays free of torch (a test keeps them equal)
RECIPES = ("synth-cpu",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=output_dir, required=True, help="run folder (metrics.jsonl, mesh_decoder.pth, "
                   "record.json); it must not hold a run")  # fmt: skip
    p.add_argument("--recipe", default="synth-cpu", choices=RECIPES, help="preset (default synth-cpu)")
    p.add_argument("--iterations", type=positive_int, help="override the recipe's iterations")
    p.add_argument("--train-samples", type=positive_int, help="override the number of training faces")
    p.add_argument("--heldout-samples", type=positive_int, help="override the number of held-out faces")
    p.add_argument("--seed", type=non_negative_int, help="override the initialisation / batch-order seed")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch CPU threads (default 1: on a busy 2-core machine 2 threads ran 8x slower)")  # fmt: skip
    p.add_argument("--package", type=output_dir, help="also copy the run to DIR/mesh_decoder.{pth,json,metrics.jsonl} "
                   "(into the checkout's retina/weights/: only from a clean tree)")  # fmt: skip
    add_allow_dirty(p)


def run(args: argparse.Namespace) -> int:
    import torch

    from retina.mesh import pretrain
    from retina.results import require_clean_tree
    from retina.weights import DEFAULT_DECODER

    if args.package is not None and args.package.resolve() == DEFAULT_DECODER.parent.resolve():
        require_clean_tree("retina mesh-pretrain --package (the committed decoder)", args.allow_dirty)
    flags = ("iterations", "train_samples", "heldout_samples", "seed")
    overrides = {k: getattr(args, k) for k in flags if getattr(args, k) is not None}
    cfg = dataclasses.replace(pretrain.pretrain_preset(args.recipe), **overrides)
    torch.set_num_threads(args.threads)
    record = pretrain.pretrain(cfg, args.out)
    if args.package is not None:
        print(f"packaged: {pretrain.package(args.out, args.package, 'retina ' + ' '.join(sys.argv[1:]))}")
    h, b = record["heldout"], record["baseline_mean_face"]
    print(
        f"held-out shape error {h['shape_error']:.5f} ({h['shape_error_iod']:.4f} IOD; mean face "
        f"{b['shape_error']:.5f}), colour {h['colour_error_255']:.2f}/255 (mean face {b['colour_error_255']:.2f})"
    )
    return 0
