"""A training label file with degenerate faces: kept by the reader, counted and named, not trained on."""

from __future__ import annotations

import numpy as np

from retina.config import AugmentCfg
from retina.data.dataset import FaceDataset, SplitPaths, to_sample


def test_degenerate_faces_are_counted_and_named(tmp_path):
    labels = tmp_path / "label.txt"
    labels.write_text("# a.jpg\n1 2 10 12\n5 5 -3 4\n# b.jpg\n7 7 6 0\n0 0 4 4\n")
    data = FaceDataset(SplitPaths(tmp_path / "images", labels), AugmentCfg(image_size=64), seed=0)
    assert [len(e.boxes) for e in data.entries] == [2, 2]  # kept as written
    negative, dropped = data.warnings
    # issue 22: the zero-height face of line 5 is named by its line too
    assert f"{labels}: 2 face line(s) of zero or negative width or height" in negative
    assert "line 3 (-3 x 4), line 5 (6 x 0)" in negative
    assert dropped == f"{labels}: 2 of 4 faces have zero or negative width or height; they are not trained on"
    kept = to_sample(np.zeros((20, 20, 3), np.uint8), data.entries[0])
    np.testing.assert_array_equal(kept.boxes, [[1, 2, 11, 14]])  # x y w h -> x0 y0 x1 y1, the -3 wide face gone


def test_clean_labels_give_no_warning(tmp_path):
    labels = tmp_path / "label.txt"
    labels.write_text("# a.jpg\n1 2 10 12\n")
    assert FaceDataset(SplitPaths(tmp_path / "images", labels), AugmentCfg(image_size=64), seed=0).warnings == []
