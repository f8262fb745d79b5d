import cv2
import numpy as np

from retina.config import AugmentCfg
from retina.data.transforms import Sample, augment, hflip, photometric, random_square_crop, resize


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


# --- the crop, resize and flip by value; photometric distortion with a scripted generator ----------------------


def _coordinates(h: int = 10, w: int = 20) -> np.ndarray:
    """An image whose pixel (y, x) holds (x, y, 0): a crop's first pixel tells where it was taken."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([xx, yy, np.zeros_like(xx)], -1).astype(np.uint8)


def _no_faces(image: np.ndarray) -> Sample:
    return Sample(image, np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, bool))


def test_crop_positions_cover_every_offset():
    seen = set()
    for seed in range(300):
        c = random_square_crop(_no_faces(_coordinates()), (0.5, 0.5), np.random.default_rng(seed))
        assert c.image.shape == (5, 5, 3)  # side 0.5 x the short side (10)
        x0, y0 = int(c.image[0, 0, 0]), int(c.image[0, 0, 1])
        np.testing.assert_array_equal(c.image, _coordinates()[y0 : y0 + 5, x0 : x0 + 5])
        seen.add((x0, y0))
    assert {x for x, _ in seen} == set(range(16)) and {y for _, y in seen} == set(range(6))  # edges included
    tiny = random_square_crop(_no_faces(_coordinates()), (0.01, 0.01), np.random.default_rng(0))
    assert tiny.image.shape == (1, 1, 3)  # at least one pixel


def test_crop_keeps_the_faces_whose_centre_is_strictly_inside_clipped_and_shifted():
    centres = np.array([[2, 2], [5, 5], [8, 3], [10, 5], [12, 7], [15, 2], [17, 8], [3, 8], [7, 7], [13, 4], [18, 5]])
    boxes = np.concatenate([centres - 2, centres + 2], 1).astype(np.float32)
    marks = (centres[:, None] + np.array([[-1, -1], [1, -1], [0, 0], [-1, 1], [1, 1]])).astype(np.float32)
    s = Sample(_coordinates(), boxes, marks, np.arange(len(centres)) % 3 > 0)
    edges = 0
    for seed in range(200):
        c = random_square_crop(s, (0.5, 0.5), np.random.default_rng(seed))
        side = c.image.shape[0]
        x0, y0 = int(c.image[0, 0, 0]), int(c.image[0, 0, 1])
        inside = (centres[:, 0] > x0) & (centres[:, 0] < x0 + side) & (centres[:, 1] > y0) & (centres[:, 1] < y0 + side)
        on_edge = np.isin(centres[:, 0], (x0, x0 + side)) | np.isin(centres[:, 1], (y0, y0 + side))
        edges += int(on_edge.any())
        assert side == 5 and inside.any()
        np.testing.assert_array_equal(c.boxes, np.clip(boxes[inside] - [x0, y0, x0, y0], 0, side))
        np.testing.assert_array_equal(c.landmarks, marks[inside] - [x0, y0])
        np.testing.assert_array_equal(c.has_landmarks, s.has_landmarks[inside])
        assert c.boxes.dtype == c.landmarks.dtype == np.float32
    assert edges > 20  # centres on a crop edge (not inside) were met often


def test_crop_never_loses_the_only_face():
    s = Sample(_coordinates(), np.array([[3, 3, 6, 6]], np.float32), np.full((1, 5, 2), 4.5, np.float32),
               np.array([True]))  # fmt: skip
    for seed in range(50):
        assert len(random_square_crop(s, (0.3, 0.5), np.random.default_rng(seed)).boxes) == 1


def test_crop_falls_back_to_the_padded_image_when_no_crop_keeps_a_face():
    # a face centred on the image's left edge is never strictly inside a crop
    s = Sample(_coordinates(), np.array([[-2, 3, 2, 7]], np.float32), np.full((1, 5, 2), 1.0, np.float32),
               np.array([True]))  # fmt: skip
    c = random_square_crop(s, (0.5, 0.5), np.random.default_rng(0))
    expected = np.zeros((20, 20, 3), np.uint8)
    expected[:10] = _coordinates()
    np.testing.assert_array_equal(c.image, expected)
    assert c.image.dtype == np.uint8
    np.testing.assert_array_equal(c.boxes, s.boxes)
    np.testing.assert_array_equal(c.landmarks, s.landmarks)
    np.testing.assert_array_equal(c.has_landmarks, s.has_landmarks)


def test_resize_drops_faces_too_short_and_keeps_float32():
    s = _sample()  # 100 x 200: sx = 0.25, sy = 0.5 at size 50
    wide = Sample(s.image, np.array([[10, 50, 40, 52]], np.float32), np.zeros((1, 5, 2), np.float32), np.array([True]))
    assert len(resize(wide, 50, min_face=5.0).boxes) == 0  # 7.5 wide but 1 tall
    r = resize(s, 50, min_face=1.0)
    assert r.boxes.dtype == r.landmarks.dtype == np.float32 and r.image.shape == (50, 50, 3)


def test_flip_mirrors_the_image():
    s = _sample()
    np.testing.assert_array_equal(hflip(s).image, s.image[:, ::-1])


def test_augment_flips_half_the_samples_and_never_when_off():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = 255  # bright left half: a flipped output has it on the right
    s = _no_faces(image)
    off = AugmentCfg(image_size=32, crop_scales=(1.0, 1.0), photometric=False, flip=False)
    on = AugmentCfg(image_size=32, crop_scales=(1.0, 1.0), photometric=False, flip=True)
    flipped = [augment(s, on, np.random.default_rng(seed)).image[0, 0, 0] == 0 for seed in range(40)]
    assert 5 < sum(flipped) < 35
    assert all(augment(s, off, np.random.default_rng(seed)).image[0, 0, 0] == 255 for seed in range(40))


class ScriptedRng:
    """Stands in for numpy's Generator in ``photometric``: ``random()`` returns the scripted values in order and
    ``uniform(lo, hi)`` returns ``lo + f (hi - lo)`` for the next scripted fraction ``f``."""

    def __init__(self, randoms, fractions=()):
        self.randoms, self.fractions = list(randoms), list(fractions)

    def random(self):
        return self.randoms.pop(0)

    def uniform(self, lo, hi):
        return lo + self.fractions.pop(0) * (hi - lo)


PIXELS = np.array([[[10, 100, 240], [60, 40, 240], [200, 200, 200]]], np.uint8)  # BGR


def _photometric(randoms, fractions=()):
    rng = ScriptedRng(randoms, fractions)
    out = photometric(PIXELS, rng)
    assert rng.randoms == [] and rng.fractions == []  # exactly the documented draws
    assert out.dtype == np.uint8 and out.shape == PIXELS.shape
    return out


def _hsv_change(image: np.ndarray, saturation: float = 1.0, hue: float = 0.0) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    hsv[..., 0] = (hsv[..., 0] + hue) % 180
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def test_photometric_draws_and_ranges_by_hand():
    # Draws: brightness? contrast first? [contrast? if first] saturation? hue? [contrast? if not first];
    # each step applies when its draw is below 0.5 (so 0.5 skips it).
    np.testing.assert_array_equal(_photometric([0.5] * 5), PIXELS)
    up = [[[42, 132, 255], [92, 72, 255], [232, 232, 232]]]  # + 32, clipped
    np.testing.assert_array_equal(_photometric([0.49, 0.5, 0.5, 0.5, 0.5], [1.0]), up)
    down = [[[0, 68, 208], [28, 8, 208], [168, 168, 168]]]  # - 32, clipped
    np.testing.assert_array_equal(_photometric([0.0, 0.5, 0.5, 0.5, 0.5], [0.0]), down)
    first = [[[15, 150, 255], [90, 60, 255], [255, 255, 255]]]  # x 1.5 before the colour steps
    np.testing.assert_array_equal(_photometric([0.5, 0.0, 0.0, 0.5, 0.5], [1.0]), first)
    np.testing.assert_array_equal(_photometric([0.5, 0.0, 0.5, 0.5, 0.5]), PIXELS)  # contrast first, not drawn
    half = [[[5, 50, 120], [30, 20, 120], [100, 100, 100]]]  # x 0.5
    np.testing.assert_array_equal(_photometric([0.5, 0.0, 0.0, 0.5, 0.5], [0.0]), half)
    np.testing.assert_array_equal(_photometric([0.5, 0.5, 0.5, 0.5, 0.0], [0.0]), half)  # after the colour steps
    np.testing.assert_array_equal(_photometric([0.5, 0.5, 0.5, 0.5, 0.0], [1.0]), first)


def test_photometric_saturation_and_hue_by_hand():
    np.testing.assert_array_equal(_photometric([0.5, 0.5, 0.0, 0.5, 0.5], [1.0]), _hsv_change(PIXELS, 1.5))
    np.testing.assert_array_equal(_photometric([0.5, 0.5, 0.0, 0.5, 0.5], [0.0]), _hsv_change(PIXELS, 0.5))
    # hue +-9 (OpenCV units of 2 degrees), wrapping around 180: the second pixel's hue is 177
    assert cv2.cvtColor(PIXELS, cv2.COLOR_BGR2HSV)[0, 1, 0] == 177
    np.testing.assert_array_equal(_photometric([0.5, 0.5, 0.5, 0.0, 0.5], [1.0]), _hsv_change(PIXELS, hue=9))
    np.testing.assert_array_equal(_photometric([0.5, 0.5, 0.5, 0.0, 0.5], [0.0]), _hsv_change(PIXELS, hue=-9))
    both = _hsv_change(PIXELS, 1.5, 9)
    np.testing.assert_array_equal(_photometric([0.5, 0.5, 0.0, 0.0, 0.5], [1.0, 1.0]), both)
    # the colour steps see pixels clipped to 0..255 after brightness and contrast
    darker = np.clip(PIXELS.astype(np.float32) - 32, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(_photometric([0.0, 0.5, 0.0, 0.5, 0.5], [0.0, 0.5]), _hsv_change(darker))
    brighter = np.clip(PIXELS.astype(np.float32) * 1.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(_photometric([0.5, 0.0, 0.0, 0.0, 0.5], [1.0, 0.5]), _hsv_change(brighter))
