"""Gradient buffers kept for the next step: no page faults for a fresh gradient.

A gradient of N x C logits is the largest tensor of a training step (131 MiB
at 1024 x 32000 float32), and a fresh one costs the kernel its page faults:
at that size 27 ms with 4 KiB pages against 8 ms to write it, and with
transparent huge pages (which NumPy requests) 8 ms, or 140 ms when the
kernel must compact memory first (seen here one step in three). So the
last large buffer of each shape and dtype is kept, and handed out again
once nothing else refers to it: the tensor torch was given shares the
array's memory and holds a reference to it until its last view is freed,
so a reference count of ours alone means torch has let it go.
"""

import sys
from collections import OrderedDict

import numpy as np

__all__ = ["empty", "empty_cache"]

# Smaller buffers come from malloc's reused heap without page faults.
MIN_BYTES = 2**20
# Kept buffers: one per (shape, dtype), the most recently used.
MAX_KEPT = 4

_kept = OrderedDict()


def empty(shape, dtype):
    """An uninitialised C-contiguous array: a kept one when free, else new."""
    dtype = np.dtype(dtype)
    if dtype.itemsize * _prod(shape) < MIN_BYTES:
        return np.empty(shape, dtype)
    key = (tuple(shape), dtype)
    a = _kept.get(key)
    # References: the dict's, ``a`` and getrefcount's argument.
    if a is not None and sys.getrefcount(a) == 3:
        _kept.move_to_end(key)
        return a
    a = np.empty(shape, dtype)
    _kept[key] = a
    _kept.move_to_end(key)
    while len(_kept) > MAX_KEPT:
        _kept.popitem(last=False)
    return a


def empty_cache() -> None:
    """Release the kept gradient buffers.

    As ``torch.cuda.empty_cache`` does for CUDA's caching allocator; buffers
    still in use live on with their tensors.
    """
    _kept.clear()


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n
