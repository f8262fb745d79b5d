"""``retina report``: the report page from records (:mod:`retina.report.report`), of the current folder's
``results/`` (and, in a checkout, its ``reports/records/``) or of ``--results DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path

from retina.commands.args import add_allow_dirty


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--publish", action="store_true", help="from reports/records/ only, into docs/report.md (only "
                   "from a clean tree)")  # fmt: skip
    add_allow_dirty(p)
    p.add_argument("--run-missing", action="store_true", help="first run the jobs whose records are missing")
    p.add_argument(
        "--results",
        type=Path,
        help="the results folder to report on (default: results/ of the current folder; not with --publish)",
    )
    p.add_argument("--out", type=Path, help="folder of the page (default <results>/report; not with --publish)")


def run(args: argparse.Namespace) -> int:
    from retina.report.report import run as build_report

    return build_report(args.publish, args.run_missing, args.out, args.results, allow_dirty=args.allow_dirty)
