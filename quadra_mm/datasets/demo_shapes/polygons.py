"""COCO polygon encoding of the demo set's visible masks.

A visible mask is stored as COCO polygons (a union of outer contours), so it
must have no hole: :func:`has_hole` is what the drawing checks before it
accepts a placement. The polygons trace the pixel boundary exactly (contours of
the 2x nearest-upsampled mask), so pycocotools' rasterisation of the stored
polygons reproduces the mask pixel for pixel.
"""

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def has_hole(mask):
    """Whether a binary uint8 mask encloses a hole (COCO polygons cannot hold one)."""
    if not mask.any():
        return False
    _, hier = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hier is not None and bool((hier[0][:, 3] >= 0).any())


def mask_to_polygons(mask):
    """COCO polygons (list of flat xy lists) tracing a hole-free binary mask.

    Contours are taken on the 2x nearest-upsampled mask and mapped back with
    (p + 0.5) / 2, i.e. a quarter pixel inside the pixel boundary: pycocotools
    then rasterises the union of the parts back to exactly ``mask``.
    """
    up = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        if len(c) < 3:
            continue
        pts = (c.reshape(-1, 2).astype(np.float64) + 0.5) / 2
        polys.append([float(v) for v in pts.ravel()])
    return polys


def polygons_to_mask(polys, h, w):
    """pycocotools' rasterisation of ``polys``: ``(bool mask (h, w), merged RLE)``."""
    rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    return mask_utils.decode(rle).astype(bool), rle
