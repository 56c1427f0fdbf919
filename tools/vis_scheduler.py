"""mmpretrain's ``tools/visualization/vis_scheduler.py`` for QNv2 configs:
same flags, same plot, plus the learning rate of the primary terms.

mmpretrain's tool simulates the schedule on a one-conv stand-in model and
records the first parameter group only. On a QNv2 config its
``QuadraticStageHook`` stops the run (the stand-in has no backbone), and the
primary terms' group (``lr * primary_lr_mult`` from the stage switch, frozen
before it) would not be drawn anyway. This tool runs mmpretrain's own
``main()`` with a stand-in whose backbone holds one quadratic layer, so the
stage hook splits the optimizer groups as in training, and records two
curves: the other parameters, and the primary terms (a gap while frozen).

    python tools/vis_scheduler.py configs/qnv2_convnext-t_in1k.py -d 1281167 \\
        --not-show -s lr.png
"""

import importlib.util
import math
import os.path as osp
import sys
from types import ModuleType
from typing import List

import mmpretrain
from mmengine.model import BaseModel
from torch import nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import quadra_mm  # noqa: E402,F401  (registers the hooks)
from quadra_mm.hooks import QuadraticStageHook  # noqa: E402
from quadra_mm.ops import QuadraticConv2d  # noqa: E402

UPSTREAM = osp.join(
    osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'visualization', 'vis_scheduler.py'
)


def load_upstream() -> ModuleType:
    """mmpretrain's tool as a module (it ships inside the package)."""
    spec = importlib.util.spec_from_file_location('mmpretrain_vis_scheduler', UPSTREAM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def patch(upstream: ModuleType) -> None:
    """Swap the stand-in model, the recorder and the plot of ``upstream``."""

    class StageModel(BaseModel):
        """mmpretrain's stand-in (one conv, steps that do nothing) plus a
        backbone with one quadratic layer. Not a subclass: upstream's
        ``SimpleModel.__init__`` calls ``super(SimpleModel, self)``, which
        would find this class under that name."""

        def __init__(self):
            super().__init__()
            self.data_preprocessor = nn.Identity()
            self.conv = nn.Conv2d(1, 1, 1)
            self.backbone = nn.Sequential(QuadraticConv2d(1, 1, 1, rank=1))

        def forward(self, inputs, data_samples, mode='tensor'):
            pass

        def train_step(self, data, optim_wrapper):
            pass

    class GroupRecordHook(upstream.ParamRecordHook):
        """Records two groups instead of the first: the first group without
        primary terms, and the first with them (NaN while they are frozen).
        Without a QuadraticStageHook in the config, records as upstream."""

        def after_train_iter(self, runner, batch_idx, data_batch, outputs):
            super().after_train_iter(runner, batch_idx, data_batch, outputs)
            stage_hook = next((h for h in runner.hooks if isinstance(h, QuadraticStageHook)), None)
            if stage_hook is None:
                return
            wrapper = runner.optim_wrapper
            primary = {id(p) for p in stage_hook.frozen_in_phase_one.values()}
            holds_primary = [
                any(id(p) in primary for p in group['params']) for group in wrapper.param_groups
            ]
            other, prim = holds_primary.index(False), holds_primary.index(True)
            frozen = not any(p.requires_grad for p in wrapper.param_groups[prim]['params'])
            for values, per_group in (
                (self.lr_list, wrapper.get_lr()['lr']),
                (self.momentum_list, wrapper.get_momentum()['momentum']),
                (self.wd_list, [g['weight_decay'] for g in wrapper.param_groups]),
            ):
                values[-1] = [per_group[other], math.nan if frozen else per_group[prim]]

    plot_curve = upstream.plot_curve

    def plot_with_legend(values: List, args, *rest, **kwargs) -> None:
        plot_curve(values, args, *rest, **kwargs)
        if values and isinstance(values[0], list):
            upstream.plt.legend(['other parameters', 'primary terms'])

    upstream.SimpleModel = StageModel
    upstream.ParamRecordHook = GroupRecordHook
    upstream.plot_curve = plot_with_legend


def main() -> None:
    upstream = load_upstream()
    patch(upstream)
    upstream.main()


if __name__ == '__main__':
    main()
