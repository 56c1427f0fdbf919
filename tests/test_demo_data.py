"""Tests of the deterministic demo "shapes" set (quadra_mm/datasets/demo_shapes/)."""

import hashlib
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

from quadra_mm.datasets import demo_shapes

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLASSES = demo_shapes.CLASSES
make_demo_data = demo_shapes.make_demo_data
TINY = dict(num_train=6, num_val=3, img_size=96, crop_size=32, seed=3)


def _tree_digest(root):
    files = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = osp.join(dirpath, n)
            with open(p, 'rb') as f:
                files[osp.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return files


@pytest.fixture(scope='module')
def tiny_set(tmp_path_factory):
    out = tmp_path_factory.mktemp('shapes') / 'a'
    res = make_demo_data(out, **TINY)
    return out, res


def _coco(path):
    from pycocotools.coco import COCO

    return COCO(str(path))


def test_crop_folders_and_coco_categories_share_the_labels(tiny_set):
    """mmpretrain's CustomDataset infers the crop set's classes from its
    sorted folder names; they must be the COCO categories in order, and each
    class must hold one crop per annotation of that category."""
    from mmpretrain.datasets import CustomDataset

    out, _ = tiny_set
    for split in ('train', 'val'):
        coco = _coco(out / 'annotations' / f'instances_{split}.json')
        crops = CustomDataset(data_root=str(out / 'crops' / split), pipeline=[])
        assert crops.CLASSES == tuple(coco.cats[i]['name'] for i in sorted(coco.cats)) == CLASSES
        per_label = np.bincount(crops.get_gt_labels(), minlength=len(CLASSES))
        per_category = np.bincount(
            [a['category_id'] - 1 for a in coco.dataset['annotations']], minlength=len(CLASSES)
        )
        assert per_label.tolist() == per_category.tolist()


def test_classes_are_balanced():
    """The generator draws the class uniformly and every shape survives
    placement about as often: over 150 images of 64 px (seed 0), each
    class's instance count is within 35 % of the mean. Measured: 50-74 per
    class (largest deviation 23 %) at seed 0, 18 % and 26 % at seeds 1 and
    2; the binomial spread is 11 % (one std), so a class that fails
    placement half of the time falls outside."""
    counts = np.zeros(len(CLASSES), int)
    for i in range(150):
        _, instances = demo_shapes.generate_image(demo_shapes.image_rng(0, 'train', i), 64)
        for inst in instances:
            counts[inst['label']] += 1
    mean = counts.mean()
    assert (np.abs(counts - mean) <= 0.35 * mean).all(), counts.tolist()


def test_layout_and_counts(tiny_set):
    out, res = tiny_set
    for split, n in (('train', TINY['num_train']), ('val', TINY['num_val'])):
        s = res['splits'][split]
        assert s['num_images'] == n
        assert len(os.listdir(out / split)) == n
        assert osp.isfile(out / 'annotations' / f'instances_{split}.json')
        crop_total = 0
        for name in CLASSES:
            d = out / 'crops' / split / name
            assert d.is_dir()
            crop_total += len(os.listdir(d))
        assert crop_total == s['num_instances'] == s['num_crops']
        assert s['num_instances'] >= n  # every image keeps at least one object
        assert s['polygon_mismatch_px'] == 0


def test_determinism(tmp_path, tiny_set):
    out_a, _ = tiny_set
    out_b = tmp_path / 'b'
    make_demo_data(out_b, **TINY)
    da, db = _tree_digest(out_a), _tree_digest(out_b)
    da.pop(demo_shapes.META_FILE)  # records the output path
    db.pop(demo_shapes.META_FILE)
    assert da == db
    # regenerate in place (same path): the meta file is identical too
    before = _tree_digest(out_b)
    make_demo_data(out_b, **TINY)
    assert _tree_digest(out_b) == before
    # a different seed changes the images
    out_c = tmp_path / 'c'
    make_demo_data(out_c, **dict(TINY, seed=4))
    dc = _tree_digest(out_c)
    assert dc['train/000001.png'] != db['train/000001.png']


def test_regenerate_removes_stale_and_refuses_foreign(tmp_path):
    out = tmp_path / 's'
    make_demo_data(out, **dict(TINY, num_train=4, num_val=2))
    make_demo_data(out, **dict(TINY, num_train=2, num_val=1))
    assert sorted(os.listdir(out / 'train')) == ['000001.png', '000002.png']
    res = make_demo_data(out, skip_existing=True, **dict(TINY, num_train=2, num_val=1))
    assert res.get('skipped')
    foreign = tmp_path / 'f'
    (foreign / 'train').mkdir(parents=True)
    with pytest.raises(FileExistsError):
        make_demo_data(foreign, **TINY)


def test_coco_annotations_consistent(tiny_set):
    import cv2

    out, _ = tiny_set
    for split in ('train', 'val'):
        coco = _coco(out / 'annotations' / f'instances_{split}.json')
        assert [c['name'] for c in coco.dataset['categories']] == list(CLASSES)
        ann_ids = [a['id'] for a in coco.dataset['annotations']]
        assert len(set(ann_ids)) == len(ann_ids)
        for img_id in coco.getImgIds():
            info = coco.imgs[img_id]
            img = cv2.imread(str(out / split / info['file_name']))
            assert img.shape == (info['height'], info['width'], 3)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            assert 1 <= len(anns) <= 5
            union = np.zeros((info['height'], info['width']), np.int32)
            for a in anns:
                assert a['iscrowd'] == 0
                assert isinstance(a['segmentation'], list) and a['segmentation']
                assert all(len(p) >= 6 and len(p) % 2 == 0 for p in a['segmentation'])
                m = coco.annToMask(a).astype(bool)
                assert m.sum() == a['area'] >= 30
                x, y, w, h = a['bbox']
                ys, xs = np.nonzero(m)
                # the bbox is the tight box of the polygon mask
                assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
                union += m
            assert union.max() <= 1, 'visible masks of one image overlap'


def test_scale_and_overlap_variety():
    # default image size, a modest number of images: objects from ~22% to ~55%
    # of the side, several per image, and some of them occluded
    per_image, occluded = [], 0
    for i in range(40):
        rng = demo_shapes.image_rng(0, 'train', i)
        _, inst = demo_shapes.generate_image(rng, 192)
        per_image.append([int(x['mask'].sum()) for x in inst])
        occluded += sum(int(x['mask'].sum()) < x['full_area'] for x in inst)
    areas = np.array([a for s in per_image for a in s])
    assert areas.min() < 0.02 * 192**2 and areas.max() > 0.1 * 192**2
    assert max(len(s) for s in per_image) >= 4
    assert occluded >= 5


def _fills_in_contrast(tries):
    """How many of 200 object fills contrast with the background they cover."""
    rng = np.random.default_rng(0)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    count = 0
    for _ in range(200):
        img = demo_shapes.draw_background(rng, 64)
        fill = demo_shapes.object_fill(rng, img, mask, tries=tries)
        assert fill.shape == (int(mask.sum()), 3)
        dist = np.linalg.norm(fill.mean(0) - img[mask].mean(0))
        count += dist >= demo_shapes.MIN_CONTRAST
    return count


def test_object_fills_contrast_with_what_they_cover():
    # A single random draw is camouflaged now and then (16 of these 200);
    # the re-draws of the default remove every one of them.
    assert _fills_in_contrast(tries=1) < 200
    assert _fills_in_contrast(tries=8) == 200


def test_crops_readable(tiny_set):
    import cv2

    out, _ = tiny_set
    d = out / 'crops' / 'train'
    files = [d / c / f for c in CLASSES for f in sorted(os.listdir(d / c))]
    assert files
    for f in files[:10]:
        assert cv2.imread(str(f)).shape == (TINY['crop_size'], TINY['crop_size'], 3)


def test_cli(tmp_path):
    out = tmp_path / 'cli'
    r = subprocess.run(
        [
            sys.executable,
            osp.join(ROOT, 'tools', 'make_demo_data.py'),
            '--out',
            str(out),
            '--train',
            '2',
            '--val',
            '1',
            '--img-size',
            '64',
            '--crop-size',
            '16',
            '--seed',
            '1',
        ],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        check=True,
    )
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and 'train: 2 images' in lines[0] and 'val: 1 images' in lines[0]
    meta = json.loads((out / demo_shapes.META_FILE).read_text())
    assert meta['args']['img_size'] == 64
    # the CLI file is importable by path and exposes the same entry point
    spec = importlib.util.spec_from_file_location(
        'make_demo_data_cli', osp.join(ROOT, 'tools', 'make_demo_data.py')
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.CLASSES == CLASSES


def test_no_mm_imports_at_import_time():
    """tools/make_demo_data.py loads the generator package by path and pulls
    in neither torch nor OpenMMLab (nor ``quadra_mm`` itself)."""
    tool = osp.join(ROOT, 'tools', 'make_demo_data.py')
    code = (
        'import sys, importlib.util; '
        f'spec = importlib.util.spec_from_file_location("cli", {tool!r}); '
        'cli = importlib.util.module_from_spec(spec); spec.loader.exec_module(cli); '
        'assert cli.make_demo_data.__module__ == "quadra_mm_demo_shapes.writer"; '
        'bad = [m for m in sys.modules if m.split(".")[0] in '
        '("mmcv", "mmdet", "mmengine", "mmpretrain", "torch", "quadra_mm")]; '
        'assert not bad, bad'
    )
    subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)


# ---------------------------------------------------------------- mmdet
def _register_mmdet():
    from mmdet.utils import register_all_modules

    register_all_modules()


def test_mmdet_coco_dataset_loads(tiny_set):
    _register_mmdet()
    from mmdet.datasets import CocoDataset

    out, res = tiny_set
    coco = _coco(out / 'annotations' / 'instances_train.json')
    ds = CocoDataset(
        **demo_shapes.coco_dataset_kwargs(out, 'train'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        ],
    )
    assert len(ds) == TINY['num_train']
    assert tuple(ds.metainfo['classes']) == CLASSES
    total = 0
    for i in range(len(ds)):
        r = ds[i]
        img_id = r['img_id']
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        n = len(anns)
        assert r['img'].shape == (TINY['img_size'], TINY['img_size'], 3)
        assert len(r['gt_bboxes']) == n == len(r['gt_masks']) == len(r['gt_bboxes_labels'])
        masks = r['gt_masks'].to_ndarray().astype(bool)
        for a, box, lab, m in zip(
            anns, r['gt_bboxes'].tensor.numpy(), r['gt_bboxes_labels'], masks
        ):
            x, y, w, h = a['bbox']
            np.testing.assert_allclose(box, [x, y, x + w, y + h])
            assert int(lab) == a['category_id'] - 1
            assert (m == coco.annToMask(a).astype(bool)).all()
        total += n
    assert total == res['splits']['train']['num_instances']


def test_mmdet_coco_metric_gt_as_pred(tiny_set):
    _register_mmdet()
    import torch
    from mmdet.evaluation import CocoMetric

    out, _ = tiny_set
    ann_file = out / 'annotations' / 'instances_val.json'
    coco = _coco(ann_file)
    metric = CocoMetric(ann_file=str(ann_file), metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=CLASSES)
    samples = []
    for img_id in coco.getImgIds():
        info = coco.imgs[img_id]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        boxes = [
            [a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2], a['bbox'][1] + a['bbox'][3]]
            for a in anns
        ]
        samples.append(
            dict(
                img_id=img_id,
                ori_shape=(info['height'], info['width']),
                pred_instances=dict(
                    bboxes=torch.tensor(boxes, dtype=torch.float32),
                    scores=torch.ones(len(anns)),
                    labels=torch.tensor([a['category_id'] - 1 for a in anns]),
                    masks=torch.from_numpy(
                        np.stack([coco.annToMask(a) for a in anns]).astype(bool)
                    ),
                ),
            )
        )
    metric.process({}, samples)
    res = metric.evaluate(size=len(samples))
    assert res['coco/bbox_mAP'] == pytest.approx(1.0)
    assert res['coco/segm_mAP'] == pytest.approx(1.0, abs=0.02)
