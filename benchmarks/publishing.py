"""The rule of every script that writes committed records (``--publish``, the packaged checkpoints): only from a
tree whose tracked files are those of its commit (``retina.results.require_clean_tree``), unless ``--allow-dirty``,
and then the records name the diff's sha256 and the changed files."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from retina.errors import RetinaError
from retina.results import require_clean_tree, require_one_clean_commit

ALLOW_DIRTY_HELP = "write committed records from a tree whose tracked files differ from the commit (they name the diff)"


def add_allow_dirty(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-dirty", action="store_true", help=ALLOW_DIRTY_HELP)


def require_clean(
    p: argparse.ArgumentParser,
    what: str,
    allow_dirty: bool,
    made_by: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> None:
    """Exit with ``p``'s one-line usage error (status 2) unless the tree is clean and, when given, everything in
    ``made_by`` (name -> git entries of what made it) comes from one clean commit, or ``allow_dirty``."""
    try:
        require_clean_tree(what, allow_dirty)
        if made_by is not None:
            require_one_clean_commit(what, made_by, allow_dirty)
    except RetinaError as exc:
        p.error(str(exc))
