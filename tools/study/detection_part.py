"""Part 4, run with a :class:`~.runner.Study`'s pool: the demo detector with
QNv2 adapters against a first-order twin given the same extra classifier
epochs, per seed, on a reduced shapes set and schedule; then part 6's pruning
of the QNv2 detectors (:mod:`.pruning_part`) when ``pruning`` is run."""

import copy
import os.path as osp
import time
from typing import Dict, List, Tuple

from mmengine.config import Config

from quadra_mm.comparison.executor import concurrently
from quadra_mm.datasets import make_demo_data

from .configs import crops_cfg, detector_cfg, epoch_checkpoint
from .pruning_part import run_pruning
from .scale import DEMO, STUDY

__all__ = ['run_detection', 'detection_test_set']


def run_detection(study) -> None:
    """QNv2 vs first-order demo detector, the same extra classifier
    epochs for both, on a reduced shapes set and schedule."""
    s = study.scale
    shapes = osp.join(study.work, 'shapes')
    start = time.time()
    make_demo_data(
        shapes,
        num_train=s.det_train,
        num_val=s.det_val,
        img_size=s.det_img,
        crop_size=s.det_crop,
        seed=0,
        skip_existing=True,
    )
    study.results['detection']['data_seconds'] = round(time.time() - start, 1)
    detectors = (
        (
            'qnv2',
            osp.join(DEMO, 'qnv2-resnet18_1xb32_shapes-crops.py'),
            osp.join(DEMO, 'mask-rcnn_qnv2-r18_fpn_shapes.py'),
        ),
        (
            'first-order',
            osp.join(STUDY, 'resnet18_1xb32_shapes-crops_extra-epochs.py'),
            osp.join(STUDY, 'mask-rcnn_r18_fpn_shapes.py'),
        ),
    )

    def one_seed(seed: int) -> List[dict]:
        cls_cfg = crops_cfg(
            osp.join(DEMO, 'resnet18_1xb32_shapes-crops.py'),
            shapes,
            s,
            seed,
            s.det_cls_epochs,
            osp.join(study.work, 'det', f'seed{seed}', 'classifier'),
        )
        cls = study.train_run(cls_cfg, 'accuracy/top1')
        first_order = epoch_checkpoint(cls_cfg)
        study.step(
            s.det_cls_epochs * 10,
            f'detection seed {seed}: first-order classifier top-1 {cls["final"]:.1f}',
            cls['seconds'],
            cls['reused'],
        )

        def one_arm(detector: Tuple[str, str, str]) -> dict:
            name, adapt_path, det_path = detector
            where = osp.join(study.work, 'det', f'seed{seed}', name)
            adapt_cfg = crops_cfg(adapt_path, shapes, s, seed, None, osp.join(where, 'classifier'))
            adapt_cfg.model.backbone.init_cfg.checkpoint = first_order
            adapt_cfg.model.head.init_cfg = dict(
                type='Pretrained', checkpoint=first_order, prefix='head.'
            )
            adapted = study.train_run(adapt_cfg, 'accuracy/top1')
            det_cfg = detector_cfg(
                det_path,
                shapes,
                s,
                seed,
                epoch_checkpoint(adapt_cfg),
                osp.join(where, 'detector'),
            )
            det = study.train_run(det_cfg, 'coco/bbox_mAP')
            study.kept.setdefault(f'detection / {name}', {})[seed] = (det_cfg, det['checkpoint'])
            coco = det['records'][-1]
            study.step(
                s.det_cls_epochs * 10 / 2 + 6 * s.det_iters,
                f'detection seed {seed} {name}: classifier '
                f'{adapted["final"]:.1f}, bbox {coco["coco/bbox_mAP"]:.3f}'
                f' segm {coco["coco/segm_mAP"]:.3f}',
                adapted['seconds'] + det['seconds'],
                det['reused'],
            )
            return dict(
                seed=seed,
                classifier_top1=cls['final'],
                adapted_top1=adapted['final'],
                bbox_mAP=coco['coco/bbox_mAP'],
                segm_mAP=coco['coco/segm_mAP'],
                bbox_mAP_50=coco['coco/bbox_mAP_50'],
                segm_mAP_50=coco['coco/segm_mAP_50'],
                seconds=round(adapted['seconds'] + det['seconds'], 1),
                detector_step_time=det['step_time'],
            )

        return concurrently(one_arm, detectors)

    per_seed = concurrently(one_seed, s.seeds)
    study.results['detection'].update(
        arms={name: [runs[i] for runs in per_seed] for i, (name, *_) in enumerate(detectors)}
    )
    if 'pruning' in study.parts:
        run_pruning(
            study,
            'detection',
            detection_test_set(study, study.kept['detection / qnv2']),
            'coco/bbox_mAP',
            ('coco/bbox_mAP', 'coco/segm_mAP'),
        )


def detection_test_set(
    study, trained: Dict[int, Tuple[Config, str]]
) -> Dict[int, Tuple[Config, str]]:
    """``trained``'s detectors with a test set of their own: part 4
    reports its val set, which part 6's ablation scorer ranks on, so the
    pruned detectors are scored on ``det_val`` other images (the
    generator's seed 1)."""
    s = study.scale
    shapes = osp.join(study.work, 'shapes-test')
    make_demo_data(
        shapes,
        num_train=0,
        num_val=s.det_val,
        img_size=s.det_img,
        crop_size=s.det_crop,
        seed=1,
        skip_existing=True,
    )
    tested = {}
    for seed, (cfg, checkpoint) in trained.items():
        cfg = copy.deepcopy(cfg)
        cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
        cfg.test_dataloader.dataset.data_root = shapes + '/'
        cfg.test_evaluator = copy.deepcopy(cfg.val_evaluator)
        cfg.test_evaluator.ann_file = osp.join(shapes, 'annotations', 'instances_val.json')
        tested[seed] = (cfg, checkpoint)
    return tested
