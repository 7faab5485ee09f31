"""linear_cross_entropy: a linear layer's logits and their cross-entropy, fused.

``cross_entropy(input @ linear_weight.T + linear_bias, target)`` without the
N x V logits: rows go through in blocks whose logits (at most about 32 MiB,
so that they stay in the last-level cache) are computed by one matrix
product, turned into their own gradient in place by the fused kernel, and
multiplied back into the gradients of ``input`` and ``linear_weight``. The
three matrix products are the ones a plain forward and backward make; the
block of logits is the only buffer of size V.
"""

from typing import Any

import numpy as np

from fastsoftmax import _kernels
from fastsoftmax._layout import is_half
from fastsoftmax._threads import check_n_threads
from fastsoftmax._typing import ArrayLike
from fastsoftmax._xent import REDUCTIONS, _Call

__all__ = ["linear_cross_entropy", "linear_cross_entropy_with_grad"]

# Bytes of logits per block: about the last-level cache of a core pair.
BLOCK_BYTES = 32 * 2**20
# Rows of the weight gradient accumulated at a time: the product of a block
# goes through a temporary of at most this many bytes, not one of the weight's
# size (62 MiB at 32000 x 512 float32).
ACCUMULATE_BYTES = 4 * 2**20


def linear_cross_entropy(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: bool = False,
    return_argmax: bool = False,
    n_threads: int | None = None,
) -> Any:
    """Cross-entropy of the logits ``input @ linear_weight.T + linear_bias``, never held whole.

    Parameters
    ----------
    input : array_like of shape (n_samples, n_features) or (..., n_features)
        The features (hidden states), float32 or float64.
    linear_weight : array_like of shape (n_classes, n_features)
        The linear layer's weight, as ``torch.nn.Linear.weight``, of the
        input's dtype.
    target : array_like of shape (n_samples,) or (...), or (..., n_classes)
        Class indices (any integer dtype), or class probabilities (a float
        dtype, one row for each sample; 'mean' then divides by the number of
        samples, as torch does, and ``ignore_index`` does not apply).
    linear_bias : array_like of shape (n_classes,), optional
        The linear layer's bias.
    weight : array_like of shape (n_classes,), optional
        A rescaling weight for each class.
    ignore_index : int, default=-100
        A class index whose targets add nothing to the loss or the gradients.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        As in :func:`fastsoftmax.cross_entropy`.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the target with the uniform distribution over classes.
    z_loss : float >= 0, default=0.0
        Adds ``z_loss * lse**2`` to each (not ignored) sample's loss.
    softcap : float > 0, optional
        Replaces the logits by ``softcap * tanh(logits / softcap)`` first.
    return_lse : bool, default=False
        Also return each sample's log-sum-exp (of shape input.shape[:-1]).
    return_argmax : bool, default=False
        Also return each sample's predicted class, the index of its largest
        logit (before ``softcap``; the first one on ties, and a NaN counts
        as the largest, as :func:`numpy.argmax`): token accuracy without the
        logits.
    n_threads : int, optional
        OpenMP threads of the cross-entropy kernel; None follows
        ``OMP_NUM_THREADS`` and threadpoolctl (NumPy's BLAS has its own).

    Returns
    -------
    loss : scalar or ndarray
        As :func:`fastsoftmax.cross_entropy` of the logits.
    lse : ndarray
        Only with ``return_lse=True``.
    argmax : ndarray of int64 of shape input.shape[:-1]
        Only with ``return_argmax=True``.

    Notes
    -----
    Rows go through in blocks whose logits take at most 32 MiB, so that a
    block stays in the last-level cache: that block is the only buffer a
    call allocates whose size grows with n_classes.
    """
    run = _Run(
        input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, n_threads, with_grad=False, grad_output=None,
        with_argmax=return_argmax,
    )  # fmt: skip
    extra = ((run.lse,) if return_lse else ()) + ((run.argmax,) if return_argmax else ())
    return (run.loss,) + extra if extra else run.loss


def linear_cross_entropy_with_grad(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: bool = False,
    return_argmax: bool = False,
    grad_output: ArrayLike | float | None = None,
    n_threads: int | None = None,
) -> tuple[Any, ...]:
    """The loss of :func:`linear_cross_entropy` and the gradients of its inputs.

    Parameters
    ----------
    input : array_like of shape (n_samples, n_features) or (..., n_features)
        The features (hidden states), float32 or float64.
    linear_weight : array_like of shape (n_classes, n_features)
        The linear layer's weight, of the input's dtype.
    target : array_like of shape (n_samples,) or (...), or (..., n_classes)
        Class indices (any integer dtype), or class probabilities (a float
        dtype, one row for each sample; 'mean' then divides by the number of
        samples, as torch does, and ``ignore_index`` does not apply).
    linear_bias : array_like of shape (n_classes,), optional
        The linear layer's bias.
    weight : array_like of shape (n_classes,), optional
        A rescaling weight for each class.
    ignore_index : int, default=-100
        A class index whose targets add nothing to the loss or the gradients.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        As in :func:`fastsoftmax.cross_entropy`.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the target with the uniform distribution over classes.
    z_loss : float >= 0, default=0.0
        Adds ``z_loss * lse**2`` to each (not ignored) sample's loss.
    softcap : float > 0, optional
        Replaces the logits by ``softcap * tanh(logits / softcap)`` first.
    return_lse : bool, default=False
        Also return each sample's log-sum-exp.
    return_argmax : bool, default=False
        Also return each sample's predicted class, as
        :func:`linear_cross_entropy` does.
    grad_output : float or array_like, optional
        Scale of the gradients, as in :func:`fastsoftmax.cross_entropy_with_grad`
        (for 'none', an array of shape input.shape[:-1]).
    n_threads : int, optional
        OpenMP threads of the cross-entropy kernel.

    Returns
    -------
    loss : scalar or ndarray
        As :func:`linear_cross_entropy`.
    grad_input : ndarray of the input's shape
        d loss / d input.
    grad_linear_weight : ndarray of shape (n_classes, n_features)
        d loss / d linear_weight.
    grad_linear_bias : ndarray of shape (n_classes,) or None
        d loss / d linear_bias (None without a bias).
    lse : ndarray
        Only with ``return_lse=True``.
    argmax : ndarray of int64 of shape input.shape[:-1]
        Only with ``return_argmax=True``.

    Notes
    -----
    Memory beyond the inputs and the gradients: a block of logits of at most
    32 MiB, turned into its own gradient in place, and a temporary of at most
    4 MiB through which each later block's share of ``grad_linear_weight`` is
    added, a slice of rows at a time.
    """
    run = _Run(
        input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, n_threads, with_grad=True, grad_output=grad_output,
        with_argmax=return_argmax,
    )  # fmt: skip
    result = (run.loss, run.grad_input, run.grad_weight, run.grad_bias)
    return result + ((run.lse,) if return_lse else ()) + ((run.argmax,) if return_argmax else ())


class _Run:
    """One call: the checks, then the blocks of rows."""

    def __init__(
        self, input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, n_threads, with_grad, grad_output, with_argmax=False,
    ):  # fmt: skip
        n_threads = check_n_threads(n_threads)
        x = np.asarray(input)
        w = np.asarray(linear_weight)
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"input must be a float32 or float64 array, got dtype {x.dtype}")
        if w.dtype != x.dtype:
            raise TypeError(f"linear_weight has dtype {w.dtype}, expected the input's {x.dtype}")
        if x.ndim < 1 or w.ndim != 2 or w.shape[1] != x.shape[-1]:
            raise ValueError(
                f"input of shape {x.shape} and linear_weight of shape {w.shape} do not "
                "match: linear_weight must be (n_classes, n_features), n_features the "
                "input's last dimension"
            )
        if not isinstance(reduction, str) or reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        n_classes = w.shape[0]
        if n_classes == 0:
            raise ValueError("linear_weight has no classes (0 rows)")
        t = np.asarray(target)
        probs = t.dtype.kind == "f" or is_half(t.dtype)  # (bfloat16's kind is "V")
        if not probs and t.dtype.kind not in "iu":
            raise TypeError(
                "target must hold class indices (an integer dtype) or class "
                f"probabilities (a float dtype), got dtype {t.dtype}"
            )
        want = x.shape[:-1] + (n_classes,) if probs else x.shape[:-1]
        if t.shape != want:
            kind = "target of class probabilities" if probs else "target"
            raise ValueError(
                f"{kind} has shape {t.shape}, expected {want} for input of shape {x.shape} "
                f"and {n_classes} classes"
            )
        b = None
        if linear_bias is not None:
            b = np.asarray(linear_bias)
            if b.shape != (n_classes,):
                raise ValueError(f"linear_bias has shape {b.shape}, expected ({n_classes},)")
            b = b.astype(x.dtype, copy=False)
        sample_shape = x.shape[:-1]
        x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
        n = x2.shape[0]
        w_cls = None if weight is None else np.ascontiguousarray(weight, dtype=np.float64)
        if w_cls is not None and w_cls.shape != (n_classes,):
            raise ValueError(f"weight has shape {w_cls.shape}, expected ({n_classes},)")
        if probs:
            # Each block's rows of probabilities go to the kernel as they are;
            # 'mean' divides by the number of rows, as torch does.
            t1 = t.reshape(n, n_classes)
            kept_weight = float(n)
        else:
            t1 = np.ascontiguousarray(t.reshape(-1)).astype(np.int64, copy=False)
            # Labels are checked once, and 'mean' divides by the kept weight of all rows.
            bad, _, kept_weight = _kernels.check_labels(
                t1.reshape(n, 1), n_classes, int(ignore_index), w_cls
            )
            if bad >= 0:
                pos = np.unravel_index(bad, sample_shape) if sample_shape else ()
                raise IndexError(
                    f"target {t.reshape(-1)[bad]} is out of bounds for {n_classes} classes at "
                    f"position {tuple(int(i) for i in pos)} (ignore_index={ignore_index})"
                )
        scale = self._scale(reduction, grad_output, kept_weight, sample_shape)
        block = max(1, min(n, BLOCK_BYTES // max(1, n_classes * x.itemsize)))
        z_buf = np.empty((min(block, n), n_classes), dtype=x.dtype)
        loss_rows = np.empty(n, dtype=np.float64)
        lse_rows = np.empty(n, dtype=np.float64)
        argmax_rows = np.empty(n, dtype=np.intp) if with_argmax else None
        if with_grad:
            grad_x = np.empty_like(x2)
            grad_w = np.zeros_like(w)
            grad_b = None if b is None else np.zeros(n_classes, dtype=np.float64)
            w_rows = max(1, min(n_classes, ACCUMULATE_BYTES // max(1, w.shape[1] * x.itemsize)))
            tmp_w = np.empty((w_rows, w.shape[1]), dtype=x.dtype) if n > block else None
        options = (w_cls, ignore_index, label_smoothing, z_loss, softcap, n_threads)
        for start in range(0, n, block):
            stop = min(start + block, n)
            z = z_buf[: stop - start]
            np.matmul(x2[start:stop], w.T, out=z)
            if b is not None:
                z += b
            if argmax_rows is not None:  # while the block is in cache, before it changes
                np.argmax(z, axis=1, out=argmax_rows[start:stop])
            g = None if not with_grad else scale if np.ndim(scale) == 0 else scale[start:stop]
            rows, lse = _block(z, t1[start:stop], options, g)
            loss_rows[start:stop], lse_rows[start:stop] = rows, lse
            if not with_grad:
                continue
            # z now holds g * d loss / d logits of the block.
            np.matmul(z, w, out=grad_x[start:stop])
            if start == 0:
                np.matmul(z.T, x2[start:stop], out=grad_w)
            else:
                for v0 in range(0, n_classes, w_rows):
                    v1 = min(v0 + w_rows, n_classes)
                    part = tmp_w[: v1 - v0]
                    np.matmul(z[:, v0:v1].T, x2[start:stop], out=part)
                    grad_w[v0:v1] += part
            if grad_b is not None:
                grad_b += z.sum(axis=0, dtype=np.float64)
        self.loss = _reduce(loss_rows, reduction, kept_weight, sample_shape, x.dtype)
        self.lse = lse_rows.astype(x.dtype).reshape(sample_shape)
        if argmax_rows is not None:
            self.argmax = argmax_rows.astype(np.int64, copy=False).reshape(sample_shape)
        if with_grad:
            self.grad_input = grad_x.reshape(x.shape)
            self.grad_weight = grad_w
            self.grad_bias = None if grad_b is None else grad_b.astype(x.dtype)

    @staticmethod
    def _scale(reduction, grad_output, kept_weight, sample_shape):
        """The gradient's scale: one number, or one per row for 'none'."""
        if reduction == "none":
            if grad_output is None:
                return 1.0
            g = np.asarray(grad_output, dtype=np.float64)
            if g.shape != sample_shape:
                raise ValueError(
                    f"grad_output has shape {g.shape}, expected the loss's shape {sample_shape}"
                )
            return np.ascontiguousarray(g.reshape(-1))
        g = 1.0 if grad_output is None else grad_output
        if np.ndim(g) != 0:
            raise ValueError(f"grad_output must be a scalar for reduction='{reduction}'")
        g = float(g)
        if reduction == "mean":
            g = g / kept_weight if kept_weight != 0 else np.nan
        return g


def _block(z, t, options, g):
    """Per-row loss and lse (float64) of one block of logits; unless ``g`` is
    None, the block becomes ``g`` times its gradient, in place (``g`` one
    number, or one per row)."""
    weight, ignore_index, smoothing, z_loss, softcap, n_threads = options
    per_row = g is not None and np.ndim(g) != 0
    call = _Call(
        z, t, weight, ignore_index, "none" if per_row else "sum", smoothing, z_loss, softcap,
        n_threads,
    )  # fmt: skip
    if g is None:
        return call.forward(grad=None, g=call.grad_scale(None))
    grad = call.grad_buffer(None, inplace=True)
    return call.forward(grad=grad, g=call.grad_scale(g))


def _reduce(loss_rows, reduction, kept_weight, sample_shape, dtype):
    if reduction == "none":
        return loss_rows.astype(dtype).reshape(sample_shape)
    total = float(loss_rows.sum())
    if reduction == "mean":
        total = total / kept_weight if kept_weight != 0 else np.nan
    return dtype.type(total)
