"""Export a trained QuadraNet V2 model to its inference form, as a config +
checkpoint pair that mmdet's ``init_detector`` / ``DetInferencer`` and
``tools/test.py`` load.

    python tools/export.py CONFIG CHECKPOINT OUT_DIR

Writes ``OUT_DIR/<config name>_exported.py`` and ``..._exported.pth`` and
prints the measured inference time of the trained and the exported model.
"""

import argparse
import copy
import os
import os.path as osp
import sys
import time
from typing import List, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402
from mmengine.runner.checkpoint import save_checkpoint  # noqa: E402

import quadra_mm  # noqa: E402,F401  (registers modules, torch 2.14 compat)
from quadra_mm.adapters import quadratic_layers  # noqa: E402
from quadra_mm.deploy import export_for_inference  # noqa: E402
from quadra_mm.models import load_trained_checkpoint  # noqa: E402

QUADRATIC_BACKBONES = ('QuadraNetV2', 'QuadraNet')
# Hooks that act on the training form only (they need quadratic layers).
TRAINING_HOOKS = (
    'QuadraticStageHook',
    'QuadraticStatsHook',
    'ExactResumeHook',
    'AdapterCheckpointHook',
    'QuadraticNonFiniteHook',
)


def quadratic_cfg_paths(cfg, path: str = '') -> List[str]:
    """Dotted paths (``'backbone'``) of the quadratic backbone configs in a
    model config."""
    found = []
    for key, value in cfg.items():
        if not isinstance(value, dict):
            continue
        here = f'{path}.{key}' if path else key
        if value.get('type') in QUADRATIC_BACKBONES:
            found.append(here)
        else:
            found.extend(quadratic_cfg_paths(value, here))
    return found


def _without_pretrained(backbone_cfg: dict) -> dict:
    backbone_cfg = copy.deepcopy(backbone_cfg)
    init_cfg = backbone_cfg.pop('init_cfg', None)
    kept = [
        c
        for c in (init_cfg if isinstance(init_cfg, list) else [init_cfg])
        if c and c.get('type') != 'Pretrained'
    ]
    if kept:
        backbone_cfg['init_cfg'] = kept
    return backbone_cfg


def exported_config(cfg: Config, paths: List[str]) -> Config:
    """``cfg`` with each quadratic backbone (at the dotted ``paths``) replaced
    by its inference form (``ExportedQuadraNet``), training-only hooks and
    ``load_from`` removed."""
    cfg = copy.deepcopy(cfg)
    for path in paths:
        *parents, key = path.split('.')
        owner = cfg.model
        for parent in parents:
            owner = owner[parent]
        owner[key] = dict(type='ExportedQuadraNet', model=_without_pretrained(owner[key]))
    cfg.custom_hooks = [
        h for h in cfg.get('custom_hooks', []) if h.get('type') not in TRAINING_HOOKS
    ]
    cfg.load_from = None
    cfg.resume = False
    return cfg


def _image_size(cfg: Config) -> Tuple[int, int]:
    """(h, w) of the test pipeline's ``Resize``, 800 x 1333 if none."""
    pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline', [])
    for step in pipeline:
        scale = step.get('scale')
        if scale is not None:
            w, h = (scale, scale) if isinstance(scale, int) else scale
            return int(h), int(w)
    return 800, 1333


def _test_batch(cfg: Config) -> dict:
    h, w = _image_size(cfg)
    image = torch.randint(
        0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    batch = dict(inputs=[image])
    if cfg.get('default_scope') == 'mmdet':
        from mmdet.structures import DetDataSample

        batch['data_samples'] = [
            DetDataSample(
                metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0))
            )
        ]
    return batch


def time_inference(models: List[torch.nn.Module], batch: dict, repeats: int) -> List[float]:
    """Median seconds of ``model.test_step(batch)`` per model over
    ``repeats`` rounds (after a warm-up round); the models take turns in
    every round, so that a change of machine load hits all of them."""
    times: List[List[float]] = [[] for _ in models]
    with torch.no_grad():
        for round_ in range(repeats + 1):
            for model, record in zip(models, times):
                model.eval()
                start = time.perf_counter()
                model.test_step(batch)
                if round_:
                    record.append(time.perf_counter() - start)
    return [sorted(t)[len(t) // 2] for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description='Export a trained model to its inference form')
    parser.add_argument('config', help='training config file')
    parser.add_argument(
        'checkpoint', help='trained checkpoint (full or written by AdapterCheckpointHook)'
    )
    parser.add_argument('out_dir', help='where to write the pair')
    parser.add_argument('--repeats', type=int, default=5, help='timed inference runs per model')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, as for tools/train.py',
    )
    args = parser.parse_args()

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    paths = quadratic_cfg_paths(cfg.model)
    if not paths:
        raise SystemExit(f'{args.config}: model has no {QUADRATIC_BACKBONES} backbone to export')
    model = MODELS.build(cfg.model)
    checkpoint = load_trained_checkpoint(model, args.checkpoint)
    model.eval()
    exported = export_for_inference(model)

    os.makedirs(args.out_dir, exist_ok=True)
    stem = osp.splitext(osp.basename(args.config))[0] + '_exported'
    out_cfg = exported_config(cfg, paths)
    cfg_path = osp.join(args.out_dir, stem + '.py')
    ckpt_path = osp.join(args.out_dir, stem + '.pth')
    out_cfg.dump(cfg_path)
    meta = {
        k: v
        for k, v in (checkpoint.get('meta') or {}).items()
        if k in ('dataset_meta', 'epoch', 'iter', 'seed')
    }
    meta['exported_from'] = osp.abspath(args.checkpoint)
    save_checkpoint(dict(meta=meta, state_dict=exported.state_dict()), ckpt_path)

    # The pair must load strictly into the model its config builds.
    reloaded = MODELS.build(Config.fromfile(cfg_path).model)
    load_trained_checkpoint(reloaded, ckpt_path)
    batch = _test_batch(cfg)
    trained_s, exported_s = time_inference([model, reloaded], batch, args.repeats)
    layers = [layer for _, layer in quadratic_layers(exported)]
    active = sum(not layer.quadratic_term_is_zero for layer in layers)
    print(
        f'exported {cfg_path} and {ckpt_path} ({len(layers)} fused quadratic '
        f'layers, {active} with a non-zero adapter)'
    )
    _, h, w = batch['inputs'][0].shape
    print(
        f'inference ({h}x{w}, 1 image, median of {args.repeats}, '
        f'{torch.get_num_threads()} threads): trained '
        f'{trained_s * 1e3:.1f} ms, exported {exported_s * 1e3:.1f} ms, '
        f'speed-up {trained_s / exported_s:.2f}x'
    )


if __name__ == '__main__':
    main()
