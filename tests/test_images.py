"""Reading images by path: the same array as ``cv2.imread``; image files found by suffix in any case."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from retina.commands.detect import collect_images
from retina.errors import RetinaError
from retina.images import IMAGE_SUFFIXES, find_image, is_image_file, read_image


def exif_jpeg(path: Path, image: np.ndarray, orientation: int) -> Path:
    """Write ``image`` as a JPEG with an APP1 Exif segment holding only the Orientation tag (0x0112)."""
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd  # big-endian TIFF header, first IFD at offset 8
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = encoded.tobytes()
    path.write_bytes(data[:2] + app1 + data[2:])  # right after the SOI marker
    return path


def test_exif_orientation_is_applied_as_cv2_imread_does(tmp_path: Path) -> None:
    image = np.zeros((20, 40, 3), np.uint8)
    image[:5, :10] = 255  # a bright top-left corner
    path = exif_jpeg(tmp_path / "rotated.jpg", image, orientation=6)  # 6: rotate 90 degrees clockwise to view
    ours = read_image(path)
    assert ours.shape == (40, 20, 3)  # the tag was applied: the stored 40 x 20 picture is shown upright
    assert ours[:10, -5:].mean() > 200 and ours[-10:, :5].mean() < 50  # the corner moved to the top right
    np.testing.assert_array_equal(ours, cv2.imread(str(path)))


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("gray.png", np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)),
        ("deep.png", (np.arange(12 * 10 * 3).reshape(12, 10, 3) * 331 % 65536).astype(np.uint16)),
        ("alpha.png", np.random.default_rng(0).integers(0, 256, (12, 10, 4), dtype=np.uint8)),
        ("plain.bmp", np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)),
        ("photo.webp", np.random.default_rng(2).integers(0, 256, (12, 10, 3), dtype=np.uint8)),
    ],
)
def test_read_image_equals_cv2_imread(tmp_path: Path, name: str, image: np.ndarray) -> None:
    path = tmp_path / name
    assert cv2.imwrite(str(path), image)
    ours = read_image(path)
    assert ours.dtype == np.uint8 and ours.shape == (12, 10, 3)
    np.testing.assert_array_equal(ours, cv2.imread(str(path)))


def test_16_bit_keeps_the_high_byte(tmp_path: Path) -> None:
    deep = np.array([[[0, 255, 256]], [[511, 65280, 65535]]], np.uint16)  # (2, 1, 3)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), np.array([[[0, 0, 1]], [[1, 255, 255]]]))


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("notes.jpg", "empty.png"):
        with pytest.raises(RetinaError, match=rf"cannot decode image \(corrupt or not an image\): .*{name}$"):
            read_image(tmp_path / name)
    with pytest.raises(RetinaError, match=r"image not found: .*none\.jpg"):
        read_image(tmp_path / "none.jpg")


def test_image_suffixes_in_any_case(tmp_path: Path) -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"} == IMAGE_SUFFIXES
    for name in ("a.JPG", "b.Jpeg", "c.png", "d.txt", "e.jpg.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in collect_images([str(tmp_path)])] == ["a.JPG", "b.Jpeg", "c.png"]
    assert not is_image_file(tmp_path / "d.txt") and not is_image_file(tmp_path / "absent.jpg")
    assert find_image(tmp_path, "a") == tmp_path / "a.JPG"
    assert find_image(tmp_path, "e") is None and find_image(tmp_path, "d") is None
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(RetinaError, match=r"several image files for 'a' \(a.JPG, a.png\)"):
        find_image(tmp_path, "a")
