import numpy as np

from retina.config import AugmentCfg
from retina.data.transforms import Sample, augment, hflip, random_square_crop, resize


def _sample(h=100, w=200):
    image = np.arange(h * w * 3, dtype=np.uint32).reshape(h, w, 3).astype(np.uint8)
    boxes = np.array([[10, 10, 30, 40], [150, 50, 190, 90]], np.float32)
    landmarks = np.stack([np.stack([np.linspace(b[0], b[2], 5), np.linspace(b[1], b[3], 5)], -1) for b in boxes])
    return Sample(image, boxes, landmarks.astype(np.float32), np.array([True, False]))


def test_flip_twice_is_identity_and_swaps_landmarks():
    s = _sample()
    f = hflip(s)
    # x -> W - x, with left/right landmarks swapped
    np.testing.assert_allclose(f.boxes[0], [170, 10, 190, 40])
    np.testing.assert_allclose(f.landmarks[0, 0], [200 - s.landmarks[0, 1, 0], s.landmarks[0, 1, 1]])
    np.testing.assert_allclose(f.landmarks[0, 2], [200 - s.landmarks[0, 2, 0], s.landmarks[0, 2, 1]])
    ff = hflip(f)
    np.testing.assert_array_equal(ff.image, s.image)
    np.testing.assert_allclose(ff.boxes, s.boxes)
    np.testing.assert_allclose(ff.landmarks, s.landmarks)


def test_crop_keeps_exactly_the_faces_whose_centre_is_inside():
    s = _sample()
    for seed in range(30):
        c = random_square_crop(s, (0.3, 1.0), np.random.default_rng(seed))
        side = c.image.shape[0]
        assert c.image.shape[:2] == (side, side)
        assert len(c.boxes) >= 1  # a crop without faces is never chosen when faces exist
        assert np.all(c.boxes >= 0) and np.all(c.boxes <= side)
        # the kept faces' content is where the boxes say: the crop is a translation of the original
        centre = (c.boxes[:, :2] + c.boxes[:, 2:]) / 2
        assert np.all((centre > 0) & (centre < side))


def test_resize_scales_and_drops_tiny_faces():
    s = _sample()
    r = resize(s, 50, min_face=5.0)
    # sx = 0.25, sy = 0.5: face 0 becomes 5 x 15 (kept), face 1 becomes 10 x 20 (kept)
    np.testing.assert_allclose(r.boxes[0], [2.5, 5, 7.5, 20])
    r = resize(s, 50, min_face=6.0)
    assert len(r.boxes) == 1 and not r.has_landmarks[0]


def test_augment_is_a_pure_function_of_the_seed():
    s = _sample()
    cfg = AugmentCfg(image_size=64)
    a = augment(s, cfg, np.random.default_rng([1, 2, 3]))
    b = augment(s, cfg, np.random.default_rng([1, 2, 3]))
    assert a.image.shape == (64, 64, 3)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_image_without_faces():
    s = Sample(np.zeros((40, 60, 3), np.uint8), np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32),
               np.zeros(0, bool))  # fmt: skip
    out = augment(s, AugmentCfg(image_size=32), np.random.default_rng(0))
    assert out.image.shape == (32, 32, 3) and out.boxes.shape == (0, 4)


def test_flip_maps_all_five_landmarks_of_a_frontal_face():
    # A frontal face in a 100 px wide image: left eye, right eye, nose, left and right mouth corner
    # (left = smaller x). Its mirror image is again a frontal face, so "left" is again the smaller x.
    marks = np.array([[[20, 30], [40, 31], [30, 40], [22, 50], [38, 52]]], np.float32)
    s = Sample(np.zeros((80, 100, 3), np.uint8), np.array([[15, 20, 45, 60]], np.float32), marks, np.array([True]))
    f = hflip(s)
    np.testing.assert_array_equal(f.boxes, [[55, 20, 85, 60]])
    expected = [[60, 31], [80, 30], [70, 40], [62, 52], [78, 50]]  # 100 - x, left and right swapped
    np.testing.assert_array_equal(f.landmarks[0], expected)
    assert f.landmarks[0, 0, 0] < f.landmarks[0, 1, 0] and f.landmarks[0, 3, 0] < f.landmarks[0, 4, 0]
    assert f.has_landmarks.tolist() == [True]


def test_resize_maps_landmarks_with_separate_x_and_y_scales():
    s = _sample()  # 100 x 200 (H x W)
    r = resize(s, 50, min_face=1.0)  # sx = 0.25, sy = 0.5
    np.testing.assert_allclose(r.landmarks, s.landmarks * np.array([0.25, 0.5], np.float32))
    np.testing.assert_allclose(r.boxes[1], [37.5, 25, 47.5, 45])
