"""The ablation tables as data: named variants derived from one base setting with ``dataclasses.replace``.

An :class:`Ablation` names one field (a dotted path into the model or training config, e.g.
``train.loss.w_landmarks``), or several (then each row's value is a tuple, one per field), and the values its
rows take; everything else is the :class:`Setting`'s and is
therefore identical across rows: architecture preset, schedule, data, test protocol and seeds. Each
ablation has two settings:

- ``cpu``: the default, a small ablation on synthetic data (a dedicated small SynthFace pair, 256 px
  crops; landmarks 1000 iterations of batch 8 with 5 seeds, dcn 320 of batch 8 with 3). Every row and
  seed starts from one shared backbone, that of the committed SynthFace checkpoint (``retina/weights``),
  as the paper's rows all start from one ImageNet backbone; FPN, context module and heads start from the
  seed's random initialisation. Sized so that a whole session finishes within about 45 minutes on 2 CPU
  cores (measured: see the published records). Its numbers say whether the switch matters *on this
  synthetic data at this budget*; they are not a reproduction of the paper.
- ``paper``: the paper's setting (arXiv 1905.00641 section 4.1): ResNet-50 paper layout (P2-P6, shared
  heads), the paper recipe (80 epochs, batch 32, 640 px crops), on real WIDER FACE given by flags.

The paper's own Table 3 rows are reference facts of :mod:`retina.paper` (:data:`PAPER_TABLE3`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from retina.config import DCN_OFFSET_LR, PRESETS, TRAIN_PRESETS, DetectorCfg, LossCfg, TrainCfg, preset
from retina.paper import PAPER_TABLE3
from retina.protocols import PROTOCOLS
from retina.synth.config import SYNTH_PRESETS, SynthCfg
from retina.weights import DEFAULT_WEIGHTS

# SynthFace v3's factors of domain randomisation (retina.synth.config.FACTORS) as ablation fields, and their values
# with the factor on (the v3 preset's) and off (v2).
SYNTH_FACTOR_FIELDS = (
    "data.natural_backdrop",
    "data.hard_negatives_range",
    "data.face_appearance",
    "data.lighting",
    "data.camera",
)
_FACTOR_NAMES = tuple(f.split(".")[1] for f in SYNTH_FACTOR_FIELDS)
_V3 = SYNTH_PRESETS["default"]
FACTORS_ON = tuple(getattr(_V3, name) for name in _FACTOR_NAMES)
FACTORS_OFF = (0.0, (0, 0), False, False, False)

# The CPU setting's data: SynthFace v3 (every factor on, WIDER's box habit, v3's scene mix) in smaller images than
# the default pair (384 wide), so that generating, training and evaluating at the original size all fit the budget;
# faces 8-160 px, up to 24 per image.
SYNTH_ABLATION = SynthCfg(
    width=384,
    height_range=(288, 512),
    face_px_range=(8.0, 160.0),
    faces_range=(1, 24),
    distractors_range=(1, 6),
    back_heads_range=(0, 2),
    **dict(zip(_FACTOR_NAMES, FACTORS_ON, strict=True)),
    box_convention="wider",
    scene_weights=_V3.scene_weights,
    train_images=400,
    val_images=150,
)
# The factor study's data: the ablation pair with more training images (domain randomisation needs variety).
SYNTH_FACTOR_STUDY = dataclasses.replace(SYNTH_ABLATION, train_images=1000)


@dataclass(frozen=True)
class SynthData:
    """A SynthFace train/val pair generated on first use and cached (``ablations.run.synth_pair``)."""

    cfg: SynthCfg
    seed: int = 0

    @property
    def label(self) -> str:
        return (
            f"SynthFace ablation pair (synthetic data; {self.cfg.train_images} train / {self.cfg.val_images} val "
            f"images, {self.cfg.width} px wide, seed {self.seed})"
        )


@dataclass(frozen=True)
class Setting:
    """Everything the rows of an ablation share. ``data`` None: the user passes real data by flags."""

    name: str
    preset: str  # base architecture (``retina.config.PRESETS``)
    train: TrainCfg  # base training config (seed set per run)
    data: SynthData | None
    protocol: str = "original"  # the one named test protocol of every row
    seeds: tuple[int, ...] = (0, 1, 2)
    note: str = ""  # printed above the table
    # the backbone's starting weights, shared by every row and seed (None: random initialisation); ImageNet
    # weights or a retina checkpoint, of which only the backbone is taken (``load_pretrained_backbone``)
    backbone_init: Path | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose one of {sorted(PROTOCOLS)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be non-empty and distinct, got {self.seeds}")

    @property
    def model(self) -> DetectorCfg:
        return preset(self.preset)


@dataclass(frozen=True)
class Variant:
    """One row: ``key`` names its files, ``label`` its row (the paper's row names where they apply)."""

    key: str
    label: str
    value: Any  # the ablated field's value
    model: DetectorCfg
    train: TrainCfg
    baseline: bool
    data: SynthData | None = None  # the row's SynthFace data when a data.<field> is ablated (None: the setting's)


@dataclass(frozen=True)
class Ablation:
    """One field (or a tuple of fields), the (key, label, value) of each row (the first is the baseline), and two
    settings.

    A field is ``model.<path>`` (into :class:`DetectorCfg`), ``train.<path>`` (into :class:`TrainCfg`) or
    ``data.<name>`` (into the setting's :class:`SynthCfg`: each row trains on its own SynthFace data); with a
    tuple of fields each row's value is a tuple of as many values. ``paper_rows`` names rows of
    :data:`PAPER_TABLE3`: the paper's baseline, then the row each of ours after the first mirrors (empty for an
    ablation the paper has not). ``paper``: the setting on the user's data (None where the ablation is of SynthFace
    itself).
    """

    name: str
    field: str | tuple[str, ...]
    rows: tuple[tuple[str, str, Any], ...]
    paper_rows: tuple[str, ...]
    cpu: Setting
    paper: Setting | None
    description: str = ""

    def __post_init__(self) -> None:
        for f in self.fields:
            root, *path = f.split(".")
            if root not in ("model", "train", "data") or not path:
                raise ValueError(f"ablation field must be model.<path>, train.<path> or data.<name>, got {f!r}")
        if len(self.rows) < 2 or len({k for k, _, _ in self.rows}) != len(self.rows):
            raise ValueError("an ablation needs >= 2 rows with distinct keys")
        if self.paper_rows and (len(self.paper_rows) < 2 or len(self.paper_rows) > len(self.rows)):
            raise ValueError(f"paper_rows needs a baseline and 1 to {len(self.rows) - 1} mirrored rows")
        if any(r not in PAPER_TABLE3 for r in self.paper_rows):
            raise ValueError(f"paper rows {self.paper_rows} not in Table 3 ({list(PAPER_TABLE3)})")
        for s in (self.cpu, self.paper):
            if s is not None:
                self.variants(s)  # every row must be a valid config: fail at import, not hours into training

    @property
    def fields(self) -> tuple[str, ...]:
        return self.field if isinstance(self.field, tuple) else (self.field,)

    def setting(self, name: str) -> Setting:
        if name not in ("cpu", "paper"):
            raise ValueError(f"unknown setting {name!r}; choose cpu or paper")
        if name == "paper" and self.paper is None:
            raise ValueError(f"the {self.name} ablation has only the cpu setting (it ablates SynthFace itself)")
        return self.cpu if name == "cpu" else self.paper

    def variants(self, setting: Setting) -> tuple[Variant, ...]:
        """The rows under ``setting``: its model and training configs with the ablated field replaced."""
        out = []
        for i, (key, label, value) in enumerate(self.rows):
            values = value if isinstance(self.field, tuple) else (value,)
            if len(values) != len(self.fields):
                raise ValueError(f"row {key!r} has {len(values)} values for fields {self.fields}")
            model, train, data = setting.model, setting.train, setting.data
            for f, v in zip(self.fields, values, strict=True):
                root, *path = f.split(".")
                if root == "model":
                    model = replace_path(model, path, v)
                elif root == "train":
                    train = replace_path(train, path, v)
                elif data is None:
                    raise ValueError(f"{f}: the {setting.name} setting has no SynthFace data to ablate")
                else:
                    data = dataclasses.replace(data, cfg=replace_path(data.cfg, path, v))
            row_data = data if data != setting.data else None
            out.append(Variant(key, label, value, model, train, baseline=i == 0, data=row_data))
        return tuple(out)


def replace_path(cfg: Any, path: list[str] | tuple[str, ...], value: Any) -> Any:
    """``cfg`` with the field at ``path`` (nested frozen dataclasses) set to ``value``, by ``dataclasses.replace``.

    The replaced configs are validated again (``__post_init__``); an unknown name is a ``ValueError``.
    """
    name, *rest = path
    if not dataclasses.is_dataclass(cfg) or name not in {f.name for f in dataclasses.fields(cfg)}:
        raise ValueError(f"{type(cfg).__name__} has no field {name!r}")
    old = getattr(cfg, name)
    if rest:
        return dataclasses.replace(cfg, **{name: replace_path(old, rest, value)})
    if type(old) is float and type(value) is int:
        value = float(value)
    if old is not None and value is not None and type(value) is not type(old):  # a typo'd value, not a variant
        raise ValueError(f"{type(cfg).__name__}.{name} is {type(old).__name__}, got {value!r}")
    return dataclasses.replace(cfg, **{name: value})


def _cpu_train(iterations: int, image_size: int, batch_size: int) -> TrainCfg:
    base = TRAIN_PRESETS["synth-cpu"]  # the paper's schedule shape
    return dataclasses.replace(
        base,
        recipe="ablation-cpu",
        loss=LossCfg(),  # the paper's loss weights (synth-cpu raises the landmark weight for the committed detector)
        batch_size=batch_size,
        max_iterations=iterations,
        augment=dataclasses.replace(base.augment, image_size=image_size),
    )


CPU_NOTE = (
    "CPU setting: a small ablation on synthetic data (SynthFace), MobileNet-0.25 whose backbone starts from the "
    "committed SynthFace checkpoint's (shared by every row and seed; FPN, context and heads from random), "
    "{iterations} iterations of batch 8 at 256 px. Not a reproduction of the paper; its AP is not comparable "
    "to WIDER FACE numbers. The shared backbone was itself trained with the landmark loss on other SynthFace "
    "images."
)


def _cpu_setting(iterations: int, seeds: tuple[int, ...] = (0, 1, 2), preset: str = "mobilenet0.25",
                 note: str = "") -> Setting:  # fmt: skip
    """The CPU setting: batch 8 at 256 px on the ablation pair, from the committed checkpoint's backbone."""
    note = CPU_NOTE.format(iterations=iterations) + note
    train = _cpu_train(iterations, 256, 8)
    return Setting("cpu", preset, train, SynthData(SYNTH_ABLATION), seeds=seeds, note=note,
                   backbone_init=DEFAULT_WEIGHTS)  # fmt: skip


MESH_NOTE = (
    " Every row has the mesh head and the committed pre-trained mesh decoder (frozen); the pixel loss renders at most"
    " 2 faces >= 16 px per image into 64 px crops (PixelCfg)."
)
MESH_PAPER_NOTE = (
    " The paper's pixel-loss rows are on top of +DCN; this setting's rows are without DCN (add it with a preset)."
)

SYNTH_NOTE = (
    "CPU setting of the factor study (issue 24): MobileNet-0.25 from random initialisation (no pretraining: every "
    "weight learns from the row's own SynthFace data), {iterations} iterations of batch 8 at 256 px; each row "
    "switches one SynthFace v3 factor off (each factor draws from its own random stream, so the rest of every image "
    "stays the same). Main column: AP on real images (pass --real-dev or --real-root); SynthFace columns on the "
    "full generator's val split (synthetic data)."
)
SYNTH_ITERATIONS = 1500


def _synth_setting(iterations: int = SYNTH_ITERATIONS) -> Setting:
    return Setting("cpu", "mobilenet0.25", _cpu_train(iterations, 256, 8), SynthData(SYNTH_FACTOR_STUDY),
                   note=SYNTH_NOTE.format(iterations=iterations), backbone_init=None)  # fmt: skip


def _without(k: int) -> tuple[Any, ...]:
    """The factor values with factor ``k`` off and the others on."""
    return tuple(off if i == k else on for i, (on, off) in enumerate(zip(FACTORS_ON, FACTORS_OFF, strict=True)))


PAPER_NOTE = "Paper setting (arXiv 1905.00641 section 4.1): ResNet-50, paper recipe, on the data given by flags."

_PAPER_SETTING = Setting(
    name="paper",
    preset="resnet50-paper",
    train=TRAIN_PRESETS["paper"],  # 80 epochs, global batch 32, 640 px crops
    data=None,
    note=PAPER_NOTE,
)

ABLATIONS: MappingProxyType[str, Ablation] = MappingProxyType(
    {
        "landmarks": Ablation(
            name="landmarks",
            field="train.loss.w_landmarks",
            rows=(("no_lpts", "FPN+Context (w_pts 0)", 0.0), ("lpts", "+Lpts (w_pts 0.1)", 0.1)),
            paper_rows=("+DCN", "+Lpts"),
            cpu=_cpu_setting(1000, seeds=(0, 1, 2, 3, 4)),  # a run is cheap here: 5 seeds sharpen the test
            paper=_PAPER_SETTING,
            description="landmark supervision: the five-landmark loss weight 0 (off) vs 0.1 (the paper's)",
        ),
        "dcn": Ablation(
            name="dcn",
            field=("model.neck.dcn", "train.dcn_offset_lr"),
            rows=(
                ("no_dcn", "FPN+Context", (False, DCN_OFFSET_LR)),
                ("dcn", f"+DCN (offsets at {DCN_OFFSET_LR:g}x lr)", (True, DCN_OFFSET_LR)),
                # the control: DCN layers whose offsets stay 0 and mask 1 compute the baseline's function from the
                # baseline's initial weights (paired initialisation), so it must reproduce the baseline's AP
                ("dcn_frozen", "+DCN, offsets frozen at 0 (control)", (True, 0.0)),
            ),
            paper_rows=("FPN+Context", "+DCN"),
            # DCN makes a CPU training step ~15x slower (torchvision's deform_conv2d, one thread, 256 px): this
            # ablation gets its own budget, 320 iterations of batch 8, from the same shared backbone.
            cpu=_cpu_setting(320),
            paper=_PAPER_SETTING,
            description="deformable convolution (DCNv2) in the FPN merge and context convs: off, on (offset/mask "
            "convs at their own learning-rate multiple, no weight decay), and on with the offsets frozen at zero",
        ),
        "mesh": Ablation(
            name="mesh",
            field=("train.loss.w_landmarks", "train.loss.w_pixel"),
            rows=(
                ("base", "FPN+Context (w_pts 0, w_pixel 0)", (0.0, 0.0)),
                ("lpts", "+Lpts (w_pts 0.1)", (0.1, 0.0)),
                ("lpixel", "+Lpixel (w_pixel 0.01)", (0.0, 0.01)),
                ("lpts_lpixel", "+Lpts +Lpixel", (0.1, 0.01)),
            ),
            paper_rows=("+DCN", "+Lpts", "+Lpixel", "+Lpts +Lpixel"),
            # Every row has the mesh head (the same architecture); without the pixel loss it is not trained.
            cpu=_cpu_setting(1000, preset="mobilenet0.25-mesh", note=MESH_NOTE),
            paper=dataclasses.replace(_PAPER_SETTING, preset="resnet50-paper-mesh", note=PAPER_NOTE + MESH_PAPER_NOTE),
            description="the dense branch's pixel loss (section 3.2) with and without the landmark loss: the paper's "
            "last four Table 3 rows",
        ),
        "synth": Ablation(
            name="synth",
            field=SYNTH_FACTOR_FIELDS,
            rows=(
                ("full", "SynthFace v3 (every factor)", FACTORS_ON),
                ("no_backdrop", "- natural backdrops", _without(0)),
                ("no_negatives", "- hard negatives", _without(1)),
                ("no_appearance", "- face appearance", _without(2)),
                ("no_lighting", "- lighting", _without(3)),
                ("no_camera", "- camera", _without(4)),
                ("none", "no factor (v2 look)", FACTORS_OFF),
            ),
            paper_rows=(),
            cpu=_synth_setting(),
            paper=None,
            description="which SynthFace factors make a detector trained on synthetic faces find real ones: each "
            "row switches one factor of domain randomisation off",
        ),
    }
)
