"""The offline main job: the QuadraNet V2 pipeline in miniature, with the
project's own configs and the mm tools, on generated data.

    1. tools/make_demo_data.py writes the shapes set under data/shapes;
    2. tools/train.py trains a first-order ResNet-18 classifier on object
       crops with mmpretrain (it stands in for an ImageNet checkpoint);
    3. tools/train.py adapts that checkpoint to QNv2 through init_cfg with
       mmpretrain (the "ImageNet-adapted" step);
    4. tools/train.py trains Mask R-CNN with the adapted QNv2 backbone;
    5. tools/test.py prints COCO bbox/segm mAP and draws the predictions.

Each step is a subprocess running exactly what a user would type; the
summary (times, accuracy, mAP) goes to <work-root>/summary.json.
"""

import argparse
import glob
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time
from typing import Dict, List

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from quadra_mm.cli import latest_metrics  # noqa: E402

DEMO = osp.join('configs', 'demo')
CLASSIFIER = osp.join(DEMO, 'resnet18_1xb32_shapes-crops.py')
ADAPTED = osp.join(DEMO, 'qnv2-resnet18_1xb32_shapes-crops.py')
DETECTOR = osp.join(DEMO, 'mask-rcnn_qnv2-r18_fpn_shapes.py')


def run(step: str, args: List[str], times: Dict[str, float]) -> None:
    print(f'\n==> {step}: {" ".join(args)}', flush=True)
    start = time.time()
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)
    times[step] = round(time.time() - start, 1)


def machine() -> str:
    """The CPU and the compiled stack: the demo's mAP is reproducible run to
    run on one machine, but CPU kernels (oneDNN, the mmcv build) may round
    differently on another, so the summary says where it was measured."""
    import mmcv
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(
                (line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu
            )
    except OSError:
        pass
    return (
        f'{cpu} ({torch.backends.cpu.get_cpu_capability()}), '
        f'{os.cpu_count()} cores, torch {torch.__version__}, '
        f'mmcv {mmcv.__version__}, {torch.get_num_threads()} threads'
    )


def last_checkpoint(work_dir: str) -> str:
    with open(osp.join(ROOT, work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-root', default='work_dirs/demo')
    parser.add_argument(
        '--seed',
        type=int,
        default=None,
        help="every training step's randomness.seed (default: "
        "the configs' own, 0); the data stays the same",
    )
    args = parser.parse_args()
    seed = [] if args.seed is None else [f'randomness.seed={args.seed}']
    work = {
        name: osp.join(args.work_root, name)
        for name in ('classifier', 'adapted', 'detector', 'test')
    }
    times: Dict[str, float] = {}
    start = time.time()

    run('data', ['tools/make_demo_data.py', '--out', 'data/shapes', '--skip-existing'], times)
    run(
        'first-order classifier',
        [
            'tools/train.py',
            CLASSIFIER,
            '--work-dir',
            work['classifier'],
            *(['--cfg-options', *seed] if seed else []),
        ],
        times,
    )
    first_order = last_checkpoint(work['classifier'])
    run(
        'QNv2 adaptation (mmpretrain)',
        [
            'tools/train.py',
            ADAPTED,
            '--work-dir',
            work['adapted'],
            '--cfg-options',
            f'model.backbone.init_cfg.checkpoint={first_order}',
            f'model.head.init_cfg.checkpoint={first_order}',
            *seed,
        ],
        times,
    )
    adapted = last_checkpoint(work['adapted'])
    run(
        'Mask R-CNN training (mmdet)',
        [
            'tools/train.py',
            DETECTOR,
            '--work-dir',
            work['detector'],
            '--cfg-options',
            f'model.backbone.init_cfg.checkpoint={adapted}',
            *seed,
        ],
        times,
    )
    detector = last_checkpoint(work['detector'])
    run(
        'COCO evaluation (mmdet)',
        [
            'tools/test.py',
            DETECTOR,
            detector,
            '--work-dir',
            work['test'],
            '--show-dir',
            'predictions',
        ],
        times,
    )

    classifier = latest_metrics(osp.join(ROOT, work['classifier']), 'accuracy/top1')
    adapted_acc = latest_metrics(osp.join(ROOT, work['adapted']), 'accuracy/top1')
    coco = latest_metrics(osp.join(ROOT, work['test']), 'coco/bbox_mAP')
    summary = dict(
        seed=args.seed,
        machine=machine(),
        first_order_top1=classifier['accuracy/top1'],
        qnv2_adapted_top1=adapted_acc['accuracy/top1'],
        bbox_mAP=coco['coco/bbox_mAP'],
        segm_mAP=coco['coco/segm_mAP'],
        bbox_mAP_50=coco['coco/bbox_mAP_50'],
        segm_mAP_50=coco['coco/segm_mAP_50'],
        seconds=times,
        total_seconds=round(time.time() - start, 1),
        predictions=sorted(glob.glob(osp.join(ROOT, work['test'], '*', 'predictions')))[-1:],
    )
    os.makedirs(osp.join(ROOT, args.work_root), exist_ok=True)
    with open(osp.join(ROOT, args.work_root, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print('\n==> demo summary')
    print(json.dumps(summary, indent=2))


if __name__ == '__main__':
    main()
