"""Face alignment for verification: the 5-point similarity onto the ArcFace template, and a plain centre crop.

    crop = align_face(image, landmarks)        # (112, 112, 3) uint8, eyes/nose/mouth on the template points
    control = center_crop(image, box)          # the "none" control: a square around the box centre, resized

Landmarks are (5, 2) x y pixels in the order left eye, right eye, nose, left and right mouth corner (the order
of RetinaFace and MTCNN), in pixel-index coordinates (pixel centres at integers, as ``cv2.warpAffine`` uses).
Images are HxWx3 uint8 arrays in any channel order (channels pass through unchanged).
"""

from __future__ import annotations

import cv2
import numpy as np

from retina.errors import RetinaError

# insightface's reference points for 112x112 ArcFace crops (arcface_dst in insightface/utils/face_align.py).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def _points(points: np.ndarray, name: str) -> np.ndarray:
    """(N, 2) finite float64 points, N >= 2; anything else is a RetinaError naming ``name``."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 2:
        raise RetinaError(f"{name}: expected (N, 2) points with N >= 2, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise RetinaError(f"{name}: points have NaN or infinite values")
    return arr


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity (rotation, uniform scale, translation; no reflection) that maps ``src`` onto ``dst``
    with least squared error, as a (2, 3) float64 matrix ``[s R | t]``: ``dst ~ s R src + t``.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point patterns":
    SVD of the cross-covariance; the sign of the last singular direction is flipped when the best orthogonal
    map would be a reflection. ``src`` and ``dst``: (N, 2) corresponding points. Coincident ``src`` points
    (no spread) leave the transform undefined: a RetinaError.
    """
    src, dst = _points(src, "src"), _points(dst, "dst")
    if src.shape != dst.shape:
        raise RetinaError(f"src and dst must pair up: shapes {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - src_mean, dst - dst_mean
    src_var = (a**2).sum() / len(src)
    if src_var <= (1e-9 * max(1.0, float(np.abs(src).max()))) ** 2:
        raise RetinaError("src: the points coincide (no spread), so no similarity is defined")
    u, sigma, vt = np.linalg.svd(b.T @ a / len(src))
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = float((sigma * signs).sum() / src_var)
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def _image(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 image with H, W >= 1; anything else is a RetinaError."""
    ok = isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    if not ok or not image.size:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise RetinaError(f"expected an HxWx3 uint8 image, got {got}")
    return image


def _size(size: int) -> int:
    if not isinstance(size, int | np.integer) or size < 1:
        raise RetinaError(f"size must be a positive integer, got {size!r}")
    return int(size)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """The (size, size, 3) uint8 face warped so that its five landmarks fall on the ArcFace template.

    The template is insightface's 112x112 one, scaled by ``size / 112``. Bilinear interpolation, black outside
    the image (as insightface's ``norm_crop``).
    """
    image, size = _image(image), _size(size)
    landmarks = _points(landmarks, "landmarks")
    if landmarks.shape != (5, 2):
        raise RetinaError(f"landmarks: expected (5, 2), got {landmarks.shape}")
    matrix = similarity_transform(landmarks, ARCFACE_112 * (size / 112.0))
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


def center_crop(image: np.ndarray, box: np.ndarray, size: int = 112) -> np.ndarray:
    """The "none" alignment control: a square of side max(w, h) (whole pixels) centred on the box, resized.

    ``box`` x1 y1 x2 y2 pixels (edges). Parts outside the image are black. Area resampling when shrinking,
    bilinear when enlarging. Returns (size, size, 3) uint8.
    """
    image, size = _image(image), _size(size)
    box = np.asarray(box, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        raise RetinaError(f"box: expected finite x1 y1 x2 y2 with x2 > x1 and y2 > y1, got {box.tolist()}")
    side = max(1, round(max(box[2] - box[0], box[3] - box[1])))
    x0 = round((box[0] + box[2]) / 2 - side / 2)
    y0 = round((box[1] + box[3]) / 2 - side / 2)
    crop = _padded_crop(image, x0, y0, side)
    method = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=method)


def _padded_crop(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """``image[y0 : y0 + side, x0 : x0 + side]`` with black where that square leaves the image."""
    height, width = image.shape[:2]
    out = np.zeros((side, side, 3), dtype=image.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, width), min(y0 + side, height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out
