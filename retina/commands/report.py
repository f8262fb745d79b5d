"""``retina report``: the report page from records (``reports/report.py`` of the repository checkout)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from retina.errors import RetinaError
from retina.results import REPO_ROOT


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--publish", action="store_true", help="from reports/records/ only, into docs/report.md")
    p.add_argument("--run-missing", action="store_true", help="first run the jobs whose records are missing")
    p.add_argument("--out", type=Path, help="folder of the page (default results/report; not with --publish)")


def run(args: argparse.Namespace) -> int:
    if not (REPO_ROOT / "reports" / "report.py").is_file():
        raise RetinaError(f"the report is built in a checkout of the repository; no reports/ under {REPO_ROOT}")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from reports.report import run as build_report

    return build_report(args.publish, args.run_missing, args.out)
