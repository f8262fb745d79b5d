"""Verification pair lists: LFW's ``pairs.txt`` with its image folder, and insightface's ``.bin`` files.

    pairs = read_lfw_pairs("lfw/pairs.txt", "lfw/images")   # LfwPairs: paths, labels, folds
    data = read_verification_bin("agedb_30.bin")            # BinPairs: encoded images, labels, folds
    left, right = data.pair(0)                               # (H, W, 3) uint8 BGR each

A ``.bin`` file is a Python pickle, and unpickling can run arbitrary code: it is read with an unpickler that
builds nothing but plain containers, bytes, bools and numbers, and numpy arrays (see ``_SAFE_GLOBALS``).
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from retina.errors import DataFormatError, RetinaError
from retina.verify.protocol import LFW_FOLDS, consecutive_folds

MISSING_SHOWN = 5  # missing image files named in the error message


# ---------------------------------------------------------------------------------------------------- LFW pairs.txt


@dataclass(frozen=True)
class LfwPair:
    """One pair of face images: both paths, whether they show one person, and the pair's fold (0-based)."""

    left: Path
    right: Path
    same: bool
    fold: int


@dataclass(frozen=True)
class LfwPairs:
    """The pairs of a ``pairs.txt`` in file order. ``same`` and ``folds`` give (N,) arrays for the protocol."""

    source: Path
    pairs: tuple[LfwPair, ...]

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def same(self) -> np.ndarray:
        """(N,) bool: True for a matched pair."""
        return np.array([p.same for p in self.pairs], dtype=bool)

    @property
    def folds(self) -> np.ndarray:
        """(N,) int64 fold ids."""
        return np.array([p.fold for p in self.pairs], dtype=np.int64)


def lfw_image_path(root: Path, name: str, number: int) -> Path:
    """``<root>/<name>/<name>_<number:04d>.jpg``, LFW's file layout."""
    return root / name / f"{name}_{number:04d}.jpg"


def _count(text: str, path: Path, line: int) -> int:
    """A positive integer field; anything else is a DataFormatError naming file and line."""
    if not text.isdigit() or int(text) < 1:
        raise DataFormatError(f"{path}:{line}: expected a positive integer, got {text!r}")
    return int(text)


def _pair_line(fields: list[str], matched: bool, root: Path, fold: int, where: tuple[Path, int]) -> LfwPair:
    """``name n1 n2`` (matched) or ``name1 n1 name2 n2`` (mismatched) -> LfwPair."""
    path, line = where
    kind, width = ("matched", 3) if matched else ("mismatched", 4)
    if len(fields) != width:
        layout = "name n1 n2" if matched else "name1 n1 name2 n2"
        raise DataFormatError(f"{path}:{line}: a {kind} pair needs {width} fields ({layout}), got {len(fields)}")
    names = (fields[0], fields[0]) if matched else (fields[0], fields[2])
    numbers = (fields[1], fields[2]) if matched else (fields[1], fields[3])
    left, right = (lfw_image_path(root, n, _count(k, path, line)) for n, k in zip(names, numbers, strict=True))
    return LfwPair(left, right, matched, fold)


def read_lfw_pairs(pairs_file: str | os.PathLike, image_root: str | os.PathLike, check_images: bool = True) -> LfwPairs:
    """Parse LFW's ``pairs.txt`` (the View 2 protocol) with images under ``image_root``.

    Layout: a header ``folds<TAB>n`` (10 and 300 in LFW), then per fold ``n`` matched lines ``name n1 n2`` and
    ``n`` mismatched lines ``name1 n1 name2 n2`` (fields separated by tabs or spaces; blank lines at the end are
    ignored). A malformed line is a DataFormatError naming file and line. With ``check_images`` every image must
    exist: otherwise a RetinaError giving how many are missing and the first few.
    """
    path, root = Path(pairs_file), Path(image_root)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RetinaError(f"cannot read LFW pairs file {path}: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataFormatError(f"{path}: empty file; expected a header 'folds<TAB>pairs per fold and class'")
    header = lines[0].split()
    if len(header) != 2:
        raise DataFormatError(f"{path}:1: expected a header 'folds<TAB>pairs per fold and class', got {lines[0]!r}")
    folds, per_class = (_count(h, path, 1) for h in header)
    expected = folds * 2 * per_class
    if len(lines) - 1 != expected:
        raise DataFormatError(
            f"{path}: the header promises {folds} folds x 2 x {per_class} = {expected} pair lines, "
            f"found {len(lines) - 1}"
        )
    pairs = []
    for index, text in enumerate(lines[1:]):
        fold, within = divmod(index, 2 * per_class)
        pairs.append(_pair_line(text.split(), within < per_class, root, fold, (path, index + 2)))
    if check_images:
        _check_images(pairs, root)
    return LfwPairs(path, tuple(pairs))


def _check_images(pairs: list[LfwPair], root: Path) -> None:
    """A RetinaError naming the first few of the pairs' images that are not files."""
    paths = dict.fromkeys(p for pair in pairs for p in (pair.left, pair.right))
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:MISSING_SHOWN])
        more = f" (and {len(missing) - MISSING_SHOWN} more)" if len(missing) > MISSING_SHOWN else ""
        raise RetinaError(f"{len(missing)} of {len(paths)} LFW images missing under {root}: {shown}{more}")


# ------------------------------------------------------------------------------------- insightface verification .bin


def _reconstruct() -> Any:
    """numpy's array-unpickling helper, under its numpy 2 or numpy 1 module."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# The only globals a .bin pickle may name: what numpy arrays (default protocols 2 to 4) need, nothing that runs
# code. Plain bytes, str, lists, tuples, bools and numbers need no global at all.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside ``_SAFE_GLOBALS`` (so no callable runs but numpy's)."""

    def __init__(self, file: io.BufferedIOBase, source: Path) -> None:
        # encoding="bytes": Python 2 str (the images, in files written by Python 2) arrives as bytes.
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        factory = _SAFE_GLOBALS.get((module, name))
        if factory is None:
            raise RetinaError(f"{self.source}: refers to {module}.{name}, which is never loaded from a data file")
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise RetinaError(f"{self.source}: has a persistent id, which is never loaded from a data file")


def load_pickle_data(path: str | os.PathLike) -> Any:
    """Unpickle a data file with :class:`_DataUnpickler`: only containers, bytes, numbers and numpy arrays."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _DataUnpickler(f, path).load()
    except RetinaError:
        raise
    except OSError as exc:
        raise RetinaError(f"cannot read {path}: {exc}") from None
    except Exception as exc:  # truncated or corrupt pickles raise many kinds (UnpicklingError, EOFError, ...)
        raise DataFormatError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class BinPairs:
    """The pairs of an insightface verification ``.bin``: pair i is images 2i (left) and 2i + 1 (right).

    ``encoded``: the 2N encoded images (JPEG/PNG bytes), decoded on demand. ``same``: (N,) bool, read-only.
    ``folds``: (N,) int64 fold ids, 10 consecutive blocks (``consecutive_folds``).
    """

    source: Path
    encoded: tuple[bytes, ...]
    same: np.ndarray
    folds: np.ndarray

    def __len__(self) -> int:
        return len(self.same)

    def image(self, index: int) -> np.ndarray:
        """Image ``index`` (0 .. 2N - 1) decoded as (H, W, 3) uint8 BGR; a RetinaError when undecodable."""
        if not 0 <= index < len(self.encoded):
            raise RetinaError(f"{self.source}: image index {index} outside 0..{len(self.encoded) - 1}")
        data = np.frombuffer(self.encoded[index], dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            side = "right" if index % 2 else "left"
            raise DataFormatError(
                f"{self.source}: image {index} (pair {index // 2}, {side}) cannot be decoded as an image file"
            )
        return image

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The left and right images of pair ``index``, (H, W, 3) uint8 BGR each."""
        return self.image(2 * index), self.image(2 * index + 1)


def _as_bytes(item: Any, index: int, source: Path) -> bytes:
    """An encoded image: bytes, bytearray, or a 1-D uint8 array of the file's bytes."""
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        return item.tobytes()
    raise DataFormatError(f"{source}: image {index} is a {type(item).__name__}, expected the image file's bytes")


def _as_labels(issame: Any, source: Path) -> np.ndarray:
    """The issame list (Python bools or a numpy bool array) -> (N,) read-only bool array."""
    if isinstance(issame, np.ndarray):
        if issame.dtype != np.bool_ or issame.ndim != 1:
            raise DataFormatError(
                f"{source}: issame is a {issame.dtype} array of shape {issame.shape}, expected (N,) bool"
            )
        labels = issame.copy()
    elif isinstance(issame, list | tuple):
        if not all(isinstance(x, bool) for x in issame):
            bad = next(i for i, x in enumerate(issame) if not isinstance(x, bool))
            raise DataFormatError(f"{source}: issame entry {bad} is a {type(issame[bad]).__name__}, expected a bool")
        labels = np.array(issame, dtype=bool)
    else:
        raise DataFormatError(f"{source}: issame is a {type(issame).__name__}, expected a list of bools")
    labels.flags.writeable = False
    return labels


def read_verification_bin(path: str | os.PathLike, folds: int = LFW_FOLDS) -> BinPairs:
    """Read an insightface verification file (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...).

    Content: a pickle of ``(bins, issame_list)``: ``bins`` the 2N encoded images (JPEG/PNG bytes, two per pair,
    consecutive), ``issame_list`` N bools; the pairs form ``folds`` consecutive folds. Files written by Python 2
    (images as str) and by Python 3 (bytes) both load. Structure errors are DataFormatErrors naming the file.
    """
    path = Path(path)
    content = load_pickle_data(path)
    if not (isinstance(content, tuple | list) and len(content) == 2):
        raise DataFormatError(f"{path}: expected a pickled (bins, issame_list) pair, got {type(content).__name__}")
    bins, issame = content
    if not isinstance(bins, list | tuple):
        raise DataFormatError(f"{path}: bins is a {type(bins).__name__}, expected a list of encoded images")
    same = _as_labels(issame, path)
    if len(bins) % 2:
        raise DataFormatError(f"{path}: {len(bins)} images, an odd number (two per pair)")
    if len(bins) != 2 * len(same):
        raise DataFormatError(f"{path}: {len(bins)} images for {len(same)} issame entries (two images per pair)")
    if len(same) < folds:
        raise DataFormatError(f"{path}: {len(same)} pairs, fewer than {folds} folds")
    encoded = tuple(_as_bytes(item, i, path) for i, item in enumerate(bins))
    fold_ids = consecutive_folds(len(same), folds)
    fold_ids.flags.writeable = False
    return BinPairs(path, encoded, same, fold_ids)
