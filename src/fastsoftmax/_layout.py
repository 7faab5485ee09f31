"""Shapes and strides: how an array is presented to the kernels as rows.

The kernels see 3-D (outer, classes, inner) views whose strides are whole
elements of a native float32 or float64 dtype. These helpers produce such a
view without copying where NumPy allows it. They run on every call, so they
stay cheap for small arrays (math.prod, not np.prod).
"""

import math

import numpy as np

from fastsoftmax import _kernels

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# The kernels' code for each dtype (fs_dtype in csrc/fastsoftmax.h).
DTYPE_CODE = {np.dtype(np.float32): _kernels.F32, np.dtype(np.float64): _kernels.F64}


def kernel_ready(a):
    """True when ``a``'s memory can be handed to the kernels as it is."""
    if a.dtype.char not in "fd" or not a.dtype.isnative:
        return False
    flags = a.flags
    if not flags.aligned:
        return False
    if flags.c_contiguous:
        return True  # every stride that is used is a multiple of the item size
    size = a.itemsize
    return all(s % size == 0 for s in a.strides)


def as_kernel_input(a):
    """``a`` itself when the kernels can read it, else a native contiguous copy."""
    if kernel_ready(a):
        return a
    # A fresh array: also aligned (ascontiguousarray keeps an unaligned one).
    return np.array(a, dtype=a.dtype.newbyteorder("="), order="C", copy=True)


def view3(a, shape3):
    """A no-copy reshape of ``a`` to ``shape3``, or None where a copy is needed."""
    try:
        v = a.reshape(shape3, copy=False)
    except ValueError:
        return None
    return v if kernel_ready(v) else None


def rows3(a, axis):
    """``a`` as (outer, a.shape[axis], inner) for a single axis, copying only if needed."""
    shape = a.shape
    shape3 = (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))
    v = view3(a, shape3)
    return v if v is not None else np.ascontiguousarray(a).reshape(shape3)


def same_layout(a, b):
    """True when ``a`` and ``b`` view the same memory element for element."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
    )
