"""``retina mesh-pretrain``: pre-train the dense branch's mesh decoder (``retina.mesh.pretrain``)."""

from __future__ import annotations

import argparse
import sys

from retina.mesh import pretrain


def add_arguments(p: argparse.ArgumentParser) -> None:
    pretrain.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    return pretrain.run(args, "retina " + " ".join(sys.argv[1:]))
