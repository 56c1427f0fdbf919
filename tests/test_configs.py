"""Every config in configs/ loads and builds offline."""
import glob
import importlib
import os.path as osp

import pytest
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope, init_default_scope

import quadra_mm  # noqa: F401
from quadra_mm.models import QuadraNet, QuadraNetV2

from helpers import CONFIGS, without_pretrained

ALL_CONFIGS = sorted(
    p for p in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)
    if '_base_' not in p)


def _pipeline_types(dataset_cfg):
    while 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg['type'], [t['type'] for t in dataset_cfg['pipeline']]


def test_configs_are_found():
    names = {osp.relpath(p, CONFIGS) for p in ALL_CONFIGS}
    assert {'qnv2_mask-rcnn_coco.py', 'qnv2_convnext-t_in1k.py'} <= names
    assert len(names) >= 9


@pytest.mark.parametrize('path', ALL_CONFIGS,
                         ids=lambda p: osp.relpath(p, CONFIGS))
def test_config_loads_and_builds_offline(path):
    cfg = Config.fromfile(path)
    scope = cfg.default_scope
    # A quadratic backbone needs quadra_mm imported; first-order configs
    # (the demo's classifier, the study's controls) may import it too, for
    # the study's dataset or the base config they share.
    quadratic = cfg.model.backbone['type'] in ('QuadraNetV2', 'QuadraNet')
    imports = cfg.get('custom_imports', {}).get('imports', [])
    assert 'quadra_mm' in imports or not quadratic
    registry = importlib.import_module(f'{scope}.registry')
    model_cfg = ConfigDict(cfg.model)
    without_pretrained(model_cfg)
    with DefaultScope.overwrite_default_scope(scope):
        init_default_scope(scope)
        model = registry.MODELS.build(model_cfg)
        assert isinstance(model.backbone, (QuadraNetV2, QuadraNet)) == quadratic
        model.init_weights()
        expected = ('DetDataPreprocessor' if scope == 'mmdet' else
                    'ClsDataPreprocessor')
        assert type(model.data_preprocessor).__name__ == expected
        # ImageNet-21k has no validation split in mmpretrain's configs.
        splits = [s for s in ('train', 'val', 'test')
                  if cfg.get(f'{s}_dataloader') is not None]
        assert 'train' in splits
        for split in splits:
            dataset_type, transforms = _pipeline_types(
                cfg[f'{split}_dataloader']['dataset'])
            assert registry.DATASETS.get(dataset_type) is not None
            for transform in transforms:
                assert registry.TRANSFORMS.get(transform) is not None, \
                    transform
        for split in splits[1:]:
            evaluators = cfg[f'{split}_evaluator']
            for evaluator in (evaluators if isinstance(evaluators, list)
                              else [evaluators]):
                assert registry.METRICS.get(evaluator['type']) is not None
        for hook in cfg.get('custom_hooks', []):
            assert registry.HOOKS.get(hook['type']) is not None
    if scope == 'mmdet':
        metrics = cfg.val_evaluator['metric']
        metrics = {metrics} if isinstance(metrics, str) else set(metrics)
        assert cfg.val_evaluator['type'] == 'CocoMetric'
        # Instance segmentation models are scored on their masks too.
        masks = 'mask_head' in cfg.model.get('roi_head', {})
        assert ({'bbox', 'segm'} if masks else {'bbox'}) <= metrics
