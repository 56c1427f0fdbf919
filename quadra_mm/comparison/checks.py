"""Checks of a comparison's input, all made before anything trains: each
failure is a :class:`ComparisonError` naming the config key (or the file, or
the option) at fault."""

import os.path as osp
import shutil
from typing import Iterator, List, Optional, Sequence, Tuple

from mmengine.config import Config

from .arms import ArmError, backbone_type

__all__ = [
    'ComparisonError',
    'check_backbone',
    'produced_metrics',
    'check_metric',
    'check_test_split',
    'check_files',
    'check_launcher',
]

# mmdet's CocoMetric defaults (mmdet 3.3.0)
_COCO_ITEMS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')
_COCO_PROPOSAL_ITEMS = ('AR@100', 'AR@300', 'AR@1000', 'AR_s@1000', 'AR_m@1000', 'AR_l@1000')


class ComparisonError(ArmError):
    """Input a comparison refuses (before training)."""


def check_backbone(cfg: Config) -> None:
    """The model's backbone must be a ``QuadraNetV2`` (the arms edit it)."""
    found = backbone_type(cfg)
    if found != 'QuadraNetV2':
        raise ComparisonError(
            f'{cfg.filename}: model.backbone.type is {found!r}, not '
            "'QuadraNetV2': the arms are edits of a QuadraNetV2 backbone "
            "(wrap the first-order one: backbone=dict(type='QuadraNetV2', "
            'backbone=<yours>, targets=...))'
        )


def _evaluators(evaluator) -> List[dict]:
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        evaluator = evaluator['metrics']
    return list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]


def _as_list(value, default: Sequence) -> List:
    if value is None:
        return list(default)
    return [value] if isinstance(value, (str, int)) else list(value)


def produced_metrics(evaluator) -> Tuple[List[str], List[str]]:
    """``(metrics, unknown_types)``: the metric keys the evaluator config
    returns, for the types known here (mmpretrain's ``Accuracy``, mmdet's
    ``CocoMetric``), and the types whose keys are not known before a run."""
    metrics, unknown = [], []
    for one in _evaluators(evaluator):
        kind = str(one.get('type', '')).split('.')[-1]
        if kind == 'Accuracy':
            prefix = one.get('prefix') or 'accuracy'
            topk = _as_list(one.get('topk'), (1,))
            metrics += [f'{prefix}/top{k}' for k in topk]
        elif kind == 'CocoMetric':
            prefix = one.get('prefix') or 'coco'
            for metric in _as_list(one.get('metric'), ('bbox',)):
                items = _COCO_PROPOSAL_ITEMS if metric == 'proposal' else _COCO_ITEMS
                items = _as_list(one.get('metric_items'), items)
                metrics += [f'{prefix}/{metric}_{item}' for item in items]
        else:
            unknown.append(kind or repr(one))
    return metrics, unknown


def check_metric(cfg: Config, metric: Optional[str]) -> str:
    """``metric``, or the first the val evaluator produces when None.

    Raises:
        ComparisonError: no val evaluator, or one of a known type that does
            not produce ``metric`` (the message lists what it produces).
    """
    evaluator = cfg.get('val_evaluator')
    if not evaluator or cfg.get('val_dataloader') is None or cfg.get('val_cfg', {}) is None:
        raise ComparisonError(
            f'{cfg.filename}: no val split (val_dataloader, '
            'val_evaluator, val_cfg): the lr sweep and the '
            'metric need one'
        )
    metrics, unknown = produced_metrics(evaluator)
    if metric is None:
        if not metrics:
            raise ComparisonError(
                f'{cfg.filename}: give --metric: the val evaluator '
                f'({unknown}) is not one whose metric keys are known here'
            )
        return metrics[0]
    if metric not in metrics and not unknown:
        raise ComparisonError(
            f'--metric {metric}: the val evaluator of {cfg.filename} does not '
            f'produce it; it produces {metrics}'
        )
    return metric


def check_test_split(cfg: Config) -> None:
    """The config must have a test split: ``test_dataloader``,
    ``test_evaluator`` and ``test_cfg`` (each seed is tested once)."""
    missing = [
        key for key in ('test_dataloader', 'test_evaluator', 'test_cfg') if cfg.get(key) is None
    ]
    if missing:
        raise ComparisonError(
            f'{cfg.filename}: no test split ({", ".join(missing)} '
            'missing): every seed is scored once on it'
        )


def _pretrained(node, where: str = '') -> Iterator[Tuple[str, str]]:
    if isinstance(node, dict):
        init = node.get('init_cfg')
        for one in init if isinstance(init, list) else [init]:
            if isinstance(one, dict) and one.get('type') == 'Pretrained' and one.get('checkpoint'):
                yield f'{where}init_cfg.checkpoint', str(one['checkpoint'])
        for key, value in node.items():
            yield from _pretrained(value, f'{where}{key}.')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _pretrained(value, f'{where}{index}.')


def _dataset_files(cfg: Config, loader: str) -> Iterator[Tuple[str, str]]:
    dataset = (cfg.get(loader) or {}).get('dataset') or {}
    root = dataset.get('data_root') or ''
    ann = dataset.get('ann_file')
    if ann:
        yield f'{loader}.dataset.ann_file', osp.join(root, ann)
    prefix = dataset.get('data_prefix')
    for key, value in (
        prefix.items() if isinstance(prefix, dict) else [('', prefix)] if prefix else []
    ):
        yield f'{loader}.dataset.data_prefix{"." + key if key else ""}', osp.join(root, value)


def check_files(cfg: Config) -> None:
    """Every local file the runs read must exist: the ``Pretrained``
    checkpoints (URLs are left to mmengine) and the annotation files and
    image folders of the train, val and test splits."""
    wanted = list(_pretrained(cfg.get('model', {}), 'model.'))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        wanted += list(_dataset_files(cfg, loader))
    for key in ('val_evaluator', 'test_evaluator'):
        for one in _evaluators(cfg.get(key) or []):
            if isinstance(one, dict) and one.get('ann_file'):
                wanted.append((f'{key}.ann_file', one['ann_file']))
    missing = [(key, path) for key, path in wanted if '://' not in path and not osp.exists(path)]
    if missing:
        raise ComparisonError(
            f'{cfg.filename}: files not found: '
            + '; '.join(f'{key} = {path}' for key, path in missing)
        )


def check_launcher(launcher: str, nproc: int, partition: Optional[str]) -> None:
    if nproc < 1:
        raise ComparisonError(f'--nproc {nproc}: at least 1 process per run')
    if launcher == 'slurm':
        if not partition:
            raise ComparisonError('--launcher slurm needs --partition')
        if shutil.which('srun') is None:
            raise ComparisonError('--launcher slurm: srun is not on PATH')
    elif launcher not in ('none', 'pytorch'):
        raise ComparisonError(f'--launcher {launcher}: none, pytorch or slurm')
