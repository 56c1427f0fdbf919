"""Inference timing: the adapted model before and after ``export_for_inference`` (and
compiled), against the first-order model."""

import copy
from typing import Dict, List

import torch
from torch import nn

from quadra_mm.deploy import export_for_inference

from .regimes import Bench, outputs


def eval_times(bench: Bench, variants: Dict[str, nn.Module]) -> Dict[str, List[float]]:
    """Inference times (per repeat) of each of ``variants`` on ``bench``'s input."""
    for model in variants.values():
        model.eval()

    def infer(model):
        def run():
            with bench.autocast():
                model(bench.x)

        return run

    with torch.inference_mode():
        return bench.repeat_times({name: infer(m) for name, m in variants.items()})


def inference_times(bench: Bench, compiled: bool = False) -> Dict[str, List[float]]:
    """Inference times (per repeat) of the first-order, adapted and exported models (and
    compiled ones when ``compiled``); ``export_max_abs_diff``: exported vs adapted output."""
    first_order, adapted = bench.models['first_order'], bench.models['adapted']
    variants = {
        'first_order': first_order,
        'adapted': adapted,
        'exported': export_for_inference(adapted),
    }
    if compiled:
        torch._dynamo.reset()
        # Not compile(model.eval()): mmpretrain's ConvNeXt.train() returns None.
        variants['first_order_compiled'] = torch.compile(copy.deepcopy(first_order))
        variants['exported_compiled'] = export_for_inference(adapted, compile=True)
    for model in variants.values():
        model.eval()
    with torch.inference_mode():
        expected = outputs(adapted(bench.x))
        exported = outputs(variants['exported'](bench.x))
        error = max((a.float() - b.float()).abs().max().item() for a, b in zip(expected, exported))
    return {**eval_times(bench, variants), 'export_max_abs_diff': [error]}
