# The hooks of quadra-mm training runs, shared by the configs (as mmdet's
# default_runtime.py, a piece that configs inherit). mmengine replaces a list
# whole when a config sets it, so a config writes its own `custom_hooks`: its
# QuadraticStageHook (when phase 2 starts is the config's own) and then these,
# through mmengine's `_base_.<name>` reference (`{{_base_.<name>}}` cannot be
# unpacked into a list):
#     custom_hooks = [
#         dict(type='QuadraticStageHook', switch_epoch=4, primary_lr_mult=0.1, u_lr_mult=16.0),
#         *_base_.qnv2_hooks,
#     ]

# Checkpoints that plain torch.load reads, holding the RNG state and data
# position that make --resume exact.
qnv2_checkpoint_hooks = [
    dict(type='WeightsOnlyCheckpointHook'),
    dict(type='ExactResumeHook'),
]
# The adapters' share of each backbone stage's output in the log every 50
# iterations; the checkpoint hooks; a NaN/inf loss stops training naming the
# first adapted layer that made it.
qnv2_hooks = [
    dict(type='QuadraticStatsHook', interval=50),
    *qnv2_checkpoint_hooks,
    dict(type='QuadraticNonFiniteHook'),
]
