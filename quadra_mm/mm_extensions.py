"""Everything ``import quadra_mm`` installs into mmengine and mmcv, in one call.

* torch 2.14 shims (:mod:`quadra_mm.compat`): mmengine 0.10.7 loads its own
  checkpoints under torch's ``weights_only`` default.
* quadra-mm's own support, needed on any torch:

  - atomic checkpoint writes (:mod:`quadra_mm.atomic_local_backend`);
  - FLOP counting of the adapters by mmengine's complexity analysis
    (:mod:`quadra_mm.flops`);
  - mmcv's ``fuse_conv_bn`` folding a BatchNorm into a whole quadratic conv
    (:mod:`quadra_mm.fuse_conv_bn`).

Each goes through an mmengine/mmcv extension point (a registry, a handle
table, mmcv's per-pair fusion function); torch itself is never patched.
"""

from . import atomic_local_backend, compat, flops, fuse_conv_bn

__all__ = ['install']


def install() -> None:
    """Install the shims and the support above (idempotent)."""
    compat.install()
    atomic_local_backend.install()
    flops.install()
    fuse_conv_bn.install()
