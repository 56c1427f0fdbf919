"""What the report calls the study's arms and tasks, and the scale entries that
results.json files written before they were recorded lack."""

__all__ = ['ARM_LABELS', 'TASK_LABELS', 'source_batch']

ARM_LABELS = {
    'linear-probe': 'linear probe',
    'full-ft': 'full first-order fine-tuning',
    'lora': "LoRA (interaction='linear'), adapters only",
    'norms-head': 'norms and head only (adapters frozen at U = 0)',
    'qnv2-adapters': 'QNv2 adapters only (stage 1)',
    'qnv2-u-lr': 'QNv2 adapters only, U at 16× lr',
    'qnv2-stages': 'QNv2 stage training (1 -> 2)',
    'quadranet-scratch': 'QuadraNet from scratch',
    'first-order-scratch': 'first-order from scratch',
}
TASK_LABELS = {
    'heldout': '(a) held-out classes',
    'shift': '(b) non-linear shift (solarise + swirl)',
}


def source_batch(scale: dict) -> int:
    """The source pretraining's batch (64 in results that did not record it)."""
    return scale.get('source_batch', 64)
