"""SYNTHETIC predictions built from a ground truth, to test and benchmark the evaluator (never a detector result).

``degraded_predictions`` imitates what a detector writes for WIDER FACE: most large faces found with jittered
boxes and high scores, small faces often missed, some duplicates, and many low-score false positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retina.data.widerface import GroundTruth


@dataclass(frozen=True)
class DegradeConfig:
    """How a ground truth is turned into synthetic predictions (defaults: a mid-range detector)."""

    jitter: float = 0.12  # std of corner offsets, as a fraction of the face size
    size_for_sure_detection: float = 40.0  # sqrt(area) in pixels above which a face is found with p_max
    p_min: float = 0.15  # detection probability of a 1-pixel face
    p_max: float = 0.97
    duplicate_rate: float = 0.1  # chance that a found face gets a second, lower-scored box
    false_positives_per_image: float = 60.0  # Poisson mean
    image_size: tuple[int, int] = (1024, 1024)  # width, height of the area where false positives land
    box_decimals: int | None = 1  # rounding of written coordinates (None: full float64)
    score_decimals: int | None = 4  # rounding of scores; ties exercise the stable per-image sort

    def __post_init__(self) -> None:
        if not (0 <= self.p_min <= self.p_max <= 1):
            raise ValueError("need 0 <= p_min <= p_max <= 1")
        if self.jitter < 0 or self.false_positives_per_image < 0 or not 0 <= self.duplicate_rate <= 1:
            raise ValueError("jitter, false_positives_per_image and duplicate_rate must be non-negative")


def degraded_predictions(gt: GroundTruth, seed: int = 0, cfg: DegradeConfig | None = None) -> list[np.ndarray]:
    """Per ``gt.images`` entry an (N, 5) float64 array ``x y w h score`` (shuffled file order), SYNTHETIC."""
    cfg = cfg or DegradeConfig()
    rng = np.random.default_rng(seed)
    out = []
    for boxes in gt.boxes:
        valid = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
        size = np.sqrt(valid[:, 2] * valid[:, 3])
        reach = np.clip(size / cfg.size_for_sure_detection, 0, 1)
        found = valid[rng.random(len(valid)) < cfg.p_min + (cfg.p_max - cfg.p_min) * reach]
        reach = np.clip(np.sqrt(found[:, 2] * found[:, 3]) / cfg.size_for_sure_detection, 0, 1)
        true_scores = np.clip(rng.normal(0.45 + 0.5 * reach, 0.15), 0.02, 1.0)
        dup = rng.random(len(found)) < cfg.duplicate_rate
        parts = [
            np.column_stack([_jitter(found, cfg.jitter, rng), true_scores]),
            np.column_stack([_jitter(found[dup], 2 * cfg.jitter, rng), true_scores[dup] * rng.uniform(0.3, 0.9)]),
            _false_positives(int(rng.poisson(cfg.false_positives_per_image)), cfg, rng),
        ]
        dets = np.concatenate(parts)[rng.permutation(sum(len(p) for p in parts))]
        if cfg.box_decimals is not None:
            dets[:, :4] = np.round(dets[:, :4], cfg.box_decimals)
        if cfg.score_decimals is not None:
            dets[:, 4] = np.round(dets[:, 4], cfg.score_decimals)
        out.append(dets)
    return out


def _jitter(boxes: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Move each corner of ``boxes (N, 4) x y w h`` by N(0, sigma * size); keeps w, h >= 0."""
    x1, y1 = boxes[:, 0], boxes[:, 1]
    w, h = boxes[:, 2], boxes[:, 3]
    d = rng.normal(0.0, sigma, (len(boxes), 4)) * np.column_stack([w, h, w, h])
    nx1, ny1 = x1 + d[:, 0], y1 + d[:, 1]
    nx2, ny2 = np.maximum(x1 + w + d[:, 2], nx1), np.maximum(y1 + h + d[:, 3], ny1)
    return np.column_stack([nx1, ny1, nx2 - nx1, ny2 - ny1])


def _false_positives(n: int, cfg: DegradeConfig, rng: np.random.Generator) -> np.ndarray:
    size = np.exp(rng.uniform(np.log(4), np.log(250), n))
    aspect = rng.uniform(0.7, 1.4, n)
    w, h = size, size * aspect
    x = rng.uniform(0, np.maximum(cfg.image_size[0] - w, 1))
    y = rng.uniform(0, np.maximum(cfg.image_size[1] - h, 1))
    score = 0.02 + 0.9 * rng.beta(1.0, 6.0, n)
    return np.column_stack([x, y, w, h, score])
