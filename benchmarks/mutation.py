"""Mutation testing (mutmut) of the core numeric and landmark modules: how many small code changes the tests catch.

    python benchmarks/mutation.py                       # nox -s mutation: every module -> results/mutation/
    python benchmarks/mutation.py --modules losses api  # some modules (the record then holds only those)
    python benchmarks/mutation.py --publish             # also copies the record to reports/records/mutation/

Needs ``pip install -e .[mutation]`` (mutmut). Each module runs in its own scratch folder
(``results/mutation/work/<module>/``) holding links to ``retina/``, ``tests/`` (and the ``benchmarks/`` and
``ablations/`` that some tests import) and a ``pyproject.toml`` that tells mutmut which file to mutate and which
test files to run against its mutants: the fast tests that exercise that module, under clean-clone conditions (no
``../shared`` beside the scratch folder). mutmut runs, per mutant, the tests that reached the mutated function.

Per module the record counts the mutants and how each ended: *killed* (a test failed), *timeout* or *crash* (the
tests hung or died; caught too) or not caught (mutmut's *survived*, or *no tests*: no selected test reached the
function). Surviving mutants listed in ``benchmarks/mutation_equivalent.json`` (module, mutant, kind, its diff, the
reason it cannot change a result) are counted as *equivalent*; an entry whose diff no longer matches the mutant is
ignored (reported as stale). Score = caught / (mutants - equivalent). Writes ``results/mutation/mutation.json``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retina.results import REPO_ROOT, provenance, write_json

OUT = REPO_ROOT / "results" / "mutation"
PUBLISHED = REPO_ROOT / "reports" / "records" / "mutation" / "mutation.json"
EQUIVALENT = REPO_ROOT / "benchmarks" / "mutation_equivalent.json"
GOAL = 0.9
CAUGHT = ("killed", "timeout", "segfault")  # mutmut's names; "segfault" is any death by a signal
# Why a surviving mutant cannot change a result: it does not (same behaviour), only within floating-point rounding
# (float precision), or only on another device than this run's CPU (device; tests/test_gpu.py covers those paths).
KINDS = ("same behaviour", "float precision", "device")


@dataclass(frozen=True)
class Target:
    """One module: the file mutated, the test files run against its mutants, and optionally only some functions
    (mutmut's names: ``x_name`` for a function, ``xǁClassǁname`` for a method)."""

    source: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()

    @property
    def dotted(self) -> str:
        return self.source.removesuffix(".py").replace("/", ".")

    def patterns(self) -> list[str]:
        """mutmut mutant-name patterns of the scope (none: the whole file)."""
        return [f"{self.dotted}.{f}__mutmut_*" for f in self.functions]

    def in_scope(self, mutant: str) -> bool:
        return not self.functions or any(fnmatch.fnmatchcase(mutant, p) for p in self.patterns())


EVAL_TESTS = ("tests/test_eval_widerface.py", "tests/test_eval_matlab_cases.py", "tests/test_eval_reference.py")
TARGETS: dict[str, Target] = {
    "coding": Target("retina/coding.py", ("tests/test_coding.py", "tests/test_matching_losses.py")),
    "priors": Target("retina/priors.py", ("tests/test_priors.py", "tests/test_api_mapping.py")),
    "matching": Target("retina/matching.py", ("tests/test_matching_losses.py",)),
    "losses": Target("retina/losses.py", ("tests/test_matching_losses.py",)),
    "postprocess": Target("retina/postprocess.py", ("tests/test_postprocess.py", "tests/test_api_mapping.py")),
    "transforms": Target("retina/data/transforms.py", ("tests/test_transforms.py",)),
    # the API's mapping: network input <-> image pixels, passes and their merge (not loading or the ONNX backend)
    "api": Target(
        "retina/api.py",
        ("tests/test_api_mapping.py", "tests/test_detector.py"),
        (
            "xǁDetectorǁprepare",
            "xǁDetectorǁdetect_arrays",
            "xǁDetectorǁ_to_image",
            "xǁDetectorǁ_merge",
            "xǁDetectorǁ__call__",
            "x__to_numpy",
        ),
    ),
    "align": Target("retina/verify/align.py", ("tests/test_align.py",)),
    "eval_widerface": Target("retina/eval/widerface.py", EVAL_TESTS),
    "eval_overlap": Target("retina/eval/overlap.py", EVAL_TESTS),
}


def mutmut_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mutmut")
    except PackageNotFoundError:
        raise SystemExit("mutmut is not installed: pip install -e .[mutation]") from None


def scratch(name: str, target: Target) -> Path:
    """A fresh folder with links to retina/ and tests/ and a pyproject.toml configuring mutmut for ``target``."""
    work = OUT / "work" / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for folder in ("retina", "tests", "benchmarks", "ablations"):  # some tests import benchmarks/ and ablations/
        (work / folder).symlink_to(REPO_ROOT / folder, target_is_directory=True)
    config = {
        "source_paths": ["retina"],
        "also_copy": ["benchmarks", "ablations"],
        "only_mutate": [target.source],
        "pytest_add_cli_args_test_selection": list(target.tests),
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-m", "not slow and not gpu"],
        "use_git_change_detection": False,
    }
    text = (REPO_ROOT / "pyproject.toml").read_text() + "\n[tool.mutmut]\n"
    text += "".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items())
    tomllib.loads(text)  # a malformed file would only show up as mutmut's own error
    (work / "pyproject.toml").write_text(text)
    return work


def _env() -> dict[str, str]:
    """This environment without PYTHONPATH (the tests must import the mutated copy, never the checkout), with one
    OpenMP thread: mutmut forks a worker per mutant from a process that has run torch, and an OpenMP thread pool
    does not survive a fork (the workers hang)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_module(name: str, target: Target, jobs: int) -> tuple[dict[str, str], float]:
    """mutmut on one module in its scratch folder -> ({mutant: status}, seconds); the log is kept beside it."""
    from mutmut.stats import status_by_exit_code

    work = scratch(name, target)
    start = time.perf_counter()
    with open(work / "mutmut.log", "w") as log:
        command = ["mutmut", "run", "--max-children", str(jobs), *target.patterns()]
        done = subprocess.run(command, cwd=work, env=_env(), stdout=log, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    meta = work / "mutants" / f"{target.source}.meta"
    if done.returncode != 0 or not meta.is_file():
        raise SystemExit(f"mutmut failed on {name} (exit {done.returncode}); see {work / 'mutmut.log'}")
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {m: status_by_exit_code[c] for m, c in codes.items() if target.in_scope(m)}, seconds


def mutant_diff(work: Path, mutant: str) -> list[str]:
    """The changed lines (``-old`` / ``+new``) of a mutant, from ``mutmut show``."""
    shown = subprocess.run(["mutmut", "show", mutant], cwd=work, env=_env(), capture_output=True, text=True,
                           check=True).stdout  # fmt: skip
    return [line for line in shown.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def load_equivalent(path: Path = EQUIVALENT) -> list[dict[str, Any]]:
    """The equivalent-mutant list: [{module, mutant, kind, diff: [changed lines], reason}]."""
    entries = json.loads(path.read_text()) if path.is_file() else []
    for k, e in enumerate(entries):
        missing = {"module", "mutant", "kind", "diff", "reason"} - set(e)
        if missing or e["kind"] not in KINDS or not str(e["reason"]).strip():
            raise SystemExit(f"{path}: entry {k} needs module, mutant, kind (one of {KINDS}), diff and a reason")
    return entries


def summarise(target: Target, statuses: dict[str, str], diffs: dict[str, list[str]],
              equivalent: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """One module's counts, score and lists of survivors, equivalent mutants and stale equivalence entries."""
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    uncaught = sorted(m for m, s in statuses.items() if s not in CAUGHT)
    known = {e["mutant"]: e for e in equivalent}
    equal = [m for m in uncaught if m in known and known[m]["diff"] == diffs[m]]
    stale = [e for e in equivalent if e["mutant"] not in equal]
    survivors = [m for m in uncaught if m not in equal]
    caught = sum(counts.get(s, 0) for s in CAUGHT)
    scored = len(statuses) - len(equal)
    return {
        "file": target.source,
        "scope": list(target.functions) or "whole file",
        "tests": list(target.tests),
        "mutants": len(statuses),
        "killed": counts.get("killed", 0),
        "timeout": counts.get("timeout", 0),
        "crashed": counts.get("segfault", 0),
        "equivalent": len(equal),
        "survived": len(survivors),  # neither caught nor equivalent, whatever mutmut's status (see "statuses")
        "statuses": counts,
        "equivalent_by_kind": {k: sum(known[m]["kind"] == k for m in equal) for k in KINDS},
        "caught": caught,
        "score": caught / scored if scored else None,
        "survivors": [{"mutant": m, "status": statuses[m], "diff": diffs[m]} for m in survivors],
        "equivalent_mutants": [{**known[m], "status": statuses[m]} for m in equal],
        "stale_equivalent_entries": [e["mutant"] for e in stale],
    }


def totals(modules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    keys = ("mutants", "killed", "timeout", "crashed", "equivalent", "survived", "caught")
    out: dict[str, Any] = {k: sum(m[k] for m in modules.values()) for k in keys}
    out["equivalent_by_kind"] = {k: sum(m["equivalent_by_kind"][k] for m in modules.values()) for k in KINDS}
    scored = out["mutants"] - out["equivalent"]
    out["score"] = out["caught"] / scored if scored else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modules", nargs="+", choices=sorted(TARGETS), default=list(TARGETS), help="default: all")
    p.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    p.add_argument("--publish", action="store_true", help="also write reports/records/mutation/mutation.json")
    args = p.parse_args(argv)
    version = mutmut_version()
    equivalent = load_equivalent()
    modules: dict[str, dict[str, Any]] = {}
    for name in args.modules:
        target = TARGETS[name]
        print(f"{name}: mutating {target.source} ({len(target.tests)} test files) ...", flush=True)
        statuses, seconds = run_module(name, target, args.jobs)
        work = OUT / "work" / name
        diffs = {m: mutant_diff(work, m) for m, s in statuses.items() if s not in CAUGHT}
        listed = [e for e in equivalent if e["module"] == name]
        modules[name] = {**summarise(target, statuses, diffs, listed), "seconds": round(seconds, 1)}
        m = modules[name]
        print(f"{name}: {m['caught']}/{m['mutants']} caught, {m['equivalent']} equivalent, "
              f"{len(m['survivors'])} survivors, score {m['score']:.3f} ({seconds:.0f} s)", flush=True)  # fmt: skip
    record = {
        "what": "mutation testing of the core numeric and landmark modules",
        "tool": f"mutmut {version}",
        "score_definition": "caught (killed, timeout, crash) / (mutants - equivalent); 'no tests' counts as not caught",
        "goal": GOAL,
        "conditions": "clean clone (no ../shared), tests marked slow or gpu deselected",
        "modules": modules,
        "total": totals(modules),
        "provenance": provenance(),
    }
    print(f"wrote {write_json(OUT / 'mutation.json', record)}")
    if args.publish:
        print(f"published {write_json(PUBLISHED, record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
