"""The cost side of the study, measured in the main process once every worker
is done: the train-step time of each arm and part-3 variant over full
first-order fine-tuning, and ResNet-50's forward FLOPs with each variant's
adapters over the plain network."""

import copy
import os.path as osp
import time
from typing import Callable, Dict, List, Tuple

import torch
from mmengine.config import Config

from quadra_mm.hooks import phase_one_frozen_parameters

from .arms import (
    ABLATIONS,
    ARM_BY_NAME,
    adapters_only,
    linear_probe,
    lora,
    stages,
    train_everything,
)
from .configs import target_cfg
from .scale import ROOT, Scale

__all__ = ['step_time_ratios', 'resnet50_flop_ratios']


def step_time_ratios(scale: Scale, data: str, source: str, steps: int = 3) -> Dict[str, float]:
    """Train-step time of each arm and part-3 variant on task (b) over that
    of full first-order fine-tuning: forward, cross-entropy, backward and
    AdamW on the parameters the arm trains, batch ``scale.batch``, models
    measured in turn in this process (the same machine load), median of
    ``scale.timing_repeats`` rounds of ``steps`` steps each."""
    from mmengine.registry import MODELS, init_default_scope

    init_default_scope('mmpretrain')
    variants: Dict[str, Tuple[str, Callable[[Config], None], bool]] = {
        'full-ft': ('full-ft', train_everything, False),
        'linear-probe': ('linear-probe', linear_probe, False),
        'lora': ('lora', lora, True),
        'qnv2-adapters': ('qnv2-adapters', adapters_only, True),
        'qnv2 stage 2 (everything trains)': ('qnv2-stages', stages, False),
    }
    for name, _, change in ABLATIONS:
        variants[name] = (
            'qnv2-adapters',
            lambda cfg, iters, change=change: (adapters_only(cfg, iters), change(cfg)),
            True,
        )
    models = {}
    for label, (arm, configure, stage1) in variants.items():
        cfg = target_cfg(
            'shift',
            ARM_BY_NAME[arm],
            scale,
            data,
            0,
            1e-3,
            source,
            osp.join(ROOT, 'work_dirs', 'unused'),
        )
        configure(cfg, scale.iters)
        model = MODELS.build(cfg.model)
        model.train()
        if stage1:  # stage 1: the primary terms are frozen
            for param in phase_one_frozen_parameters(model, 'backbone').values():
                param.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        models[label] = (model, torch.optim.AdamW(params, lr=1e-3))
    inputs = torch.randn(scale.batch, 1, 28, 28)
    labels = torch.randint(0, 5, (scale.batch,))
    times: Dict[str, List[float]] = {label: [] for label in models}
    for _ in range(scale.timing_repeats + 1):  # the first round warms up
        for label, (model, optimizer) in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                loss = torch.nn.functional.cross_entropy(model(inputs, mode='tensor'), labels)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            times[label].append(time.perf_counter() - start)
    median = {label: sorted(t[1:])[len(t[1:]) // 2] for label, t in times.items()}
    return {label: median[label] / median['full-ft'] for label in median}


def resnet50_flop_ratios(image_size: int) -> Dict[str, float]:
    """Forward FLOPs of mmpretrain's ResNet-50 (``image_size``², one image)
    with the adapters of the LoRA arm, the default and each part-3 variant,
    over the plain ResNet-50: the cost side of part 3 at the size the paper's
    users run, counted with mmengine's analysis as mmdet's ``get_flops.py``
    counts (``quadra_mm.flops`` makes it count the branch)."""
    from benchmark_adapters import forward_flops
    from mmengine.registry import MODELS, init_default_scope

    init_default_scope('mmpretrain')
    plain = dict(type='ResNet', depth=50)
    adapted = dict(
        type='QuadraNetV2',
        backbone=plain,
        targets='resnet',
        adapter=dict(rank=8, kernel_size=3, dilation=2, interaction='quadratic'),
    )
    variants: Dict[str, Callable[[Config], None]] = {
        'lora': lambda cfg: cfg.model.backbone.adapter.update(interaction='linear'),
        'qnv2-adapters': lambda cfg: None,
        **{name: change for name, _, change in ABLATIONS},
    }
    image = torch.randn(1, 3, image_size, image_size)

    def flops(backbone: dict) -> int:
        return forward_flops(MODELS.build(backbone), image)

    base = flops(plain)
    ratios = {}
    for name, change in variants.items():
        cfg = Config(dict(model=dict(backbone=copy.deepcopy(adapted))))
        change(cfg)
        ratios[name] = flops(cfg.model.backbone.to_dict()) / base
    return ratios
