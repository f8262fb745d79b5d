"""SynthFace configuration (``SynthCfg`` and its presets) and the difficulty rule.

Difficulty rule (easy c medium c hard), in the spirit of WIDER FACE's size / occlusion / blur / pose
criteria. With ``h`` the face box height in pixels, ``occ`` the fraction of the face zone hidden (by
other people, objects or the image border), ``blur`` the effective blur standard deviation divided by
``h``, ``yaw`` and ``pitch`` in degrees:

- hard:   ``h >= 10`` and ``occ <= 0.7``
- medium: hard and ``h >= 20`` and ``occ <= 0.5`` and ``blur <= 0.05`` and ``|yaw| <= 75``
- easy:   medium and ``h >= 40`` and ``occ <= 0.25`` and ``blur <= 0.015`` and ``|yaw| <= 60`` and
  ``|pitch| <= 25``

A face in none of them (smaller than 10 px or more than 70% hidden) stays in the ground truth, as
WIDER's invalid faces do, and is ignored by the evaluation (a detection of it counts neither way).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Literal

SYNTH_VERSION = "3"  # bump whenever the same config and seed would give different files
SPLIT_CODES = MappingProxyType({"train": 0, "val": 1, "test": 2})
# The v3 factors of domain randomisation: each draws from its own random stream (``retina.synth.image``), so
# switching one off leaves every other draw of the image unchanged.
FACTORS = ("backdrop", "negatives", "appearance", "lighting", "camera")
# SynthCfg.box_convention "wider": the face zone's tight box raised by these fractions of its height at the top
# and the bottom, WIDER FACE's annotation habit as a WIDER-trained detector sees it on SynthFace faces
# (benchmarks/box_convention.py, biubug6's released weights on 192 SynthFace val faces: boxes 9.4% of the height
# higher and 4.3% taller, i.e. the top raised by 0.116 and the bottom by 0.073 of the height).
WIDER_BOX_RAISE = (0.12, 0.07)
# The fields added by v3 (left out of SynthCfg.to_dict at their defaults).
V3_FIELDS = frozenset(
    {"crowd_faces", "natural_backdrop", "hard_negatives_range", "face_appearance", "lighting", "camera",
     "box_convention"}
)  # fmt: skip
# Event folders (WIDER style "<id>--<Name>") per scene kind, in kind order.
EVENTS = ("0--Synth_Portrait", "1--Synth_Group", "2--Synth_Crowd", "3--Synth_Street")

DIFFICULTY_RULE = __doc__[__doc__.index("- hard:") : __doc__.index("A face in none")].strip()


@dataclass(frozen=True)
class SynthCfg:
    """Everything that shapes a SynthFace split (the seed and image count are separate)."""

    width: int = 640  # image width (WIDER images are 1024 wide: preset "wider")
    height_range: tuple[int, int] = (400, 880)  # image height, uniform
    face_px_range: tuple[float, float] = (8.0, 300.0)  # target face box height, log-uniform overall
    faces_range: tuple[int, int] = (1, 60)  # faces per image (crowds at the top, portraits at the bottom)
    max_yaw_deg: float = 90.0
    max_pitch_deg: float = 30.0
    max_roll_deg: float = 30.0
    p_face_blur: float = 0.25  # per face: Gaussian (defocus) or motion blur of that face
    p_image_blur: float = 0.15  # per image: camera shake or defocus of everything
    p_occluder: float = 0.3  # per face: hand, face mask, sunglasses or object in front of it
    p_body: float = 0.9  # per face: neck and shoulders below it
    distractors_range: tuple[int, int] = (2, 12)  # skin-coloured blobs with dark spots, per image
    back_heads_range: tuple[int, int] = (0, 3)  # heads seen from behind (not faces), per image
    noise_sigma_range: tuple[float, float] = (0.0, 6.0)  # Gaussian pixel noise, 8-bit units
    jpeg_quality_range: tuple[int, int] = (55, 95)
    scene_weights: tuple[float, float, float, float] = (0.25, 0.3, 0.25, 0.2)  # EVENTS order
    crowd_faces: int = 60  # most faces of a crowd scene (before faces_range caps it)
    # v3 domain randomisation (FACTORS); all off reproduces the v2 generator's files byte for byte
    natural_backdrop: float = 0.0  # probability of a dead-leaves backdrop (natural-image statistics)
    hard_negatives_range: tuple[int, int] = (0, 0)  # hands, arms, balls, helmets, skin patches per image
    face_appearance: bool = False  # skin texture, colour casts, hair volume, glasses, hats
    lighting: bool = False  # shadows across faces, back light, uneven light over the image
    camera: bool = False  # white balance, exposure, vignetting, resolution loss, grey-scale, photon noise
    box_convention: Literal["zone", "wider"] = "zone"  # the face zone's tight box, or raised as WIDER's
    train_images: int = 1000  # sizes of the split pair made by ``default_split``
    val_images: int = 200

    def __post_init__(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"SynthCfg: {msg}")

        if not 32 <= self.width <= 4096:
            raise bad(f"width {self.width} outside [32, 4096]")
        for name in (
            "height_range",
            "face_px_range",
            "faces_range",
            "distractors_range",
            "back_heads_range",
            "noise_sigma_range",
            "jpeg_quality_range",
            "hard_negatives_range",
        ):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise bad(f"{name} must satisfy 0 <= low <= high, got {(lo, hi)}")
        if self.height_range[0] < 32 or self.height_range[1] > 4096:
            raise bad(f"height_range {self.height_range} outside [32, 4096]")
        if self.face_px_range[0] < 4 or self.face_px_range[1] > 0.9 * min(self.width, self.height_range[0]):
            raise bad(f"face_px_range {self.face_px_range} must lie in [4, 0.9 * the smallest image side]")
        if self.faces_range[0] < 1:
            raise bad("every image needs at least one face (faces_range low >= 1)")
        if not 1 <= self.jpeg_quality_range[0] <= self.jpeg_quality_range[1] <= 100:
            raise bad(f"jpeg_quality_range {self.jpeg_quality_range} outside [1, 100]")
        for name in ("max_yaw_deg", "max_pitch_deg", "max_roll_deg"):
            if not 0 <= getattr(self, name) <= 90:
                raise bad(f"{name} must be in [0, 90]")
        for name in ("p_face_blur", "p_image_blur", "p_occluder", "p_body"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(f"{name} must be a probability")
        if len(self.scene_weights) != len(EVENTS) or min(self.scene_weights) < 0 or sum(self.scene_weights) <= 0:
            raise bad(f"scene_weights needs {len(EVENTS)} non-negative weights, not all zero")
        if not 0 <= self.natural_backdrop <= 1:
            raise bad("natural_backdrop must be a probability")
        if self.box_convention not in ("zone", "wider") or self.crowd_faces < 16:
            raise bad("box_convention must be 'zone' or 'wider' and crowd_faces >= 16")
        if self.train_images < 1 or self.val_images < 1:
            raise bad("train_images and val_images must be >= 1")

    def to_dict(self) -> dict[str, object]:
        """Every field, except the v3 ones at their defaults (so v2 configs keep their cache keys and hashes)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not (f.name in V3_FIELDS and getattr(self, f.name) == f.default)
        }


SYNTH_PRESETS: MappingProxyType[str, SynthCfg] = MappingProxyType(
    {
        # The suite's default pair (SynthFace v3, issue 24): 640-wide images, faces 8-300 px for anchors 16..512 at
        # 640x640 input, every domain-randomisation factor on, WIDER's box habit, crowds of up to 100 faces and more
        # single-face images (WIDER val: 35% of images hold one face).
        "default": SynthCfg(
            faces_range=(1, 100),
            crowd_faces=100,
            scene_weights=(0.35, 0.3, 0.2, 0.15),
            natural_backdrop=0.6,
            hard_negatives_range=(2, 10),
            face_appearance=True,
            lighting=True,
            camera=True,
            box_convention="wider",
        ),
        # The v2 look (the default before issue 24): flat and checkerboard backdrops, no v3 factor, tight boxes.
        "v2": SynthCfg(),
        # WIDER-like geometry: 1024 wide, taller images, faces 6-400 px.
        "wider": SynthCfg(
            width=1024, height_range=(600, 1400), face_px_range=(6.0, 400.0), train_images=3000, val_images=500
        ),
        # A handful of small images for tests.
        "tiny": SynthCfg(
            width=160,
            height_range=(120, 200),
            face_px_range=(10.0, 60.0),
            faces_range=(1, 4),
            distractors_range=(0, 3),
            back_heads_range=(0, 1),
            train_images=4,
            val_images=3,
        ),
    }
)


def difficulty(height: float, occlusion: float, blur_rel: float, yaw_deg: float, pitch_deg: float) -> str | None:
    """The easiest setting a face counts in ("easy", "medium", "hard"), or None (see module docstring)."""
    if height < 10 or occlusion > 0.7:
        return None
    if height < 20 or occlusion > 0.5 or blur_rel > 0.05 or abs(yaw_deg) > 75:
        return "hard"
    if height < 40 or occlusion > 0.25 or blur_rel > 0.015 or abs(yaw_deg) > 60 or abs(pitch_deg) > 25:
        return "medium"
    return "easy"


def settings_of(level: str | None) -> tuple[str, ...]:
    """The settings a face of this difficulty counts in: easy -> all three, hard -> ("hard",)."""
    return {"easy": ("easy", "medium", "hard"), "medium": ("medium", "hard"), "hard": ("hard",)}.get(level or "", ())


def wider_attributes(
    level: str | None,
    occlusion: float,
    blur_rel: float,
    expression: float,
    pose_deg: tuple[float, float, float],
    light: tuple[float, float],
) -> dict[str, int]:
    """WIDER FACE's per-face labels (the official .mat ``*_label_list``) derived from exact values.

    blur 0 clear / 1 normal / 2 heavy (relative blur <= 0.015, <= 0.05, more, as in the difficulty rule);
    occlusion 0 none / 1 partial / 2 heavy (< 1%, <= 30%, more); expression 1 when an expression
    coefficient exceeds 0.6; illumination 1 (extreme) when the ambient level is under 0.15 or ambient plus
    direct light is under 0.45 or over 1.45 (``light`` = mean direct, mean ambient); pose 1 (atypical)
    when |yaw| > 60 or |pitch| > 25 or |roll| > 25 degrees (``pose_deg`` = pitch, yaw, roll); invalid 1
    for faces in no setting.
    """
    pitch, yaw, roll = pose_deg
    direct, ambient = light
    return {
        "blur": 0 if blur_rel <= 0.015 else 1 if blur_rel <= 0.05 else 2,
        "expression": int(expression > 0.6),
        "illumination": int(ambient < 0.15 or not 0.45 <= direct + ambient <= 1.45),
        "invalid": int(level is None),
        "occlusion": 0 if occlusion < 0.01 else 1 if occlusion <= 0.3 else 2,
        "pose": int(abs(yaw) > 60 or abs(pitch) > 25 or abs(roll) > 25),
    }
