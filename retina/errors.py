"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""

from __future__ import annotations


class RetinaError(Exception):
    """Bad input from the user (a file, a flag, a checkpoint); the message says what and where."""


class DataFormatError(RetinaError):
    """A malformed annotation, prediction or image file; the message names the file and line."""


class CheckpointError(RetinaError):
    """A checkpoint that cannot be loaded into the requested model; the message names the mismatch."""
