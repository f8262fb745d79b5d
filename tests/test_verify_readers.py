"""Pair readers: LFW pairs.txt parsing and insightface .bin loading (with a restricted unpickler)."""

from __future__ import annotations

import builtins
import os
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from retina.errors import DataFormatError, RetinaError
from retina.verify.readers import LfwPair, read_lfw_pairs, read_verification_bin
from tests.conftest import shared_file

# ------------------------------------------------------------------------------------------------------- pairs.txt

TINY_PAIRS = "2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\nBob\t1\t3\nCy\t2\tAnn\t4\n\n"


def _tiny_lfw(tmp_path: Path, text: str = TINY_PAIRS, images: bool = True) -> tuple[Path, Path]:
    pairs, root = tmp_path / "pairs.txt", tmp_path / "images"
    pairs.write_text(text)
    if images:
        for name, n in (("Ann", 1), ("Ann", 2), ("Ann", 4), ("Bob", 1), ("Bob", 3), ("Cy", 2)):
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / f"{name}_{n:04d}.jpg").write_bytes(b"")
    return pairs, root


def test_lfw_pairs_golden(tmp_path: Path) -> None:
    path, root = _tiny_lfw(tmp_path)
    got = read_lfw_pairs(path, root)
    assert got.pairs == (
        LfwPair(root / "Ann/Ann_0001.jpg", root / "Ann/Ann_0002.jpg", True, 0),
        LfwPair(root / "Ann/Ann_0001.jpg", root / "Bob/Bob_0003.jpg", False, 0),
        LfwPair(root / "Bob/Bob_0001.jpg", root / "Bob/Bob_0003.jpg", True, 1),
        LfwPair(root / "Cy/Cy_0002.jpg", root / "Ann/Ann_0004.jpg", False, 1),
    )
    np.testing.assert_array_equal(got.same, [True, False, True, False])
    np.testing.assert_array_equal(got.folds, [0, 0, 1, 1])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2\t1\nAnn\t1\t2\nAnn\t1\tBob\nBob\t1\t3\nCy\t2\tAnn\t4\n", r"pairs.txt:3: a mismatched pair needs 4 fields"),
        ("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\nBob\t1\tx\nCy\t2\tAnn\t4\n", r"pairs.txt:4: expected a positive integer"),
        ("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\nBob\t1\t3\tZed\nCy\t2\tAnn\t4\n", r"pairs.txt:4: a matched pair needs 3"),
        ("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\nBob\t1\t3\n", r"promises 2 folds x 2 x 1 = 4 pair lines, found 3"),
        ("2 1 9\nAnn\t1\t2\n", r"pairs.txt:1: expected a header"),
        ("ten\t1\n", r"pairs.txt:1: expected a positive integer"),
        ("", r"empty file"),
    ],
)
def test_lfw_pairs_malformed(tmp_path: Path, text: str, message: str) -> None:
    path, root = _tiny_lfw(tmp_path, text)
    with pytest.raises(DataFormatError, match=message):
        read_lfw_pairs(path, root)


def test_lfw_pairs_missing_images(tmp_path: Path) -> None:
    path, root = _tiny_lfw(tmp_path)
    (root / "Cy" / "Cy_0002.jpg").unlink()
    with pytest.raises(RetinaError, match=r"1 of 6 LFW images missing under .*Cy_0002\.jpg"):
        read_lfw_pairs(path, root)
    assert len(read_lfw_pairs(path, root, check_images=False)) == 4
    (tmp_path / "none").mkdir()
    path, root = _tiny_lfw(tmp_path / "none", images=False)
    with pytest.raises(RetinaError, match=r"6 of 6 LFW images missing .*\(and 1 more\)"):
        read_lfw_pairs(path, root)


def test_real_lfw_pairs_format() -> None:
    path = shared_file("lfw/pairs.txt")
    root = path.parent / "images"
    pairs = read_lfw_pairs(path, root, check_images=False)
    assert len(pairs) == 6000 and pairs.same.sum() == 3000
    np.testing.assert_array_equal(np.bincount(pairs.folds), [600] * 10)
    np.testing.assert_array_equal(pairs.same[:600], np.repeat([True, False], 300))
    # File line 5418 ("Anthony_Hopkins 1 2") is pair 5416: fold 9, its 17th matched pair.
    hopkins = pairs.pairs[5416]
    assert (hopkins.same, hopkins.fold) == (True, 9)
    assert hopkins.left == root / "Anthony_Hopkins" / "Anthony_Hopkins_0001.jpg"
    assert hopkins.right.name == "Anthony_Hopkins_0002.jpg"
    if hopkins.left.is_file() and hopkins.right.is_file():  # the shared folder holds only these two images
        with pytest.raises(RetinaError, match="LFW images missing"):
            read_lfw_pairs(path, root)


# ----------------------------------------------------------------------------------------------------------- .bin


def _images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (8 + i, 10, 3), dtype=np.uint8) for i in range(count)]


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _write(path: Path, content: object, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    return path


def _py2_pickle(images: list[bytes], issame: list[bool]) -> bytes:
    """A (bins, issame) pickle as Python 2 writes it (protocol 2): images as str (BINSTRING opcodes)."""
    out = [b"\x80\x02]("]  # PROTO 2, EMPTY_LIST, MARK
    out += [b"T" + struct.pack("<i", len(data)) + data for data in images]  # BINSTRING
    out.append(b"e](")  # APPENDS, EMPTY_LIST, MARK
    out += [b"\x88" if same else b"\x89" for same in issame]  # NEWTRUE / NEWFALSE
    out.append(b"e\x86.")  # APPENDS, TUPLE2, STOP
    return b"".join(out)


def test_bin_round_trip(tmp_path: Path) -> None:
    images = _images(22)
    issame = [True, False] * 5 + [False]
    data = read_verification_bin(_write(tmp_path / "tiny.bin", ([_png(i) for i in images], issame)))
    assert len(data) == 11 and data.same.dtype == bool and not data.same.flags.writeable
    np.testing.assert_array_equal(data.same, issame)
    np.testing.assert_array_equal(data.folds, [0, 0, *range(1, 10)])  # 11 pairs: fold 0 gets two
    for k in (0, 5, 10):
        left, right = data.pair(k)
        np.testing.assert_array_equal(left, images[2 * k])
        np.testing.assert_array_equal(right, images[2 * k + 1])


@pytest.mark.parametrize("protocol", [3, 4])
def test_bin_numpy_labels(tmp_path: Path, protocol: int) -> None:
    images = _images(20)
    issame = np.arange(10) % 3 == 0
    path = _write(tmp_path / "np.bin", ([_png(i) for i in images], issame), protocol)
    data = read_verification_bin(path)
    np.testing.assert_array_equal(data.same, issame)
    np.testing.assert_array_equal(data.image(19), images[19])


def test_bin_written_by_python2(tmp_path: Path) -> None:
    images = _images(20)
    path = tmp_path / "py2.bin"
    path.write_bytes(_py2_pickle([_png(i) for i in images], [True, False] * 5))
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(path.read_bytes())  # why encoding="bytes" is needed: PNG bytes are no ASCII str
    data = read_verification_bin(path)
    np.testing.assert_array_equal(data.same, [True, False] * 5)
    np.testing.assert_array_equal(data.image(3), images[3])


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.mark.parametrize(
    ("payload", "name"),
    [(_System, r"(posix|nt)\.system"), (_Eval, r"builtins\.eval")],
)
def test_bin_malicious_pickle_is_refused_without_running(tmp_path: Path, payload: type, name: str) -> None:
    marker = tmp_path / "marker"
    images = [_png(i) for i in _images(20)]
    for content in (payload(marker), (images, [True] * 9 + [payload(marker)]), (images, np.array([payload(marker)]))):
        path = _write(tmp_path / "evil.bin", content)
        with pytest.raises(RetinaError, match=rf"evil\.bin: refers to {name}, which is never loaded from a data file"):
            read_verification_bin(path)
        assert not marker.exists()
    pickle.loads(pickle.dumps(payload(marker)))  # control: a plain unpickler does run the payload
    assert marker.exists()


def test_bin_refuses_other_numpy_globals(tmp_path: Path) -> None:
    images = [_png(i) for i in _images(20)]
    path = _write(tmp_path / "scalar.bin", (images, [np.True_] * 10))  # numpy scalars: multiarray.scalar
    with pytest.raises(RetinaError, match=r"refers to numpy\._?core\.multiarray\.scalar"):
        read_verification_bin(path)
    _write(path, (images, np.ones(10, bool)), protocol=5)  # protocol 5 arrays: numeric._frombuffer
    with pytest.raises(RetinaError, match=r"refers to numpy\._?core\.numeric\._frombuffer"):
        read_verification_bin(path)
    _write(path, (images, [True] * 10), protocol=2)  # Python 3 bytes at protocol 2: _codecs.encode
    with pytest.raises(RetinaError, match=r"refers to _codecs\.encode"):
        read_verification_bin(path)
    path.write_bytes(b"cnumpy\nload\n(S'x'\ntR.")  # protocol 0: GLOBAL numpy.load, called on 'x'
    with pytest.raises(RetinaError, match=r"refers to numpy\.load"):
        read_verification_bin(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (([b"x"] * 3, [True]), "3 images, an odd number"),
        (([b"x"] * 20, [True] * 9), "20 images for 9 issame entries"),
        (([b"x"] * 20, [1] * 10), "issame entry 0 is a int, expected a bool"),
        (([b"x"] * 20, np.zeros(10, np.int64)), "issame is a int64 array"),
        (([b"x"] * 4, [True, False]), "2 pairs, fewer than 10 folds"),
        (([b"x"] * 19 + ["x"], [True] * 10), "image 19 is a str"),
        ({"bins": []}, "expected a pickled"),
        (("abc", [True]), "bins is a str"),
    ],
)
def test_bin_bad_structure(tmp_path: Path, content: object, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        read_verification_bin(_write(tmp_path / "bad.bin", content))


def test_bin_undecodable_and_unreadable(tmp_path: Path) -> None:
    images = [_png(i) for i in _images(20)]
    images[7] = b"not an image"
    data = read_verification_bin(_write(tmp_path / "broken.bin", (images, [True] * 10)))
    np.testing.assert_array_equal(data.image(6), _images(20)[6])
    with pytest.raises(DataFormatError, match=r"broken\.bin: image 7 \(pair 3, right\) cannot be decoded"):
        data.image(7)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes((tmp_path / "broken.bin").read_bytes()[:100])
    with pytest.raises(DataFormatError, match="not a readable pickle"):
        read_verification_bin(truncated)
    with pytest.raises(RetinaError, match="cannot read"):
        read_verification_bin(tmp_path / "absent.bin")
