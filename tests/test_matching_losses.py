import math

import pytest
import torch

from retina.config import LossCfg
from retina.data.dataset import Target
from retina.losses import Assigned, assign, losses, weighted_total
from retina.matching import IGNORED, NEGATIVE, POSITIVE, hard_negatives, match
from retina.models.detector import Predictions
from retina.priors import make_priors

V = (0.1, 0.2)


def test_match_golden():
    # priors (cx, cy, w, h): IoUs with the face [0, 0, 10, 10] are 1, 0.4 (w 10 h 4 inside), 0.25, 0
    priors = torch.tensor([[5, 5, 10, 10], [5, 5, 10, 4], [5, 5, 20, 20], [50, 50, 10, 10]], dtype=torch.float64)
    face = torch.tensor([[0, 0, 10, 10]], dtype=torch.float64)
    labels, idx = match(face, priors, LossCfg(pos_iou=0.5, neg_iou=0.3))
    assert labels.tolist() == [POSITIVE, IGNORED, NEGATIVE, NEGATIVE]
    assert idx[0] == 0
    # a face whose best IoU is 0.25 is still matched to its best anchor (forced positive)
    labels, _ = match(torch.tensor([[-5, -5, 15, 15]], dtype=torch.float64), priors[2:], LossCfg())
    assert labels.tolist() == [POSITIVE, NEGATIVE]
    labels, _ = match(face[:0], priors, LossCfg())
    assert labels.tolist() == [NEGATIVE] * 4


def test_biubug6_min_best_iou_drops_poorly_covered_faces():
    priors = torch.tensor([[5, 5, 20, 20], [50, 50, 10, 10]], dtype=torch.float64)  # IoU 0.25 with the face
    face = torch.tensor([[0, 0, 10, 10]], dtype=torch.float64)
    labels, _ = match(face, priors, LossCfg(pos_iou=0.35, neg_iou=0.35, min_best_iou=0.3))
    assert labels.tolist() == [NEGATIVE, NEGATIVE]


def test_hard_negatives_golden():
    loss = torch.tensor([[0.9, 0.1, 0.8, 0.7, 0.5, 0.2], [0.3, 0.2, 0.1, 0.6, 0.5, 0.4]])
    labels = torch.tensor([[POSITIVE, NEGATIVE, NEGATIVE, IGNORED, NEGATIVE, NEGATIVE], [NEGATIVE] * 6])
    mask = hard_negatives(loss, labels, ratio=2)
    # image 0: 1 positive -> the 2 hardest negatives (0.8, 0.5); image 1: no face -> 2 negatives (0.6, 0.5)
    assert mask.tolist() == [[False, False, True, False, True, False], [False, False, False, True, True, False]]


def test_thresholds_are_inclusive():
    face = torch.tensor([[0, 0, 10, 10]], dtype=torch.float64)
    # IoUs with the face exactly 0.5 (10 x 5 inside it) and 0.3 (10 x 3 inside it), and 0
    priors = torch.tensor([[5, 2.5, 10, 5], [5, 1.5, 10, 3], [50, 50, 10, 10]], dtype=torch.float64)
    labels, _ = match(face, priors, LossCfg(pos_iou=0.5, neg_iou=0.3, force_best_anchor=False))
    assert labels.tolist() == [POSITIVE, IGNORED, NEGATIVE]
    # a face whose best IoU equals min_best_iou (0.25) still gets its best anchor
    priors = torch.tensor([[5, 5, 20, 20], [50, 50, 10, 10]], dtype=torch.float64)
    labels, _ = match(face, priors, LossCfg(pos_iou=0.35, neg_iou=0.35, min_best_iou=0.25))
    assert labels.tolist() == [POSITIVE, NEGATIVE]


def test_match_outputs_are_int64_on_the_priors_device():
    for faces in (torch.tensor([[0.0, 0, 10, 10]]), torch.zeros(0, 4)):
        labels, index = match(faces, torch.tensor([[5.0, 5, 10, 10], [50, 50, 10, 10]]), LossCfg())
        assert labels.dtype == index.dtype == torch.long
    # the "meta" device stands in for a GPU (an image without faces needs no data-dependent step)
    labels, index = match(torch.zeros(0, 4, device="meta"), torch.zeros(3, 4, device="meta"), LossCfg())
    assert labels.device.type == index.device.type == "meta"
    mask = hard_negatives(torch.zeros(2, 5, device="meta"), torch.zeros(2, 5, dtype=torch.long, device="meta"), 3.0)
    assert mask.device.type == "meta"


def test_hard_negatives_takes_at_most_all_anchors_but_one():
    # As biubug6: at most A - 1 negatives per image, here the 3 hardest of 4 (ratio 10, no positives).
    loss = torch.tensor([[0.4, 0.1, 0.3, 0.2]])
    mask = hard_negatives(loss, torch.tensor([[NEGATIVE] * 4]), ratio=10)
    assert mask.tolist() == [[True, False, True, True]]


def _random_predictions(a: int, b: int, seed: int = 0) -> Predictions:
    g = torch.Generator().manual_seed(seed)
    return Predictions(
        torch.randn(b, a, 2, generator=g, requires_grad=True),
        torch.randn(b, a, 4, generator=g, requires_grad=True),
        torch.randn(b, a, 10, generator=g, requires_grad=True),
    )


def _faces(n: int, size: int, seed: int = 0) -> Target:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * (size - 12)
    wh = torch.rand(n, 2, generator=g) * 10 + 2
    boxes = torch.cat([xy, xy + wh], 1)
    lmk = xy[:, None] + torch.rand(n, 5, 2, generator=g) * wh[:, None]
    return Target(boxes, lmk, torch.arange(n) % 2 == 0)


def test_losses_finite_for_no_faces_and_hundreds_of_faces():
    priors = make_priors((128, 128), (8, 16, 32), ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0)))
    targets = [_faces(0, 128), _faces(400, 128, seed=1)]
    assigned = assign(targets, priors, V, LossCfg())
    assert (assigned.labels[0] == POSITIVE).sum() == 0 and (assigned.labels[1] == POSITIVE).sum() > 100
    pred = _random_predictions(len(priors), 2)
    parts = losses(pred, assigned, LossCfg(), assigned.num_positive, assigned.num_landmarks)
    assert set(parts) == {"cls", "box", "landmarks"}
    total = weighted_total(parts, LossCfg())
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(p.grad).all() for p in pred)
    only_empty = assign(targets[:1], priors, V, LossCfg())
    parts = losses(_random_predictions(len(priors), 1), only_empty, LossCfg(), only_empty.num_positive,
                   only_empty.num_landmarks)  # fmt: skip
    assert parts["box"] == 0 and parts["landmarks"] == 0 and torch.isfinite(parts["cls"]) and parts["cls"] > 0


def test_loss_is_zero_for_perfect_regression_and_weights_apply_once():
    priors = make_priors((64, 64), (8, 16, 32), ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0)))
    target = _faces(3, 64, seed=2)
    assigned = assign([target], priors, V, LossCfg())
    pred = Predictions(torch.zeros(1, len(priors), 2), assigned.box_targets, assigned.landmark_targets)
    parts = losses(pred, assigned, LossCfg(), assigned.num_positive, assigned.num_landmarks)
    assert float(parts["box"]) == 0 and float(parts["landmarks"]) == 0
    cfg = LossCfg(w_cls=1.0, w_box=0.25, w_landmarks=0.1, w_pixel=0.5)
    fake = {"cls": torch.tensor(2.0), "box": torch.tensor(2.0), "landmarks": torch.tensor(3.0)}
    assert float(weighted_total(fake, cfg)) == pytest.approx(2.0 + 0.5 + 0.3)
    fake["pixel"] = torch.tensor(4.0)  # the dense branch's pixel loss, when the model has one
    assert float(weighted_total(fake, cfg)) == pytest.approx(2.0 + 0.5 + 0.3 + 2.0)


# --- losses by value: hand-worked on a few anchors ---------------------------------------------------------


def test_assign_golden_with_a_face_without_landmarks_and_an_image_without_faces():
    priors = torch.tensor([[5, 5, 10, 10], [25, 5, 10, 10], [50, 50, 10, 10]], dtype=torch.float64)
    marks = [[3, 4], [7, 4], [5, 6], [3, 8], [7, 8]]
    # face 0 sits exactly on prior 0; face 1 (12 x 8, centre (25, 5), IoU 80 / 116 with prior 1) has no landmarks
    faces = Target(torch.tensor([[0.0, 0, 10, 10], [19, 1, 31, 9]]), torch.tensor([marks, [[0, 0]] * 5]).float(),
                   torch.tensor([True, False]))  # fmt: skip
    empty = Target(torch.zeros(0, 4), torch.zeros(0, 5, 2), torch.zeros(0, dtype=torch.bool))
    a = assign([faces, empty], priors, V, LossCfg())
    assert a.labels.tolist() == [[POSITIVE, POSITIVE, NEGATIVE], [NEGATIVE] * 3]
    assert a.face_index[0, :2].tolist() == [0, 1] and a.face_index.dtype == torch.long
    assert a.landmark_mask.tolist() == [[True, False, False], [False] * 3]
    assert int(a.num_positive) == 2 and int(a.num_landmarks) == 1
    # box targets: (centre offset / (0.1 * 10), log(size / 10) / 0.2)
    expected_box = torch.tensor([0.0, 0, 0, 0, 0, 0, math.log(1.2) / 0.2, math.log(0.8) / 0.2], dtype=torch.float64)
    torch.testing.assert_close(a.box_targets[0, :2].flatten(), expected_box)
    # landmark targets of face 0 on prior 0: (x - 5) / 1, (y - 5) / 1
    expected = torch.tensor([-2, -1, 2, -1, 0, 1, -2, 3, 2, 3], dtype=torch.float64)
    torch.testing.assert_close(a.landmark_targets[0, 0], expected)
    assert not a.box_targets[1].any() and not a.landmark_targets[1].any()
    # an image without faces gets its targets on the priors' device ("meta" stands in for a GPU)
    on_meta = assign([empty], priors.to("meta"), V, LossCfg())
    assert all(getattr(on_meta, f).device.type == "meta" for f in ("labels", "box_targets", "landmark_mask"))
    # targets come out in the priors' dtype, whatever the faces' dtype
    a = assign([faces, empty], priors.float(), V, LossCfg())
    assert a.box_targets.dtype == a.landmark_targets.dtype == torch.float32
    double = Target(faces.boxes.double(), faces.landmarks.double(), faces.has_landmarks)
    b = assign([double, empty], priors.float(), V, LossCfg())
    assert b.box_targets.dtype == b.landmark_targets.dtype == torch.float32
    torch.testing.assert_close(b.landmark_targets, a.landmark_targets)


def _logits(face_minus_background: list[float]) -> list[list[float]]:
    return [[0.0, d] for d in face_minus_background]


def test_losses_hand_worked_values():
    # Image 0: anchors 0, 1 positive (face 0 with landmarks, face 1 without), 2-4 negative, 5 ignored.
    # Image 1: no face, every anchor negative. OHEM ratio 1: image 0 keeps its 2 hardest negatives,
    # image 1 (no positives) its 1 hardest.
    labels = torch.tensor([[POSITIVE, POSITIVE, NEGATIVE, NEGATIVE, NEGATIVE, IGNORED], [NEGATIVE] * 6])
    ln3, ln7 = math.log(3), math.log(7)
    # cross-entropy of logits (0, d): log(1 + e^d) for background, log(1 + e^-d) for a face
    logits = torch.tensor([_logits([ln3, 0, ln3, 0, -ln3, ln7]), _logits([ln7, 0, 0, 0, 0, 0])], dtype=torch.float64)
    # losses are computed in float32 (the predictions may be float16 under autocast)
    # per anchor: pos ln(4/3), pos ln 2, neg ln 4 (kept), neg ln 2 (kept), neg ln(4/3) (not hard enough),
    # ignored ln 8 (never counted); image 1: ln 8 (kept), five times ln 2 (not kept)
    cls = (math.log(4 / 3) + math.log(2) + math.log(4) + math.log(2) + math.log(8)) / 2
    box_targets = torch.zeros(2, 6, 4, dtype=torch.float64)
    box_pred = torch.full((2, 6, 4), 9.0, dtype=torch.float64)  # non-positive anchors: never counted
    box_pred[0, 0] = torch.tensor([0.5, -0.2, 2.0, 0.0])  # smooth L1: 0.125 + 0.02 + 1.5 + 0
    box_pred[0, 1] = torch.tensor([0.0, 0.0, -3.0, 0.4])  # 2.5 + 0.08
    box = (0.125 + 0.02 + 1.5 + 2.5 + 0.08) / 2
    lmk_targets = torch.ones(2, 6, 10, dtype=torch.float64)
    lmk_pred = torch.full((2, 6, 10), -5.0, dtype=torch.float64)  # anchor (0, 1) is positive but has no landmarks
    lmk_pred[0, 0] = 1 + torch.tensor([0.5, -1.5, 0, 0, 2, 0, 0, 0, 0, 0.1], dtype=torch.float64)
    pts = (0.125 + 1.0 + 1.5 + 0.005) / 1  # one positive with landmarks
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 0] = True
    assigned = Assigned(labels, box_targets, lmk_targets, mask, torch.zeros(2, 6, dtype=torch.long))
    pred = Predictions(logits, box_pred, lmk_pred)
    cfg = LossCfg(ohem_ratio=1.0)
    parts = losses(pred, assigned, cfg, assigned.num_positive, assigned.num_landmarks)
    assert int(assigned.num_positive) == 2 and int(assigned.num_landmarks) == 1
    assert float(parts["cls"]) == pytest.approx(cls, rel=1e-6)
    assert float(parts["box"]) == pytest.approx(box, rel=1e-6)
    assert float(parts["landmarks"]) == pytest.approx(pts, rel=1e-6)
    # global counts (all processes of a DDP step) divide each part; zero counts divide by 1
    parts = losses(pred, assigned, cfg, torch.tensor(4), torch.tensor(0))
    assert float(parts["cls"]) == pytest.approx(cls / 2) and float(parts["box"]) == pytest.approx(box / 2)
    assert float(parts["landmarks"]) == pytest.approx(pts)
    parts = losses(pred, assigned, cfg, torch.tensor(0), torch.tensor(3))
    assert float(parts["cls"]) == pytest.approx(cls * 2) and float(parts["box"]) == pytest.approx(box * 2)
    assert float(parts["landmarks"]) == pytest.approx(pts / 3)
    # OHEM 3:1 (the default): image 0 has only 3 negatives, all kept; image 1 keeps its 3 hardest
    parts = losses(pred, assigned, LossCfg(), assigned.num_positive, assigned.num_landmarks)
    every = math.log(4 / 3) + math.log(2) + math.log(4) + math.log(2) + math.log(4 / 3) + math.log(8) + 2 * math.log(2)
    assert float(parts["cls"]) == pytest.approx(every / 2, rel=1e-6)
