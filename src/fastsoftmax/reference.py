"""Plain NumPy versions of every fastsoftmax kernel.

These are the test oracle and the benchmark baseline: short, readable and
written for correctness, not speed. They follow the semantics of the public
API exactly (``scipy.special`` for the softmax family, torch's
``cross_entropy`` for the loss), so the compiled kernels can be compared with
them value for value. Feed them float64 to get the most accurate answer.

The public softmax-family functions also fall back to these for inputs the
kernels do not take (integer, float16, long double and complex arrays, and
``logsumexp`` with ``b=``), which is how they keep scipy's output dtypes.
"""

import operator
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from fastsoftmax._typing import Array, ArrayLike, Axis

__all__ = ["softmax", "log_softmax", "logsumexp", "cross_entropy", "cross_entropy_with_grad"]


def softmax(x: ArrayLike, axis: Axis = None) -> Array:
    """Softmax, ``exp(x) / sum(exp(x))`` along ``axis``, shifted by the maximum first.

    Parameters
    ----------
    x : array_like
        Input array.
    axis : int or tuple of ints, optional
        Axis or axes of the sum; None (the default) means all of them.

    Returns
    -------
    s : ndarray or scalar
        ``exp(x - max) / sum(exp(x - max))``, of ``x``'s shape.
    """
    x = np.asarray(x)
    x_max = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - x_max)
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x: ArrayLike, axis: Axis = None) -> Array:
    """Log-softmax, ``x - logsumexp(x)`` along ``axis``.

    Parameters
    ----------
    x : array_like
        Input array.
    axis : int or tuple of ints, optional
        Axis or axes of the sum; None (the default) means all of them.

    Returns
    -------
    s : ndarray or scalar
        ``(x - shift) - log(sum(exp(x - shift)))`` with ``shift`` the maximum,
        or 0 where the maximum is not finite, as scipy computes it.
    """
    x = np.asarray(x)
    x_max = np.max(x, axis=axis, keepdims=True)
    if x_max.ndim > 0:
        x_max = x_max.copy()  # keeps x's dtype (bool input then fails, as in scipy)
        x_max[~np.isfinite(x_max)] = 0
    elif not np.isfinite(x_max):
        x_max = 0
    shifted = x - x_max
    with np.errstate(divide="ignore"):
        lse = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return shifted - lse


def logsumexp(
    a: ArrayLike,
    axis: Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
) -> Any:
    """Log of the sum of exponentials, ``log(sum(b * exp(a)))``, as ``scipy.special.logsumexp``.

    The largest term is taken out of the sum (``log1p`` of the rest plus the
    log of how many times the maximum occurs), and rows whose result is not
    finite fall back to the direct formula so that infinities and NaN come out
    as ``log(sum(b * exp(a)))`` would give them.

    Parameters
    ----------
    a : array_like
        Input array.
    axis : None or int or tuple of ints, optional
        Axis or axes of the sum; None (the default) means all of them.
    b : array_like, optional
        Scaling factors for ``exp(a)``, broadcastable to ``a``; may be negative.
    keepdims : bool, optional
        Keep the reduced axes as dimensions of size one.
    return_sign : bool, optional
        Also return the sign of the sum; without it a negative sum gives NaN.

    Returns
    -------
    res : ndarray or scalar
        ``log(abs(sum(b * exp(a))))``.
    sgn : ndarray or scalar
        Only with ``return_sign=True``: the sign of the sum.
    """
    a, b = _promote(a, b)
    a = np.atleast_1d(a)
    if b is not None:
        b = np.atleast_1d(b)
    axes = reduction_axes(axis, a.ndim)
    is_complex = np.iscomplexobj(a)

    if a.size == 0:
        shape = np.asarray(a.shape)
        # Indexing with the axes tuple, as scipy does: several axes at once
        # raise IndexError there, and so here.
        shape[axes] = 1
        out = np.full(tuple(shape), -np.inf, dtype=a.dtype)
        sgn = np.sign(out)
    else:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            terms = np.exp(a) if b is None else b * np.exp(a)
            direct_sum = np.sum(terms, axis=axes, keepdims=True)
            direct_sgn = np.sign(direct_sum) if return_sign else None
            direct = np.log(np.abs(direct_sum) if return_sign else direct_sum)
            out, sgn = _logsumexp_shifted(a, b, axes, return_sign)
        finite = np.isfinite(out)
        out = np.where(finite, out, direct)
        if return_sign:
            sgn = np.where(finite, sgn, direct_sgn)

    if is_complex:
        if return_sign:
            sgn = np.real(sgn) + _wrap_angle(np.imag(sgn)) * 1j
        else:
            out = np.real(out) + _wrap_angle(np.imag(out)) * 1j
    if not keepdims:
        out = np.squeeze(out, axis=axes)
        sgn = np.squeeze(sgn, axis=axes) if sgn is not None else None
    out = out[()] if out.ndim == 0 else out
    if sgn is not None and sgn.ndim == 0:
        sgn = sgn[()]
    return (out, sgn) if return_sign else out


def reduction_axes(axis, ndim):
    """``axis`` (None, an int or a tuple of ints) as a tuple of non-negative axes.

    Like NumPy's reductions, and so scipy: a list is a TypeError, an axis out
    of range an AxisError, a repeated axis a ValueError.
    """
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is int and -ndim <= axis < ndim:  # the common case, quickly
        return (axis % ndim,)
    if not isinstance(axis, tuple):
        axis = (operator.index(axis),)
    return normalize_axis_tuple(axis, ndim)


def _promote(a, b):
    """scipy's promotion: a common floating (or complex) dtype, b broadcast to a.

    Python scalars for ``b`` are weak, as in NumPy: a float32 ``a`` with
    ``b=2.0`` stays float32. Strings of numbers are read as float64.
    """
    a = np.asarray(a)
    if a.dtype.kind in "US":
        a = a.astype(np.float64)
    if b is None:
        dtype = np.dtype(np.float64) if a.dtype.kind in "biu" else a.dtype
        return a.astype(dtype.newbyteorder("="), copy=False), None
    weak_b = isinstance(b, (int, float, complex)) and not isinstance(b, np.generic)
    dtype = np.result_type(a, b if weak_b else np.asarray(b))
    if dtype.kind in "biu":
        dtype = np.dtype(np.float64)
    dtype = dtype.newbyteorder("=")
    b = np.asarray(b, dtype=dtype)
    a, b = np.broadcast_arrays(a.astype(dtype, copy=False), b)
    return a, b


def _logsumexp_shifted(a, b, axes, return_sign):
    """The stable path: max term separated out, the rest through log1p."""
    if b is not None:
        # A zero weight removes its term, even an infinite or NaN one.
        a = np.where(b == 0, -np.inf, a)
    if np.iscomplexobj(a):
        re = np.real(a)
        is_max = re == np.max(re, axis=axes, keepdims=True)
        # Keep one maximal element per reduced slice (the last one).
        idx = np.arange(a.size).reshape(a.shape)
        idx = np.where(is_max, idx, -1)
        is_max = idx == np.max(idx, axis=axes, keepdims=True)
        a_max = np.sum(np.where(is_max, a, 0), axis=axes, keepdims=True, dtype=a.dtype)
    else:
        a_max = np.max(a, axis=axes, keepdims=True)
        is_max = a == a_max
    rest = np.where(is_max, -np.inf, a)
    weight_of_max = is_max.astype(a.dtype) if b is None else b * is_max.astype(a.dtype)
    m = np.sum(weight_of_max, axis=axes, keepdims=True, dtype=a.dtype)
    terms = np.exp(rest - a_max) if b is None else b * np.exp(rest - a_max)
    s = np.sum(terms, axis=axes, keepdims=True, dtype=terms.dtype)
    s = np.where(s == 0, s, s / m)
    sgn = np.sign(s + 1) * np.sign(m)
    if np.iscomplexobj(s):
        sgn = sgn * np.exp(np.imag(a_max) * 1j)
    else:
        s = np.where(s < -1, -s - 2, s)
        m = np.abs(m)
    out = np.log1p(s) + np.log(m) + a_max
    if return_sign:
        out = np.real(out)
    elif not np.iscomplexobj(out):
        out = np.where(sgn < 0, np.nan, out)
    return out, sgn


def _wrap_angle(x):
    """Wrap radians into (-pi, pi], leaving small angles bit-for-bit alone."""
    wrapped = -((-x + np.pi) % (2 * np.pi) - np.pi)
    return np.where(np.abs(x) < np.pi, x, wrapped)


def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> Any:
    """Cross-entropy loss, as ``torch.nn.functional.cross_entropy``, in float64.

    Parameters
    ----------
    input : array_like
        Unnormalised scores of shape ``(C,)``, ``(N, C)`` or
        ``(N, C, d1, ..., dK)``. The class axis is axis 1, or axis 0 for 1-D
        input.
    target : array_like
        Either class indices (any integer dtype) of the input's shape without
        the class axis, or class probabilities (any float dtype) of the input's
        shape.
    weight : array_like, optional
        Rescaling weight of each class, shape ``(C,)``.
    ignore_index : int, optional
        Class-index target value that contributes neither loss nor gradient.
        Must be negative with probability targets.
    reduction : {'mean', 'sum', 'none'}, optional
        'mean' divides the sum by the summed target weights of the non-ignored
        samples (class indices) or by the number of samples (probabilities).
    label_smoothing : float, optional
        Amount of smoothing in ``[0, 1]``: the target becomes a mix of itself
        and the uniform distribution over the classes.
    z_loss : float, optional
        Coefficient of the ``lse**2`` term added to the loss of every
        non-ignored sample (not scaled by the class weight).
    softcap : float, optional
        If given, the scores ``x`` are replaced by ``softcap * tanh(x / softcap)``
        before anything else.

    Returns
    -------
    loss : numpy.float64 or ndarray
        A scalar for 'mean' and 'sum'; for 'none', an array of the sample
        shape ``(N, d1, ..., dK)`` (shape ``()`` for 1-D input).

    Raises
    ------
    ValueError
        For a bad reduction, label_smoothing outside ``[0, 1]``, a softcap
        that is not positive, mismatched shapes, or probability targets with
        ``ignore_index >= 0``.
    IndexError
        For a class index outside ``[0, C)`` that is not ``ignore_index``.
    TypeError
        For a target that is neither integer nor floating point, or a
        complex input.

    See Also
    --------
    cross_entropy_with_grad : the same loss, its gradient and the lse.

    Notes
    -----
    With ``p = softmax(x)`` over the classes, ``w`` the class weights (ones by
    default), ``eps = label_smoothing`` and ``C`` classes, the loss of a
    sample with class index ``y`` is::

        (1 - eps) * w[y] * -log(p[y]) + (eps / C) * sum_c w[c] * -log(p[c])

    (just the first term when ``eps == 0``), and with class probabilities
    ``q``, smoothed to ``q * (1 - eps) + eps / C``, it is
    ``-sum_c w[c] * q[c] * log(p[c])``. ``z_loss * lse**2`` is then added.

    Non-finite scores come out as in torch: a NaN score, a +inf score or an
    all -inf row makes the sample's loss NaN; a -inf score is a masked class
    of probability 0, which makes the loss infinite if it is the target or
    smoothing reaches it, and NaN (``0 * -inf``) for a probability target that
    is 0 there. Ignored samples always contribute a loss of exactly 0.
    """
    loss, _, _ = _cross_entropy(
        input,
        target,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss,
        softcap,
        None,
        False,
    )
    return loss


def cross_entropy_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    grad_output: ArrayLike | float | None = None,
) -> tuple[Any, Array, Array]:
    """Cross-entropy loss with its gradient with respect to ``input``.

    Parameters
    ----------
    input : array_like
        Unnormalised scores of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
    target : array_like
        Class indices or class probabilities, as in `cross_entropy`.
    weight : array_like, optional
        Rescaling weight of each class, shape ``(C,)``.
    ignore_index : int, optional
        Class-index target value that contributes neither loss nor gradient.
    reduction : {'mean', 'sum', 'none'}, optional
        As in `cross_entropy`.
    label_smoothing : float, optional
        Amount of smoothing in ``[0, 1]``.
    z_loss : float, optional
        Coefficient of the ``lse**2`` term added to each non-ignored sample.
    softcap : float, optional
        If given, the scores are replaced by ``softcap * tanh(x / softcap)`` first.
    grad_output : float or array_like, optional
        Upstream gradient. A scalar for 'mean' and 'sum'; an array of the
        loss's shape for 'none', in which case ``grad`` is the gradient of
        ``sum(grad_output * loss)``. Defaults to 1 (all ones for 'none').

    Returns
    -------
    loss : numpy.float64 or ndarray
        As returned by `cross_entropy`.
    grad : ndarray
        ``d loss / d input`` scaled by ``grad_output``, float64, with the
        input's shape. Samples whose target is ``ignore_index`` get exactly 0,
        whatever their scores. (torch gives NaN there when the sample's
        log-softmax is NaN, from a NaN or +inf score or an all -inf row,
        because its backward multiplies the zero upstream gradient by
        ``exp(NaN)``.)
    lse : ndarray
        Log-sum-exp of the (softcapped) scores over the class axis for every
        sample, ignored ones included; shape of the 'none' loss.
    """
    return _cross_entropy(
        input,
        target,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss,
        softcap,
        grad_output,
        True,
    )


def _cross_entropy(
    input,
    target,
    weight,
    ignore_index,
    reduction,
    label_smoothing,
    z_loss,
    softcap,
    grad_output,
    want_grad,
):
    """Shared body of `cross_entropy` and `cross_entropy_with_grad`."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if softcap is not None and not softcap > 0:
        raise ValueError(f"softcap must be a positive number or None, got {softcap}")

    x, class_axis, n_classes, sample_shape = _scores_last(input)

    if weight is None:
        w = np.ones(n_classes)
    else:
        w = np.asarray(weight, dtype=np.float64)
        if w.shape != (n_classes,):
            raise ValueError(f"weight must have shape ({n_classes},), got {w.shape}")

    probabilities, y, q, ignored = _target(target, x, class_axis, ignore_index)

    if softcap is not None:
        tanh_x = np.tanh(x / softcap)
        x = softcap * tanh_x

    logp, lse = _log_softmax_lse(x)
    eps = label_smoothing

    # Per-sample loss, and t: the weighted target distribution, so that the
    # loss is sum_c t_c * (-logp_c) (before the z-loss term).
    with np.errstate(invalid="ignore"):
        if probabilities:
            if eps > 0:
                q = q * (1 - eps) + eps / n_classes
            t = w * q
            # Written as torch writes it: a class with q_c = 0 and logp_c = -inf
            # makes the loss NaN (0 * inf), though its gradient stays finite.
            loss = -np.sum(t * logp, axis=-1)
        else:
            w_y = np.where(ignored, 0.0, w[y])
            logp_y = np.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
            loss = np.where(ignored, 0.0, -w_y * logp_y)
            one_hot = np.arange(n_classes) == y[..., None]
            t = w_y[..., None] * one_hot
            if eps > 0:
                smooth = np.where(ignored, 0.0, -np.sum(w * logp, axis=-1))
                loss = (1 - eps) * loss + (eps / n_classes) * smooth
                t = (1 - eps) * t + np.where(ignored[..., None], 0.0, eps / n_classes * w)
        if z_loss:
            loss = loss + np.where(ignored, 0.0, z_loss * lse**2)

    if probabilities:
        denominator = np.float64(np.prod(sample_shape))
    else:
        denominator = np.sum(w_y)
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "mean":
            # Over a total weight of 0 the mean is NaN (torch: 0/0 in its nll part).
            result = np.float64(np.sum(loss) / denominator if denominator != 0 else np.nan)
        elif reduction == "sum":
            result = np.float64(np.sum(loss))
        else:
            result = np.asarray(loss)
    lse = np.asarray(lse)
    if not want_grad:
        return result, None, lse

    g = _upstream(grad_output, reduction, sample_shape, denominator)
    with np.errstate(invalid="ignore", over="ignore"):
        p = np.exp(logp)
        # d loss_n / d x = p * sum_c t_c - t (+ 2 * z_loss * lse * p).
        dx = p * np.sum(t, axis=-1, keepdims=True) - t
        if z_loss:
            dx = dx + 2 * z_loss * lse[..., None] * p
        dx = g[..., None] * dx
        if softcap is not None:
            dx = dx * (1 - tanh_x**2)
        # Exactly zero for ignored samples, even when their scores are NaN.
        dx = np.where(ignored[..., None], 0.0, dx)
    grad = np.moveaxis(dx, -1, class_axis)
    return result, grad, lse


def _scores_last(input):
    """The scores in float64 with the classes on the last axis, the class axis,
    the class count and the sample shape."""
    x = np.asarray(input)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"input must be real, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension")
    class_axis = 0 if x.ndim == 1 else 1
    n_classes = x.shape[class_axis]
    if n_classes == 0:
        raise ValueError("input must have at least one class")
    # Work with the classes on the last axis; sample_shape is what remains.
    x = np.moveaxis(x, class_axis, -1)
    sample_shape = x.shape[:-1]
    return x, class_axis, n_classes, sample_shape


def _target(target, x, class_axis, ignore_index):
    """(probabilities?, class indices y or None, probabilities q or None, ignored mask)."""
    n_classes, sample_shape = x.shape[-1], x.shape[:-1]
    y = q = None
    target = np.asarray(target)
    if target.dtype.kind in "iu":
        probabilities = False
        if target.shape != sample_shape:
            raise ValueError(
                f"class-index target must have shape {sample_shape}, got {target.shape}"
            )
        ignored = target == ignore_index
        invalid = ~ignored & ((target < 0) | (target >= n_classes))
        if np.any(invalid):
            raise IndexError(
                f"target {target[invalid].flat[0]} is out of bounds for {n_classes} classes"
            )
        # Ignored positions point at class 0 so that they can be indexed.
        y = np.where(ignored, 0, target).astype(np.intp)
    elif target.dtype.kind == "f":
        probabilities = True
        if ignore_index >= 0:
            raise ValueError("ignore_index is not supported for probability targets")
        q = np.moveaxis(target.astype(np.float64), class_axis, -1)
        if q.shape != x.shape:
            raise ValueError(
                f"probability target must have the input's shape "
                f"{np.moveaxis(x, -1, class_axis).shape}, got {target.shape}"
            )
        ignored = np.zeros(sample_shape, dtype=bool)
    else:
        raise TypeError(
            f"target must hold integer class indices or float "
            f"probabilities, got dtype {target.dtype}"
        )
    return probabilities, y, q, ignored


def _upstream(grad_output, reduction, sample_shape, denominator):
    """The upstream gradient of each sample's loss."""
    if reduction == "none":
        g = np.ones(sample_shape) if grad_output is None else np.asarray(grad_output, np.float64)
        if g.shape != sample_shape:
            raise ValueError(
                f"grad_output must have the loss's shape {sample_shape}, got {g.shape}"
            )
    else:
        g = np.float64(1.0) if grad_output is None else np.asarray(grad_output, np.float64)
        if g.shape != ():
            raise ValueError(
                f"grad_output must be a scalar for reduction {reduction!r}, got shape {g.shape}"
            )
        if reduction == "mean":
            g = g / denominator if denominator != 0 else np.float64(np.nan)
        g = np.broadcast_to(g, sample_shape)
    return g


def _log_softmax_lse(x):
    """log_softmax and logsumexp over the last axis.

    The row maximum is subtracted first, or 0 when it is not finite, so that
    rows holding -inf scores stay exact and an all -inf row gives NaN.
    """
    x_max = np.max(x, axis=-1, keepdims=True)
    shift = np.where(np.isfinite(x_max), x_max, 0.0)
    shifted = x - shift
    with np.errstate(divide="ignore", invalid="ignore"):
        log_sum = np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
        logp = shifted - log_sum
        lse = (shift + log_sum)[..., 0]
    # A +inf score leaves the probabilities undefined (inf / inf): the whole
    # row is NaN, as in torch, while its lse is +inf.
    logp = np.where(np.isposinf(x_max), np.nan, logp)
    return logp, lse
