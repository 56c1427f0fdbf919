# The default QuadraNet V2 adapter of the shipped configs (as mmdet's
# default_runtime.py, a piece that configs inherit): rank 8, A and B 3x3 convs
# with dilation 2 (atrous), the quadratic interaction phi(a, b) = a * b.
# A config lists this file in its `_base_` and writes
#     adapter={{_base_.qnv2_adapter}}
# inside its QuadraNetV2 backbone.
qnv2_adapter = dict(rank=8, kernel_size=3, dilation=2, interaction='quadratic')
