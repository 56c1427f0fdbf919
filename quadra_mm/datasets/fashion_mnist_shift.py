"""The non-linear input shift of the adaptation study: "solarise + swirl".

Pure numpy + OpenCV (no OpenMMLab imports), so the figure of examples and the
dataset share one definition.

For an image with intensities ``v`` in [0, 1]:

* **solarise**: ``m(v) = sin(0.9 * pi * sqrt(v))``, a smooth, non-monotonic
  intensity map. Black stays black; mid-grey becomes the brightest value; the
  bright garment pixels fold back down (``m(1) = 0.31``). No affine map of the
  pixels (and so no change of a first conv's weights) undoes it.
* **swirl**: a local rotation about the image centre by the angle
  ``theta(r) = strength * exp(-r^2 / (2 * radius^2))`` at distance ``r``: the
  centre turns by ``strength`` radians, the border hardly moves. Sampled with
  bilinear interpolation, border pixels replicated.

The same map is applied to every image (a fixed domain shift, not an
augmentation).
"""

from typing import Tuple

import cv2
import numpy as np

__all__ = ['SHIFTS', 'solarise', 'swirl_maps', 'solarise_swirl', 'apply_shift']

SWIRL_STRENGTH = 1.6  # radians at the centre
SWIRL_RADIUS = 8.0  # pixels, for 28 x 28 images
SOLARISE_FREQ = 0.9


def solarise(images: np.ndarray, freq: float = SOLARISE_FREQ) -> np.ndarray:
    """``255 * sin(freq * pi * sqrt(v / 255))`` of uint8 images, as uint8."""
    v = images.astype(np.float32) / 255.0
    out = np.sin(freq * np.pi * np.sqrt(v)) * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def swirl_maps(
    height: int, width: int, strength: float = SWIRL_STRENGTH, radius: float = SWIRL_RADIUS
) -> Tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` source coordinates of the swirl (output pixel -> input)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    dy, dx = ys - cy, xs - cx
    theta = strength * np.exp(-(dx * dx + dy * dy) / (2.0 * radius * radius))
    cos, sin = np.cos(theta), np.sin(theta)
    map_x = (cx + cos * dx - sin * dy).astype(np.float32)
    map_y = (cy + sin * dx + cos * dy).astype(np.float32)
    return map_x, map_y


def solarise_swirl(images: np.ndarray) -> np.ndarray:
    """The study's shift of a ``(N, H, W)`` uint8 array: swirl, then solarise."""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            'solarise_swirl expects an (N, H, W) uint8 array, got '
            f'{images.dtype} of shape {images.shape}'
        )
    map_x, map_y = swirl_maps(*images.shape[1:])
    warped = (
        np.stack(
            [
                cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                for img in images
            ]
        )
        if len(images)
        else images
    )
    return solarise(warped)


SHIFTS = {'solarise_swirl': solarise_swirl}


def apply_shift(images: np.ndarray, shift: str) -> np.ndarray:
    """``SHIFTS[shift](images)``; an unknown name is a ValueError listing the
    valid ones."""
    if shift not in SHIFTS:
        raise ValueError(f'unknown input shift {shift!r}; valid: {sorted(SHIFTS)}')
    return SHIFTS[shift](images)
