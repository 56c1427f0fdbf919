"""The whole detector: a QNv2 Mask R-CNN train iteration (``model.train_step``) against
its first-order twin (mm glue; the rest of the benchmark runs without OpenMMLab)."""

import copy
import os.path as osp
import tempfile
from typing import Dict

import torch
from torch import nn

from quadra_mm.adapters import quadratic_layers, replace_module
from quadra_mm.ops import layer_config, share_parameters

from .flops import counted_flops
from .harness import ms, ratio, repeat_times
from .markdown import GOALS


def first_order_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every quadratic layer replaced by its plain layer,
    sharing nothing with ``model`` and holding the same primary weights."""
    twin = copy.deepcopy(model)
    for layer_name, layer in list(quadratic_layers(twin)):
        plain = (nn.Conv2d if isinstance(layer, nn.Conv2d) else nn.Linear)(
            **layer_config(layer), device='meta'
        )
        replace_module(twin, layer_name, share_parameters(plain, layer))
    return twin


def _shapes_batch(cfg, img_size: int, root: str) -> dict:
    """One training batch of ``cfg``'s own pipeline and batch size, read from generated
    shapes data of ``img_size``² (any COCO-style detection config: its dataset is
    pointed at the generated set)."""
    from mmengine.runner import Runner, set_random_seed

    from quadra_mm.datasets import make_demo_data

    data = make_demo_data(
        osp.join(root, 'shapes'),
        num_train=cfg.train_dataloader.batch_size,
        num_val=1,
        img_size=img_size,
        seed=1,
    )
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:  # RepeatDataset and other wrappers
        dataset = dataset.dataset
    dataset.update(
        data_root=data['out'] + '/',
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        metainfo=dict(classes=tuple(data['classes'])),
    )
    # In this process and seeded: a multi-scale pipeline draws the same scales in every run.
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    set_random_seed(0)
    return next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))


def detector_row(config: str, args) -> Dict[str, str]:
    """Train iteration (``model.train_step`` with the config's optimizer wrapper) of a QNv2
    detector against its first-order twin, on one batch of generated shapes data (same
    batch, same RNG seed for both).

    The learning rate is set to 0: the optimizer does all its work but no weight moves,
    so ``U`` stays 0 and both models see the same proposals in every repeat. mmengine's
    ``AmpOptimWrapper`` needs a GPU: on CPU such a config runs in fp32 (the row says so).
    """
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import quadra_mm  # noqa: F401  (registers QuadraNetV2)

    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    device = torch.device(args.device)
    # The demo configs state their img_size; 800 is a COCO config's shorter side.
    img_size = args.detector_img_size or cfg.get('img_size', 800)
    with tempfile.TemporaryDirectory() as root:
        batch = _shapes_batch(cfg, img_size, root)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    adapted = MODELS.build(cfg.model).to(device).train()
    first_order = first_order_twin(adapted).to(device).train()
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.optimizer.lr = 0.0
    amp = optim_cfg.get('type') == 'AmpOptimWrapper'
    if amp and device.type != 'cuda':
        optim_cfg.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype'):
            optim_cfg.pop(key, None)

    def step_fn(model):
        wrapper = build_optim_wrapper(model, copy.deepcopy(optim_cfg))

        def step():
            torch.manual_seed(0)
            model.train_step(batch, wrapper)

        return step

    steps = {'first_order': step_fn(first_order), 'adapted': step_fn(adapted)}
    flops = {}
    for name, step in steps.items():
        # The whole iteration's FLOPs (forward, losses, backward with the branch
        # recompute): the floor under the time ratio once every kernel runs at one speed.
        flops[name] = counted_flops(step)
    times = repeat_times(steps, device, args.warmup, args.detector_repeats, args.clock_fn)
    row = {
        'detector': osp.basename(config),
        'adapters': str(len(list(quadratic_layers(adapted)))),
        'precision': 'AMP' if amp and device.type == 'cuda' else 'fp32',
        'images': ', '.join(f'{h}×{w}' for h, w in (img.shape[1:] for img in batch['inputs'])),
        'FLOPs train': ratio(flops['adapted'], flops['first_order']),
        'first-order iteration': ms(times['first_order']),
        'adapted iteration': ms(times['adapted']),
        'ratio': ratio(times['adapted'], times['first_order'], GOALS[device.type]['detector']),
    }
    print(row, flush=True)
    return row
