"""Every bad input an answer: one table of bad command lines and files, each with its one-line error.

Each case runs ``retina.cli.main`` in-process and expects exit status 2, the given words on stderr, no
traceback, and at most ``lines`` stderr lines (1 unless the command goes on past a bad file and says so); and no
SynthFace data generated (``RETINA_CACHE`` stays empty): cheap checks come before slow work. Three cases also run
as a subprocess, to show that no traceback or library warning escapes end to end.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from retina.cli import main
from retina.data.widerface import SETTINGS, GroundTruth, write_ground_truth, write_predictions
from retina.weights import DEFAULT_EMBEDDER, DEFAULT_WEIGHTS
from tests.toy_faces import make_toy_split


class NotAllowed:
    """A class that the weights-only unpickler refuses."""


@dataclass(frozen=True)
class Case:
    name: str
    argv: str  # split on spaces after formatting with the fixture's paths, e.g. "detect {image} --out {out}"
    expected: str  # words the error must contain
    lines: int = 1  # most stderr lines allowed
    needs_no_nvdiffrast: bool = False  # the error is that nvdiffrast (or CUDA) is missing: skipped where it works


DETECT = "detect {image} --weights {weights} --out {out}"
EVAL_ROOT = "evaluate --weights {weights} --out {out} --no-progress --data-root"
EVALUATE = EVAL_ROOT + " {toy}"
EXPORT = "export-onnx --weights {weights} --out {out}/m.onnx"
SYNTH = "synth --out {out}/synth --split val --images 1"
WIDER = "widerface-eval --gt {gt} --pred {preds}"
TRAIN = "train --out {out}/t --data-root {toy}"
TRAIN_ON = "train --out {{out}}/t --data-root {split} --no-progress"
MESH = "mesh-pretrain --out {out}/m"
VERIFY = "verification --synth-preset tiny --no-progress --out {out}/v --weights {weights} --embedder {embedder}"
MTCNN_TOP_K = "detect {image} --model mtcnn --weights {empty} --top-k 5 --out {out}"

CASES = [
    # the command line itself
    Case("no command", "", "the following arguments are required: COMMAND"),
    Case("unknown command", "detekt {image}", "invalid choice: 'detekt'"),
    # retina detect
    Case("score above 1", DETECT + " --score-threshold 1.5", "--score-threshold: expected a number in [0, 1]"),
    Case("score NaN", DETECT + " --score-threshold nan", "--score-threshold: expected a number in [0, 1], got 'nan'"),
    Case("score not a number", DETECT + " --score-threshold high", "expected a number in [0, 1], got 'high'"),
    Case("NMS IoU 0", DETECT + " --nms-iou 0", "--nms-iou: expected an IoU threshold in (0, 1]"),
    Case("unknown device", DETECT + " --device gpu0", "--device: not a torch device: 'gpu0'"),
    Case("unknown protocol", DETECT + " --protocol fast", "--protocol: invalid choice: 'fast'"),
    Case("unknown preset", DETECT + " --preset mobilenet", "--preset: invalid choice: 'mobilenet'"),
    Case("missing image", "detect {tmp}/none.jpg --out {out}", "no such file or folder: "),
    Case("folder without images", "detect {empty} --out {out}", "no image files (.bmp .jpeg"),
    Case("text file as image", "detect {text_jpg} --weights {weights} --out {out}", "cannot decode image", 2),
    Case("--out is a file", "detect {image} --weights {weights} --out {text_jpg}", "exists and is not a folder"),
    Case("--out under a file", "detect {image} --weights {weights} --out {text_jpg}/sub", "Not a directory"),
    Case("weights missing", "detect {image} --weights {tmp}/none.pth --out {out}", "weights file not found"),
    Case("weights: text", "detect {image} --weights {w_text} --out {out}", "not a PyTorch weights file"),
    Case("weights: random bytes", "detect {image} --weights {w_random} --out {out}", "not a PyTorch weights file"),
    Case("weights: truncated", "detect {image} --weights {w_truncated} --out {out}", "not a PyTorch weights file"),
    Case("weights: empty", "detect {image} --weights {w_empty} --out {out}", "not a PyTorch weights file"),
    Case("weights: plain pickle", "detect {image} --weights {w_pickle} --out {out}", "not a PyTorch weights file"),
    Case("weights: a class", "detect {image} --weights {w_class} --out {out}", "refers to the Python object"),
    Case("weights: no tensors", "detect {image} --weights {w_plain} --out {out}", "neither a retina checkpoint"),
    Case("weights: bad state", "detect {image} --weights {w_state} --out {out}", "neither a retina checkpoint"),
    Case("weights: no config", "detect {image} --weights {w_noconfig} --out {out}", "without a valid config"),
    Case("weights: other preset", DETECT + " --preset resnet50", "not the requested preset 'resnet50'"),
    # retina evaluate
    Case("eval score below 0", EVALUATE + " --score-threshold -0.1", "--score-threshold: expected a number in [0, 1]"),
    Case("eval match IoU 0", EVALUATE + " --iou 0", "--iou: expected an IoU threshold in (0, 1]"),
    Case("eval NMS IoU above 1", EVALUATE + " --nms-iou 1.01", "--nms-iou: expected an IoU threshold in (0, 1]"),
    Case("eval batch 0", EVALUATE + " --batch-size 0", "--batch-size: expected an integer >= 1, got '0'"),
    Case("eval batch 2.5", EVALUATE + " --batch-size 2.5", "--batch-size: expected an integer >= 1, got '2.5'"),
    Case("eval arithmetic", EVALUATE + " --arithmetic fast", "--arithmetic: invalid choice: 'fast'"),
    Case("eval weights missing", EVALUATE + " --weights {tmp}/none.pth", "weights file not found"),
    Case("eval weights text", EVALUATE + " --weights {w_text}", "not a PyTorch weights file"),
    Case("eval no images folder", EVAL_ROOT + " {empty}", "no WIDER_val/images or images folder"),
    Case("eval no ground truth", EVAL_ROOT + " {no_gt}", "no wider_face_val.mat in"),
    Case("eval image missing", EVAL_ROOT + " {toy_missing}", "0--Toy/toy_1.(bmp/jpeg"),
    Case(
        "eval image twice",
        EVAL_ROOT + " {toy_twice}",
        "several image files for 'toy_0'",
    ),
    # retina export-onnx
    Case("opset too old", EXPORT + " --opset 5", "--opset: expected an integer in [9, 23], got '5'"),
    Case("--out is a folder", "export-onnx --weights {weights} --out {empty}", "is a folder; give a file name"),
    Case("check image missing", EXPORT + " --check-image {tmp}/none.png", "image not found"),
    Case("export weights text", "export-onnx --weights {w_text} --out {out}/m.onnx", "not a PyTorch weights file"),
    # retina synth
    Case("synth 0 images", "synth --out {out}/s --split val --images 0", "--images: expected an integer >= 1"),
    Case("synth negative seed", SYNTH + " --seed -1", "--seed: expected an integer >= 0, got '-1'"),
    Case("synth 0 workers", SYNTH + " --workers 0", "--workers: expected an integer >= 1, got '0'"),
    Case("synth unknown split", "synth --out {out}/s --split dev --images 1", "--split: invalid choice: 'dev'"),
    Case("synth unknown preset", SYNTH + " --preset huge", "unknown preset 'huge'"),
    # retina train, and the RetinaFace label.txt reader behind it
    Case("train lr -1", TRAIN + " --lr -1", "--lr: expected a finite number > 0, got '-1'"),
    Case("train lr nan", TRAIN + " --lr nan", "--lr: expected a finite number > 0, got 'nan'"),
    Case("train batch 0", TRAIN + " --batch-size 0", "--batch-size: expected an integer >= 1, got '0'"),
    Case("train epochs 0", TRAIN + " --epochs 0", "--epochs: expected a finite number > 0, got '0'"),
    Case("train image size 16", TRAIN + " --image-size 16", "--image-size: expected an integer in [32, 4096]"),
    Case("train pixel weight -1", TRAIN + " --pixel-weight -1", "--pixel-weight: expected a finite number >= 0"),
    Case("train workers -1", TRAIN + " --workers -1", "--workers: expected an integer >= 0, got '-1'"),
    Case("train unknown recipe", TRAIN + " --recipe fast", "--recipe: invalid choice: 'fast'"),
    Case("train no images", "train --out {out}/t --data-root {empty}", "empty: images not found"),
    Case("train no label.txt", TRAIN_ON.format(split="{l_none}"), "l_none: label.txt not found"),
    Case("label not a number", TRAIN_ON.format(split="{l_word}"), "label.txt:2: not a list of numbers: '1 2 x 4'"),
    Case("label 7 numbers", TRAIN_ON.format(split="{l_count}"), "label.txt:2: expected 4 (x y w h), 19 or 20"),
    Case("label face first", TRAIN_ON.format(split="{l_first}"), "label.txt:1: face line before the first '#"),
    Case("label NaN box", TRAIN_ON.format(split="{l_nan}"), "label.txt:2: NaN or infinite value in a box"),
    Case("label no images", TRAIN_ON.format(split="{l_empty}"), "label.txt: no images listed"),
    Case(
        "train nvdiffrast, no CUDA",
        "train --out {out}/t --preset mobilenet0.25-mesh --renderer nvdiffrast --no-progress",  # the default data
        "nvdiffrast backend needs",
        needs_no_nvdiffrast=True,
    ),
    # retina mesh-pretrain
    Case("mesh-pretrain threads 0", MESH + " --threads 0", "--threads: expected an integer >= 1, got '0'"),
    Case("mesh-pretrain iterations 0", MESH + " --iterations 0", "--iterations: expected an integer >= 1, got '0'"),
    Case("mesh-pretrain faces 2.5", MESH + " --train-samples 2.5", "--train-samples: expected an integer >= 1"),
    Case("mesh-pretrain held-out 0", MESH + " --heldout-samples 0", "--heldout-samples: expected an integer >= 1"),
    Case("mesh-pretrain seed -1", MESH + " --seed -1", "--seed: expected an integer >= 0, got '-1'"),
    Case("mesh-pretrain recipe", MESH + " --recipe fast", "--recipe: invalid choice: 'fast'"),
    Case("mesh-pretrain --out a file", "mesh-pretrain --out {text_jpg}", "exists and is not a folder"),
    Case("mesh-pretrain run exists", "mesh-pretrain --out {mesh_run}", "already holds a run; use another --out"),
    # retina verification: the models are checked before SynthFace-ID is generated
    Case("verify embedder missing", VERIFY + " --embedder {tmp}/none.pth", "embedding checkpoint not found"),
    Case("verify embedder text", VERIFY + " --embedder {w_text}", "not a PyTorch weights file"),
    Case("verify embedder other", VERIFY + " --embedder {weights}", "not a face-embedding checkpoint"),
    Case("verify MTCNN folder empty", VERIFY + " --mtcnn-weights {empty}", "lacks pnet.pt, rnet.pt, onet.pt"),
    Case("verify MTCNN folder missing", VERIFY + " --mtcnn-weights {tmp}/none", "MTCNN weights folder not found"),
    Case("verify LFW pairs alone", VERIFY + " --lfw-pairs {text_jpg}", "--lfw-pairs and --lfw-images go together"),
    # retina report
    Case("report --out with --publish", "report --publish --out {out}/r", "--out and --results do not apply"),
    # retina widerface-eval: the WIDER FACE readers
    Case("pred not a number", WIDER.replace("{preds}", "{p_word}"), "a1.txt:3: not a list of numbers: '0 0 9 nine"),
    Case("pred box count", WIDER.replace("{preds}", "{p_count}"), "a1.txt:2: declares 2 boxes but 1 box lines"),
    Case("pred NaN", WIDER.replace("{preds}", "{p_nan}"), "a1.txt:3: NaN or infinite value"),
    Case("pred 4 numbers", WIDER.replace("{preds}", "{p_short}"), "a1.txt:3: expected 5 numbers"),
    Case("pred not UTF-8", WIDER.replace("{preds}", "{p_latin}"), "a1.txt: not UTF-8 text"),
    Case("pred file missing", WIDER.replace("{preds}", "{p_missing}"), "missing for 1 of 2 images, e.g. 0--A/a2.txt"),
    Case("pred folder missing", WIDER.replace("{preds}", "{tmp}/none"), "prediction folder not found"),
    Case("ground truth missing", "widerface-eval --gt {empty} --pred {p_word}", "ground truth file not found"),
    # issue 22: subsets, output folders, ONNX weights, limits, bootstrap, comparisons, fine-tuning, the report
    Case("eval subset unknown image", EVALUATE + " --subset {s_unknown}", "s_unknown.txt:2: '0--Toy/nope' is not an"),
    Case("eval subset listed twice", EVALUATE + " --subset {s_twice}", "s_twice.txt:3: '0--Toy/toy_0.jpg' is listed"),
    Case("eval subset empty", EVALUATE + " --subset {s_empty}", "s_empty.txt: no images listed"),
    Case("eval subset missing", EVALUATE + " --subset {tmp}/none.txt", "subset file not found"),
    Case("eval out of another", EVAL_ROOT + " {toy} --out {other_eval}", "holds the results of another evaluation"),
    Case("eval top-k 0", EVALUATE + " --top-k 0", "--top-k: expected an integer >= 1 or 'all', got '0'"),
    Case("eval max detections x", EVALUATE + " --max-detections x", "--max-detections: expected an integer >= 1"),
    Case("eval ONNX not a model", EVALUATE + " --weights {text_onnx}", "cannot load ONNX model"),
    Case("detect ONNX not a model", "detect {image} --weights {text_onnx} --out {out}", "cannot load ONNX model"),
    Case("detect top-k with mtcnn", MTCNN_TOP_K, "--top-k: RetinaFace options"),
    Case("wider subset unknown", WIDER.replace("{preds}", "{p_missing}") + " --subset {s_wider}", "'0--A/a3' is not"),
    Case("wider bootstrap 0", WIDER.replace("{preds}", "{p_missing}") + " --bootstrap 0", "--bootstrap: expected an"),
    Case("compare no results", "compare {empty} {empty}", "no results.json (give an evaluation folder"),
    Case("compare other images", "compare {other_eval} {c_other}", "the evaluations are of other images"),
    Case("compare other IoU", "compare {other_eval} {c_iou}", "the evaluations differ in iou (0.5 vs 0.7)"),
    Case("train init other preset", TRAIN + " --init-weights {weights} --preset resnet50", "another architecture"),
    Case("train init and backbone", TRAIN + " --init-weights {weights} --pretrained-backbone {w_text}", "not allowed"),
    Case("train init missing", TRAIN + " --init-weights {tmp}/none.pth", "weights file not found"),
    Case("report results missing", "report --results {tmp}/none", "--results"),
]


def _workflow(root: Path) -> dict[str, Path]:
    """Subset lists, an ONNX file that is not one, and evaluation folders of other settings (issue 22)."""
    out = {}
    for name, text in {"s_unknown": "0--Toy/toy_0\n0--Toy/nope\n", "s_twice": "0--Toy/toy_0\n\n0--Toy/toy_0.jpg\n",
                       "s_empty": "\n# nothing\n", "s_wider": "0--A/a3\n"}.items():  # fmt: skip
        out[name] = root / f"{name}.txt"
        out[name].write_text(text)
    out["text_onnx"] = root / "model.onnx"
    out["text_onnx"].write_text("not a model\n")
    base = {"easy": 0.5, "medium": 0.5, "hard": 0.5, "iou": 0.5, "arithmetic": "matlab", "counts": {"images": 2},
            "predictions": "P", "ground_truth": "G", "images_sha256": "a", "evaluation_key": {}}  # fmt: skip
    for name, change in {"other_eval": {}, "c_other": {"images_sha256": "b"}, "c_iou": {"iou": 0.7}}.items():
        out[name] = root / name
        out[name].mkdir()
        (out[name] / "results.json").write_text(json.dumps({**base, **change}))
    return out


def _weights_files(root: Path) -> dict[str, Path]:
    """Files given as --weights that are not checkpoints (named as the cases use them)."""
    files = {name: root / f"{name}.pth" for name in ("w_text", "w_random", "w_truncated", "w_empty")}
    files["w_text"].write_text("these are not weights\n")
    files["w_random"].write_bytes(np.random.default_rng(0).bytes(4096))
    data = DEFAULT_WEIGHTS.read_bytes()
    files["w_truncated"].write_bytes(data[: len(data) // 2])
    files["w_empty"].write_bytes(b"")
    files["w_pickle"] = root / "w_pickle.pkl"
    files["w_pickle"].write_bytes(pickle.dumps({"weights": [0.5, 0.25]}, protocol=4))  # torch warns about protocol 4
    for name, payload in {
        "w_class": {"model": NotAllowed()},
        "w_plain": {"lr": 0.1, "epochs": 3},
        "w_state": {"state_dict": 3},
        "w_noconfig": {"format": "retina", "version": 1, "state_dict": {}},
    }.items():
        files[name] = root / f"{name}.pth"
        torch.save(payload, files[name])
    return files


def _widerface(root: Path) -> dict[str, Path]:
    """A two-image ground truth and prediction folders with one defect each (named as the cases use them)."""
    gt = GroundTruth(
        ("0--A",),
        (("0--A", "a1"), ("0--A", "a2")),
        (np.array([[0.0, 0, 9, 9]]), np.array([[10.0, 10, 30, 30]])),
        {s: (np.array([0]), np.array([0])) for s in SETTINGS},
    )
    write_ground_truth(root / "gt", gt)
    first_file = {
        "p_word": "a1\n1\n0 0 9 nine 0.9\n",
        "p_count": "a1\n2\n0 0 9 9 0.9\n",
        "p_nan": "a1\n1\n0 0 nan 9 0.9\n",
        "p_short": "a1\n1\n0 0 9 9\n",
        "p_missing": None,  # a1 fine, a2 missing
    }
    out: dict[str, Path] = {"gt": root / "gt"}
    for name, text in first_file.items():
        out[name] = root / name
        write_predictions(out[name], "0--A", "a1", np.array([[0.0, 0, 9, 9]]), np.array([0.9]))
        if text is not None:
            (out[name] / "0--A" / "a1.txt").write_text(text)
            write_predictions(out[name], "0--A", "a2", np.zeros((0, 4)), np.zeros(0))
    out["p_latin"] = root / "p_latin"
    write_predictions(out["p_latin"], "0--A", "a2", np.zeros((0, 4)), np.zeros(0))
    (out["p_latin"] / "0--A" / "a1.txt").write_bytes("a1 caf\xe9\n0\n".encode("latin-1"))
    return out


def _labels(root: Path) -> dict[str, Path]:
    """Training split folders whose label.txt has one defect each (named as the cases use them)."""
    texts = {
        "l_word": "# a.jpg\n1 2 x 4\n",
        "l_count": "# a.jpg\n1 2 3 4 5 6 7\n",
        "l_first": "1 2 3 4\n# a.jpg\n",
        "l_nan": "# a.jpg\n1 2 nan 4\n",
        "l_empty": "\n",
    }
    out = {"l_none": root / "l_none"}
    (root / "l_none" / "images").mkdir(parents=True)  # and no label.txt
    for name, text in texts.items():
        (root / name / "images").mkdir(parents=True)
        (root / name / "label.txt").write_text(text)
        out[name] = root / name
    return out


def _splits(root: Path) -> dict[str, Path]:
    """Toy WIDER-layout splits: a good one, one missing an image, one with an image in two formats."""
    toy_missing = make_toy_split(root / "toy_missing", n=2)
    (toy_missing / "images" / "0--Toy" / "toy_1.jpg").unlink()
    toy_twice = make_toy_split(root / "toy_twice", n=2)
    image = cv2.imread(str(toy_twice / "images" / "0--Toy" / "toy_0.jpg"))
    cv2.imwrite(str(toy_twice / "images" / "0--Toy" / "toy_0.PNG"), image)
    no_gt = root / "no_gt"
    (no_gt / "images").mkdir(parents=True)
    return {
        "toy": make_toy_split(root / "toy", n=2),
        "toy_missing": toy_missing,
        "toy_twice": toy_twice,
        "no_gt": no_gt,
    }


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_inputs")
    image = root / "face.png"
    cv2.imwrite(str(image), np.full((32, 40, 3), 90, np.uint8))
    text_jpg = root / "notes.jpg"
    text_jpg.write_text("not an image\n")
    (root / "empty").mkdir()
    found = {"tmp": root, "image": image, "text_jpg": text_jpg, "empty": root / "empty", "out": root / "out"}
    found |= {"weights": DEFAULT_WEIGHTS, "embedder": DEFAULT_EMBEDDER}
    found |= _weights_files(root) | _widerface(root) | _splits(root)
    found |= _labels(root) | _workflow(root)
    (root / "mesh_run").mkdir()
    (root / "mesh_run" / "record.json").write_text("{}")
    found["mesh_run"] = root / "mesh_run"
    return {name: str(path) for name, path in found.items()}


class DataGenerated(BaseException):
    """Raised by the tripwires below: a command began generating SynthFace before it refused its input."""


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SynthFace cache of its own, which must stay empty; the default splits' makers are tripwires."""
    import retina.synth.identities
    import retina.synth.splits

    def tripwire(*args: object, **kwargs: object) -> None:
        raise DataGenerated("SynthFace generation started before the bad input was refused")

    monkeypatch.setattr(retina.synth.splits, "default_split", tripwire)
    monkeypatch.setattr(retina.synth.identities, "synth_id_split", tripwire)
    monkeypatch.setenv("RETINA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _nvdiffrast_works() -> bool:
    from retina.errors import RetinaError
    from retina.render import backend

    try:
        backend("nvdiffrast")
    except RetinaError:
        return False
    return True


def _argv(case: Case, paths: dict[str, str]) -> list[str]:
    return case.argv.format(**paths).split()


def _check(case: Case, status: int, err: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= case.lines, err
    assert lines[-1].startswith("retina"), err  # the error itself comes last, as "retina CMD: error: ..."
    assert "error: " in lines[-1] and case.expected in err, err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_one_line_error(
    case: Case, paths: dict[str, str], capsys: pytest.CaptureFixture[str], empty_cache: Path
) -> None:
    if case.needs_no_nvdiffrast and _nvdiffrast_works():
        pytest.skip("nvdiffrast and CUDA work on this machine")
    status = main(_argv(case, paths))
    _check(case, status, capsys.readouterr().err)
    assert not empty_cache.exists() or not any(empty_cache.iterdir()), "data generated before the error"


@pytest.mark.parametrize("name", ["weights: a class", "weights: plain pickle", "eval batch 0"])
def test_no_traceback_end_to_end(name: str, paths: dict[str, str]) -> None:
    case = next(c for c in CASES if c.name == name)
    cmd = [sys.executable, "-m", "retina.cli", *_argv(case, paths)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    _check(case, proc.returncode, proc.stderr)


def test_the_table_is_long_enough() -> None:
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)
    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    assert f"({len(CASES)} cases, every command" in readme  # the README counts this table
    commands = {c.argv.split()[0] for c in CASES if c.argv}
    assert commands == {"compare", "detect", "detekt", "evaluate", "export-onnx", "mesh-pretrain", "report",
                        "synth", "train", "verification", "widerface-eval"}  # fmt: skip


def test_shared_argument_types() -> None:
    """The checkers the commands share (retina.commands.args), on both sides of each bound."""
    from retina.commands import args

    good = [(args.fraction, "0", 0.0), (args.fraction, "1", 1.0), (args.iou_threshold, "1", 1.0),
            (args.positive_int, "1", 1), (args.non_negative_int, "0", 0), (args.positive_float, "1e-9", 1e-9),
            (args.non_negative_float, "0", 0.0), (args.int_in_range(9, 23), "23", 23)]  # fmt: skip
    for parse, text, value in good:
        assert parse(text) == value and type(parse(text)) is type(value)
    bad = [(args.fraction, "1.0001"), (args.fraction, "-1e-9"), (args.iou_threshold, "0"), (args.positive_int, "0"),
           (args.positive_int, "1.0"), (args.non_negative_int, "-1"), (args.positive_float, "0"),
           (args.positive_float, "inf"), (args.non_negative_float, "-0.5"), (args.non_negative_float, "nan"),
           (args.int_in_range(9, 23), "24"), (args.int_in_range(9, 23), "8")]  # fmt: skip
    for parse, text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=f"got '{re.escape(text)}'"):
            parse(text)
