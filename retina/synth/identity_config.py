"""SynthFace-ID configuration (``SynthIDCfg`` and its presets); the generator is :mod:`retina.synth.identities`.

Identity numbers: the train split holds identities ``0 .. train_identities - 1``, the test split
``TEST_IDENTITY_OFFSET .. TEST_IDENTITY_OFFSET + test_identities - 1``. Each identity's parameters come
from its own random stream keyed by that number, so the two splits never share a person (the config
refuses counts that would make the ranges meet).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from math import comb
from types import MappingProxyType

SYNTH_ID_VERSION = "1"  # bump whenever the same config and seed would give different files
SPLITS = ("train", "test")
TEST_IDENTITY_OFFSET = 50_000  # first test identity number; names are id_{identity:05d}
MAX_IDENTITY = 99_999  # five digits in the image names


@dataclass(frozen=True)
class SynthIDCfg:
    """Everything that shapes a SynthFace-ID split pair (the seed is separate). Angles in degrees,
    sizes in pixels; ``face_px_range`` is the height of the frontal face-zone box (chin to mid forehead)."""

    image_size: int = 250  # square images, as LFW's 250 x 250
    face_px_range: tuple[float, float] = (96.0, 116.0)  # uniform; drawn boxes: 10-90 % at ~98-122 px
    centre_jitter_px: float = 3.0  # std of the face box centre around the image centre (clipped at 2.5 std)
    max_yaw_deg: float = 60.0
    max_pitch_deg: float = 20.0
    max_roll_deg: float = 20.0
    tint_jitter: float = 0.15  # per image: std added to the identity's skin-tint coefficients
    skin_jitter: float = 0.03  # per image: relative std of the skin colour (make-up, tan, white balance)
    p_occluder: float = 0.1  # hand, mask, sunglasses or object over the face
    p_face_blur: float = 0.1  # defocus or motion blur of the face
    p_image_blur: float = 0.1  # camera shake or defocus of the whole image
    p_body: float = 0.95  # neck and shoulders below the face
    p_background_person: float = 0.3  # a stranger near the left or right border, behind the main face
    noise_sigma_range: tuple[float, float] = (0.0, 4.0)  # Gaussian pixel noise, 8-bit units
    jpeg_quality_range: tuple[int, int] = (70, 95)
    train_identities: int = 200
    train_images_per_identity: int = 20
    test_identities: int = 100
    test_images_per_identity: int = 20
    folds: int = 10  # pairs.txt: folds, each with pairs_per_fold matched and pairs_per_fold mismatched pairs
    pairs_per_fold: int = 300

    def __post_init__(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"SynthIDCfg: {msg}")

        if not 64 <= self.image_size <= 1024:
            raise bad(f"image_size {self.image_size} outside [64, 1024]")
        lo, hi = self.face_px_range
        if not 16 <= lo <= hi <= 0.6 * self.image_size:
            raise bad(f"face_px_range {self.face_px_range} must lie in [16, 0.6 * image_size]")
        for name in ("noise_sigma_range", "jpeg_quality_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise bad(f"{name} must satisfy 0 <= low <= high, got {(lo, hi)}")
        if not 1 <= self.jpeg_quality_range[0] <= self.jpeg_quality_range[1] <= 100:
            raise bad(f"jpeg_quality_range {self.jpeg_quality_range} outside [1, 100]")
        for name in ("max_yaw_deg", "max_pitch_deg", "max_roll_deg"):
            if not 0 <= getattr(self, name) <= 90:
                raise bad(f"{name} must be in [0, 90]")
        for name in ("centre_jitter_px", "tint_jitter", "skin_jitter"):
            if getattr(self, name) < 0:
                raise bad(f"{name} must be >= 0")
        for name in ("p_occluder", "p_face_blur", "p_image_blur", "p_body", "p_background_person"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(f"{name} must be a probability")
        if not 1 <= self.train_identities <= TEST_IDENTITY_OFFSET:
            raise bad(f"train_identities must be in [1, {TEST_IDENTITY_OFFSET}] (disjoint from the test range)")
        if not 1 <= self.test_identities <= MAX_IDENTITY + 1 - TEST_IDENTITY_OFFSET:
            raise bad(f"test_identities must be in [1, {MAX_IDENTITY + 1 - TEST_IDENTITY_OFFSET}]")
        if self.train_images_per_identity < 1 or self.test_images_per_identity < 2:
            raise bad("need >= 1 image per train identity and >= 2 per test identity (matched pairs)")
        if self.folds < 1 or self.pairs_per_fold < 1:
            raise bad("folds and pairs_per_fold must be >= 1")
        matched, mismatched = fold_capacity(self)
        if min(matched, mismatched) < self.pairs_per_fold:
            raise bad(
                f"{self.test_identities} test identities x {self.test_images_per_identity} images in "
                f"{self.folds} identity-disjoint folds allow {matched} matched and {mismatched} mismatched "
                f"distinct pairs in the smallest fold, fewer than pairs_per_fold = {self.pairs_per_fold}"
            )

    def identities(self, split: str) -> range:
        """The identity numbers of a split."""
        if split == "train":
            return range(self.train_identities)
        return range(TEST_IDENTITY_OFFSET, TEST_IDENTITY_OFFSET + self.test_identities)

    def images_per_identity(self, split: str) -> int:
        return self.train_images_per_identity if split == "train" else self.test_images_per_identity

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def fold_capacity(cfg: SynthIDCfg) -> tuple[int, int]:
    """Distinct (matched, mismatched) pairs available in the smallest of the identity-disjoint folds."""
    m = cfg.test_identities // cfg.folds  # identities in the smallest fold
    n = cfg.test_images_per_identity
    return m * comb(n, 2), comb(m, 2) * n * n


SYNTH_ID_PRESETS: MappingProxyType[str, SynthIDCfg] = MappingProxyType(
    {
        # LFW-sized protocol: 10 folds x (300 matched + 300 mismatched); 10 test identities per fold.
        "default": SynthIDCfg(),
        # For tests: 18 train images, 60 test images, 10 folds x (2 + 2) pairs.
        "tiny": SynthIDCfg(
            train_identities=6,
            train_images_per_identity=3,
            test_identities=20,
            test_images_per_identity=3,
            folds=10,
            pairs_per_fold=2,
        ),
    }
)
