"""The report: one Markdown page with its figures and CSV tables, built from records only (never re-measured).

    retina report                  # nox -s report: results/ + reports/records/ -> results/report/
    retina report --run-missing    # first run, at CPU scale, the jobs whose records are missing
    retina report --publish        # reports/records/ only -> docs/report.md + docs/report/

The command works on the folder it is run in (a checkout, or any folder where jobs wrote ``results/``), or on
``--results DIR``; ``--publish`` and ``--run-missing`` need a repository checkout (its records and scripts).

The page names, for every section, the records it was built from and a hash of their content; the
published page is rebuilt by a test from the committed records and must come out identical (a stale page
or figure fails CI). A section without records prints a "not run" line with the command that makes them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from retina.errors import RetinaError
from retina.paper import TABLE3_ABLATIONS
from retina.report.sections import LOCAL, PUBLISH, Commands, Section, all_sections
from retina.report.sources import RecordSet, collect, shown_path
from retina.results import REPO_ROOT, require_clean_tree, write_bytes, write_json, write_text

PUBLISHED = Path("reports") / "records"  # under a checkout
MANIFEST = "manifest.json"  # in the assets folder: what the last build wrote there, the only files it may delete


@dataclass(frozen=True)
class Target:
    """Where a report is read from and written to."""

    roots: tuple[Path, ...]
    page: Path
    assets: Path  # figures and CSV tables
    commands: Commands

    @staticmethod
    def local(out: Path | None = None, results: Path | None = None, base: Path = REPO_ROOT) -> Target:
        """``results`` (default ``base/results``) and, in a checkout, its published records -> ``out`` (default
        ``<results>/report``)."""
        results = results or base / "results"
        out = out or results / "report"
        roots = (results, *([base / PUBLISHED] if (base / PUBLISHED).is_dir() else []))
        return Target(roots, out / "report.md", out / "assets", LOCAL)

    @staticmethod
    def published(base: Path = REPO_ROOT) -> Target:
        return Target((base / PUBLISHED,), base / "docs" / "report.md", base / "docs" / "report", PUBLISH)


def page(sections: Sequence[Section], records: RecordSet, assets_link: str, commands: Commands) -> str:
    """The Markdown page: a header, then each section with the records (and their hash) it was built from."""
    roots = ", ".join(f"`{shown_path(r)}`" for r in records.roots)
    n = len({p for s in sections for src in s.sources for p in src.files})
    lines = [
        "# retina report",
        "",
        f"Built from records only ({n} files under {roots} and `retina/weights/`) by `retina report"
        f"{' --publish' if commands is PUBLISH else ''}`; nothing here is measured while the page is built. Numbers on "
        "SynthFace are synthetic data, never WIDER FACE numbers; the paper's numbers are quoted beside ours "
        "for reference (arXiv 1905.00641), measured on other data and hardware.",
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", "", *(line.replace("{assets}", assets_link) for line in section.lines)]
        if section.sources:
            # sorted as shown: the same order whether the roots were given relative or absolute
            files = ", ".join(f"`{f}`" for f in sorted({shown_path(p) for s in section.sources for p in s.files}))
            lines += [f"<sub>Inputs (sha256 {section.inputs}): {files}</sub>", ""]
    return "\n".join(lines).rstrip() + "\n"


def build(target: Target) -> tuple[str, dict[str, bytes], list[str]]:
    """(page text, {asset name: bytes}, commands of the missing sections) for ``target``, writing nothing."""
    records = collect(list(target.roots))
    sections = all_sections(records, target.commands, [*TABLE3_ABLATIONS, "synth"])
    assets: dict[str, bytes] = {}
    for s in sections:
        assets.update(s.figures)
        assets.update({name: text.encode() for name, text in s.tables.items()})
    link = Path(os.path.relpath(target.assets, target.page.parent))
    missing = [c for s in sections for c in s.missing]
    return page(sections, records, link.as_posix(), target.commands), assets, missing


def write(target: Target) -> list[str]:
    """Build and write the page and its assets (atomically); returns the missing sections' commands. Assets of an
    earlier build that this one does not write are removed, and only they: the files the manifest lists."""
    text, assets, missing = build(target)
    earlier = written_before(target.assets)
    for name, data in assets.items():
        write_bytes(target.assets / name, data)
    for name in sorted(earlier - set(assets)):
        (target.assets / name).unlink(missing_ok=True)
    write_json(target.assets / MANIFEST, {"written_by": "retina report", "files": sorted(assets)})
    write_text(target.page, text)
    return missing


def written_before(assets: Path) -> set[str]:
    """The asset names the manifest in ``assets`` lists (plain file names only; none without a readable one)."""
    try:
        names = json.loads((assets / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {n for n in names if isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..", MANIFEST)}


def run_missing(commands: Sequence[str], root: Path = REPO_ROOT) -> None:
    """Run each missing section's command (CPU scale, from the checkout ``root``), with a progress bar."""
    from tqdm import tqdm

    for command in tqdm(commands, desc="missing records", unit="job"):
        tqdm.write(f"running: {command}")
        for part in command.split(" && "):
            done = subprocess.run(shlex.split(part), cwd=root, check=False)
            if done.returncode != 0:
                raise RetinaError(f"{part!r} failed with exit status {done.returncode}")


def run(
    publish: bool = False,
    missing_too: bool = False,
    out: Path | None = None,
    results: Path | None = None,
    base: Path | None = None,
    allow_dirty: bool = False,
) -> int:
    """Build (after running the missing jobs with ``missing_too``) and write the report of ``base`` (default: the
    current folder) or of ``results``; prints what is missing. ``publish`` needs a clean tree (or ``allow_dirty``)."""
    base = Path.cwd() if base is None else base
    if publish and (out is not None or results is not None):
        raise RetinaError("--out and --results do not apply to --publish (it reads reports/records/ of a checkout)")
    if (publish or missing_too) and not (base / PUBLISHED).is_dir():
        flag = "--publish" if publish else "--run-missing"
        raise RetinaError(
            f"{flag} needs a repository checkout: run it from the checkout's root ({base} has no {PUBLISHED})"
        )
    if results is not None and not results.is_dir():
        raise RetinaError(f"--results {results}: not a folder")
    if not publish and results is None and not (base / "results").is_dir() and not (base / PUBLISHED).is_dir():
        raise RetinaError(
            f"no results/ in {base}: run retina report in the folder where the jobs wrote results/ (e.g. retina "
            "evaluate writes results/widerface_eval/), or pass --results DIR"
        )
    if publish:
        require_clean_tree("retina report --publish", allow_dirty, root=base)
    target = Target.published(base) if publish else Target.local(out, results, base)
    if missing_too:
        run_missing(build(target)[2], base)
    for command in write(target):
        print(f"not run: {command}")
    print(f"wrote {shown_path(target.page)} and {shown_path(target.assets)}/")
    return 0
