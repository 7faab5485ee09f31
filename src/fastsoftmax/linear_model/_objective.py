"""The objective of softmax regression on in-memory rows: loss and gradient.

The loss and its gradient with respect to the scores come from one call of
:func:`fastsoftmax.cross_entropy_with_grad`, the rest from two matrix
products through NumPy (so one BLAS library and its threads do them).
"""

import math

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import safe_sparse_dot

from fastsoftmax._xent import cross_entropy_with_grad
from fastsoftmax.linear_model._common import Diverged


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


class Objective:
    """The L-BFGS objective on in-memory data: float64 parameters in, loss and gradient out.

    The parameters are ``[coef.ravel(), intercept]``; the scores live in one
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
        self.scores = np.empty((n, n_classes), dtype=X.dtype)

    def __call__(self, w):
        n_classes, n_features = self.shape
        size = n_classes * n_features
        dtype = self.X.dtype
        coef = w[:size].reshape(self.shape).astype(dtype)
        intercept = w[size:].astype(dtype) if self.fit_intercept else None
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
