"""Argument types shared by the commands: parse and range-check a flag's value, or a one-line error.

Use them as ``type=`` of ``add_argument``; a bad value makes argparse print
``retina CMD: error: argument --flag: <message>`` and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retina.config import PostCfg


def _parse(text: str, kind: type, expected: str, ok: Callable[[float], bool]) -> Any:
    """``kind(text)`` if it parses, is finite and satisfies ``ok``; else an ArgumentTypeError saying ``expected``."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1], e.g. a score threshold."""
    return _parse(text, float, "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0)


def iou_threshold(text: str) -> float:
    """An IoU threshold in (0, 1] (NMS, matching)."""
    return _parse(text, float, "an IoU threshold in (0, 1]", lambda v: 0.0 < v <= 1.0)


def positive_int(text: str) -> int:
    """An integer >= 1: sizes, counts, batch sizes."""
    return _parse(text, int, "an integer >= 1", lambda v: v >= 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0: workers, optional counts."""
    return _parse(text, int, "an integer >= 0", lambda v: v >= 0)


def positive_float(text: str) -> float:
    """A finite number > 0: learning rates, epochs."""
    return _parse(text, float, "a finite number > 0", lambda v: v > 0.0)


def non_negative_float(text: str) -> float:
    """A finite number >= 0: loss weights."""
    return _parse(text, float, "a finite number >= 0", lambda v: v >= 0.0)


def count_or_all(text: str) -> int | None:
    """An integer >= 1, or ``all`` (None: no limit), e.g. ``--top-k``."""
    if text.strip().lower() == "all":
        return None
    return _parse(text, int, "an integer >= 1 or 'all'", lambda v: v >= 1)


def int_in_range(low: int, high: int) -> Callable[[str], int]:
    """An int in [low, high], e.g. ``int_in_range(11, 20)`` for an ONNX opset."""

    def parse(text: str) -> int:
        return _parse(text, int, f"an integer in [{low}, {high}]", lambda v: low <= v <= high)

    return parse


def device(text: str) -> str:
    """A torch device that exists here: ``cpu``, ``cuda``, ``cuda:N`` (N < the GPU count), ``mps``."""
    import torch  # the commands that take --device import torch anyway

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (e.g. cpu, cuda, cuda:1)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {count} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text!r}: unsupported device type (use cpu, cuda or mps)")
    return text


def output_dir(text: str) -> Path:
    """A folder to write into: absent (it is created) or an existing folder, not a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
    return path


def output_file(text: str) -> Path:
    """A file to write: absent or an existing file (replaced), not a folder."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder; give a file name")
    return path


# retina.eval.widerface.ARITHMETICS, restated so that parsing stays free of the evaluator's imports (a test
# keeps the two equal).
ARITHMETICS = ("matlab", "float64")


def add_arithmetic(parser: argparse.ArgumentParser) -> None:
    """The ``--arithmetic`` flag of the commands that evaluate (``evaluate``, ``widerface-eval``)."""
    parser.add_argument(
        "--arithmetic",
        choices=ARITHMETICS,
        default="matlab",
        help="'matlab' (default): exactly what the official MATLAB code computes; 'float64': the protocol in "
        "float64 (real IoU; the only one in which --iou other than 0.5 changes anything)",
    )


def default_file(given: Path | None, default: Path, flag: str = "--weights", what: str = "checkpoint") -> Path:
    """``given``, else ``default`` with a one-line note on stderr: the committed files are trained on synthetic
    faces, which a user evaluating real photos must know."""
    if given is not None:
        return given
    print(
        f"note: no {flag} given: using the committed {what} {default.name} (trained on synthetic faces)",
        file=sys.stderr,
    )
    return default


def add_limits(parser: argparse.ArgumentParser) -> None:
    """``--top-k`` and ``--max-detections`` (``detect``, ``evaluate``): absent from the namespace unless given."""
    default = PostCfg()
    parser.add_argument(
        "--top-k",
        type=count_or_all,
        default=argparse.SUPPRESS,
        metavar="N|all",
        help=f"candidates kept per image before NMS, or 'all' (default {default.pre_nms_top_k})",
    )
    parser.add_argument(
        "--max-detections",
        type=count_or_all,
        default=argparse.SUPPRESS,
        metavar="N|all",
        help=f"faces kept per image after NMS, or 'all' (default {default.max_detections})",
    )


def limits(args: argparse.Namespace, post: PostCfg) -> PostCfg:
    """``post`` with the ``--top-k`` and ``--max-detections`` given (see :func:`add_limits`)."""
    given = {"pre_nms_top_k": "top_k", "max_detections": "max_detections"}
    return dataclasses.replace(
        post, **{field: getattr(args, name) for field, name in given.items() if hasattr(args, name)}
    )


def add_allow_dirty(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="write committed records from a tree whose tracked files differ from the commit (they name the diff)",
    )
