"""Deterministic synthetic "shapes" instance-segmentation set (COCO format).

Pure python + numpy + OpenCV + pycocotools: nothing from OpenMMLab (nor torch)
is imported here, so the generator runs before (or without) the mm stack;
``tools/make_demo_data.py`` loads this package by path for that reason, so its
modules import each other relatively and nothing outside it.

- :mod:`.drawing`: one image and its instances (textures, clutter, shapes,
  occlusion);
- :mod:`.polygons`: the visible masks as COCO polygons that rasterise back to
  the same pixels;
- :mod:`.writer`: the set on disk (images, ``instances_*.json``, instance
  crops for a classifier, a meta file that lets an identical set be reused).
"""

from .drawing import CLASSES, MIN_CONTRAST, draw_background, generate_image, object_fill
from .polygons import has_hole, mask_to_polygons, polygons_to_mask
from .writer import (
    DEFAULTS,
    META_FILE,
    SPLITS,
    coco_dataset_kwargs,
    crop_instance,
    image_rng,
    make_demo_data,
    summary_line,
)

__all__ = [
    'CLASSES',
    'DEFAULTS',
    'META_FILE',
    'MIN_CONTRAST',
    'SPLITS',
    'coco_dataset_kwargs',
    'crop_instance',
    'draw_background',
    'generate_image',
    'has_hole',
    'image_rng',
    'make_demo_data',
    'mask_to_polygons',
    'object_fill',
    'polygons_to_mask',
    'summary_line',
]
