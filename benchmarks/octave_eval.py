"""Our WIDER FACE evaluator against the official MATLAB eval_tools, run under GNU Octave, on one folder.

The evidence behind "matlab arithmetic reproduces the official tool bit for bit". Not run in CI: it needs
GNU Octave (``apt-get install octave``; Octave follows MATLAB's mixed int32/double rules) and your copy of
the official WIDER FACE ``eval_tools`` (``read_pred.m``, ``norm_score.m``, ``evaluation.m``,
``boxoverlap.m``, ``plot/VOCap.m``, ``ground_truth/wider_{face,easy,medium,hard}_val.mat``).

    python benchmarks/octave_eval.py --eval-tools PATH/eval_tools --pred PATH/pred \\
        [--out results/benchmarks/octave_eval.json] [--octave octave] [--timeout 0]

Steps:

1. A driver ``.m`` file written to a temporary folder calls the official functions as ``wider_eval.m``
   does (``read_pred``, ``norm_score``, ``evaluation`` for easy_val, medium_val and hard_val) and computes
   each AP with the official ``VOCap`` on the saved PR curve, as ``plot/wider_plot.m`` does, without
   plotting. The official files are used unchanged; Octave cannot write the ``-v7.3`` .mat files that
   ``evaluation.m`` saves, so the temporary folder also holds a ``save.m`` that passes every argument but
   that option on to the built-in ``save``. The driver prints the APs and writes the curves at ``%.17g``.
2. The same folder and ground truth are evaluated by ``retina.eval.widerface.evaluate`` in both
   arithmetics; images without a prediction file count as empty, as ``read_pred.m`` does (it skips them).
   Our reader is stricter than ``read_pred.m`` on malformed files (an error, where it skips the file).
3. A JSON comparison is printed and written atomically: the three APs of each, their differences, whether
   our 'matlab' PR curves equal Octave's at all 1000 thresholds bit for bit, ``bit_for_bit`` (those curves
   and the three APs all equal), the Octave version and the provenance (commit, package versions, machine,
   command line).

Exit status: 0 when bit for bit, 1 when not, 2 on bad input (a one-line message).
The official code loops in Octave: a full val submission takes tens of minutes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from retina.results import REPO_ROOT, provenance, write_json

SETTINGS = ("easy", "medium", "hard")
OFFICIAL_FILES = (
    "read_pred.m",
    "norm_score.m",
    "evaluation.m",
    "boxoverlap.m",
    "plot/VOCap.m",
    "ground_truth/wider_face_val.mat",
    *(f"ground_truth/wider_{s}_val.mat" for s in SETTINGS),
)
DEFAULT_OUT = REPO_ROOT / "results" / "benchmarks" / "octave_eval.json"
AP_LINE = re.compile(r"^RETINA_AP (easy|medium|hard)_val (\S+)$", re.MULTILINE)

# Shadows the built-in save inside the driver's run: evaluation.m saves with '-v7.3', which Octave lacks.
SAVE_SHIM = """\
function save(varargin)
  % evaluation.m's save with '-v7' instead of '-v7.3' (Octave cannot write -v7.3); the rest unchanged.
  args = varargin;
  args(strcmp(args, '-v7.3')) = {'-v7'};
  quoted = cellfun(@(a) ['''' strrep(a, '''', '''''') ''''], args, 'UniformOutput', false);
  evalin('caller', ['builtin(''save'', ' strjoin(quoted, ', ') ');']);
end
"""


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="octave_eval.py",
        description="Run the official WIDER FACE eval_tools under GNU Octave and our evaluator (both "
        "arithmetics) on one prediction folder; print and write the comparison as JSON.",
    )
    parser.add_argument("--eval-tools", required=True, type=Path, metavar="DIR", help="official eval_tools folder")
    parser.add_argument("--pred", required=True, type=Path, metavar="DIR", help="predictions, DIR/<event>/<image>.txt")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    parser.add_argument("--octave", default="octave", help="the Octave executable (default: octave on PATH)")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds allowed to Octave (default 0: none)")
    args = parser.parse_args(argv)
    if args.timeout < 0:
        parser.error(f"--timeout must be >= 0, got {args.timeout}")
    return args


def check_inputs(args: argparse.Namespace) -> str:
    """The Octave executable's path; raises UsageError naming the first missing piece."""
    octave = shutil.which(args.octave)
    if octave is None:
        raise UsageError(f"'{args.octave}' not found on PATH: install GNU Octave (e.g. apt-get install octave)")
    if not args.eval_tools.is_dir():
        raise UsageError(f"--eval-tools {args.eval_tools}: not a folder")
    missing = [name for name in OFFICIAL_FILES if not (args.eval_tools / name).is_file()]
    if missing:
        raise UsageError(f"--eval-tools {args.eval_tools} lacks {', '.join(missing)} (the official eval_tools files)")
    if not args.pred.is_dir():
        raise UsageError(f"--pred {args.pred}: not a folder")
    return octave


def _quote(path: Path) -> str:
    """A path as an Octave single-quoted string."""
    return "'" + str(path.resolve()).replace("'", "''") + "'"


def driver_source(eval_tools: Path, pred: Path, shim_dir: Path) -> str:
    """The driver script: the official functions as wider_eval.m calls them, then VOCap per setting."""
    tools, gt = _quote(eval_tools), _quote(eval_tools / "ground_truth")
    return f"""\
more off;
warning('off', 'all');
addpath({tools});
addpath(fullfile({tools}, 'plot'));
addpath({_quote(shim_dir)});
gt_dir = {gt};
pred_list = read_pred({_quote(pred)}, fullfile(gt_dir, 'wider_face_val.mat'));
norm_pred_list = norm_score(pred_list);
settings = {{'easy_val'; 'medium_val'; 'hard_val'}};
for i = 1:numel(settings)
  evaluation(norm_pred_list, fullfile(gt_dir, ['wider_' settings{{i}} '.mat']), settings{{i}}, 'setting_int', 'retina');
  saved = load(['./plot/baselines/Val/setting_int/retina/wider_pr_info_retina_' settings{{i}} '.mat']);
  ap = VOCap(saved.pr_cruve(:, 2), saved.pr_cruve(:, 1));
  fid = fopen(['pr_' settings{{i}} '.txt'], 'w');
  fprintf(fid, '%.17g %.17g\\n', saved.pr_cruve');
  fclose(fid);
  printf('RETINA_AP %s %.17g\\n', settings{{i}}, ap);
end
"""


def run_octave(octave: str, eval_tools: Path, pred: Path, workdir: Path, timeout: float) -> tuple[str, float]:
    """Run the driver in ``workdir``; returns (Octave's output, seconds)."""
    shim = workdir / "shim"
    shim.mkdir()
    (shim / "save.m").write_text(SAVE_SHIM)
    (workdir / "retina_driver.m").write_text(driver_source(eval_tools, pred, shim))
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [octave, "--no-gui", "--norc", "--quiet", "--eval", "retina_driver"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=timeout or None,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UsageError(f"Octave did not finish within --timeout {timeout:g} s") from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = " | ".join(line for line in output.strip().splitlines()[-3:])
        raise UsageError(f"Octave failed (exit {proc.returncode}): {tail}")
    return output, time.perf_counter() - start


def parse_octave_aps(output: str) -> dict[str, float]:
    """The ``RETINA_AP <setting>_val <value>`` lines of the driver's output -> {setting: AP}."""
    aps = {setting: float(value) for setting, value in AP_LINE.findall(output)}
    missing = [s for s in SETTINGS if s not in aps]
    if missing:
        raise UsageError(f"no AP for {', '.join(missing)} in Octave's output (did the official code run?)")
    return aps


def read_octave_curves(workdir: Path) -> dict[str, np.ndarray]:
    """The official PR curves: {setting: (1000, 2) precision, recall}."""
    return {s: np.loadtxt(workdir / f"pr_{s}_val.txt", ndmin=2) for s in SETTINGS}


def octave_version(octave: str) -> str:
    proc = subprocess.run([octave, "--version"], capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout.splitlines()[0].strip() if proc.stdout else "unknown"


def evaluate_ours(eval_tools: Path, pred: Path) -> Any:
    """Our evaluation of ``pred`` (arithmetic 'matlab'; the result carries the float64 curves too)."""
    from retina.data.widerface import load_ground_truth, read_predictions
    from retina.errors import RetinaError
    from retina.eval.widerface import evaluate

    try:
        gt = load_ground_truth(eval_tools / "ground_truth")
        submission = read_predictions(pred, gt, missing_as_empty=True)
        return evaluate(submission, gt, arithmetic="matlab", challenge=False)
    except (RetinaError, ValueError) as exc:
        raise UsageError(f"our evaluator: {exc}") from exc


def compare(octave_aps: dict[str, float], octave_curves: dict[str, np.ndarray], ours: Any) -> dict[str, Any]:
    """The comparison record (without provenance)."""
    matlab = {s: ours.curves[s].ap for s in SETTINGS}
    float64 = {s: ours.float64_curves[s].ap for s in SETTINGS}
    identical = {}
    for s in SETTINGS:
        mine = np.column_stack([ours.curves[s].precision, ours.curves[s].recall])
        identical[s] = bool(mine.shape == octave_curves[s].shape and np.array_equal(mine, octave_curves[s], True))
    return {
        "ap_octave_official": octave_aps,
        "ap_ours_matlab": matlab,
        "ap_ours_float64": float64,
        "ours_matlab_minus_octave": {s: matlab[s] - octave_aps[s] for s in SETTINGS},
        "ours_float64_minus_octave": {s: float64[s] - octave_aps[s] for s in SETTINGS},
        "pr_curves_identical_matlab": identical,
        "bit_for_bit": all(identical.values()) and matlab == octave_aps,
        "counts": dict(ours.counts),
        "warnings": list(ours.warnings),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        octave = check_inputs(args)
        with tempfile.TemporaryDirectory(prefix="retina_octave_eval_") as tmp:
            output, octave_s = run_octave(octave, args.eval_tools, args.pred, Path(tmp), args.timeout)
            aps, curves = parse_octave_aps(output), read_octave_curves(Path(tmp))
        start = time.perf_counter()
        ours = evaluate_ours(args.eval_tools, args.pred)
        ours_s = time.perf_counter() - start
    except UsageError as exc:
        print(f"octave_eval.py: error: {exc}", file=sys.stderr)
        return 2
    record = {
        **compare(aps, curves, ours),
        "predictions": str(args.pred.resolve()),
        "eval_tools": str(args.eval_tools.resolve()),
        "octave": octave_version(octave),
        "seconds": {"octave": round(octave_s, 3), "ours_both_arithmetics": round(ours_s, 3)},
        "provenance": provenance(),
    }
    write_json(args.out, record)
    print(json.dumps({k: record[k] for k in list(record)[:7]}, indent=2))
    print(f"wrote {args.out}")
    return 0 if record["bit_for_bit"] else 1


if __name__ == "__main__":
    sys.exit(main())
