"""Writing the demo "shapes" set to disk, and reusing a set already written.

Layout under ``out``: ``{train,val}/*.png``, ``annotations/instances_{split}.json``
(COCO instance segmentation: the visible masks as polygons, ``area`` the
rasterised polygons' area and ``bbox`` their tight box), ``crops/{train,val}/<class>/*.png``
and ``demo_shapes_meta.json``. The crops, a square around every instance in
mmpretrain ``CustomDataset`` folder layout, pretrain a small classifier that
stands in for an ImageNet checkpoint.

Same arguments -> byte-identical files: every image has its own RNG seeded by
``(seed, split, index)``, json is written with a fixed key order.
"""

import json
import os
import os.path as osp
import shutil
import time

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from .drawing import CLASSES, generate_image
from .polygons import mask_to_polygons, polygons_to_mask

SPLITS = ('train', 'val')
META_FILE = 'demo_shapes_meta.json'
_SPLIT_CODE = {'train': 0, 'val': 1}
_GEN_VERSION = 4  # bump when the generated content changes

DEFAULTS = dict(num_train=1200, num_val=100, img_size=192, crop_size=64, seed=0)


def crop_instance(img, bbox, crop_size, enlarge=1.15):
    """Square crop around an xywh bbox, enlarged, border-replicated, resized."""
    x, y, w, h = bbox
    side = max(4, int(round(max(w, h) * enlarge)))
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    pad = side
    padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    interp = cv2.INTER_AREA if side > crop_size else cv2.INTER_LINEAR
    return cv2.resize(crop, (crop_size, crop_size), interpolation=interp)


def image_rng(seed, split, index):
    """The generator of one image: its own stream, whatever the other images."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), _SPLIT_CODE[split], int(index), _GEN_VERSION])
    )


def _write_png(path, img):
    if not cv2.imwrite(path, img, [cv2.IMWRITE_PNG_COMPRESSION, 6]):
        raise IOError(f'could not write {path}')


def _generate_split(out, split, num_images, img_size, crop_size, seed, min_area):
    img_dir = osp.join(out, split)
    crop_root = osp.join(out, 'crops', split)
    os.makedirs(img_dir, exist_ok=True)
    for name in CLASSES:
        os.makedirs(osp.join(crop_root, name), exist_ok=True)
    images, annotations = [], []
    per_class = {name: 0 for name in CLASSES}
    mismatch_px = 0
    ann_id = 0
    for i in range(num_images):
        image_id = i + 1
        rng = image_rng(seed, split, i)
        img, instances = generate_image(rng, img_size, min_area=min_area)
        file_name = f'{image_id:06d}.png'
        _write_png(osp.join(img_dir, file_name), img)
        images.append(dict(id=image_id, file_name=file_name, width=img_size, height=img_size))
        for inst in instances:
            polys = mask_to_polygons(inst['mask'])
            if not polys:
                continue
            pmask, rle = polygons_to_mask(polys, img_size, img_size)
            area = int(mask_utils.area(rle))
            if area < min_area:
                continue
            mismatch_px += int((pmask != inst['mask']).sum())
            ys, xs = np.nonzero(pmask)
            x0, y0 = int(xs.min()), int(ys.min())
            bbox = [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]
            ann_id += 1
            name = CLASSES[inst['label']]
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=image_id,
                    category_id=inst['label'] + 1,
                    segmentation=polys,
                    area=float(area),
                    bbox=bbox,
                    iscrowd=0,
                )
            )
            per_class[name] += 1
            crop = crop_instance(img, bbox, crop_size)
            _write_png(osp.join(crop_root, name, f'{image_id:06d}_{ann_id:06d}.png'), crop)
    coco = dict(
        info=dict(description='quadra-mm demo shapes', version=str(_GEN_VERSION)),
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=n, supercategory='shape') for i, n in enumerate(CLASSES)],
    )
    ann_file = osp.join(out, 'annotations', f'instances_{split}.json')
    with open(ann_file, 'w', encoding='utf-8') as f:
        json.dump(coco, f, separators=(',', ':'))
    return dict(
        img_dir=img_dir,
        ann_file=ann_file,
        crop_dir=crop_root,
        num_images=len(images),
        num_instances=len(annotations),
        num_crops=len(annotations),
        per_class=per_class,
        polygon_mismatch_px=mismatch_px,
    )


def _args_record(num_train, num_val, img_size, crop_size, seed, min_area):
    return dict(
        version=_GEN_VERSION,
        num_train=int(num_train),
        num_val=int(num_val),
        img_size=int(img_size),
        crop_size=int(crop_size),
        seed=int(seed),
        min_area=int(min_area),
        classes=list(CLASSES),
    )


def make_demo_data(
    out,
    num_train=1200,
    num_val=100,
    img_size=192,
    crop_size=64,
    seed=0,
    min_area=30,
    skip_existing=False,
):
    """Write the demo set under ``out`` and return its paths and counts.

    Layout: ``out/{train,val}/*.png``, ``out/annotations/instances_{split}.json``,
    ``out/crops/{train,val}/<class>/*.png`` and ``out/demo_shapes_meta.json``.
    Any earlier set under ``out`` (recognised by the meta file) is removed first;
    ``out`` holding ``train``/``val``/``crops``/``annotations`` without the meta
    file is refused rather than overwritten. With ``skip_existing=True`` an
    existing set generated with the same arguments is reused as is.
    """
    out = str(out)
    record = _args_record(num_train, num_val, img_size, crop_size, seed, min_area)
    meta_path = osp.join(out, META_FILE)
    owned = list(SPLITS) + ['crops', 'annotations']
    if osp.exists(meta_path):
        with open(meta_path, encoding='utf-8') as f:
            meta = json.load(f)
        if skip_existing and meta.get('args') == record:
            meta['skipped'] = True
            return meta
        for name in owned:
            shutil.rmtree(osp.join(out, name), ignore_errors=True)
        os.remove(meta_path)
    elif any(osp.exists(osp.join(out, name)) for name in owned):
        raise FileExistsError(
            f'{out} holds {owned} entries but no {META_FILE}: not a demo set, '
            'refusing to overwrite it'
        )
    t0 = time.perf_counter()
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    counts = dict(train=num_train, val=num_val)
    splits = {
        split: _generate_split(out, split, counts[split], img_size, crop_size, seed, min_area)
        for split in SPLITS
    }
    result = dict(
        out=out,
        classes=list(CLASSES),
        args=record,
        splits=splits,
        seconds=round(time.perf_counter() - t0, 2),
    )
    with open(meta_path, 'w', encoding='utf-8') as f:
        # seconds vary run to run: keep them out of the on-disk record
        json.dump({k: v for k, v in result.items() if k != 'seconds'}, f, indent=1)
    return result


def summary_line(result):
    parts = []
    for split in SPLITS:
        s = result['splits'][split]
        parts.append(
            f'{split}: {s["num_images"]} images / {s["num_instances"]} instances'
            f' / {s["num_crops"]} crops'
        )
    extra = (
        ' (existing set reused)'
        if result.get('skipped')
        else f' in {result.get("seconds", 0):.1f} s'
    )
    return f'demo shapes -> {result["out"]}: ' + '; '.join(parts) + extra


def coco_dataset_kwargs(data_root, split='train'):
    """Keyword arguments for mmdet's CocoDataset on a generated split."""
    return dict(
        data_root=str(data_root),
        ann_file=f'annotations/instances_{split}.json',
        data_prefix=dict(img=f'{split}/'),
        metainfo=dict(classes=CLASSES),
    )
