"""Shapes and strides: how an array is presented to the kernels as rows.

The kernels see 3-D (outer, classes, inner) views whose strides are whole
elements of a native float32 or float64 dtype. These helpers produce such a
view without copying where NumPy allows it.
"""

import numpy as np

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def kernel_ready(a):
    """True when ``a``'s memory can be handed to the kernels as it is."""
    return (
        a.dtype in KERNEL_DTYPES
        and a.dtype.isnative
        and a.flags.aligned
        and all(s % a.itemsize == 0 for s in a.strides)
    )


def as_kernel_input(a):
    """``a`` itself when the kernels can read it, else a native contiguous copy."""
    if kernel_ready(a):
        return a
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))


def view3(a, shape3):
    """A no-copy reshape of ``a`` to ``shape3``, or None where a copy is needed."""
    try:
        v = a.reshape(shape3, copy=False)
    except ValueError:
        return None
    return v if kernel_ready(v) else None


def rows3(a, axis):
    """``a`` as (outer, a.shape[axis], inner) for a single axis, copying only if needed."""
    outer = int(np.prod(a.shape[:axis], dtype=np.int64))
    inner = int(np.prod(a.shape[axis + 1 :], dtype=np.int64))
    shape3 = (outer, a.shape[axis], inner)
    v = view3(a, shape3)
    return v if v is not None else np.ascontiguousarray(a).reshape(shape3)
