"""The objective of softmax regression on in-memory rows: loss and gradient.

With few classes and dense rows, one kernel computes the scores, the loss
and the gradient reading each row of X once. Otherwise the loss and its
gradient with respect to the scores come from one call of
:func:`fastsoftmax.cross_entropy_with_grad`, the rest from two matrix
products through NumPy (so one BLAS library and its threads do them).
"""

import math

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import safe_sparse_dot

from fastsoftmax._threads import threads_for
from fastsoftmax._xent import cross_entropy_with_grad
from fastsoftmax.linear_model._common import Diverged
from fastsoftmax.linear_model._fused import FusedGrad, fused_rows

# Parts of the rows whose sums the fused kernel keeps apart.
_FUSED_PARTS = 16


def loss_grad(X, y, grad_output, coef, intercept, label_smoothing, n_threads, out=None):
    """Weighted cross-entropy of a linear model on the rows of ``X``, and its gradient.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Features, of the coefficients' dtype.
    y : ndarray of shape (n_samples,)
        Class indices in ``[0, n_classes)``.
    grad_output : float or ndarray of shape (n_samples,)
        The weight of each sample's loss (a scalar weighs them all alike).
    coef : ndarray of shape (n_classes, n_features)
    intercept : ndarray of shape (n_classes,) or None
    label_smoothing : float
    n_threads : int or None
    out : ndarray of shape (n_samples, n_classes), optional
        C-contiguous scratch array for the scores (and then their gradient).

    Returns
    -------
    loss : float
        ``sum(grad_output * loss_i)``.
    grad_coef : ndarray of shape (n_classes, n_features)
    grad_intercept : ndarray of shape (n_classes,)
    """
    if sp.issparse(X):
        Z = safe_sparse_dot(X, coef.T, dense_output=True)
        if out is not None:
            out[...] = Z
            Z = out
    else:
        Z = np.matmul(X, coef.T, out=out)
    if intercept is not None:
        Z += intercept
    # One weight for all rows: the summed loss scaled; else each row's loss.
    scalar = np.ndim(grad_output) == 0
    losses, _ = cross_entropy_with_grad(
        Z,
        y,
        reduction="sum" if scalar else "none",
        label_smoothing=label_smoothing,
        n_threads=n_threads,
        grad_output=grad_output,
        inplace=True,
    )
    loss = float(losses) * float(grad_output) if scalar else float(np.dot(losses, grad_output))
    if sp.issparse(X):
        grad_coef = np.asarray(safe_sparse_dot(X.T, Z, dense_output=True)).T
    else:
        grad_coef = Z.T @ X
    return loss, grad_coef, Z.sum(axis=0)


class FusedLossGrad:
    """:func:`loss_grad` for the data ``fused_rows`` accepts, each row of X read once
    per evaluation."""

    def __init__(self, X, y, weights, n_classes, label_smoothing, n_threads):
        n, n_features = X.shape
        self.fused = FusedGrad(n_classes, n_features, X.dtype, n, _FUSED_PARTS)
        self.X, self.labels = X, np.ascontiguousarray(y, dtype=np.int64)
        self.weights = None if weights is None else np.ascontiguousarray(weights, np.float64)
        self.scale = 1.0 / max(n, 1)
        self.label_smoothing, self.n_threads = label_smoothing, n_threads
        self.grad_coef = np.empty((n_classes, n_features), dtype=X.dtype)
        self.grad_b = np.empty(n_classes, dtype=X.dtype)

    def __call__(self, coef, intercept):
        """Mean (weighted) loss and its gradients with respect to coef and intercept."""
        # The sum of g_i * loss_i, each row's gradient scaled by g_i / n:
        # with g the weights (of mean 1) or 1, the mean and its gradient.
        total = self.fused(
            self.X,
            None,
            self.labels,
            self.weights,
            self.scale,
            coef,
            intercept,
            self.label_smoothing,
            threads_for(self.n_threads, self.X.size),
            self.grad_coef,
            self.grad_b,
        )
        return total * self.scale, self.grad_coef, self.grad_b if intercept is not None else None


class Objective:
    """The L-BFGS objective on in-memory data: float64 parameters in, loss and gradient out.

    The parameters are ``[coef.ravel(), intercept]``. With few classes and
    dense rows one kernel makes each evaluation; otherwise the scores live in one
    (n_samples, n_classes) buffer reused by every evaluation.
    """

    def __init__(self, X, y, weights, n_classes, alpha, fit_intercept, label_smoothing, n_threads):
        self.X, self.y = X, y
        n = X.shape[0]
        # Weights have mean 1; dividing by n makes the sum a mean.
        self.grad_output = 1.0 / n if weights is None else weights / n
        self.shape = (n_classes, X.shape[1])
        self.alpha, self.fit_intercept = alpha, fit_intercept
        self.label_smoothing, self.n_threads = label_smoothing, n_threads
        if fused_rows(X, n_classes, X.dtype):
            self.fused = FusedLossGrad(X, y, weights, n_classes, label_smoothing, n_threads)
            self.scores = None
        else:
            self.fused = None
            self.scores = np.empty((n, n_classes), dtype=X.dtype)

    def __call__(self, w):
        n_classes, n_features = self.shape
        size = n_classes * n_features
        dtype = self.X.dtype
        coef = w[:size].reshape(self.shape).astype(dtype)
        intercept = w[size:].astype(dtype) if self.fit_intercept else None
        if self.fused is not None:
            loss, grad_coef, grad_b = self.fused(coef, intercept)
        else:
            loss, grad_coef, grad_b = loss_grad(
                self.X,
                self.y,
                self.grad_output,
                coef,
                intercept,
                self.label_smoothing,
                self.n_threads,
                out=self.scores,
            )
        return penalised(w, loss, grad_coef, grad_b, size, self.alpha, self.fit_intercept)


def penalised(w, loss, grad_coef, grad_b, size, alpha, fit_intercept):
    """Add ``alpha / 2 * ||coef||**2`` to a loss and its gradient; checks both are finite."""
    coef = w[:size]
    f = loss + 0.5 * alpha * float(np.dot(coef, coef))
    g = np.empty_like(w)
    g[:size] = grad_coef.ravel()
    if alpha:
        g[:size] += alpha * coef
    if fit_intercept:
        g[size:] = grad_b
    if not (math.isfinite(f) and np.isfinite(g).all()):
        what = "loss" if not math.isfinite(f) else "gradient of the loss"
        raise Diverged(
            f"The {what} became non-finite with solver='lbfgs' (which has no learning_rate): "
            "the features are too large for the floating dtype. Scale them (e.g. with "
            "StandardScaler) or use float64 data."
        )
    return f, g
