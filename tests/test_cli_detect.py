import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from retina.build import build_detector
from retina.checkpoint import save_checkpoint
from retina.cli import main
from retina.config import PRESETS, preset
from tests.conftest import shared_file
from tests.standin import MirrorFaces, scene


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
    from retina.synth.config import SYNTH_PRESETS
    from retina.synth.image import compose_image
    from retina.weights import DEFAULT_WEIGHTS

    # a SynthFace image (what the committed checkpoint was trained on): it finds faces there
    jpeg, meta = compose_image(SYNTH_PRESETS["tiny"], "val", 0, 0)
    image = tmp_path / "face.jpg"
    image.write_bytes(jpeg)
    assert main(["detect", str(image), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"note: no --weights given: using the committed checkpoint {DEFAULT_WEIGHTS.name} (trained on "
                   "synthetic faces)"]  # fmt: skip
    record = json.loads((tmp_path / "out" / "face.json").read_text())
    assert record["settings"]["weights"] == str(DEFAULT_WEIGHTS) and record["settings"]["model"] == "mobilenet0.25"
    expected = Detector.from_checkpoint(DEFAULT_WEIGHTS)(image, score_threshold=0.5)
    assert len(expected) >= 2
    np.testing.assert_allclose(np.array(record["boxes"]), expected.boxes, atol=1e-4)
    np.testing.assert_allclose(np.array(record["scores"]), expected.scores, atol=1e-6)
    np.testing.assert_allclose(np.array(record["landmarks"]), expected.landmarks, atol=1e-4)
    # and they are true faces: two detections overlap a true face (x y w h) by IoU > 0.5, with landmarks on it
    truth = np.array([f["box"] for f in meta["faces"]], float)
    truth[:, 2:] += truth[:, :2]
    iou = box_iou(torch.tensor(record["boxes"], dtype=torch.float64), torch.from_numpy(truth)).numpy()
    found = np.flatnonzero(iou.max(1) > 0.5)
    assert len(found) >= 2
    true_marks = np.array([f["landmarks"] for f in meta["faces"]])[iou[found].argmax(1)]
    error = np.linalg.norm(np.array(record["landmarks"])[found] - true_marks, axis=2).mean(1)
    assert np.all(error < 0.3 * (truth[iou[found].argmax(1), 3] - truth[iou[found].argmax(1), 1])), error


def _standin_detector(monkeypatch) -> None:
    """``Detector.from_checkpoint`` -> a Detector around the stand-in network of tests/standin.py."""
    from retina.api import Detector

    def from_checkpoint(cls, path, preset=None, device="cpu", **kwargs):
        return cls(MirrorFaces(), PRESETS["mobilenet0.25"], device=device, **kwargs)

    monkeypatch.setattr(Detector, "from_checkpoint", classmethod(from_checkpoint))


def test_detect_json_equals_the_known_detections_in_every_field(tmp_path, weights, monkeypatch):
    _standin_detector(monkeypatch)
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), scene(90, 160))
    out = tmp_path / "out"
    args = ["detect", str(image), "--weights", str(weights), "--out", str(out), "--protocol", "vga"]
    assert main([*args, "--score-threshold", "0.6", "--nms-iou", "0.3"]) == 0
    record = json.loads((out / "scene.json").read_text())
    assert set(record) == {"image", "image_size", "boxes", "scores", "landmarks", "settings"}
    assert record["image"] == str(image) and record["image_size"] == [160, 90]  # width, height
    # tests/standin.py's faces at fractions of the 160 x 90 image: x1 y1 x2 y2 boxes, (x, y) landmarks
    np.testing.assert_allclose(record["boxes"], [[16, 18, 64, 54], [88, 40.5, 120, 67.5]], atol=1e-4)
    np.testing.assert_allclose(record["scores"], [0.9, 0.75], atol=1e-6)
    expected = [[[28.8, 29.7], [51.2, 30.6], [40, 37.8], [32, 45], [48, 45.9]],
                [[96, 49.5], [112, 48.6], [105.6, 55.8], [97.6, 61.2], [110.4, 62.1]]]  # fmt: skip
    np.testing.assert_allclose(record["landmarks"], expected, atol=1e-4)
    assert record["settings"] == {"weights": str(weights), "model": "mobilenet0.25", "protocol": "vga",
                                  "score_threshold": 0.6, "nms_iou": 0.3, "top_k": 5000,
                                  "max_detections": 2000}  # fmt: skip
    # the score threshold applies: only the 0.9 face is above 0.8
    assert main([*args, "--score-threshold", "0.8"]) == 0
    assert json.loads((out / "scene.json").read_text())["scores"] == pytest.approx([0.9])


def test_detect_mtcnn_json_with_a_stand_in_cascade(tmp_path, monkeypatch):
    import retina.models.mtcnn as mtcnn_module
    from retina.models.mtcnn import MtcnnFaces

    faces = MtcnnFaces(np.array([[10, 20, 50, 70], [60, 5, 90, 40]], np.float32), np.array([0.98, 0.6], np.float32),
                       np.arange(20, dtype=np.float32).reshape(2, 5, 2))  # fmt: skip
    seen = []

    def load_mtcnn(folder, cfg=None, device="cpu"):
        assert cfg.channels == "bgr"  # the CLI reads BGR images
        return lambda image: seen.append(image.shape) or faces

    monkeypatch.setattr(mtcnn_module, "load_mtcnn", load_mtcnn)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((80, 100, 3), np.uint8))
    out = tmp_path / "out"
    args = ["detect", str(image), "--model", "mtcnn", "--weights", str(tmp_path), "--out", str(out)]
    assert main([*args, "--score-threshold", "0.7"]) == 0
    record = json.loads((out / "a.json").read_text())
    assert seen == [(80, 100, 3)] and record["image_size"] == [100, 80]
    assert record["boxes"] == [[10, 20, 50, 70]] and record["scores"] == [pytest.approx(0.98)]
    assert record["landmarks"] == [[[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]]
    assert record["settings"] == {"weights": str(tmp_path), "model": "mtcnn", "score_threshold": 0.7,
                                  "min_face_size": 20.0, "factor": 0.709, "thresholds": [0.6, 0.7, 0.7]}  # fmt: skip
    assert cv2.imread(str(out / "a.jpg")).shape == (80, 100, 3)


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
