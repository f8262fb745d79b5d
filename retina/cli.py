"""The ``retina`` command line: a thin dispatcher over ``retina.commands.*``.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Imports are lazy so that
``retina --help`` is instant and a command only pays for what it uses. User errors (a bad flag value,
:class:`retina.errors.RetinaError`, an ``OSError`` such as a full disk) print one line and exit with status 2,
without a traceback. Help texts are plain text: they are read in a terminal.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence
from typing import NoReturn

from retina.errors import RetinaError

DESCRIPTION = "RetinaFace face detection: detect faces, evaluate on WIDER FACE (official protocol), train, export."
EPILOG = (
    "Run 'retina COMMAND --help' for the options of a command. Bad input (a value out of range, a missing or "
    "unreadable file) gets a one-line error and exit status 2."
)

# command name -> (module under retina.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "detect": ("detect", "detect faces in images and write JSON + annotated pictures"),
    "export-onnx": ("export_onnx", "export a detector to ONNX (dynamic input size) for ONNX Runtime"),
    "widerface-eval": ("widerface_eval", "evaluate predictions with the official WIDER FACE protocol"),
    "synth": ("synth", "generate a SynthFace split in the WIDER FACE layouts"),
    "train": ("train", "train a detector (one process, or many under torchrun)"),
    "evaluate": ("evaluate", "run a detector on a WIDER-layout split and evaluate it (official protocol)"),
    "compare": ("compare", "two evaluations of the same images side by side (AP, difference, paired bootstrap)"),
    "mesh-pretrain": ("mesh_pretrain", "pre-train the dense branch's mesh decoder on the morphable face space"),
    "landmarks": ("landmarks", "landmark accuracy (NME, CED) of RetinaFace and MTCNN on a split with true landmarks"),
    "verification": ("verification", "face verification by alignment source (paper table 4) on SynthFace-ID or LFW"),
    "train-arcface": ("train_arcface", "train the verification experiment's ArcFace embedder on SynthFace-ID"),
    "report": ("report", "build the report page (figures, tables) from the records of results/ here or --results DIR"),
}


class _Help(argparse.HelpFormatter):
    """Help that shows each option's default (unless its text already names one, or it has none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or any(default is v for v in (None, False, argparse.SUPPRESS))
            or "default" in text
        ):
            return text
        return f"{text} (default: {str(default).replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def version() -> str:
    """The installed distribution's version, else the package's ``__version__``."""
    try:
        return importlib.metadata.version("retina")
    except importlib.metadata.PackageNotFoundError:
        from retina import __version__

        return __version__


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="retina", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"retina {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only the chosen command's module is imported (it is the first non-option argument).
    chosen = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_Help)
        if chosen == name:
            importlib.import_module(f"retina.commands.{module}").add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error (already printed)
        return int(exc.code or 0)
    module = importlib.import_module(f"retina.commands.{COMMANDS[args.command][0]}")
    try:
        return int(module.run(args) or 0)
    except (RetinaError, OSError) as exc:
        print(f"retina {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
