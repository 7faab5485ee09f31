"""linear_cross_entropy: a linear layer's logits and their cross-entropy, fused.

``cross_entropy(input @ linear_weight.T + linear_bias, target)`` without the
N x V logits: rows go through in blocks whose logits (about 32 MiB by
default, so that they stay in the last-level cache, and at least 256 rows)
are computed by one matrix product, turned into their own gradient in place by the fused kernel, and
multiplied back into the gradients of ``input`` and ``linear_weight``. The
three matrix products are the ones a plain forward and backward make; the
block of logits is the only buffer of size V.
"""

import operator
from typing import Any

import numpy as np

from fastsoftmax import _kernels
from fastsoftmax._layout import is_half, narrow, widen
from fastsoftmax._threads import check_n_threads
from fastsoftmax._typing import ArrayLike
from fastsoftmax._xent import REDUCTIONS, _Call, _positive, _real_in

__all__ = ["linear_cross_entropy", "linear_cross_entropy_with_grad", "linear_logsumexp"]

# Bytes of logits per block by default: about the last-level cache of a core
# pair; but at least MIN_BLOCK_ROWS rows. With fewer, each block streams the
# whole weight and its gradient through memory for too little arithmetic:
# at 512 x 1024 x 128256 float32, blocks of 65 rows (32 MiB) took 1.96 times
# the three matrix products alone, of 261 rows (128 MiB) 1.06 times.
BLOCK_BYTES = 32 * 2**20
MIN_BLOCK_ROWS = 256
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
    class_offset: int = 0,
    total_classes: int | None = None,
    lse: ArrayLike | None = None,
    block_bytes: int | None = None,
    n_threads: int | None = None,
) -> Any:
    """Cross-entropy of the logits ``input @ linear_weight.T + linear_bias``, never held whole.

    Parameters
    ----------
    input : array_like of shape (n_samples, n_features) or (..., n_features)
        The features (hidden states): float32, float64, float16 or
        ``ml_dtypes.bfloat16``. 2-byte inputs are computed in float32 from
        float32 copies of ``input`` and ``linear_weight`` (NumPy has no
        2-byte matrix product), which take 4 (n_samples + n_classes) *
        n_features bytes more; their loss and lse come back in float32.
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
    class_offset : int, default=0
        With a vocabulary split across processes: the first class of the
        whole vocabulary that ``linear_weight`` holds (its rows are classes
        ``class_offset`` to ``class_offset + n_classes - 1``). Targets are
        then class indices of the whole vocabulary. Needs ``lse``.
    total_classes : int, optional
        The size of the whole vocabulary (``class_offset + n_classes`` when
        not given): targets must be below it.
    lse : array_like of shape input.shape[:-1], optional
        Each sample's log-sum-exp over the whole vocabulary: the
        :func:`fastsoftmax.logsumexp` of every part's
        :func:`linear_logsumexp`. With it the call returns this part's
        share: the loss of the samples whose target is among its classes
        (so that the parts' losses add up to the whole loss), and the
        gradients of its logits ``exp(logits - lse) - onehot``, which add up
        to ``grad_input`` across the parts and are the part's own
        ``grad_linear_weight``. Class weights, ``label_smoothing`` and
        class-probability targets are refused with it, and so is
        ``return_argmax``.
    block_bytes : int, optional
        The most bytes of logits a block of rows may take (at least one row
        is taken). None: 32 MiB, or 256 rows where those take more (fewer
        rows slow the matrix products down).
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
    Rows go through in blocks whose logits take at most ``block_bytes``:
    that block is the only buffer a call allocates whose size grows with
    n_classes.
    """
    run = _Run(
        input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, n_threads, with_grad=False, grad_output=None,
        with_argmax=return_argmax, split=(class_offset, total_classes, lse),
        block_bytes=block_bytes,
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
    class_offset: int = 0,
    total_classes: int | None = None,
    lse: ArrayLike | None = None,
    block_bytes: int | None = None,
    n_threads: int | None = None,
) -> tuple[Any, ...]:
    """The loss of :func:`linear_cross_entropy` and the gradients of its inputs.

    Parameters
    ----------
    input : array_like of shape (n_samples, n_features) or (..., n_features)
        The features (hidden states): float32, float64, float16 or
        ``ml_dtypes.bfloat16`` (computed in float32, as in
        :func:`linear_cross_entropy`; the gradients are summed in float32 and
        rounded once to the input's dtype, which takes 4 * n_classes *
        n_features bytes more for the weight's).
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
    class_offset : int, default=0
        The first class that ``linear_weight`` holds, of a vocabulary split
        across processes, as in :func:`linear_cross_entropy`.
    total_classes : int, optional
        The size of the whole vocabulary, as in :func:`linear_cross_entropy`.
    lse : array_like of shape input.shape[:-1], optional
        Each sample's log-sum-exp over the whole vocabulary: the call then
        returns this part's share of the loss and of the gradients, as in
        :func:`linear_cross_entropy`.
    block_bytes : int, optional
        The most bytes of logits a block of rows may take (at least one row
        is taken). None: 32 MiB, or 256 rows where those take more (as in
        :func:`linear_cross_entropy`).
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
    ``block_bytes``, turned into its own gradient in place, and a temporary of at most
    4 MiB through which each later block's share of ``grad_linear_weight`` is
    added, a slice of rows at a time.
    """
    run = _Run(
        input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, n_threads, with_grad=True, grad_output=grad_output,
        with_argmax=return_argmax, split=(class_offset, total_classes, lse),
        block_bytes=block_bytes,
    )  # fmt: skip
    result = (run.loss, run.grad_input, run.grad_weight, run.grad_bias)
    return result + ((run.lse,) if return_lse else ()) + ((run.argmax,) if return_argmax else ())


def linear_logsumexp(
    input: ArrayLike,
    linear_weight: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    softcap: float | None = None,
    block_bytes: int | None = None,
    n_threads: int | None = None,
) -> Any:
    """Each sample's log-sum-exp of ``input @ linear_weight.T + linear_bias``, never held whole.

    The first step of a vocabulary split across processes: each process
    computes it for the classes it holds, the :func:`fastsoftmax.logsumexp`
    of the parts' results (over the parts) is the whole vocabulary's, and
    ``linear_cross_entropy_with_grad(..., class_offset=..., lse=...)`` then
    gives each part's share of the loss and of the gradients.

    Parameters
    ----------
    input : array_like of shape (n_samples, n_features) or (..., n_features)
        The features, float32, float64, float16 or ``ml_dtypes.bfloat16``.
    linear_weight : array_like of shape (n_classes, n_features)
        The linear layer's weight (or this process's rows of it), of the
        input's dtype.
    linear_bias : array_like of shape (n_classes,), optional
        The linear layer's bias.
    softcap : float > 0, optional
        Of the logits ``softcap * tanh(logits / softcap)``.
    block_bytes : int, optional
        The most bytes of logits a block of rows may take (at least one row
        is taken). None: 32 MiB, or 256 rows where those take more (as in
        :func:`linear_cross_entropy`).
    n_threads : int, optional
        OpenMP threads of the kernel.

    Returns
    -------
    lse : ndarray of float64 of shape input.shape[:-1]
        In float64 whatever the input's dtype, so that the parts combine
        without rounding.

    Examples
    --------
    Two halves of a vocabulary give the whole one's loss and gradients:

    >>> import numpy as np, fastsoftmax as fs
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((4, 3)), rng.standard_normal((10, 3))
    >>> t = np.array([1, 7, 2, 9])
    >>> lse = fs.logsumexp(np.stack([fs.linear_logsumexp(x, w[:6]),
    ...                              fs.linear_logsumexp(x, w[6:])]), axis=0)
    >>> a = fs.linear_cross_entropy_with_grad(x, w[:6], t, total_classes=10, lse=lse)
    >>> b = fs.linear_cross_entropy_with_grad(x, w[6:], t, class_offset=6, lse=lse)
    >>> whole = fs.linear_cross_entropy_with_grad(x, w, t)
    >>> bool(np.isclose(a[0] + b[0], whole[0]))
    True
    >>> bool(np.allclose(a[1] + b[1], whole[1]))
    True
    >>> bool(np.allclose(np.concatenate([a[2], b[2]]), whole[2]))
    True
    """
    x = np.asarray(input)
    target = np.full(x.shape[:-1], -1, dtype=np.int64)  # every row ignored: lse alone
    run = _Run(
        x, linear_weight, target, linear_bias, None, -1, "sum", 0.0, 0.0, softcap, n_threads,
        with_grad=False, grad_output=None, block_bytes=block_bytes,
    )  # fmt: skip
    return run.lse64


class _Run:
    """One call: the checks, then the blocks of rows."""

    def __init__(
        self, input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, n_threads, with_grad, grad_output, with_argmax=False,
        split=(0, None, None), block_bytes=None,
    ):  # fmt: skip
        n_threads = check_n_threads(n_threads)
        x = np.asarray(input)
        w = np.asarray(linear_weight)
        half = is_half(x.dtype)
        if x.dtype not in (np.float32, np.float64) and not half:
            raise TypeError(
                f"input must be a float16, bfloat16, float32 or float64 array, got dtype {x.dtype}"
            )
        if w.dtype != x.dtype:
            raise TypeError(f"linear_weight has dtype {w.dtype}, expected the input's {x.dtype}")
        # 2-byte inputs: float32 copies of input and linear_weight go through
        # float32 products (NumPy has no 2-byte BLAS); the gradients are
        # summed in float32 and rounded once to the input's dtype at the end.
        out_dtype, loss_dtype = x.dtype, np.dtype(np.float32) if half else x.dtype
        if half:
            x, w = widen(x), widen(w)
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
        vocab = _Part(split, n_classes, sample_shape, probs, w_cls, label_smoothing, with_argmax)
        z_loss = _real_in("z_loss", z_loss, 0.0, np.inf)
        softcap = None if softcap is None else _positive("softcap", softcap)
        if probs:
            # Each block's rows of probabilities go to the kernel as they are;
            # 'mean' divides by the number of rows, as torch does.
            t1 = t.reshape(n, n_classes)
            kept_weight = float(n)
        else:
            t1 = np.ascontiguousarray(t.reshape(-1)).astype(np.int64, copy=False)
            # Labels are checked once, and 'mean' divides by the kept weight of all rows.
            bad, _, kept_weight = _kernels.check_labels(
                t1.reshape(n, 1), vocab.total, int(ignore_index), w_cls
            )
            if bad >= 0:
                pos = np.unravel_index(bad, sample_shape) if sample_shape else ()
                raise IndexError(
                    f"target {t.reshape(-1)[bad]} is out of bounds for {vocab.total} classes at "
                    f"position {tuple(int(i) for i in pos)} (ignore_index={ignore_index})"
                )
        scale = self._scale(reduction, grad_output, kept_weight, sample_shape)
        # Rows whose logits go through blocks: a part's loss alone needs none.
        through = 0 if vocab.lse is not None and not with_grad else n
        if vocab.lse is not None:
            t1 = vocab.local_targets(t1, ignore_index)
            loss_rows = vocab.loss_rows(x2, w, b, t1, z_loss, softcap)
            lse_rows = vocab.lse
        else:
            loss_rows = np.empty(n, dtype=np.float64)
            lse_rows = np.empty(n, dtype=np.float64)
        block = _block_rows(through, n_classes * x.itemsize, block_bytes)
        # A part of a split vocabulary has one more column (see _part_block).
        width = n_classes + (vocab.lse is not None)
        z_buf = np.empty((min(block, through), width), dtype=x.dtype)
        argmax_rows = np.empty(n, dtype=np.intp) if with_argmax else None
        if with_grad:
            grad_x = np.empty_like(x2)
            grad_w = np.zeros_like(w)
            grad_b = None if b is None else np.zeros(n_classes, dtype=np.float64)
            w_rows = max(1, min(n_classes, ACCUMULATE_BYTES // max(1, w.shape[1] * x.itemsize)))
            tmp_w = np.empty((w_rows, w.shape[1]), dtype=x.dtype) if through > block else None
        options = (w_cls, ignore_index, label_smoothing, z_loss, softcap, n_threads)
        for start in range(0, through, block):
            stop = min(start + block, through)
            z = z_buf[: stop - start, :n_classes]
            np.matmul(x2[start:stop], w.T, out=z)
            if b is not None:
                z += b
            if argmax_rows is not None:  # while the block is in cache, before it changes
                np.argmax(z, axis=1, out=argmax_rows[start:stop])
            g = None if not with_grad else scale if np.ndim(scale) == 0 else scale[start:stop]
            if vocab.lse is not None:
                z_buf[: stop - start, n_classes] = 0.0
                _part_block(z_buf[: stop - start], t1[start:stop], lse_rows[start:stop], options, g)
            else:
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
        self.loss = _reduce(loss_rows, reduction, kept_weight, sample_shape, loss_dtype)
        self.lse64 = lse_rows.reshape(sample_shape)
        self.lse = lse_rows.astype(loss_dtype).reshape(sample_shape)
        if argmax_rows is not None:
            self.argmax = argmax_rows.astype(np.int64, copy=False).reshape(sample_shape)
        if with_grad:
            self.grad_input = grad_x.reshape(x.shape)
            self.grad_weight = grad_w
            self.grad_bias = None if grad_b is None else grad_b.astype(x.dtype)
            if half:  # each rounded once, from float32 (the bias's from float64)
                self.grad_input = narrow(self.grad_input, out_dtype)
                self.grad_weight = narrow(grad_w, out_dtype)
                self.grad_bias = None if grad_b is None else grad_b.astype(out_dtype)

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


class _Part:
    """Which classes of the vocabulary ``linear_weight`` holds: all of them,
    or with ``lse`` a part of a vocabulary split across processes."""

    def __init__(self, split, n_classes, sample_shape, probs, weight, smoothing, with_argmax):
        offset, total, lse = split
        self.offset = _index("class_offset", offset)
        if self.offset < 0:
            raise ValueError(f"class_offset must be >= 0, got {self.offset}")
        end = self.offset + n_classes
        self.total = end if total is None else _index("total_classes", total)
        if self.total < end:
            raise ValueError(
                f"total_classes={self.total} is below class_offset + n_classes = {end}"
            )
        self.n_classes = n_classes
        self.lse = None
        if lse is None:
            if self.offset != 0 or self.total != n_classes:
                raise ValueError(
                    "a part of a split vocabulary (class_offset, total_classes) needs lse: "
                    "each sample's log-sum-exp over the whole vocabulary"
                )
            return
        refused = [
            (probs, "class-probability targets"),
            (weight is not None, "class weights"),
            (smoothing != 0, "label_smoothing"),
            (with_argmax, "return_argmax"),
        ]
        for bad, what in refused:
            if bad:
                raise ValueError(f"{what} cannot be used with lse (a part of a split vocabulary)")
        a = np.asarray(lse)
        if a.shape != sample_shape:
            raise ValueError(f"lse has shape {a.shape}, expected {sample_shape}")
        if a.dtype.kind not in "fiu":
            raise TypeError(f"lse must be a real array, got dtype {a.dtype}")
        self.lse = np.ascontiguousarray(a.reshape(-1), dtype=np.float64)

    def local_targets(self, t, ignore_index):
        """Targets as the kernel reads them: this part's classes from 0, -1
        for ignored ones, and n_classes (the extra column) for classes of
        other parts."""
        local = t - self.offset
        ignored = t == ignore_index
        own = ~ignored & (local >= 0) & (local < self.n_classes)
        return np.where(own, local, np.where(ignored, -1, self.n_classes))

    def loss_rows(self, x, w, b, t, z_loss, softcap):
        """This part's share of each sample's loss, from the targets of
        local_targets: lse - z_target + z_loss lse^2 where the target is one
        of its classes, else 0; the target's logit by a dot product of its
        own (float64)."""
        rows = np.zeros(x.shape[0], dtype=np.float64)
        own = (t >= 0) & (t < self.n_classes)
        lse = self.lse[own]
        zy = np.einsum("ij,ij->i", x[own], w[t[own]], dtype=np.float64)
        if b is not None:
            zy += b[t[own]]
        if softcap is not None:
            zy = softcap * np.tanh(zy / softcap)
        rows[own] = (lse - zy) + z_loss * lse * lse
        return rows


def _block_rows(n, row_bytes, block_bytes):
    """Rows per block: from the caller's budget, else the default one."""
    if block_bytes is None:
        rows = max(BLOCK_BYTES // row_bytes, MIN_BLOCK_ROWS)
    else:
        budget = _index("block_bytes", block_bytes)
        if budget <= 0:
            raise ValueError(f"block_bytes must be > 0, got {budget}")
        rows = budget // row_bytes
    return max(1, min(n, rows))


def _index(name, value):
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None


def _part_block(z, t, lse, options, g):
    """``g`` times the gradient of one block of a part's logits, in place,
    from each row's log-sum-exp over the whole vocabulary: the kernel's
    backward, on the logits and one more column where the targets of other
    parts point. That column takes their point mass and is then dropped;
    its value changes nothing else, since from a given lse each element's
    gradient is its own (it is 0, not left unset, to stay deterministic)."""
    _, _, _, z_loss, softcap, n_threads = options
    per_row = np.ndim(g) != 0
    call = _Call(z, t, None, -1, "none" if per_row else "sum", 0.0, z_loss, softcap, n_threads)
    call.backward(lse.reshape(-1, 1), call.grad_buffer(None, inplace=True), call.grad_scale(g))


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
