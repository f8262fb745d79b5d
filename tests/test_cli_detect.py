import json
import shutil

import cv2
import numpy as np
import pytest

from retina.build import build_detector
from retina.checkpoint import save_checkpoint
from retina.cli import main
from retina.config import preset
from tests.conftest import shared_file


@pytest.fixture
def weights(tmp_path):
    cfg = preset("mobilenet0.25")
    return save_checkpoint(tmp_path / "w.pth", build_detector(cfg), cfg)


def test_detect_writes_json_and_picture(tmp_path, weights):
    images = tmp_path / "in"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "b.jpg"), np.zeros((30, 20), np.uint8))
    out = tmp_path / "out"
    assert main(["detect", str(images), "--weights", str(weights), "--out", str(out), "--score-threshold", "0.3"]) == 0
    record = json.loads((out / "a.json").read_text())
    assert record["image_size"] == [60, 40]
    assert set(record) >= {"image", "image_size", "boxes", "scores", "landmarks"}
    assert len(record["boxes"]) == len(record["scores"]) == len(record["landmarks"])
    assert all(len(lm) == 5 and len(lm[0]) == 2 for lm in record["landmarks"])
    assert cv2.imread(str(out / "a.jpg")).shape == (40, 60, 3)
    assert (out / "b.json").exists()


def test_detect_reports_user_errors_without_traceback(tmp_path, weights, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"junk")
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.zeros((16, 16, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["detect", str(bad), str(good), "--weights", str(weights), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot decode image" in err and "bad.jpg" in err and "Traceback" not in err
    assert (out / "good.json").exists()  # the readable image still got its result
    assert main(["detect", str(good), "--weights", str(tmp_path / "none.pth"), "--out", str(out)]) == 2
    assert "weights file not found" in capsys.readouterr().err
    assert main(["detect", str(good), "--weights", str(weights), "--preset", "resnet50", "--out", str(out)]) == 2
    assert "not the requested preset" in capsys.readouterr().err


def test_detect_real_weights_on_a_sample(tmp_path):
    weights = shared_file("weights/retinaface_mobilenet0.25_Final.pth")
    image = shared_file("samples/scikit-image_astronaut.png")
    assert main(["detect", str(image), "--weights", str(weights), "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "scikit-image_astronaut.json").read_text())
    assert len(record["scores"]) == 1 and record["scores"][0] > 0.99


def test_detect_without_weights_uses_the_committed_checkpoint(tmp_path, capsys):
    from retina.api import Detector
    from retina.weights import DEFAULT_WEIGHTS

    image = tmp_path / "face.png"
    canvas = np.full((96, 128, 3), 60, np.uint8)
    cv2.circle(canvas, (64, 48), 30, (150, 180, 220), -1)
    cv2.imwrite(str(image), canvas)
    assert main(["detect", str(image), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"note: no --weights given: using the committed checkpoint {DEFAULT_WEIGHTS.name} (trained on "
                   "synthetic faces)"]  # fmt: skip
    record = json.loads((tmp_path / "out" / "face.json").read_text())
    assert record["settings"]["weights"] == str(DEFAULT_WEIGHTS) and record["settings"]["model"] == "mobilenet0.25"
    expected = Detector.from_checkpoint(DEFAULT_WEIGHTS)(image, score_threshold=0.5)
    np.testing.assert_allclose(np.array(record["boxes"]).reshape(-1, 4), expected.boxes, atol=1e-3)


def test_detect_mtcnn_writes_the_same_layout(tmp_path):
    folder = tmp_path / "mtcnn"
    folder.mkdir()
    for name in ("pnet", "rnet", "onet"):
        shutil.copy(shared_file(f"weights/facenet-pytorch-2.6.0_mtcnn_{name}.pt"), folder / f"{name}.pt")
    image = shared_file("samples/scikit-image_astronaut.png")
    reference = json.loads(shared_file("reference/facenet-pytorch_mtcnn_samples.json").read_text())
    out = tmp_path / "out"
    assert main(["detect", str(image), "--model", "mtcnn", "--weights", str(folder), "--out", str(out)]) == 0
    record = json.loads((out / "scikit-image_astronaut.json").read_text())
    assert set(record) == {"image", "image_size", "boxes", "scores", "landmarks", "settings"}
    assert record["settings"]["model"] == "mtcnn" and record["settings"]["weights"] == str(folder)
    expected = reference["images"]["scikit-image_astronaut.png"]  # facenet-pytorch on the RGB image
    np.testing.assert_allclose(record["boxes"], expected["boxes"], atol=0.01)
    np.testing.assert_allclose(record["scores"], expected["scores"], atol=1e-3)
    np.testing.assert_allclose(record["landmarks"], expected["landmarks"], atol=0.5)
    assert cv2.imread(str(out / "scikit-image_astronaut.jpg")).shape == (512, 512, 3)


def test_detect_mtcnn_flag_errors(tmp_path, capsys):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((16, 16, 3), np.uint8))
    base = ["detect", str(image), "--model", "mtcnn", "--out", str(tmp_path / "out")]
    assert main(base) == 2
    assert "--model mtcnn needs --weights DIR" in capsys.readouterr().err
    for flags in (["--protocol", "original"], ["--nms-iou", "0.3"], ["--preset", "mobilenet0.25"]):
        assert main([*base, "--weights", str(tmp_path), *flags]) == 2
        assert f"{flags[0]}: RetinaFace options, they do not apply to --model mtcnn" in capsys.readouterr().err
    assert main([*base, "--weights", str(tmp_path)]) == 2
    assert "lacks pnet.pt, rnet.pt, onet.pt" in capsys.readouterr().err
    assert main([*base, "--weights", str(tmp_path / "none")]) == 2
    assert "MTCNN weights folder not found" in capsys.readouterr().err
