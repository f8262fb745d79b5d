"""Named test-time protocols: how an image is resized (and flipped) before detection.

- ``original``: the image as is (biubug6 "origin size").
- ``fixed``: short side 1600 px, long side at most 2150 px (biubug6's default WIDER test size).
- ``vga``: long side 640 px (the SCRFD-style VGA test).
- ``multiscale``: short sides 500, 800, 1100, 1400, 1700 px, each also horizontally flipped; detections of all
  passes merged by box voting at IoU 0.4 (arXiv 1905.00641 section 4.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from retina.errors import RetinaError


@dataclass(frozen=True)
class Resize:
    """Scale so the short side is ``short`` px, capped so the long side is at most ``long`` px.

    Only ``long``: the long side becomes ``long``. Neither: no resize.
    """

    short: int | None = None
    long: int | None = None

    def factor(self, height: int, width: int) -> float:
        factors = []
        if self.short is not None:
            factors.append(self.short / min(height, width))
        if self.long is not None:
            factors.append(self.long / max(height, width))
        return min(factors) if factors else 1.0

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) after resizing; at least 1 px each."""
        f = self.factor(height, width)
        return max(1, round(height * f)), max(1, round(width * f))


@dataclass(frozen=True)
class TestProtocol:
    name: str
    resizes: tuple[Resize, ...]
    flip: bool = False
    voting_iou: float | None = None  # merge passes by box voting at this IoU (None: a single pass)

    def __post_init__(self) -> None:
        if (len(self.resizes) > 1 or self.flip) and self.voting_iou is None:
            raise ValueError(f"protocol {self.name!r} has several passes but no voting IoU")


PROTOCOLS: dict[str, TestProtocol] = {
    "original": TestProtocol("original", (Resize(),)),
    "fixed": TestProtocol("fixed", (Resize(short=1600, long=2150),)),
    "vga": TestProtocol("vga", (Resize(long=640),)),
    "multiscale": TestProtocol(
        "multiscale", tuple(Resize(short=s) for s in (500, 800, 1100, 1400, 1700)), flip=True, voting_iou=0.4
    ),
}


def protocol(name: str) -> TestProtocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise RetinaError(f"unknown test protocol {name!r}; choose one of {sorted(PROTOCOLS)}") from None
