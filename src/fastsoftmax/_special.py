"""softmax, log_softmax and logsumexp: drop-ins for scipy.special's.

float32, float64, float16 and bfloat16 (``ml_dtypes.bfloat16``) arrays run
in the C kernels over any axis and strides, the 2-byte dtypes computed in
float32 and each output rounded once to the input's dtype, as scipy's dtypes
are; every other input (integers, bool, long double, complex, empty
arrays, 0-d values, ``logsumexp`` with ``b``) goes to the NumPy reference,
which follows scipy's algorithm and therefore its output dtypes and errors.
"""

import math
from typing import Any

import numpy as np

from fastsoftmax import _kernels, reference
from fastsoftmax._layout import (
    as_kernel_input,
    bits,
    kernel_code,
    result_dtype,
    rows3,
    same_layout,
    view3,
)
from fastsoftmax._threads import check_n_threads, threads_for
from fastsoftmax._typing import Array, ArrayLike, Axis

__all__ = ["softmax", "log_softmax", "logsumexp"]

# The kernels' operations (fs_softmax_op in csrc/fastsoftmax.h).
_SOFTMAX, _LOG_SOFTMAX, _LOGSUMEXP = 0, 1, 2


def softmax(
    x: ArrayLike, axis: Axis = None, *, out: Array | None = None, n_threads: int | None = None
) -> Array:
    """Compute the softmax function, as ``scipy.special.softmax``.

    Parameters
    ----------
    x : array_like
        Input array.
    axis : int or tuple of ints, optional
        Axis or axes to compute values along. Default is None: the softmax is
        taken over the entire array.
    out : ndarray, optional
        Array of ``x``'s shape and of the result's dtype to write into.
    n_threads : int, optional
        OpenMP threads to use; None follows ``OMP_NUM_THREADS`` and
        threadpoolctl. Results do not depend on it.

    Returns
    -------
    s : ndarray
        An array of ``x``'s shape whose values along ``axis`` sum to 1:
        ``exp(x - max) / sum(exp(x - max))``. A slice holding NaN or +inf,
        or only -inf, is NaN throughout, as in scipy.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsoftmax import softmax
    >>> softmax(np.array([[1.0, 2.0], [3.0, 3.0]]), axis=1)
    array([[0.26894142, 0.73105858],
           [0.5       , 0.5       ]])
    """
    return _normalise(x, axis, out, n_threads, log=False)


def log_softmax(
    x: ArrayLike, axis: Axis = None, *, out: Array | None = None, n_threads: int | None = None
) -> Array:
    """Compute the logarithm of the softmax function, as ``scipy.special.log_softmax``.

    Parameters
    ----------
    x : array_like
        Input array.
    axis : int or tuple of ints, optional
        Axis or axes to compute values along. Default is None: the whole array.
    out : ndarray, optional
        Array of ``x``'s shape and of the result's dtype to write into.
    n_threads : int, optional
        OpenMP threads to use; None follows ``OMP_NUM_THREADS`` and threadpoolctl.

    Returns
    -------
    s : ndarray or scalar
        ``x - logsumexp(x)`` along ``axis``, computed as
        ``(x - shift) - log(sum(exp(x - shift)))`` with ``shift`` the maximum
        (0 where the maximum is not finite), exactly as scipy does.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsoftmax import log_softmax
    >>> log_softmax(np.array([1000.0, 1.0]))
    array([   0., -999.])
    """
    return _normalise(x, axis, out, n_threads, log=True)


def logsumexp(
    a: ArrayLike,
    axis: Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
    *,
    n_threads: int | None = None,
) -> Any:
    """Compute the log of the sum of exponentials, as ``scipy.special.logsumexp``.

    Parameters
    ----------
    a : array_like
        Input array.
    axis : None or int or tuple of ints, optional
        Axis or axes over which the sum is taken. Default: all of them.
    b : array_like, optional
        Scaling factors for ``exp(a)``, broadcastable to ``a``; may be negative.
    keepdims : bool, optional
        Keep the reduced axes as dimensions of size one.
    return_sign : bool, optional
        Also return the sign of the sum (+1, 0, -1, or NaN); without it a
        negative sum gives NaN.
    n_threads : int, optional
        OpenMP threads to use; None follows ``OMP_NUM_THREADS`` and threadpoolctl.

    Returns
    -------
    res : ndarray or scalar
        ``log(sum(b * exp(a)))``, computed stably: the largest terms are
        taken out of the sum and the rest goes through ``log1p``.
    sgn : ndarray or scalar
        Only with ``return_sign=True``: the sign of the sum.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsoftmax import logsumexp
    >>> float(logsumexp(np.array([0.0, -50.0])))
    1.9287498479639178e-22
    """
    n_threads = check_n_threads(n_threads)
    a = np.asarray(a)
    code = kernel_code(a.dtype)
    if b is not None or code is None or a.size == 0:
        return reference.logsumexp(a, axis, b, keepdims, return_sign)
    a = np.atleast_1d(as_kernel_input(a))
    axes = reference.reduction_axes(axis, a.ndim)
    kept = [i for i in range(a.ndim) if i not in axes]
    x3 = _rows_over(a, axes)
    # 2-byte input: the kernels write float32, rounded once below to scipy's dtype.
    res = np.empty(x3.shape[0] * x3.shape[2], dtype=result_dtype(a.dtype))
    _kernels.softmax(
        bits(x3),
        res.reshape(x3.shape[0], x3.shape[2]),
        _LOGSUMEXP,
        code,
        threads_for(n_threads, a.size),
    )

    res = res.astype(a.dtype, copy=False).reshape([a.shape[i] for i in kept])
    if keepdims:
        res = res.reshape([1 if i in axes else n for i, n in enumerate(a.shape)])
    if return_sign:
        # Without b the sum is positive, zero (result -inf) or NaN.
        sgn = np.where(res == -np.inf, 0, 1).astype(a.dtype)
        sgn[np.isnan(res)] = np.nan
        return _scalar(res), _scalar(sgn)
    return _scalar(res)


def _normalise(x, axis, out, n_threads, log):
    n_threads = check_n_threads(n_threads)
    x = np.asarray(x)
    code = kernel_code(x.dtype)
    if code is None or x.size == 0 or x.ndim == 0:
        fn = reference.log_softmax if log else reference.softmax
        return _into(out, fn(x, axis))
    x = as_kernel_input(x)
    axes = reference.reduction_axes(axis, x.ndim)
    x3 = _rows_over(x, axes)
    dtype = x.dtype
    op = _LOG_SOFTMAX if log else _SOFTMAX
    if out is not None:
        _check_out(out, x.shape, dtype)
    # An out= overlapping x other than element for element would be written
    # while x is still read: the kernels then write a fresh array, copied after.
    direct = out is not None and not (np.may_share_memory(out, x) and not same_layout(out, x))
    if len(axes) == 1:
        y3 = view3(out, x3.shape) if direct else None
        y = None if y3 is not None else np.empty(x3.shape, dtype=dtype)
        _kernels.softmax(
            bits(x3), bits(y3 if y3 is not None else y), op, code, threads_for(n_threads, x.size)
        )
        if y is None:
            return out
        return _into(out, y.reshape(x.shape))
    # Several axes: the kernels ran on a copy with those axes moved last.
    y = np.empty(x3.shape, dtype=dtype)
    _kernels.softmax(bits(x3), bits(y), op, code, threads_for(n_threads, x.size))
    moved = [n for i, n in enumerate(x.shape) if i not in axes] + [x.shape[i] for i in axes]
    y = np.moveaxis(y.reshape(moved), range(x.ndim - len(axes), x.ndim), axes)
    return _into(out, y)


def _rows_over(a, axes):
    """a as (outer, reduced, inner) rows: a view for one axis, else a moved copy."""
    if len(axes) == 1:
        return rows3(a, axes[0])
    if axes == tuple(range(a.ndim)):
        return rows3(a.reshape(-1), 0)
    moved = np.moveaxis(a, axes, range(a.ndim - len(axes), a.ndim))
    return np.ascontiguousarray(moved).reshape(-1, math.prod(a.shape[i] for i in axes), 1)


def _check_out(out, shape, dtype):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")


def _into(out, result):
    if out is None:
        return result
    _check_out(out, np.shape(result), np.asarray(result).dtype)
    np.copyto(out, result)
    return out


def _scalar(a):
    return a[()] if a.ndim == 0 else a
