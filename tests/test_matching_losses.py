import pytest
import torch

from retina.config import LossCfg
from retina.data.dataset import Target
from retina.losses import assign, losses, weighted_total
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
    cfg = LossCfg(w_cls=1.0, w_box=0.25, w_landmarks=0.1)
    fake = {"cls": torch.tensor(1.0), "box": torch.tensor(2.0), "landmarks": torch.tensor(3.0)}
    assert float(weighted_total(fake, cfg)) == pytest.approx(1.0 + 0.5 + 0.3)
