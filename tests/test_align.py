"""5-point similarity alignment (retina.verify.align): Umeyama's estimate against exact and float64 references."""

import math

import cv2
import numpy as np
import pytest
from scipy.optimize import least_squares

from retina.errors import RetinaError
from retina.verify.align import ARCFACE_112, align_face, center_crop, similarity_transform


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_recovers_a_known_similarity_exactly():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    for params in [(1.7, 0.3, 5.0, -3.0), (0.25, -2.9, 100.0, 40.0), (1.0, 0.0, 0.0, 0.0), (3.0, math.pi, 0.5, 0.5)]:
        truth = _similarity(*params)
        np.testing.assert_allclose(similarity_transform(src, _apply(truth, src)), truth, rtol=0, atol=1e-12)


def test_template_onto_itself_is_the_identity():
    np.testing.assert_allclose(similarity_transform(ARCFACE_112, ARCFACE_112), np.eye(2, 3), rtol=0, atol=1e-13)


def test_a_mirrored_target_still_gives_a_proper_rotation():
    rng = np.random.default_rng(1)
    src = rng.uniform(-50, 50, (5, 2))
    dst = src * [-1.0, 1.0]  # a reflection: the best orthogonal fit would be det -1
    matrix = similarity_transform(src, dst)
    linear = matrix[:, :2]
    assert np.linalg.det(linear) > 0
    scale = math.sqrt(np.linalg.det(linear))
    np.testing.assert_allclose(linear.T @ linear, scale**2 * np.eye(2), atol=1e-12)  # rotation times scale


def _cost(matrix: np.ndarray, src: np.ndarray, dst: np.ndarray) -> float:
    return float(((_apply(matrix, src) - dst) ** 2).sum())


def _from_params(p: np.ndarray) -> np.ndarray:
    """A similarity without reflection, parametrised linearly: [[a, -b, tx], [b, a, ty]]."""
    return np.array([[p[0], -p[1], p[2]], [p[1], p[0], p[3]]])


@pytest.mark.parametrize("seed", range(6))
def test_least_squares_optimal_against_float64_references(seed):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 300, (5, 2))
    truth = _similarity(rng.uniform(0.2, 2.0), rng.uniform(-math.pi, math.pi), *rng.uniform(-50, 50, 2))
    dst = _apply(truth, src) + rng.normal(0, 3.0, (5, 2))  # noisy: no exact fit
    if seed % 2:
        dst[:, 0] *= -1  # mirrored: the best fit must still be a proper similarity
    residuals = lambda p: (_apply(_from_params(p), src) - dst).ravel()  # noqa: E731
    fit = least_squares(residuals, np.zeros(4), method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    # the same problem is linear in (a, b, tx, ty): an exact float64 least-squares solve
    rows = np.concatenate([np.stack([src[:, 0], -src[:, 1], np.ones(5), np.zeros(5)], 1),
                           np.stack([src[:, 1], src[:, 0], np.zeros(5), np.ones(5)], 1)])  # fmt: skip
    exact = np.linalg.lstsq(rows, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)[0]
    ours = similarity_transform(src, dst)
    np.testing.assert_allclose(ours, _from_params(exact), rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours, _from_params(fit.x), rtol=1e-7, atol=1e-9)  # iterative: looser
    assert _cost(ours, src, dst) <= _cost(_from_params(fit.x), src, dst) * (1 + 1e-12)
    params = np.array([ours[0, 0], ours[1, 0], ours[0, 2], ours[1, 2]])
    for step in np.concatenate([np.eye(4), -np.eye(4)]) * 1e-4:  # any small step away costs more
        assert _cost(_from_params(params + step), src, dst) > _cost(ours, src, dst)


def test_degenerate_and_malformed_points_are_errors():
    with pytest.raises(RetinaError, match="coincide"):
        similarity_transform(np.full((5, 2), 7.0), ARCFACE_112)
    with pytest.raises(RetinaError, match=r"\(N, 2\)"):
        similarity_transform(np.zeros((5, 3)), ARCFACE_112)
    with pytest.raises(RetinaError, match="NaN"):
        similarity_transform(np.full((5, 2), np.nan), ARCFACE_112)
    with pytest.raises(RetinaError, match="pair up"):
        similarity_transform(ARCFACE_112[:4], ARCFACE_112)


def test_align_face_on_the_template_is_a_copy_and_follows_a_shift():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(align_face(image, ARCFACE_112), image)
    big = rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)
    out = align_face(big, ARCFACE_112 + np.array([30.0, 17.0]))  # whole-pixel translation: an exact crop
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, big[17:129, 30:142])


def test_align_face_undoes_a_rotation_and_scale():
    canvas = np.zeros((112, 112, 3), np.uint8)
    for x, y in ARCFACE_112:
        canvas[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2] = 255
    forward = _similarity(1.5, 0.4, 60.0, 10.0)  # template -> a bigger, rotated photo
    photo = cv2.warpAffine(canvas, forward, (300, 300), flags=cv2.INTER_LINEAR)
    aligned = align_face(photo, _apply(forward, ARCFACE_112))
    for x, y in ARCFACE_112:  # every landmark dot is back on its template point
        assert aligned[round(y), round(x)].min() > 150
    assert align_face(photo, _apply(forward, ARCFACE_112), size=224).shape == (224, 224, 3)


def test_align_face_input_checks():
    with pytest.raises(RetinaError, match=r"\(5, 2\)"):
        align_face(np.zeros((50, 50, 3), np.uint8), ARCFACE_112[:4])
    with pytest.raises(RetinaError, match="HxWx3 uint8"):
        align_face(np.zeros((50, 50), np.uint8), ARCFACE_112)
    with pytest.raises(RetinaError, match="size"):
        align_face(np.zeros((50, 50, 3), np.uint8), ARCFACE_112, size=0)


def test_center_crop_square_around_the_box_centre():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    # box 112 wide, 100 high, centre (66, 70): the square is x 10..122, y 14..126
    np.testing.assert_array_equal(center_crop(image, [10, 20, 122, 120]), image[14:126, 10:122])
    # box 224 x 150, centre (152, 125): the square x 40..264, y 13..237 shrinks 2:1 by area averaging
    out = center_crop(image, [40, 50, 264, 200], size=112)
    expected = image[13:237, 40:264].reshape(112, 2, 112, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out, expected, atol=0.51)


def test_center_crop_pads_with_black_outside_the_image():
    image = np.full((50, 60, 3), 200, np.uint8)
    out = center_crop(image, [-10, -10, 10, 10], size=20)  # the square -10..10: only its lower right is inside
    assert (out[10:, 10:] == 200).all() and (out[:10] == 0).all() and (out[:, :10] == 0).all()
    with pytest.raises(RetinaError, match="box"):
        center_crop(image, [5, 5, 5, 9])


def test_two_points_define_a_similarity_and_float32_input_is_computed_in_float64():
    truth = _similarity(1.3, 0.7, 4.0, -2.0)
    two = np.array([[10.0, 20.0], [50.0, 35.0]])
    np.testing.assert_allclose(similarity_transform(two, _apply(truth, two)), truth, rtol=0, atol=1e-12)
    src = np.random.default_rng(4).uniform(0, 300, (5, 2)).astype(np.float32)  # e.g. detections' landmarks
    dst = ARCFACE_112.astype(np.float32)
    exact = similarity_transform(src.astype(np.float64), dst.astype(np.float64))
    np.testing.assert_allclose(similarity_transform(src, dst), exact, rtol=0, atol=1e-13)


@pytest.mark.parametrize("centre", [0.0, 1000.0])
def test_points_coincide_below_1e_9_of_their_scale(centre):
    # spread d: variance 0.8 d^2 against (1e-9 * max(1, |coordinates|))^2
    scale = max(1.0, centre + 1e-3)
    cross = np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [0, 0]], np.float64)
    similarity_transform(centre + 2e-9 * scale * cross, ARCFACE_112)  # variance 3.2x the bound: defined
    with pytest.raises(RetinaError, match=r"^src: the points coincide"):
        similarity_transform(centre + 1e-9 * scale * cross, ARCFACE_112)  # 0.8x: not


def test_errors_name_the_points_and_the_image():
    with pytest.raises(RetinaError, match=r"^dst: expected \(N, 2\) points"):
        similarity_transform(ARCFACE_112, np.zeros((5, 3)))
    with pytest.raises(RetinaError, match=r"^src: points have NaN"):
        similarity_transform(np.full((5, 2), np.nan), ARCFACE_112)
    with pytest.raises(RetinaError, match=r"^dst: points have NaN"):
        similarity_transform(ARCFACE_112, np.full((5, 2), np.inf))
    with pytest.raises(RetinaError, match=r"^landmarks: points have NaN"):
        align_face(np.zeros((50, 50, 3), np.uint8), np.full((5, 2), np.nan))
    with pytest.raises(RetinaError, match=r"^expected an HxWx3 uint8 image, got float32 \(50, 50, 3\)$"):
        align_face(np.zeros((50, 50, 3), np.float32), ARCFACE_112)
    with pytest.raises(RetinaError, match=r"^expected an HxWx3 uint8 image, got list$"):
        center_crop([[0]], [0, 0, 1, 1])


def test_align_face_at_224_and_black_outside_the_image():
    canvas = np.zeros((224, 224, 3), np.uint8)
    for x, y in ARCFACE_112 * 2:
        canvas[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3] = 255
    forward = _similarity(0.8, -0.3, 40.0, 90.0)
    photo = cv2.warpAffine(canvas, forward, (300, 300), flags=cv2.INTER_LINEAR)
    aligned = align_face(photo, _apply(forward, ARCFACE_112 * 2), size=224)
    for x, y in ARCFACE_112 * 2:  # the template scaled by 224 / 112
        assert aligned[round(y), round(x)].min() > 150
    bright = np.full((100, 100, 3), 255, np.uint8)
    out = align_face(bright, ARCFACE_112 - 60)  # the face's upper left part lies outside the image
    assert (out[:50, :50] == 0).all() and (out[-20:, -20:] == 255).all()
    assert align_face(bright, ARCFACE_112, size=1).shape == (1, 1, 3)


def test_center_crop_box_forms_and_degenerate_boxes():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    # a tall box (50 x 100, centre (35, 70)): the square of side 100 is x -15..85 (black left of 0), y 20..120
    out = center_crop(image, np.array([[10.0, 20, 60, 120]]), size=100)  # (1, 4) is fine too
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 15:], image[20:120, 0:85])
    assert (out[:, :15] == 0).all()
    # a box with x2 below y1 is still a box
    np.testing.assert_array_equal(center_crop(image, [0, 50, 40, 60], size=40), image[35:75, 0:40])
    # a 1 x 1 box: one pixel, spread over the whole output
    assert (center_crop(image, [10, 10, 11, 11], size=4) == image[10, 10]).all()
    for bad in ([5, 5, 5, 9], [5, 5, 9, 5], [0, 0, np.nan, 10], [1, 2, 3]):
        with pytest.raises(RetinaError, match=r"^box: expected finite x1 y1 x2 y2"):
            center_crop(image, bad)


def test_center_crop_shrinks_by_area_and_enlarges_bilinearly():
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    out = center_crop(image, [10, 10, 346, 346], size=112)  # 336 -> 112: each pixel a 3 x 3 block's mean
    expected = image[10:346, 10:346].reshape(112, 3, 112, 3, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out, expected, atol=0.51)
    small = center_crop(image, [20, 30, 48, 58], size=56)  # 28 -> 56
    np.testing.assert_array_equal(small, cv2.resize(image[30:58, 20:48], (56, 56), interpolation=cv2.INTER_LINEAR))
