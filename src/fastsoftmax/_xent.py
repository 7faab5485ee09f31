"""Softmax cross-entropy with torch.nn.functional.cross_entropy's semantics.

Every check happens here, before a kernel runs; the kernels then make one
fused sweep per row (loss, log-sum-exp and, when asked, the gradient).
"""

import math
import numbers
import operator
from typing import Any

import numpy as np

from fastsoftmax import _kernels
from fastsoftmax._layout import (
    DTYPE_CODE,
    as_kernel_input,
    bits,
    is_half,
    kernel_code,
    result_dtype,
    same_layout,
    view3,
)
from fastsoftmax._threads import check_n_threads, threads_for
from fastsoftmax._typing import Array, ArrayLike

__all__ = ["cross_entropy", "cross_entropy_with_grad", "cross_entropy_backward"]

REDUCTIONS = ("mean", "sum", "none")


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
    n_threads: int | None = None,
) -> Any:
    """Cross-entropy between softmax(input) and target, as torch's ``cross_entropy``.

    Parameters
    ----------
    input : array_like of shape (n_samples, n_classes) or (n_samples, n_classes, d1, ..., dK)
        Unnormalised scores (logits), float32, float64, float16 or bfloat16
        (``ml_dtypes.bfloat16``; the 2-byte dtypes are computed in float32
        and the gradient rounded once); one sample may be of shape
        (n_classes,). The class axis is axis 1 when there is a batch axis.
    target : array_like
        Class indices of any integer dtype, of shape (), (n_samples,) or
        (n_samples, d1, ..., dK); or class probabilities, a float array of
        the input's shape.
    weight : array_like of shape (n_classes,), optional
        A rescaling weight for each class.
    ignore_index : int, default=-100
        A class index whose targets add nothing to the loss or the gradient
        (class-index targets only).
    reduction : {'mean', 'sum', 'none'}, default='mean'
        'mean' divides the weighted sum by the sum of the target weights
        (by the number of samples for probability targets); NaN when every
        target is ignored.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the target with the uniform distribution over classes.
    z_loss : float >= 0, default=0.0
        Adds ``z_loss * lse**2`` to each (not ignored) sample's loss, lse
        being the sample's log-sum-exp; not scaled by the class weight.
    softcap : float > 0, optional
        Replaces the scores by ``softcap * tanh(input / softcap)`` first.
    n_threads : int, optional
        OpenMP threads to use; None follows ``OMP_NUM_THREADS`` and threadpoolctl.

    Returns
    -------
    loss : scalar or ndarray of the input's dtype (float32 for 2-byte input)
        A scalar for 'mean' and 'sum'; for 'none', an array of shape (),
        (n_samples,) or (n_samples, d1, ..., dK).

    Examples
    --------
    >>> import numpy as np
    >>> from fastsoftmax import cross_entropy
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> round(float(cross_entropy(logits, np.array([0, 2]))), 6)
    0.175456
    """
    done = _plain_rows(
        input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
        with_grad=False, n_threads=n_threads,
    )  # fmt: skip
    if done is not None:
        return done[0]
    call = _Call(
        input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, n_threads
    )
    loss_rows, _ = call.forward(grad=None, g=call.grad_scale(None), keep_lse=False)
    return call.reduce(loss_rows)


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
    n_threads: int | None = None,
    grad_output: ArrayLike | float | None = None,
    out: Array | None = None,
    inplace: bool = False,
    return_lse: bool = False,
) -> tuple[Any, ...]:
    """The loss of :func:`cross_entropy` and its gradient, in one sweep over the scores.

    Parameters
    ----------
    input : array_like of shape (n_samples, n_classes) or (n_samples, n_classes, d1, ..., dK)
        Unnormalised scores (logits), float32, float64, float16 or bfloat16
        (``ml_dtypes.bfloat16``; the 2-byte dtypes are computed in float32
        and the gradient rounded once); one sample may be of shape
        (n_classes,). As in :func:`cross_entropy`.
    target : array_like
        Class indices or class probabilities, as in :func:`cross_entropy`.
    weight : array_like of shape (n_classes,), optional
        A rescaling weight for each class.
    ignore_index : int, default=-100
        A class index whose targets add nothing to the loss or the gradient.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        How the per-sample losses are reduced, as in :func:`cross_entropy`.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the target with the uniform distribution over classes.
    z_loss : float >= 0, default=0.0
        Weight of the ``lse**2`` term added to each sample's loss.
    softcap : float > 0, optional
        Replaces the scores by ``softcap * tanh(input / softcap)`` first.
    n_threads : int, optional
        OpenMP threads to use; None follows ``OMP_NUM_THREADS`` and threadpoolctl.
    grad_output : float or array_like, optional
        For 'mean' and 'sum' a scalar that scales the gradient (default 1).
        For 'none' an array of the loss's shape: the gradient is then that of
        ``sum(grad_output * loss)`` (default all ones).
    out : ndarray, optional
        C-contiguous array of the input's shape and dtype to write the
        gradient into.
    inplace : bool, default=False
        Write the gradient over ``input`` (which must be a writable ndarray
        of a kernel dtype). Nothing of the input's size is allocated.
    return_lse : bool, default=False
        Also return the log-sum-exp of each sample's (softcapped) scores.

    Returns
    -------
    loss : scalar or ndarray
        As :func:`cross_entropy`.
    grad : ndarray of the input's shape and dtype
        d loss / d input (``out`` or ``input`` when those were given).
    lse : ndarray of the loss's shape ('none') and the loss's dtype
        Only with ``return_lse=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsoftmax import cross_entropy_with_grad
    >>> loss, grad = cross_entropy_with_grad(np.array([[0.0, 0.0]]), np.array([1]))
    >>> grad
    array([[ 0.5, -0.5]])
    """
    done = _plain_rows(
        input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
        with_grad=True, n_threads=n_threads, grad_output=grad_output, out=out, inplace=inplace,
        return_lse=return_lse,
    )  # fmt: skip
    if done is not None:
        return done
    call = _Call(
        input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, n_threads
    )
    grad = call.grad_buffer(out, inplace)
    loss_rows, lse_rows = call.forward(
        grad=grad, g=call.grad_scale(grad_output), keep_lse=return_lse
    )
    result = (call.reduce(loss_rows), grad.result)
    if return_lse:
        result += (call.per_sample(lse_rows),)
    return result


def cross_entropy_backward(
    input: ArrayLike,
    target: ArrayLike,
    lse: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    n_threads: int | None = None,
    grad_output: ArrayLike | float | None = None,
    out: Array | None = None,
    inplace: bool = False,
) -> Array:
    """The gradient of :func:`cross_entropy` alone, from the ``lse`` a forward returned.

    One read of the scores and one write of the gradient: for callers that
    run the forward (``cross_entropy_with_grad(..., return_lse=True)`` or
    their own) and the backward at different times.

    Parameters
    ----------
    input : array_like of shape (n_samples, n_classes) or (n_samples, n_classes, d1, ..., dK)
        Unnormalised scores (logits), float32, float64, float16 or bfloat16
        (``ml_dtypes.bfloat16``; the 2-byte dtypes are computed in float32
        and the gradient rounded once); one sample may be of shape
        (n_classes,). As in :func:`cross_entropy`.
    target : array_like
        Class indices or class probabilities, as in :func:`cross_entropy`.
    lse : array_like of the loss's shape ('none')
        Log-sum-exp of each sample's (softcapped) scores. A float32 ``lse``
        carries float32 rounding into the probabilities (about
        ``abs(lse) * 6e-8`` relative).
    weight : array_like of shape (n_classes,), optional
        A rescaling weight for each class.
    ignore_index : int, default=-100
        A class index whose targets add nothing to the loss or the gradient.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        How the per-sample losses are reduced, as in :func:`cross_entropy`.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the target with the uniform distribution over classes.
    z_loss : float >= 0, default=0.0
        Weight of the ``lse**2`` term added to each sample's loss.
    softcap : float > 0, optional
        Replaces the scores by ``softcap * tanh(input / softcap)`` first.
    n_threads : int, optional
        OpenMP threads to use; None follows ``OMP_NUM_THREADS`` and threadpoolctl.
    grad_output : float or array_like, optional
        Scale of the gradient, as in :func:`cross_entropy_with_grad`.
    out : ndarray, optional
        C-contiguous array of the input's shape and dtype to write the
        gradient into.
    inplace : bool, default=False
        Write the gradient over ``input``.

    Returns
    -------
    grad : ndarray of the input's shape and dtype
        d loss / d input (``out`` or ``input`` when those were given).
    """
    call = _Call(
        input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, n_threads
    )
    lse = np.asarray(lse)
    if lse.shape != call.loss_shape:
        raise ValueError(
            f"lse has shape {lse.shape}, expected {call.loss_shape} "
            f"for input of shape {call.input_shape}"
        )
    if not _is_real(lse.dtype):
        raise TypeError(f"lse must be a real array, got dtype {lse.dtype}")
    # Aligned, contiguous float64: the kernels read whole, aligned elements.
    lse2 = _aligned(lse, np.float64, contiguous=True).reshape(call.n_outer, call.n_inner)
    grad = call.grad_buffer(out, inplace)
    call.backward(lse2, grad, call.grad_scale(grad_output))
    return grad.result


def loss_and_lse(
    input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, n_threads=None
):
    """The loss and each sample's log-sum-exp in float64, in one sweep: the
    forward of fastsoftmax.torch when the backward sweeps later, which keeps
    the lse at full precision for :func:`cross_entropy_backward`."""
    call = _Call(
        input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, n_threads
    )
    loss_rows, lse_rows = call.forward(grad=None, g=call.grad_scale(None))
    return call.reduce(loss_rows), lse_rows.reshape(call.loss_shape)


class _Grad:
    """The gradient's destination: a kernel-ready 3-D view, and what to return."""

    def __init__(self, view, result, copy_back=None):
        self.view = view
        self.result = result
        self.copy_back = copy_back

    def finish(self):
        if self.copy_back is not None:
            np.copyto(self.result, self.copy_back.reshape(self.result.shape))


class _Call:
    """One checked call: the input as rows, the target, weights and options."""

    def __init__(
        self,
        input,
        target,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss,
        softcap,
        n_threads,
    ):
        self.n_threads = check_n_threads(n_threads)
        self.raw_input = input
        x = np.asarray(input)
        self.code = kernel_code(x.dtype)
        if self.code is None:
            raise TypeError(
                f"input must be a float32, float64, float16 or bfloat16 array, got dtype {x.dtype}"
            )
        if x.ndim == 0:
            raise ValueError("input must have at least 1 dimension (the classes), got a 0-d array")
        self.input_shape = x.shape
        self.dtype = np.dtype(x.dtype.newbyteorder("="))
        # Losses and lse: float32 for 2-byte scores (the dtype they are computed in).
        self.loss_dtype = result_dtype(self.dtype)
        if x.ndim == 1:
            self.n_outer, self.n_classes, self.n_inner = 1, x.shape[0], 1
            self.loss_shape = ()
        else:
            self.n_outer, self.n_classes = x.shape[0], x.shape[1]
            self.n_inner = math.prod(x.shape[2:])
            self.loss_shape = (x.shape[0],) + x.shape[2:]
        if self.n_classes == 0:
            raise ValueError(f"input has no classes: shape {x.shape}")
        self.shape3 = (self.n_outer, self.n_classes, self.n_inner)
        self.n_rows = self.n_outer * self.n_inner
        x = as_kernel_input(x)
        v = view3(x, self.shape3)
        self.x3 = v if v is not None else np.ascontiguousarray(x).reshape(self.shape3)

        if not isinstance(reduction, str) or reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.smoothing = _real_in("label_smoothing", label_smoothing, 0.0, 1.0)
        self.z_loss = _real_in("z_loss", z_loss, 0.0, np.inf)
        self.softcap = 0.0 if softcap is None else _positive("softcap", softcap)
        try:
            self.ignore_index = operator.index(ignore_index)
        except TypeError:
            raise TypeError(f"ignore_index must be an int, got {ignore_index!r}") from None
        self._set_weight(weight)
        self._set_target(target)

    # ------------------------------------------------------------------ checks

    def _set_weight(self, weight):
        if weight is None:
            self.weight = None
            return
        w = np.asarray(weight)
        if not _is_real(w.dtype):
            raise TypeError(f"weight must be a real array, got dtype {w.dtype}")
        if w.shape != (self.n_classes,):
            raise ValueError(
                f"weight has shape {w.shape}, expected ({self.n_classes},): "
                f"one weight per class of input of shape {self.input_shape}"
            )
        # np.ascontiguousarray would keep an unaligned buffer as it is.
        self.weight = _aligned(w, np.float64, contiguous=True)

    def _set_target(self, target):
        t = np.asarray(target)
        if t.dtype.kind in "iu":
            if t.shape != self.loss_shape:
                raise ValueError(
                    f"target has shape {t.shape}, expected {self.loss_shape} "
                    f"for input of shape {self.input_shape}"
                )
            t = _aligned(t, t.dtype.newbyteorder("="), contiguous=False)
            self._check_labels(t)
            self.probs = False
            # The kernels read int64 labels: others are converted once they are
            # known to be in range (a uint64 ignore_index above 2**63 wraps to a
            # negative label, which the kernels ignore as well).
            self.t2 = t.reshape(self.n_outer, self.n_inner).astype(_INT64, copy=False)
        elif t.dtype.kind == "f" or is_half(t.dtype):  # (bfloat16's kind is "V")
            if t.shape != self.input_shape:
                raise ValueError(
                    f"target of class probabilities has shape {t.shape}, "
                    f"expected the input's shape {self.input_shape}"
                )
            if self.ignore_index >= 0:
                raise ValueError(
                    "ignore_index is not supported for class-probability "
                    f"targets (got ignore_index={self.ignore_index})"
                )
            self.probs = True
            # 2-byte scores take float32 probabilities: the dtype they compute in.
            q = as_kernel_input(t.astype(self.loss_dtype, copy=False))
            v = view3(q, self.shape3)
            self.q3 = v if v is not None else np.ascontiguousarray(q).reshape(self.shape3)
        else:
            raise TypeError(
                "target must hold class indices (an integer dtype) or class "
                f"probabilities (a float dtype), got dtype {t.dtype}"
            )

    def _check_labels(self, t):
        """One pass over the labels: range, and what 'mean' divides by."""
        bad, self.n_kept, self.kept_weight = _kernels.check_labels(
            t.reshape(self.n_outer, self.n_inner), self.n_classes, self.ignore_index, self.weight
        )
        if bad >= 0:
            pos = np.unravel_index(bad, t.shape) if t.ndim else ()
            where = f" at position {tuple(int(i) for i in pos)}" if t.ndim else ""
            raise IndexError(
                f"target {t[pos]} is out of bounds for {self.n_classes} "
                f"classes{where} (ignore_index={self.ignore_index})"
            )

    # ------------------------------------------------------------ reductions

    def denominator(self):
        """What 'mean' divides by."""
        return float(self.n_rows) if self.probs else self.kept_weight

    def grad_scale(self, grad_output):
        """Per-row scale of the gradient: (an (outer, inner) float64 array, None)
        or (None, one value for every row)."""
        if self.reduction == "none":
            if grad_output is None:
                return None, 1.0
            g = np.asarray(grad_output)
            if not _is_real(g.dtype):
                raise TypeError(
                    f"grad_output must be a real array of the loss's shape, got dtype {g.dtype}"
                )
            if g.shape != self.loss_shape:
                raise ValueError(
                    f"grad_output has shape {g.shape}, expected the loss's "
                    f"shape {self.loss_shape} for reduction='none'"
                )
            # Aligned, contiguous float64: the kernels read whole, aligned elements.
            g = _aligned(g, np.float64, contiguous=True)
            return g.reshape(self.n_outer, self.n_inner), 0.0
        g = 1.0 if grad_output is None else grad_output
        if type(g) is not float:
            a = np.asarray(g)
            if a.ndim != 0:
                raise ValueError(
                    f"grad_output must be a scalar for reduction="
                    f"'{self.reduction}', got shape {a.shape}"
                )
            if not _is_real(a.dtype):
                raise TypeError(f"grad_output must be a real number, got {g!r}")
        g = float(g)
        if self.reduction == "mean":
            d = self.denominator()
            # Zero total weight: NaN, as torch (rows of ignored targets stay 0).
            g = g / d if d != 0 else np.nan
        return None, g

    def reduce(self, loss_rows):
        if self.reduction == "none":
            return self.per_sample(loss_rows)
        total = float(loss_rows.sum())
        if self.reduction == "mean":
            d = self.denominator()
            total = total / d if d != 0 else np.nan
        return self.loss_dtype.type(total)

    def per_sample(self, rows):
        return rows.astype(self.loss_dtype).reshape(self.loss_shape)

    # ------------------------------------------------------------------ kernels

    def grad_buffer(self, out, inplace):
        if inplace and out is not None:
            raise ValueError("give either out= or inplace=True, not both")
        if inplace:
            x = self.raw_input
            if not isinstance(x, np.ndarray) or x.dtype != self.dtype:
                raise TypeError(
                    "inplace=True needs input to be a float32, float64, float16 or "
                    "bfloat16 numpy.ndarray in native byte order"
                )
            if not x.flags.writeable:
                raise ValueError("inplace=True needs a writable input; this one is read-only")
            v = view3(x, self.shape3)
            if v is not None:
                return _Grad(v, x)
            tmp = np.empty(self.shape3, dtype=self.dtype)
            return _Grad(tmp, x, copy_back=tmp)
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
            if out.shape != self.input_shape:
                raise ValueError(
                    f"out has shape {out.shape}, expected the input's shape {self.input_shape}"
                )
            if out.dtype != self.dtype:
                raise TypeError(f"out has dtype {out.dtype}, expected {self.dtype}")
            if not out.flags.c_contiguous:
                raise ValueError("out must be C-contiguous")
            if not out.flags.writeable:
                raise ValueError("out is read-only")
            if self._overlaps(out):
                # Written while the scores or targets are still read: go through a copy.
                tmp = np.empty(self.shape3, dtype=self.dtype)
                return _Grad(tmp, out, copy_back=tmp)
            return _Grad(out.reshape(self.shape3), out)
        grad = np.empty(self.input_shape, dtype=self.dtype)
        return _Grad(grad.reshape(self.shape3), grad)

    def _overlaps(self, out):
        """out shares memory with the scores (other than element for element) or q."""
        x = self.raw_input
        if isinstance(x, np.ndarray) and np.may_share_memory(out, x) and not same_layout(out, x):
            return True
        return self.probs and np.may_share_memory(out, self.q3)

    def _kernel_ignore(self):
        # Outside int64 no label the kernels see can equal it (check_labels
        # let through only labels in [0, C), and uint64 ones that equal it,
        # which the kernels read as negative, i.e. ignored).
        return self.ignore_index if -(2**63) <= self.ignore_index < 2**63 else -1

    def _kernel_args(self, g):
        """The keyword arguments every kernel call of this call shares."""
        g_rows, g_value = g
        return dict(
            target=None if self.probs else self.t2,
            q=self.q3 if self.probs else None,
            g=g_rows,
            g_value=g_value,
            weight=self.weight,
            ignore_index=self._kernel_ignore(),
            smoothing=self.smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            dtype=self.code,
            n_threads=threads_for(self.n_threads, self.n_rows * self.n_classes),
        )

    def forward(self, grad, g, keep_lse=True):
        """Run the fused kernel; returns per-row loss and lse (float64; None
        without ``keep_lse``, which spares a write of 8 bytes a row)."""
        loss = np.empty(self.n_rows, dtype=np.float64)
        lse = np.empty(self.n_rows, dtype=np.float64) if keep_lse else None
        if self.n_rows:
            gv = None if grad is None else bits(grad.view)
            _kernels.xent(bits(self.x3), grad=gv, loss=loss, lse=lse, **self._kernel_args(g))
        if grad is not None:
            grad.finish()
        return loss, lse

    def backward(self, lse2, grad, g):
        if self.n_rows:
            _kernels.xent(bits(self.x3), grad=bits(grad.view), lse_in=lse2, **self._kernel_args(g))
        grad.finish()


def _is_real(dtype):
    """Integers, floats and bfloat16 (whose kind is "V")."""
    return dtype.kind in "fiu" or is_half(dtype)


def _real(name, value):
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _real_in(name, value, lo, hi):
    v = _real(name, value)
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def _positive(name, value):
    v = _real(name, value)
    if not (v > 0 and np.isfinite(v)):
        raise ValueError(f"{name} must be a positive finite number, got {v}")
    return v


_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INT64 = np.dtype(np.int64)
_FLOAT64 = np.dtype(np.float64)
_FLOAT32 = np.dtype(np.float32)


def _plain_rows(
    x, t, weight, ignore_index, reduction, smoothing, z_loss, softcap, with_grad, n_threads,
    grad_output=None, out=None, inplace=False, return_lse=False,
):  # fmt: skip
    """The common call without the general path's conversions: C-contiguous 2-D
    float32/float64 scores, int64 labels in range, the options of the types
    their defaults have (a float32 or float64 weight array of one value per
    class, a float grad_output for 'mean' and 'sum', an ``out`` apart from
    the scores) and in range. Returns (loss, grad or None[, lse]), or None
    when the call is not of that kind; the general path then runs (and
    raises where it should). Its results are the general path's, bit for bit
    (tests/test_xent.py)."""
    if not (
        type(x) is np.ndarray
        and type(t) is np.ndarray
        and x.ndim == 2
        and t.ndim == 1
        and x.dtype in _FAST_DTYPES
        and t.dtype == _INT64
        and x.flags.c_contiguous
        and x.flags.aligned
        and t.flags.aligned
        and 0 < t.shape[0] == x.shape[0]
        and x.shape[1] > 0
        and type(ignore_index) is int
        and -(2**63) <= ignore_index < 2**63
        and type(reduction) is str
        and reduction in REDUCTIONS
        and type(smoothing) is float
        and 0.0 <= smoothing <= 1.0
        and type(z_loss) is float
        and 0.0 <= z_loss <= math.inf
        and (softcap is None or (type(softcap) is float and 0.0 < softcap < math.inf))
    ):
        return None
    n, c = x.shape
    if weight is not None:
        # (dtype identity: the builtin native dtypes are singletons; any other
        # dtype object goes the general way, which is never wrong)
        if not (
            type(weight) is np.ndarray
            and (weight.dtype is _FLOAT64 or weight.dtype is _FLOAT32)
            and weight.shape == (c,)
        ):
            return None
        flags = weight.flags
        if not (flags.c_contiguous and flags.aligned):
            return None
        # As the general path: the kernels read float64 weights (exact from float32).
        weight = weight.astype(_FLOAT64, copy=False)
    if grad_output is not None and not (type(grad_output) is float and reduction != "none"):
        return None
    if inplace is not False and (inplace is not True or out is not None or not x.flags.writeable):
        return None
    if out is not None and not (
        type(out) is np.ndarray
        and out.shape == x.shape
        and out.dtype == x.dtype
        and out.flags.c_contiguous
        and out.flags.aligned
        and out.flags.writeable
        and (out is x or not np.may_share_memory(out, x))
    ):
        return None
    n_threads = check_n_threads(n_threads)
    t2 = t.reshape(n, 1)
    bad, _, kept = _kernels.check_labels(t2, c, ignore_index, weight)
    if bad >= 0:
        return None
    # The dtype is given: NumPy 2.4's np.empty(n) keeps a reference to the
    # float64 dtype per call (tests/test_leaks.py watches its count).
    loss = np.empty(n, _FLOAT64)
    lse = np.empty(n, _FLOAT64)
    if not with_grad:
        grad = None
    elif inplace:
        grad = x
    elif out is not None:
        grad = out
    else:
        grad = np.empty((n, c), dtype=x.dtype)
    mean = reduction == "mean"
    g_value = 1.0 if grad_output is None else grad_output
    if mean:
        g_value = g_value / kept if kept != 0 else np.nan
    _index_rows(
        x, t, grad, None, g_value, smoothing, n_threads, loss, lse,
        weight=weight, ignore_index=ignore_index, z_loss=z_loss, softcap=softcap,
    )  # fmt: skip
    if reduction == "none":
        total = loss.astype(x.dtype)
    else:
        # One row: NumPy's sum is 0.0 + that row (a call of 1 us on its own).
        total = float(loss[0]) + 0.0 if n == 1 else float(loss.sum())
        if mean:
            total = total / kept if kept != 0 else np.nan
        total = x.dtype.type(total)
    if return_lse:
        return total, grad, lse.astype(x.dtype)
    return total, grad


def _aligned(a, dtype, contiguous):
    """``a`` as an aligned array of ``dtype`` (C-contiguous too if asked), copied
    only when needed: np.ascontiguousarray and astype(copy=False) would keep an
    unaligned buffer, which the kernels must not load from."""
    if a.dtype == dtype and a.flags.aligned and (a.flags.c_contiguous or not contiguous):
        return a
    return np.require(a, dtype, ["C", "A"] if contiguous else ["A"])


def batch_loss_grad(z, labels, g, g_value, label_smoothing, n_threads, loss, lse):
    """The fused kernel for the trainer's minibatch loop, without the public checks.

    ``z`` is a C-contiguous (m, C) float batch of scores, m >= 1, ``labels``
    a contiguous int64 array of m labels already known to lie in [0, C).
    Writes each row's loss into ``loss[:m]`` (float64; ``lse`` is scratch of
    the same size) and overwrites ``z`` with ``g_i * d loss_i / d z_i``, row
    by row: ``g`` an (m,) float64 array, or None and ``g_value`` for every row.
    Returns ``loss[:m]``.
    """
    m = z.shape[0]
    labels = labels.astype(_INT64, copy=False)
    _index_rows(z, labels, z, g, g_value, label_smoothing, n_threads, loss[:m], lse[:m])
    return loss[:m]


def _index_rows(
    x, labels, grad, g, g_value, label_smoothing, n_threads, loss, lse,
    weight=None, ignore_index=-100, z_loss=0.0, softcap=None,
):  # fmt: skip
    """The fused kernel on C-contiguous (m, C) scores and m int64 labels known to
    lie in [0, C) or to equal ``ignore_index``, with options already checked
    (``weight`` an aligned, contiguous float64 array or None). Per-row losses
    and lse into ``loss`` and ``lse``; the gradient, scaled by ``g`` (an (m,)
    array) or ``g_value``, into ``grad`` unless it is None (it may be ``x``)."""
    m, c = x.shape
    _kernels.xent_rows(
        x, labels, grad, g, g_value, loss, lse, weight, ignore_index, label_smoothing, z_loss,
        0.0 if softcap is None else softcap, DTYPE_CODE[x.dtype], threads_for(n_threads, m * c),
    )  # fmt: skip
