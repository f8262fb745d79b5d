"""WIDER FACE file formats: readers and writers (no metric code here, see ``retina.eval.widerface``).

Four layouts, all with boxes as ``x y w h`` pixels (x, y = top-left corner):

* RetinaFace ``label.txt`` (retinaface_gt_v1.1): ``# <event>/<name>.jpg`` then one line per face, either
  ``x y w h`` (val layout) or ``x y w h  lx0 ly0 f0 ... lx4 ly4 f4  quality`` (train layout, five landmarks
  with a flag each, all ``-1`` when a face has none; source: the retinaface_gt_v1.1 files of the RetinaFace release).
* The official evaluation ground truth (WIDER FACE ``eval_tools``): ``wider_face_val.mat`` (``event_list``,
  ``file_list``, ``face_bbx_list`` int32 x y w h, per-face attribute lists) and ``wider_{easy,medium,hard}_val.mat``
  (the same plus ``gt_list``: per image, the 1-based indices of the faces that count in that setting).
  Cells are (n, 1) object arrays, as MATLAB saves them. An image without faces holds one ``0 0 0 0`` box.
* The official text ground truth ``wider_face_{split}_bbx_gt.txt``: image path, face count, then
  ``x y w h blur expression illumination invalid occlusion pose`` per face (one line of zeros when the count is 0).
* The submission layout read by the official ``read_pred.m``: ``<event>/<image stem>.txt`` holding the image
  name, the box count, then ``x y w h score`` lines.

Every writer is atomic (temporary file + rename, ``retina.results``). Every reader raises
:class:`retina.errors.DataFormatError` naming the file and line of the first problem.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import numpy as np

from retina.errors import DataFormatError, RetinaError
from retina.results import write_bytes, write_text

SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")
# Per-face attribute lists of the official .mat, in the column order of the bbx_gt.txt layout.
ATTRIBUTES: tuple[str, ...] = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")

PathLike = str | os.PathLike[str]


# ----------------------------------------------------------------------------------------- label.txt


@dataclass(frozen=True, eq=False)
class LabeledImage:
    """One image entry of a RetinaFace label.txt."""

    path: str  # "<event>/<name>.jpg", relative to the split's images/ folder
    boxes: np.ndarray  # (N, 4) float64, x y w h pixels (x, y = top-left corner)
    landmarks: np.ndarray  # (N, 5, 2) float64 pixels: left eye, right eye, nose, left/right mouth; -1 absent
    landmark_flags: np.ndarray  # (N, 5) float64 flags as written (0 visible, 1 occluded, -1 absent)
    quality: np.ndarray  # (N,) float64 trailing per-face value of the train layout; nan when absent

    def __post_init__(self) -> None:
        n = len(self.boxes)
        shapes = {
            "boxes": (self.boxes, (n, 4)),
            "landmarks": (self.landmarks, (n, 5, 2)),
            "landmark_flags": (self.landmark_flags, (n, 5)),
            "quality": (self.quality, (n,)),
        }
        for name, (array, shape) in shapes.items():
            if not isinstance(array, np.ndarray) or array.shape != shape:
                got = getattr(array, "shape", type(array).__name__)
                raise ValueError(f"LabeledImage({self.path!r}).{name}: expected shape {shape}, got {got}")

    @classmethod
    def from_boxes(cls, path: str, boxes: np.ndarray) -> LabeledImage:
        """An entry without landmarks: ``boxes (ndarray[N, 4]) x y w h pixels``."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        n = len(boxes)
        return cls(path, boxes, np.full((n, 5, 2), -1.0), np.full((n, 5), -1.0), np.full(n, np.nan))


def read_retinaface_labels(path: PathLike, warnings: list[str] | None = None) -> list[LabeledImage]:
    """Read a RetinaFace ``label.txt``, train layout (20 or 19 numbers a face) or val layout (4 numbers).

    A train line without its trailing quality value (19 numbers) gets quality nan; a val line gets
    landmarks and flags -1 and quality nan. Faces of zero or negative width or height are kept as written and
    counted: one message in ``warnings`` (when given) says how many and on which lines.
    """
    path = Path(path)
    text = _read_text(path)
    images: list[LabeledImage] = []
    current: str | None = None
    rows: list[list[float]] = []
    degenerate: list[str] = []  # "line 12 (-2 x 5)" per face line of zero or negative size

    def flush() -> None:
        if current is not None:
            images.append(_labeled_image(current, rows))

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            flush()
            current, rows = line[1:].strip(), []
            if not current:
                raise DataFormatError(f"{path}:{lineno}: image line '#' without a path")
            continue
        if current is None:
            raise DataFormatError(f"{path}:{lineno}: face line before the first '# <image path>' line")
        values = _parse_numbers(line, path, lineno)
        if len(values) not in (4, 19, 20):
            raise DataFormatError(
                f"{path}:{lineno}: expected 4 (x y w h), 19 or 20 numbers (with landmarks), got {len(values)}"
            )
        if not all(math.isfinite(v) for v in values[:19]):  # box and landmarks (the quality may be nan)
            raise DataFormatError(f"{path}:{lineno}: NaN or infinite value in a box or landmark")
        rows.append(values)
        if min(values[2], values[3]) <= 0:
            degenerate.append(f"line {lineno} ({_fmt(values[2])} x {_fmt(values[3])})")
    flush()
    if degenerate and warnings is not None:
        more = f" and {len(degenerate) - 3} more" if len(degenerate) > 3 else ""
        warnings.append(
            f"{path}: {len(degenerate)} face line(s) of zero or negative width or height, kept as written: "
            f"{', '.join(degenerate[:3])}{more}"
        )
    return images


def _labeled_image(image_path: str, rows: list[list[float]]) -> LabeledImage:
    n = len(rows)
    boxes = np.zeros((n, 4))
    landmarks = np.full((n, 5, 2), -1.0)
    flags = np.full((n, 5), -1.0)
    quality = np.full(n, np.nan)
    for i, row in enumerate(rows):
        boxes[i] = row[:4]
        if len(row) >= 19:
            points = np.asarray(row[4:19]).reshape(5, 3)  # (lx, ly, flag) per landmark
            landmarks[i], flags[i] = points[:, :2], points[:, 2]
        if len(row) == 20:
            quality[i] = row[19]
    return LabeledImage(image_path, boxes, landmarks, flags, quality)


def write_retinaface_labels(path: PathLike, images: Sequence[LabeledImage], with_landmarks: bool = True) -> None:
    """Write a RetinaFace ``label.txt`` atomically: train layout with landmarks, or val layout (boxes only).

    Integral values are written without a decimal point; others with the shortest exact repr, so that
    ``read_retinaface_labels`` gives back the same float64 values. A nan quality is left out of its line.
    """
    out: list[str] = []
    for image in images:
        out.append(f"# {image.path}")
        for i in range(len(image.boxes)):
            values = list(image.boxes[i])
            if with_landmarks:
                points = np.concatenate([image.landmarks[i], image.landmark_flags[i][:, None]], axis=1)
                values += list(points.ravel())
                if not math.isnan(image.quality[i]):
                    values.append(image.quality[i])
            out.append(" ".join(_fmt(v) for v in values))
    write_text(path, "\n".join(out) + "\n")


# ------------------------------------------------------------------------------- evaluation ground truth


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The official evaluation ground truth of a split.

    Images are grouped by event, in ``events`` order (as the .mat cells hold them). ``attributes`` holds the
    optional per-face label lists of the official .mat (``blur`` ... ``pose``, per image (N,) uint8).
    """

    events: tuple[str, ...]  # event names in file order, e.g. "0--Parade"
    images: tuple[tuple[str, str], ...]  # (event, image stem without extension), in file order
    boxes: tuple[np.ndarray, ...]  # per image (N, 4) float64 x y w h pixels
    keep: Mapping[str, tuple[np.ndarray, ...]]  # setting -> per image 0-based int64 indices of faces that count
    attributes: Mapping[str, tuple[np.ndarray, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep", MappingProxyType(dict(self.keep)))
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))
        if len(self.boxes) != len(self.images):
            raise ValueError(f"GroundTruth: {len(self.images)} images but {len(self.boxes)} box arrays")
        order = {event: i for i, event in enumerate(self.events)}
        if len(order) != len(self.events):
            raise ValueError("GroundTruth: duplicate event names")
        last = -1
        for event, stem in self.images:
            if event not in order or order[event] < last:
                raise ValueError(f"GroundTruth: image {event}/{stem} is not grouped under its event in order")
            last = order[event]
        if len(set(self.images)) != len(self.images):
            raise ValueError("GroundTruth: duplicate images")
        for k, boxes in enumerate(self.boxes):
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise ValueError(f"GroundTruth: boxes of image {k} have shape {boxes.shape}, expected (N, 4)")
        for name, lists in [*self.keep.items(), *self.attributes.items()]:
            if len(lists) != len(self.images):
                raise ValueError(f"GroundTruth: '{name}' has {len(lists)} entries for {len(self.images)} images")
        for setting, lists in self.keep.items():
            for k, idx in enumerate(lists):
                if idx.size and (idx.min() < 0 or idx.max() >= len(self.boxes[k])):
                    raise ValueError(f"GroundTruth: keep['{setting}'] of image {k} indexes past its faces")

    @cached_property
    def index(self) -> Mapping[tuple[str, str], int]:
        """(event, stem) -> position in ``images``."""
        return MappingProxyType({key: i for i, key in enumerate(self.images)})

    @property
    def n_faces(self) -> int:
        """All boxes, the placeholder boxes of face-less images included (39,708 on WIDER val)."""
        return int(sum(len(b) for b in self.boxes))

    def count(self, setting: str) -> int:
        """Number of faces that count in ``setting`` (the recall denominator)."""
        return self._counts[setting]

    @cached_property
    def _counts(self) -> Mapping[str, int]:
        return MappingProxyType({s: int(sum(len(k) for k in lists)) for s, lists in self.keep.items()})


MAT_FILES = {"face": "wider_face_val.mat", **{s: f"wider_{s}_val.mat" for s in SETTINGS}}


def load_ground_truth(gt_dir: PathLike, settings: Sequence[str] = SETTINGS) -> GroundTruth:
    """Read ``wider_face_val.mat`` and ``wider_{setting}_val.mat`` from ``gt_dir`` (official eval_tools files)."""
    from scipy.io import loadmat  # scipy is slow to import; only this reader needs it

    gt_dir = Path(gt_dir)
    mats = {}
    for key in ("face", *settings):
        path = gt_dir / MAT_FILES[key]
        if not path.is_file():
            raise RetinaError(f"ground truth file not found: {path}")
        try:
            mats[key] = loadmat(str(path))
        except Exception as exc:  # scipy raises several types for a corrupt file
            raise DataFormatError(f"{path}: not a readable MATLAB .mat file ({exc})") from exc
        for name in ("event_list", "file_list", "face_bbx_list", *(("gt_list",) if key != "face" else ())):
            if name not in mats[key]:
                raise DataFormatError(f"{path}: no variable '{name}'")
    face = mats["face"]
    events: list[str] = []
    images: list[tuple[str, str]] = []
    boxes: list[np.ndarray] = []
    for e, event_cell in enumerate(face["event_list"].ravel()):
        event = _mat_str(event_cell)
        events.append(event)
        for name_cell, box_cell in zip(
            face["file_list"].ravel()[e].ravel(), face["face_bbx_list"].ravel()[e].ravel(), strict=True
        ):
            images.append((event, _mat_str(name_cell)))
            boxes.append(np.asarray(box_cell, dtype=np.float64).reshape(-1, 4))
    keep = {}
    for setting in settings:
        mat = mats[setting]
        if [_mat_str(c) for c in mat["event_list"].ravel()] != events:
            raise DataFormatError(f"{gt_dir / MAT_FILES[setting]}: event list differs from wider_face_val.mat")
        # gt_list indices are 1-based (MATLAB); stored as uint8 or uint16 depending on their size.
        keep[setting] = tuple(
            np.asarray(cell, dtype=np.int64).ravel() - 1 for cells in mat["gt_list"].ravel() for cell in cells.ravel()
        )
        if len(keep[setting]) != len(images):
            raise DataFormatError(f"{gt_dir / MAT_FILES[setting]}: gt_list does not cover every image")
    attributes = {}
    for name in ATTRIBUTES:
        if f"{name}_label_list" in face:
            attributes[name] = tuple(
                np.asarray(c, dtype=np.uint8).ravel()
                for cells in face[f"{name}_label_list"].ravel()
                for c in cells.ravel()
            )
    try:
        return GroundTruth(tuple(events), tuple(images), tuple(boxes), keep, attributes)
    except ValueError as exc:
        raise DataFormatError(f"{gt_dir}: inconsistent ground truth ({exc})") from exc


def write_ground_truth(gt_dir: PathLike, gt: GroundTruth) -> None:
    """Write the four official .mat files (MATLAB 5 format, compressed) with the official structures.

    ``event_list`` (E, 1) cell of char; ``file_list`` / ``face_bbx_list`` / ``<attr>_label_list`` (E, 1) cells of
    (n_images, 1) cells; boxes int32 (N, 4); ``gt_list`` 1-based indices, (k, 1) uint8 (uint16 past 255).
    Boxes must be integral (the official files store int32, and the official evaluation computes with them).
    """
    from scipy.io import savemat

    for k, b in enumerate(gt.boxes):
        if not np.all(np.isfinite(b)) or not np.array_equal(b, np.round(b)):
            event, stem = gt.images[k]
            raise DataFormatError(f"ground truth boxes of {event}/{stem} are not integral: .mat stores int32")
    groups = [[k for k, (event, _) in enumerate(gt.images) if event == e] for e in gt.events]

    def cell(items: Sequence[object]) -> np.ndarray:
        out = np.empty((len(items), 1), dtype=object)
        for i, item in enumerate(items):
            out[i, 0] = item
        return out

    common = {
        "event_list": cell([np.array([e]) for e in gt.events]),
        "file_list": cell([cell([np.array([gt.images[k][1]]) for k in g]) for g in groups]),
        "face_bbx_list": cell([cell([gt.boxes[k].astype(np.int32) for k in g]) for g in groups]),
    }
    for name, lists in gt.attributes.items():
        common[f"{name}_label_list"] = cell(
            [cell([np.asarray(lists[k], dtype=np.uint8).reshape(-1, 1) for k in g]) for g in groups]
        )

    def one_based(idx: np.ndarray) -> np.ndarray:
        dtype = np.uint8 if idx.size == 0 or idx.max() + 1 <= 255 else np.uint16
        return (np.asarray(idx, dtype=np.int64) + 1).astype(dtype).reshape(-1, 1)

    contents = {"face": common}
    for setting, lists in gt.keep.items():
        if setting not in SETTINGS:
            raise ValueError(f"unknown setting '{setting}' (official files exist for {SETTINGS})")
        contents[setting] = {**common, "gt_list": cell([cell([one_based(lists[k]) for k in g]) for g in groups])}
    for key, variables in contents.items():
        buffer = io.BytesIO()
        savemat(buffer, variables, format="5", do_compression=True, oned_as="column")
        write_bytes(Path(gt_dir) / MAT_FILES[key], buffer.getvalue())


def _mat_str(cell: object) -> str:
    array = np.asarray(cell)
    while array.dtype == object:
        array = np.asarray(array.ravel()[0])
    return str(array.ravel()[0]) if array.size else ""


# ------------------------------------------------------------------------------ wider_face_*_bbx_gt.txt


@dataclass(frozen=True, eq=False)
class BbxGtImage:
    """One image of ``wider_face_{split}_bbx_gt.txt``: ``boxes (N, 4) x y w h``, ``attributes (N, 6) int``
    (blur, expression, illumination, invalid, occlusion, pose). A face-less image keeps the file's zero line."""

    path: str
    boxes: np.ndarray
    attributes: np.ndarray


def read_wider_bbx_gt(path: PathLike) -> list[BbxGtImage]:
    """Read the official text ground truth (``wider_face_val_bbx_gt.txt`` layout)."""
    path = Path(path)
    lines = _read_text(path).splitlines()
    out: list[BbxGtImage] = []
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        if i + 1 >= len(lines):
            raise DataFormatError(f"{path}:{i + 2}: missing face count after '{name}'")
        count = _parse_count(lines[i + 1], path, i + 2)
        n_lines = max(count, 1)  # a count of 0 is followed by one line of zeros
        rows = []
        for k in range(n_lines):
            lineno = i + 3 + k
            if lineno > len(lines):
                raise DataFormatError(f"{path}:{lineno}: file ends inside '{name}' ({count} faces declared)")
            values = _parse_numbers(lines[lineno - 1], path, lineno)
            if len(values) != 10:
                raise DataFormatError(f"{path}:{lineno}: expected 10 numbers (x y w h + 6 attributes)")
            rows.append(values)
        array = np.asarray(rows, dtype=np.float64).reshape(-1, 10)
        out.append(BbxGtImage(name, array[:, :4].copy(), array[:, 4:].astype(np.int64)))
        i += 2 + n_lines
    return out


def write_wider_bbx_gt(path: PathLike, images: Iterable[BbxGtImage]) -> None:
    """Write the official text ground truth layout atomically (a face-less image: count 0 + a zero line)."""
    out: list[str] = []
    for image in images:
        boxes, attrs = np.asarray(image.boxes).reshape(-1, 4), np.asarray(image.attributes).reshape(-1, 6)
        placeholder = len(boxes) == 1 and not boxes.any() and not attrs.any()
        out += [image.path, str(0 if placeholder or len(boxes) == 0 else len(boxes))]
        rows = np.concatenate([boxes, attrs], axis=1) if len(boxes) else np.zeros((1, 10))
        out += [" ".join(_fmt(v) for v in row) for row in rows]
    write_text(path, "\n".join(out) + "\n")


def ground_truth_from_boxes(
    entries: Sequence[tuple[str, np.ndarray]], keep: Mapping[str, Sequence[np.ndarray]]
) -> GroundTruth:
    """A GroundTruth from ``(path "<event>/<name>.jpg", boxes (N, 4) x y w h)`` entries, e.g. a text layout
    (:func:`read_retinaface_labels`, :func:`read_wider_bbx_gt`), and difficulty lists ``keep`` (setting ->
    per-entry 0-based indices). Entries are regrouped by event, events in order of first appearance."""
    events: list[str] = []
    parsed = []
    for k, (image_path, boxes) in enumerate(entries):
        event, _, name = image_path.removeprefix("./").partition("/")
        if not name or "/" in name:
            raise DataFormatError(f"image path '{image_path}' is not '<event>/<name>'")
        if event not in events:
            events.append(event)
        parsed.append((events.index(event), k, event, Path(name).stem, np.asarray(boxes, float).reshape(-1, 4)))
    parsed.sort(key=lambda item: item[:2])  # stable regrouping by event
    order = [k for _, k, *_ in parsed]
    return GroundTruth(
        tuple(events),
        tuple((event, stem) for _, _, event, stem, _ in parsed),
        tuple(b for *_, b in parsed),
        {s: tuple(np.asarray(lists[k], dtype=np.int64).ravel() for k in order) for s, lists in keep.items()},
    )


# ------------------------------------------------------------------------------------------ predictions


@dataclass(frozen=True, eq=False)
class Submission:
    """A submission folder's detections, aligned with a GroundTruth's ``images``.

    ``detections[k]``: (N, 5) float64 ``x y w h score`` of image k in file order (unsorted).
    ``missing``: images without a prediction file (empty detections when read with ``missing_as_empty``).
    ``warnings``: boxes accepted as the official tool accepts them, one message per box line
    (``<file>:<line>: negative width or height (-3 x 4); ...``).
    """

    detections: tuple[np.ndarray, ...]
    missing: tuple[tuple[str, str], ...] = ()
    source: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def n_detections(self) -> int:
        return int(sum(len(d) for d in self.detections))


def write_predictions(
    pred_dir: PathLike, event: str, image_stem: str, boxes_xywh: np.ndarray, scores: np.ndarray
) -> Path:
    """Write ``<pred_dir>/<event>/<image_stem>.txt`` atomically in the official submission layout.

    ``boxes_xywh (ndarray[N, 4]) x y w h pixels``, ``scores (ndarray[N])``; values are written with the
    shortest exact repr so that reading gives back the same float64 numbers.
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    rows = np.concatenate([boxes, scores[:, None]], axis=1).tolist()
    lines = [image_stem, str(len(rows)), *(" ".join(repr(v) for v in row) for row in rows)]
    return write_text(Path(pred_dir) / event / f"{image_stem}.txt", "\n".join(lines) + "\n")


def read_prediction_file(path: PathLike, warnings: list[str] | None = None) -> np.ndarray:
    """Parse one submission file: returns (N, 5) float64 ``x y w h score`` in file order.

    Strict where MATLAB's ``read_pred`` silently drops a file: a bad count, too few or too many box lines,
    a line without exactly 5 numbers, or a NaN or infinite value is an error naming the file and line.
    Boxes of negative or zero width or height are kept, as the official tool keeps them, and reported in
    ``warnings`` (when given) as ``<file>:<line>: negative width or height (-3 x 4); ...``.
    """
    path = Path(path)
    lines = _read_text(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 2:
        raise DataFormatError(f"{path}:{len(lines) + 1}: expected the image name, then the box count")
    count = _parse_count(lines[1], path, 2)
    body = lines[2:]
    if len(body) != count:
        raise DataFormatError(f"{path}:2: declares {count} boxes but {len(body)} box lines follow")
    if count == 0:
        return np.zeros((0, 5))
    tokens = " ".join(body).split()
    try:
        values = np.array(tokens, dtype=np.float64) if len(tokens) == 5 * count else None
    except ValueError:
        values = None
    if values is None or not np.all(np.isfinite(values)):
        for lineno, line in enumerate(body, start=3):  # slow path: find the offending line
            row = _parse_numbers(line, path, lineno)
            if len(row) != 5:
                raise DataFormatError(f"{path}:{lineno}: expected 5 numbers (x y w h score), got {len(row)}")
            if not all(map(math.isfinite, row)):
                raise DataFormatError(f"{path}:{lineno}: NaN or infinite value")
        raise DataFormatError(f"{path}: malformed box lines")  # pragma: no cover (caught above)
    values = values.reshape(count, 5)
    if warnings is not None:
        warnings += _size_warnings(values[:, 2:4], path)
    return values


def _size_warnings(sizes: np.ndarray, path: Path) -> list[str]:
    """One message per box of ``sizes (ndarray[N, 2]) w h`` (file lines 3..) with a negative or zero side."""
    out = []
    for k in np.flatnonzero((sizes <= 0).any(axis=1)).tolist():
        w, h = sizes[k]
        kind = "negative" if min(w, h) < 0 else "zero"
        out.append(
            f"{path}:{k + 3}: {kind} width or height ({_fmt(w)} x {_fmt(h)}); evaluated as the official tool does"
        )
    return out


def prediction_files(pred_dir: PathLike) -> set[tuple[str, str]]:
    """``(event, stem)`` of every ``<pred_dir>/<event>/<stem>.txt`` (hidden files and folders skipped)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise RetinaError(f"prediction folder not found: {pred_dir}")
    found: set[tuple[str, str]] = set()
    with os.scandir(pred_dir) as top:
        for entry in top:
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            with os.scandir(entry.path) as files:
                found |= {(entry.name, f.name[:-4]) for f in files if f.name.endswith(".txt") and f.name[0] != "."}
    return found


def read_predictions(
    pred_dir: PathLike, gt: GroundTruth, missing_as_empty: bool = False, outside: Container[tuple[str, str]] = ()
) -> Submission:
    """Read a submission folder ``<pred_dir>/<event>/<stem>.txt`` for every image of ``gt``.

    Missing files raise (count and first names), unless ``missing_as_empty``: then they have no detections,
    as in MATLAB's ``read_pred``. A ``.txt`` file for an image that is not in ``gt`` raises, unless it is in
    ``outside`` (the other images of a subset's full ground truth): those are not read. Boxes of negative or
    zero size are kept, with a warning each (``Submission.warnings``).
    """
    pred_dir = Path(pred_dir)
    found: set[tuple[str, str]] = set()
    unknown: list[tuple[str, str]] = []
    for key in prediction_files(pred_dir):
        if key in gt.index:
            found.add(key)
        elif key not in outside:
            unknown.append(key)
    if unknown:
        names = ", ".join(f"{e}/{s}.txt" for e, s in sorted(unknown)[:5])
        raise DataFormatError(
            f"{pred_dir}: {len(unknown)} prediction file(s) for images not in the ground truth, e.g. {names}"
        )
    missing = tuple(key for key in gt.images if key not in found)
    if missing and not missing_as_empty:
        names = ", ".join(f"{e}/{s}.txt" for e, s in missing[:5])
        raise DataFormatError(
            f"{pred_dir}: prediction files missing for {len(missing)} of {len(gt.images)} images, e.g. {names} "
            "(use --missing-as-empty to count them as images without detections)"
        )
    warnings: list[str] = []
    detections = tuple(
        np.zeros((0, 5)) if key not in found else read_prediction_file(pred_dir / key[0] / f"{key[1]}.txt", warnings)
        for key in gt.images
    )
    return Submission(detections, missing, str(pred_dir), tuple(warnings))


# ------------------------------------------------------------------------------------------ helpers


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RetinaError(f"file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _parse_numbers(line: str, path: Path, lineno: int) -> list[float]:
    try:
        return [float(token) for token in line.split()]
    except ValueError:
        raise DataFormatError(f"{path}:{lineno}: not a list of numbers: {line.strip()[:80]!r}") from None


def _parse_count(line: str, path: Path, lineno: int) -> int:
    text = line.strip()
    try:
        value = float(text)
    except ValueError:
        raise DataFormatError(f"{path}:{lineno}: expected a box count, got {text[:80]!r}") from None
    if not value.is_integer() or value < 0:
        raise DataFormatError(f"{path}:{lineno}: box count must be a non-negative integer, got {text!r}")
    return int(value)


def _fmt(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)
