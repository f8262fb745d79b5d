"""MTCNN (retina.models.mtcnn): hand-computed pieces of the cascade, weight loading, and agreement with
facenet-pytorch 2.6.0's detections on the sample photos (../shared/data/reference)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from retina.errors import CheckpointError, RetinaError
from retina.images import read_image
from retina.models.mtcnn import (
    WEIGHT_FILES,
    Mtcnn,
    MtcnnCfg,
    MtcnnFaces,
    ONet,
    PNet,
    RNet,
    _landmarks,
    crop_bounds,
    crop_resize,
    level_size,
    load_mtcnn,
    load_mtcnn_files,
    nms_min,
    pyramid_scales,
    regress,
    square,
    window_boxes,
)
from tests.conftest import shared_file

REFERENCE = "reference/facenet-pytorch_mtcnn_samples.json"
PHOTOS = [
    "scikit-image_astronaut.png",
    "biubug6_Pytorch_Retinaface_test.jpg",
    pytest.param("biubug6_Face-Detector-1MB_sample.jpg", marks=pytest.mark.slow),  # 312 faces, ~6-25 s
]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the cascade runs hundreds of tiny ops, and on a busy 2-core machine waking a second
    thread costs milliseconds per op (x20 on a whole image); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- pieces, golden values by hand ---------------------------------------------------------------------------


def test_pyramid_scales_and_level_sizes():
    scales = pyramid_scales(512, 512, 20, 0.709)
    # 12 / 20 = 0.6; short side 307.2 * 0.709**k >= 12 holds for k <= 9 (0.709**9 = 0.0455, 0.709**10 = 0.0322)
    assert len(scales) == 10
    assert scales[:3] == pytest.approx([0.6, 0.4254, 0.3016086], abs=1e-12)
    assert level_size(512, 512, 0.6) == (308, 308)  # int(307.2 + 1)
    assert level_size(512, 512, 0.4254) == (218, 218)  # int(217.8048 + 1)
    assert level_size(898, 1600, 0.6) == (539, 961)  # int(539.8), int(961.0)
    assert pyramid_scales(20, 300, 20, 0.709) == [0.6]  # short side exactly 12 px at the first scale
    assert pyramid_scales(19, 300, 20, 0.709) == []


def test_window_boxes_maps_cells_back_to_the_image():
    prob = torch.zeros(3, 4)
    prob[1, 2] = 0.9
    prob[2, 0] = 0.6  # equal to the threshold: kept (>=)
    prob[0, 3] = 0.59
    reg = torch.arange(48, dtype=torch.float32).reshape(4, 3, 4) / 100
    out = window_boxes(reg, prob, scale=0.5, threshold=0.6)
    # cell (x=2, y=1): floor((2*2 + 1) / 0.5) = 10, floor((2*1 + 1) / 0.5) = 6, floor((4 + 12) / 0.5) = 32, ...
    expected = torch.tensor(
        [
            [10, 6, 32, 28, 0.9, 0.06, 0.18, 0.30, 0.42],  # row-major order: (y=1, x=2) first
            [2, 10, 24, 32, 0.6, 0.08, 0.20, 0.32, 0.44],  # (y=2, x=0)
        ]
    )
    torch.testing.assert_close(out, expected)
    assert window_boxes(reg, prob, 0.5, 0.95).shape == (0, 9)


def test_regress_and_square():
    box = torch.tensor([[10.0, 20.0, 29.0, 59.0]])
    reg = torch.tensor([[0.1, -0.05, 0.2, 0.5]])
    # inclusive: w = 20, h = 40; exclusive (P-Net stage): w = 19, h = 39
    torch.testing.assert_close(regress(box, reg, inclusive=True), torch.tensor([[12.0, 18.0, 33.0, 79.0]]))
    torch.testing.assert_close(regress(box, reg, inclusive=False), torch.tensor([[11.9, 18.05, 32.8, 78.5]]))
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 20.0, 10.0]])
    torch.testing.assert_close(square(boxes), torch.tensor([[-5.0, 0.0, 15.0, 20.0], [0.0, -5.0, 20.0, 15.0]]))


def test_crop_bounds_follow_the_one_based_inclusive_convention():
    boxes = torch.tensor([[-3.7, 2.9, 10.2, 700.5], [5.0, 5.0, 9.99, 9.0], [120.0, 10.0, 130.0, 20.0]])
    bounds = crop_bounds(boxes, width=100, height=50)
    # 1: x from trunc(-3.7) = -3 -> 1 (0-based 0) to 10; y from 2 (0-based 1) to min(700, 50)
    # 2: 1-based pixels 5..9 -> slice 4:9; 3: starts right of the image -> empty (x1 <= x0)
    np.testing.assert_array_equal(bounds, [[0, 1, 10, 50], [4, 4, 9, 9], [119, 9, 100, 20]])


def test_nms_min_uses_the_smaller_area():
    boxes = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [2, 2, 5, 5]], np.float32)  # areas 100, 100, 16 (inclusive)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    # B vs A: 5 * 10 / 100 = 0.5; C inside A: 16 / 16 = 1 (its IoU with A would be only 0.16)
    np.testing.assert_array_equal(nms_min(boxes, scores, 0.7), [0, 1])
    np.testing.assert_array_equal(nms_min(boxes, scores, 0.4), [0])
    # C first: A, which contains C, goes (16 / 16); B keeps (one 4-pixel column of C: 4 / 16)
    np.testing.assert_array_equal(nms_min(boxes[[2, 1, 0]], scores, 0.7), [0, 1])
    tied = np.array([0.8, 0.8, 0.7], np.float32)
    np.testing.assert_array_equal(nms_min(boxes[[0, 0, 1]], tied, 0.7), [0, 2])  # exact tie: the earlier box
    assert nms_min(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.7).shape == (0,)


def test_crop_resize_equals_one_interpolation_per_crop():
    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).permute(2, 0, 1)[None].float()
    bounds = np.array([[0, 0, 10, 10], [5, 7, 15, 17], [3, 1, 50, 40], [20, 30, 24, 33], [0, 0, 24, 24]])
    out = crop_resize(pixels, bounds, 24)
    for crop, (x0, y0, x1, y1) in zip(out, bounds, strict=True):
        one = F.interpolate(pixels[..., y0:y1, x0:x1], size=(24, 24), mode="area")[0]
        assert torch.equal(crop, one)  # bit for bit
    assert torch.equal(out[4], pixels[0, :, :24, :24])  # a 24x24 crop passes through


def test_networks_output_shapes_and_probabilities():
    torch.manual_seed(0)
    reg, prob = PNet().eval()(torch.randn(2, 3, 12, 12))
    assert reg.shape == (2, 4, 1, 1) and prob.shape == (2, 2, 1, 1)
    reg, prob = RNet().eval()(torch.randn(3, 3, 24, 24))
    assert reg.shape == (3, 4) and prob.shape == (3, 2)
    reg, marks, prob = ONet().eval()(torch.randn(3, 3, 48, 48))
    assert reg.shape == (3, 4) and marks.shape == (3, 10) and prob.shape == (3, 2)
    torch.testing.assert_close(prob.sum(1), torch.ones(3))
    assert ONet().eval()(torch.zeros(0, 3, 48, 48))[2].shape == (0, 2)  # an empty batch runs


def test_config_checks():
    assert MtcnnCfg() == MtcnnCfg(20.0, 0.709, (0.6, 0.7, 0.7), (0.5, 0.7, 0.7, 0.7), "rgb")
    for bad in ({"factor": 1.0}, {"min_face_size": 0}, {"thresholds": (0.6, 0.7)}, {"channels": "hsv"}):
        with pytest.raises(RetinaError, match="MtcnnCfg"):
            MtcnnCfg(**bad)


def test_no_faces_and_bad_images():
    model = Mtcnn()  # random weights: the cascade must still run end to end
    for image in (np.zeros((10, 10, 3), np.uint8), np.full((64, 80, 3), 128, np.uint8)):
        faces = model(image)
        assert faces.boxes.shape[1:] == (4,) and faces.landmarks.shape[1:] == (5, 2) and len(faces.probs) == len(faces)
    with pytest.raises(RetinaError, match="HxWx3 uint8"):
        model(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(RetinaError, match="HxWx3 uint8"):
        model(np.zeros((32, 32), np.uint8))


def test_onet_landmarks_decoded_by_hand():
    # O-Net gives 5 x then 5 y, as fractions of the box's inclusive width and height, from its 1-based corner.
    box = torch.tensor([[10.0, 20.0, 29.0, 59.0]])  # inclusive: w = 20, h = 40
    marks = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.05, 0.25, 0.5, 0.75, 1.0]])
    expected = torch.tensor([[[11.0, 21.0], [13.0, 29.0], [15.0, 39.0], [17.0, 49.0], [19.0, 59.0]]])
    torch.testing.assert_close(_landmarks(box, marks), expected)


class _FixedONet(torch.nn.Module):
    """O-Net stand-in: the same outputs for every crop it is given, row k for crop k."""

    def __init__(self, reg, marks, prob):
        super().__init__()
        self.out = (torch.tensor(reg), torch.tensor(marks), torch.tensor(prob))
        self.crops = []

    def forward(self, x):
        self.crops.append(x.shape)
        return tuple(t[: len(x)] for t in self.out)


def test_output_stage_by_hand():
    model = Mtcnn()
    model.onet = _FixedONet([[0.1, -0.05, 0.2, 0.5], [0.0, 0.0, 0.0, 0.0]],
                            [[0.1, 0.2, 0.3, 0.4, 0.5, 0.05, 0.25, 0.5, 0.75, 1.0], [0.5] * 10],
                            [[0.2, 0.8], [0.3, 0.7]])  # fmt: skip
    pixels = torch.zeros(1, 3, 100, 120)
    boxes = torch.tensor([[10.0, 20.0, 29.0, 59.0], [50.0, 50.0, 70.0, 70.0]])
    out_boxes, probs, points = model._output(pixels, boxes)
    assert model.onet.crops == [(2, 3, 48, 48)]
    # the second face's probability 0.7 is not above the threshold 0.7; the first's box moves by the regression
    # (inclusive w 20, h 40: x1 + 2, y1 - 2, x2 + 4, y2 + 20), its landmarks come from the box before it moved
    torch.testing.assert_close(out_boxes, torch.tensor([[12.0, 18.0, 33.0, 79.0]]))
    torch.testing.assert_close(probs, torch.tensor([0.8]))
    torch.testing.assert_close(points, torch.tensor([[[11.0, 21.0], [13.0, 29.0], [15.0, 39.0], [17.0, 49.0],
                                                      [19.0, 59.0]]]))  # fmt: skip


def test_bgr_setting_reverses_the_channels():
    image = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    bgr = Mtcnn(MtcnnCfg(channels="bgr"))._tensor(image)
    assert torch.equal(bgr, Mtcnn()._tensor(np.ascontiguousarray(image[..., ::-1])))
    assert bgr.shape == (1, 3, 6, 7) and bgr[0, 0, 2, 3] == image[2, 3, 2]


# --- loading ---------------------------------------------------------------------------------------------------


def _save_random_folder(folder):
    folder.mkdir()
    model = Mtcnn()
    for name, net in zip(WEIGHT_FILES, (model.pnet, model.rnet, model.onet), strict=True):
        torch.save(net.state_dict(), folder / name)
    return model


def test_load_folder_round_trip_and_errors(tmp_path):
    folder = tmp_path / "mtcnn"
    saved = _save_random_folder(folder)
    loaded = load_mtcnn(folder)
    for key, value in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    with pytest.raises(CheckpointError, match="folder not found"):
        load_mtcnn(tmp_path / "nowhere")
    (folder / "onet.pt").unlink()
    with pytest.raises(CheckpointError, match=r"lacks onet\.pt"):
        load_mtcnn(folder)
    with pytest.raises(CheckpointError, match=r"not found: .*onet\.pt"):
        load_mtcnn_files(folder / "pnet.pt", folder / "rnet.pt", folder / "onet.pt")
    with pytest.raises(CheckpointError, match="does not match the model"):  # R-Net weights given as P-Net's
        load_mtcnn_files(folder / "rnet.pt", folder / "rnet.pt", folder / "rnet.pt")
    (folder / "onet.pt").write_text("not weights")
    with pytest.raises(CheckpointError, match="not a PyTorch weights file"):
        load_mtcnn(folder)
    torch.save([1, 2], folder / "onet.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_mtcnn(folder)


@pytest.fixture(scope="module")
def reference_mtcnn() -> Mtcnn:
    paths = [shared_file(f"weights/facenet-pytorch-2.6.0_mtcnn_{name}") for name in WEIGHT_FILES]
    return load_mtcnn_files(*paths)


def test_facenet_weight_files_load_strictly(reference_mtcnn):
    for name, net in zip(WEIGHT_FILES, (reference_mtcnn.pnet, reference_mtcnn.rnet, reference_mtcnn.onet), strict=True):
        state = torch.load(shared_file(f"weights/facenet-pytorch-2.6.0_mtcnn_{name}"), weights_only=True)
        assert list(state) == list(net.state_dict())


# --- agreement with facenet-pytorch ----------------------------------------------------------------------------


def _match(boxes, probs, other_boxes, other_probs) -> np.ndarray:
    """For each box: the index of an ``other`` box with IoU >= 0.99 and probability within 1e-3, else -1."""
    iou = box_iou(torch.as_tensor(boxes, dtype=torch.float64), torch.as_tensor(other_boxes, dtype=torch.float64))
    ok = (iou.numpy() >= 0.99) & (np.abs(np.subtract.outer(probs, other_probs)) <= 1e-3)
    return np.where(ok.any(1), ok.argmax(1), -1)


def _min_overlap(box, boxes) -> np.ndarray:
    """Intersection over the smaller area (inclusive pixels), one box against (N, 4)."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1, 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return iw * ih / np.minimum((box[2] - box[0] + 1) * (box[3] - box[1] + 1), area)


def _check_tie_swaps(ref: dict, ours: MtcnnFaces, candidates: MtcnnFaces, lost: np.ndarray, extra: np.ndarray):
    """Reference detections we lack must be exact ties we broke the other way (see nms_min), one for one."""
    assert len(lost) == len(extra) <= max(2, len(ref["scores"]) // 50), (lost, extra)
    ref_boxes, ref_probs = np.array(ref["boxes"]), np.array(ref["scores"])
    for i in lost:  # it is among our O-Net candidates, suppressed by one of ours with exactly its probability
        c = _match(ref_boxes[i : i + 1], ref_probs[i : i + 1], candidates.boxes, candidates.probs)[0]
        assert c >= 0, f"reference detection {i} is not among our candidates"
        twins = np.flatnonzero(ours.probs == candidates.probs[c])
        assert twins.size and (_min_overlap(candidates.boxes[c], ours.boxes[twins]) > 0.7).any()
    for k in extra:  # and the reference kept its twin instead (its scores are rounded to 6 decimals: +-5e-7)
        assert (np.abs(ref_probs[lost] - ours.probs[k]) <= 2e-6).any()


@pytest.mark.parametrize("photo", PHOTOS)
def test_reproduces_facenet_pytorch(reference_mtcnn, photo):
    ref = json.loads(shared_file(REFERENCE).read_text())["images"][photo]
    image = read_image(shared_file(f"samples/{photo}"))[..., ::-1]  # the reference ran on RGB
    assert list(image.shape[1::-1]) == ref["image_size"]
    candidates = reference_mtcnn.candidates(image)
    ours = candidates.take(nms_min(candidates.boxes, candidates.probs, 0.7))  # what detect() does, in one pass
    ref_boxes, ref_probs = np.array(ref["boxes"]), np.array(ref["scores"])
    forward = _match(ref_boxes, ref_probs, ours.boxes, ours.probs)
    backward = _match(ours.boxes, ours.probs, ref_boxes, ref_probs)
    found = forward >= 0
    assert np.abs(np.array(ref["landmarks"])[found] - ours.landmarks[forward[found]]).max() <= 0.5
    lost, extra = np.flatnonzero(~found), np.flatnonzero(backward < 0)
    if len(lost) or len(extra):
        _check_tie_swaps(ref, ours, candidates, lost, extra)
    # the order (module docstring): ours by probability, the reference's (select_largest=True) by box area
    area = (ref_boxes[:, 2] - ref_boxes[:, 0]) * (ref_boxes[:, 3] - ref_boxes[:, 1])
    assert (np.diff(ours.probs) <= 0).all() and (np.diff(area) <= 0).all()


def test_detect_is_candidates_then_min_nms(reference_mtcnn):
    image = read_image(shared_file("samples/scikit-image_astronaut.png"))[..., ::-1]
    faces, candidates = reference_mtcnn.detect(image), reference_mtcnn.candidates(image)
    assert len(candidates) > len(faces) == 1
    keep = nms_min(candidates.boxes, candidates.probs, 0.7)
    np.testing.assert_array_equal(faces.boxes, candidates.boxes[keep])
    np.testing.assert_array_equal(faces.probs, candidates.probs[keep])


def test_bgr_channels_setting_matches_rgb_input(reference_mtcnn):
    image = read_image(shared_file("samples/scikit-image_astronaut.png"))
    rgb = reference_mtcnn(np.ascontiguousarray(image[..., ::-1]))
    bgr = Mtcnn(MtcnnCfg(channels="bgr"))
    bgr.load_state_dict(reference_mtcnn.state_dict())
    faces = bgr(image)
    assert len(faces) == len(rgb) == 1
    np.testing.assert_array_equal(faces.boxes, rgb.boxes)
    np.testing.assert_array_equal(faces.landmarks, rgb.landmarks)
