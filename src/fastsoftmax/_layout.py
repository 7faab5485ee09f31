"""Shapes and strides: how an array is presented to the kernels as rows.

The kernels see 3-D (outer, classes, inner) views whose strides are whole
elements of a native float32, float64, float16 or bfloat16 dtype (the
2-byte ones as their uint16 bits, ``bits``). These helpers produce such a
view without copying where NumPy allows it. They run on every call, so they
stay cheap for small arrays (math.prod, not np.prod).

bfloat16 is ``ml_dtypes.bfloat16``, recognised by its name: an array of it
exists only where ml_dtypes is installed, and nothing here imports it.
"""

import math

import numpy as np

from fastsoftmax import _kernels

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# The kernels' code for each dtype (fs_dtype in csrc/fastsoftmax.h).
DTYPE_CODE = {
    np.dtype(np.float32): _kernels.F32,
    np.dtype(np.float64): _kernels.F64,
    np.dtype(np.float16): _kernels.F16,
}
_HALF_CODES = (_kernels.F16, _kernels.BF16)
_BITS = np.dtype(np.uint16)
_FLOAT32 = np.dtype(np.float32)


def kernel_code(dtype):
    """The kernels' code for ``dtype`` in either byte order (as_kernel_input
    makes a byte-swapped array native), or None."""
    if not dtype.isnative:
        dtype = dtype.newbyteorder("=")
    code = DTYPE_CODE.get(dtype)
    if code is None and dtype.name == "bfloat16" and dtype.kind == "V" and dtype.itemsize == 2:
        return _kernels.BF16
    return code


def is_half(dtype):
    """True for float16 and bfloat16, the dtypes computed in float32."""
    return kernel_code(dtype) in _HALF_CODES


def result_dtype(dtype):
    """The dtype of the losses, lse and logsumexp of ``dtype``'s scores:
    float32 for the 2-byte dtypes (computed in it), else ``dtype``."""
    return _FLOAT32 if is_half(dtype) else dtype


def widen(a):
    """A 2-byte array as a new C-contiguous float32 array, by the kernels'
    conversion (NumPy's float16 one is scalar: 14 ns an element, and 80 for
    subnormals)."""
    src = np.ascontiguousarray(a).reshape(-1).view(_BITS)
    out = np.empty(a.shape, dtype=_FLOAT32)
    _kernels.half_eval(src, out.reshape(-1), kernel_code(a.dtype), True)
    return out


def narrow(a, dtype):
    """A float32 array rounded (to nearest even) into a new C-contiguous
    array of the 2-byte ``dtype``, by the kernels' conversion."""
    src = np.ascontiguousarray(a, dtype=_FLOAT32).reshape(-1)
    out = np.empty(a.shape, dtype=dtype)
    _kernels.half_eval(src, out.reshape(-1).view(_BITS), kernel_code(out.dtype), False)
    return out


def bits(a):
    """``a`` as the kernels take it: a 2-byte array as its uint16 bits."""
    return a.view(_BITS) if a is not None and a.dtype.itemsize == 2 else a


def kernel_ready(a):
    """True when ``a``'s memory can be handed to the kernels as it is."""
    if not a.dtype.isnative or (a.dtype.char not in "fde" and kernel_code(a.dtype) is None):
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
