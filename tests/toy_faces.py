"""A tiny toy split in the RetinaFace layout for engine tests: skin-coloured discs with dark eyes on noise."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from retina.data.widerface import LabeledImage, ground_truth_from_boxes, write_ground_truth, write_retinaface_labels


def make_toy_split(root: Path, n: int = 8, size: int = 64, seed: int = 0, max_faces: int = 3) -> Path:
    """Write ``root/images/0--Toy/*.jpg``, ``root/label.txt`` (five landmarks per face) and the official-layout
    ground truth ``root/ground_truth/*.mat`` (every face counts in every setting); returns root."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n):
        image = rng.integers(0, 80, (size, size + 8, 3), dtype=np.uint8)
        boxes, landmarks = [], []
        for _ in range(int(rng.integers(0 if i else 1, max_faces + 1))):
            s = int(rng.integers(12, size // 2))
            x, y = int(rng.integers(0, size + 8 - s)), int(rng.integers(0, size - s))
            cv2.circle(image, (x + s // 2, y + s // 2), s // 2, (150, 180, 220), -1)
            pts = [(0.3, 0.4), (0.7, 0.4), (0.5, 0.55), (0.35, 0.75), (0.65, 0.75)]
            lm = [(x + a * s, y + b * s) for a, b in pts]
            for px, py in lm[:2]:
                cv2.circle(image, (int(px), int(py)), max(1, s // 10), (20, 20, 20), -1)
            boxes.append([x, y, s, s])
            landmarks.append(lm)
        path = f"0--Toy/toy_{i}.jpg"
        (root / "images" / "0--Toy").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / path), image)
        b = np.array(boxes, float).reshape(-1, 4)
        entries.append(LabeledImage(path, b, np.array(landmarks, float).reshape(-1, 5, 2), np.zeros((len(b), 5)),
                                    np.ones(len(b))))  # fmt: skip
    write_retinaface_labels(root / "label.txt", entries)
    every = {s: [np.arange(len(e.boxes)) for e in entries] for s in ("easy", "medium", "hard")}
    write_ground_truth(root / "ground_truth", ground_truth_from_boxes([(e.path, e.boxes) for e in entries], every))
    return root
