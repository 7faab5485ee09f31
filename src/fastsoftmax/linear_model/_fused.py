"""The fused linear + cross-entropy kernel for both solvers: with few classes,
the scores, the loss and the gradients of a set of rows in one read of each row."""

import numpy as np
import scipy.sparse as sp

from fastsoftmax import _kernels

# Classes up to which the kernel runs; above it, two matrix products (BLAS)
# around the cross-entropy kernel win.
MAX_CLASSES = _kernels.LINEAR_MAX_CLASSES


def fused_rows(X, n_classes, dtype):
    """Whether the kernel can read ``X`` with coefficients of ``dtype``: dense,
    aligned rows of contiguous elements (any distance apart), few classes."""
    return (
        not sp.issparse(X)
        and n_classes <= MAX_CLASSES
        and X.dtype == dtype
        and X.flags.aligned
        and (X.shape[1] <= 1 or X.strides[1] == X.itemsize)
        and X.strides[0] % X.itemsize == 0
    )


class FusedGrad:
    """The kernel's buffers for up to ``rows`` rows at a time, allocated once, and its call.

    The rows are cut into at most ``parts`` fixed parts, each with its own
    sums, added in a fixed order: the result does not depend on the number
    of threads.
    """

    def __init__(self, n_classes, n_features, dtype, rows, parts):
        parts = max(1, min(parts, rows))
        self.gW_parts = np.empty((parts, n_classes, n_features), dtype=dtype)
        self.gb_parts = np.empty((parts, n_classes), dtype=dtype)
        self.z_parts = np.empty((parts, _kernels.linear_rows() * n_classes), dtype=dtype)
        self.totals = np.empty(parts)

    def __call__(
        self, X, idx, labels, weights, scale, coef, intercept, smoothing, threads, grad, grad_b
    ):
        """Rows ``idx`` of X (all when None): returns sum(g_i * loss_i) and
        writes the gradient, each row's scaled by ``scale * g_i``, into
        ``grad`` (and ``grad_b`` when ``intercept`` is given); g_i are the
        ``weights`` (indexed like X's rows), or 1."""
        with_b = intercept is not None
        total = _kernels.linear_xent(
            X,
            idx,
            labels,
            weights,
            scale,
            coef,
            intercept,
            self.gW_parts,
            self.gb_parts if with_b else None,
            self.z_parts,
            self.totals,
            smoothing,
            threads,
        )
        np.sum(self.gW_parts, axis=0, out=grad)
        if with_b:
            np.sum(self.gb_parts, axis=0, out=grad_b)
        return total
