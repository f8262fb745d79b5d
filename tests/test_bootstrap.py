"""The image bootstrap of the APs (issue 22/25): hand-worked draws, a float64 reference loop, pairing, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from retina.data.widerface import SETTINGS, GroundTruth
from retina.eval import bootstrap
from retina.eval.widerface import evaluate


def _gt(boxes: list, events: int = 1) -> GroundTruth:
    """Every face counts in every setting; images spread over ``events`` events in order."""
    n = len(boxes)
    names = tuple(f"{k}--E" for k in range(events))
    images = tuple((names[k * events // n], f"im{k}") for k in range(n))
    arrays = tuple(np.array(b, dtype=np.float64).reshape(-1, 4) for b in boxes)
    return GroundTruth(names, images, arrays, {s: tuple(np.arange(len(b)) for b in arrays) for s in SETTINGS})


def test_hand_worked_two_images():
    """Image A: one face found (score 0.9); image B: one face missed, a false positive (score 0.8).

    Normalised scores: A's 1.0 passes all 1000 thresholds, B's 0.0 only the last (t = 0). Draw [A, A]: recall
    1 at precision 1, AP 1. Draw [B, B]: no true positive, AP 0. Draw [A, B]: recall 1/2 at precision 1 (then
    precision 1/2 at t = 0, same recall), AP 0.5. The whole set is the draw [A, B].
    """
    gt = _gt([[[10, 10, 20, 20]], [[50, 50, 20, 20]]])
    dets = [np.array([[10, 10, 20, 20, 0.9]]), np.array([[0, 0, 5, 5, 0.8]])]
    counts = bootstrap.image_counts(dets, gt)
    weights = np.array([[2, 0], [0, 2], [1, 1]])
    for setting in SETTINGS:
        np.testing.assert_array_equal(counts[setting].ap(weights), [1.0, 0.0, 0.5])
    assert evaluate(dets, gt).ap == {s: 0.5 for s in SETTINGS}


def test_a_draw_without_faces_is_left_out():
    gt = _gt([[[10, 10, 20, 20]], []])
    dets = [np.array([[10, 10, 20, 20, 0.9]]), np.array([[0, 0, 5, 5, 0.8]])]
    ap = bootstrap.image_counts(dets, gt)["hard"].ap(np.array([[0, 2], [1, 1]]))
    assert np.isnan(ap[0]) and ap[1] == 1.0
    result = bootstrap.interval(1.0, ap)
    assert result.draws == 1 and result.low == result.high == 1.0


def _random_set(rng: np.random.Generator, n: int) -> tuple[GroundTruth, list[np.ndarray]]:
    """Integer faces (half of each image's count in 'easy'); predictions near most faces plus clutter, scores in
    (0.1, 0.9)."""
    boxes, dets = [], []
    for _ in range(n):
        m, c = int(rng.integers(0, 5)), int(rng.integers(0, 4))
        faces = np.c_[rng.integers(0, 200, (m, 2)), rng.integers(4, 60, (m, 2))].astype(np.float64)
        near = faces[rng.uniform(size=m) < 0.7]
        pred = np.concatenate([near + rng.normal(0, 3, near.shape), np.c_[rng.uniform(0, 200, (c, 2)),
                                                                          rng.uniform(4, 60, (c, 2))]])  # fmt: skip
        boxes.append(faces)
        dets.append(np.c_[pred, rng.uniform(0.1, 0.9, len(pred))])
    gt = _gt(boxes, events=2)
    keep = {
        "easy": tuple(k[: len(k) // 2] for k in gt.keep["hard"]),
        "medium": gt.keep["hard"],
        "hard": gt.keep["hard"],
    }
    return GroundTruth(gt.events, gt.images, gt.boxes, keep), dets


def _reference_ap(gt: GroundTruth, dets: list[np.ndarray], draw: np.ndarray, arithmetic: str) -> dict[str, float]:
    """The evaluator itself on the drawn images, each copy a separate image, plus one image without faces whose
    two predictions carry the set's lowest and highest scores: the official normalisation then uses the whole
    set's min and max, as the bootstrap does (predictions on a face-less image count nowhere else)."""
    scores = np.concatenate([d[:, 4] for d in dets])
    events, images, boxes, keep, picked = [], [], [], {s: [] for s in SETTINGS}, []
    for event in gt.events:
        for k in np.flatnonzero(draw):
            if gt.images[k][0] != event:
                continue
            for copy in range(draw[k]):
                images.append((event, f"{gt.images[k][1]}#{copy}"))
                boxes.append(gt.boxes[k])
                picked.append(dets[k])
                for s in SETTINGS:
                    keep[s].append(gt.keep[s][k])
        events.append(event)
    anchor = np.array([[0, 0, 1, 1, scores.min()], [0, 0, 1, 1, scores.max()]], dtype=np.float64)
    events.append("anchor")
    images.append(("anchor", "anchor"))
    boxes.append(np.zeros((0, 4)))
    picked.append(anchor)
    for s in SETTINGS:
        keep[s].append(np.zeros(0, np.int64))
    used = [e for e in events if any(i[0] == e for i in images)]
    resampled = GroundTruth(tuple(used), tuple(images), tuple(boxes), {s: tuple(v) for s, v in keep.items()})
    return evaluate(picked, resampled, arithmetic=arithmetic, challenge=False).ap


@pytest.mark.parametrize("arithmetic", ["float64", "matlab"])
def test_every_draw_equals_the_evaluator_on_the_drawn_images(arithmetic):
    gt, dets = _random_set(np.random.default_rng(3), 12)
    counts = bootstrap.image_counts(dets, gt, arithmetic=arithmetic)
    weights = bootstrap.draws(len(gt.images), 20, seed=5)
    fast = {s: c.ap(weights) for s, c in counts.items()}
    for b, draw in enumerate(weights):
        if not all(draw @ counts[s].faces for s in SETTINGS):
            continue
        reference = _reference_ap(gt, dets, draw, arithmetic)
        for s in SETTINGS:
            assert fast[s][b] == reference[s], (b, s)  # the same counts, so the same bits


def test_all_images_once_gives_the_evaluation_ap_exactly():
    gt, dets = _random_set(np.random.default_rng(7), 40)
    ones = np.ones((1, len(gt.images)), dtype=np.int64)
    for arithmetic in ("matlab", "float64"):
        counts = bootstrap.image_counts(dets, gt, arithmetic=arithmetic)
        assert {s: c.ap(ones)[0] for s, c in counts.items()} == evaluate(dets, gt, arithmetic=arithmetic).ap


def test_draws_are_seeded_resamples_of_every_image():
    a, b = bootstrap.draws(30, 600, seed=1), bootstrap.draws(30, 600, seed=1)
    np.testing.assert_array_equal(a, b)
    assert (a.sum(axis=1) == 30).all() and not np.array_equal(a, bootstrap.draws(30, 600, seed=2))
    assert abs(a.mean() - 1.0) < 1e-12 and 0.9 < a.var() < 1.1  # multinomial(n, 1/n): variance ~ 1 - 1/n


def test_interval_is_the_percentile_interval():
    values = np.arange(101, dtype=np.float64)  # 0..100: the 2.5th and 97.5th percentiles are 2.5 and 97.5
    got = bootstrap.interval(50.0, values)
    assert (got.low, got.high) == pytest.approx((2.5, 97.5), abs=1e-12) and got.draws == 101
    assert got.std == pytest.approx(np.std(values, ddof=1)) and got.estimate == 50.0


def test_paired_difference_of_a_set_with_itself_is_exactly_zero_and_pairing_narrows():
    gt, dets = _random_set(np.random.default_rng(11), 60)
    same = bootstrap.paired_bootstrap(dets, dets, gt, 200, seed=0)
    for s in SETTINGS:
        d = same[s]["difference"]
        assert (d.estimate, d.low, d.high, d.std) == (0.0, 0.0, 0.0, 0.0)
    # B: A's predictions with slightly perturbed scores; the paired interval is narrower than A's own
    noisy = [np.c_[d[:, :4], np.clip(d[:, 4] + np.random.default_rng(1).normal(0, 0.02, len(d)), 0.1, 0.9)]
             for d in dets]  # fmt: skip
    paired = bootstrap.paired_bootstrap(dets, noisy, gt, 300, seed=0)
    alone = bootstrap.bootstrap(dets, gt, 300, seed=0)
    for s in SETTINGS:
        assert paired[s]["a"] == alone[s]  # the same draws
        diff = paired[s]["difference"]
        assert diff.estimate == pytest.approx(paired[s]["b"].estimate - paired[s]["a"].estimate)
        assert diff.high - diff.low < alone[s].high - alone[s].low


def test_hand_worked_paired_difference(monkeypatch):
    """Two images, each with one face. A finds image 0's face only (score 0.9; a false positive at 0.8 on image 1);
    B finds both faces (0.9, 0.8). Draws [0, 0], [1, 1], [0, 1] (as multiplicities [2, 0], [0, 2], [1, 1]):
    AP(A) = 1, 0, 0.5 (test_hand_worked_two_images); AP(B) = 1, 1, 1; B - A = 0, 1, 0.5. The percentile interval
    of {0, 0.5, 1} at 95%: numpy's linear interpolation puts the 2.5th percentile at 0.025 and the 97.5th at 0.975;
    the sample std is 0.5."""
    gt = _gt([[[10, 10, 20, 20]], [[50, 50, 20, 20]]])
    a = [np.array([[10, 10, 20, 20, 0.9]]), np.array([[0, 0, 5, 5, 0.8]])]
    b = [np.array([[10, 10, 20, 20, 0.9]]), np.array([[50, 50, 20, 20, 0.8]])]
    monkeypatch.setattr(bootstrap, "draws", lambda n_images, n, seed: np.array([[2, 0], [0, 2], [1, 1]]))
    out = bootstrap.paired_bootstrap(a, b, gt, n=3)
    for s in SETTINGS:
        diff = out[s]["difference"]
        assert (out[s]["a"].estimate, out[s]["b"].estimate, diff.estimate) == (0.5, 1.0, 0.5)
        assert (diff.low, diff.high) == pytest.approx((0.025, 0.975), abs=1e-12)
        assert diff.std == pytest.approx(0.5) and diff.draws == 3


def test_percentile_interval_against_a_float64_reference():
    """``interval`` against a sorted-list reference of the linear-interpolation percentile, in float64."""
    values = np.random.default_rng(4).normal(size=997)

    def percentile(q: float) -> float:
        ordered = sorted(float(v) for v in values)
        position = q / 100 * (len(ordered) - 1)
        low = int(position)
        return ordered[low] + (position - low) * (ordered[min(low + 1, len(ordered) - 1)] - ordered[low])

    got = bootstrap.interval(0.0, values, level=0.9)
    assert (got.low, got.high) == pytest.approx((percentile(5.0), percentile(95.0)), rel=1e-12, abs=1e-15)
