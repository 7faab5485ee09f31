"""Minibatch SGD (with optional momentum) in buffers allocated once per epoch.

The scores of a batch become their own gradient in place, scaled by the
learning rate when there is no momentum, so that their product with the
batch is the step itself. With few classes each batch is one kernel that
reads every row once, straight from its place in X; with many, dense X goes
through GemmSteps (two BLAS products, the step inside the second) and
sparse X through two sparse products.
"""

import math
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.extmath import safe_sparse_dot

from fastsoftmax._threads import check_n_threads, threads_for
from fastsoftmax._xent import batch_loss_grad
from fastsoftmax.linear_model._common import Diverged
from fastsoftmax.linear_model._fused import FusedGrad, fused_rows
from fastsoftmax.linear_model._gemm_steps import GemmSteps

# Parts of a batch summed separately (and then in a fixed order) by the
# fused kernel, which reads each row once and needs no gathered copy of a
# shuffled batch.
_FUSED_PARTS = 8


def auto_learning_rate(X, weights, fit_intercept, alpha):
    """1 / L, L a bound on the curvature of every sample's objective.

    The Hessian of softmax cross-entropy with respect to the scores has
    spectral norm at most 1/2, so a sample's loss is smooth with constant
    ``(||x_i||**2 + fit_intercept) / 2`` in the coefficients, and the penalty
    adds ``alpha``; as scikit-learn's SAG solver takes its step from the
    largest squared row norm. Steps of 1 / L never overshoot on any single
    sample, whatever the features' scale. Sample weights (of mean 1) are left
    out but for the rows they remove (weight 0): a batch's curvature is their
    mean times at most L, and a weight of k then gives the model that k
    copies of the sample give.
    """
    from sklearn.utils.extmath import row_norms

    sq = row_norms(X, squared=True)
    if weights is not None:
        sq = sq[weights > 0]
    curvature = 0.5 * (float(sq.max(initial=0.0)) + float(fit_intercept)) + float(alpha)
    return 1.0 / curvature if curvature > 0 else 1.0


def set_learning_rate(model, X, weights):
    """``model.learning_rate_``: the given rate, or the data's for 'auto'."""
    if isinstance(model.learning_rate, str):  # 'auto'
        model.learning_rate_ = auto_learning_rate(X, weights, model.fit_intercept, model.alpha)
    else:
        model.learning_rate_ = float(model.learning_rate)


def _lower_rate(model):
    """The advice on the rate, in the terms the user chose it in."""
    if isinstance(model.learning_rate, str):
        return f"Pass a learning_rate below the one 'auto' chose ({model.learning_rate_:.3g})"
    return f"Lower learning_rate (now {model.learning_rate})"


def fit_sgd(model, X, y_enc, weights, rng, callback):
    best, stalled, converged = np.inf, 0, False
    for epoch in range(1, model.max_iter + 1):
        loss = sgd_epoch(model, X, y_enc, weights, rng, epoch)
        model.n_iter_ = epoch
        model.loss_curve_.append(loss)
        if model._report(epoch, loss, callback):
            return
        if model.tol is not None:
            stalled = stalled + 1 if loss > best - model.tol else 0
            best = min(best, loss)
            if stalled >= model.n_iter_no_change:
                converged = True
                break
    if not converged and model.tol is not None:
        warnings.warn(not_converged_message(model, stalled), ConvergenceWarning, stacklevel=5)
    worse = worse_than_uniform_message(model)
    if worse:
        warnings.warn(worse, ConvergenceWarning, stacklevel=5)


def worse_than_uniform_message(model):
    """A message when the run ended above log(n_classes), the objective of
    the zero model (a uniform guess), else None."""
    n_classes = model.coef_.shape[0]
    final = model.loss_curve_[-1] if model.loss_curve_ else None
    if final is None or n_classes < 2 or not final > np.log(n_classes):
        return None
    return (
        f"SoftmaxRegression(solver='sgd') ended at a loss of {final:.6g}, above "
        f"log({n_classes}) = {np.log(n_classes):.4g}, the loss of a uniform guess: "
        f"the model is worse than predicting every class alike. {_lower_rate(model)} "
        "or scale the features (e.g. StandardScaler)."
    )


def not_converged_message(model, stalled):
    """What happened in a run that max_iter stopped, from its loss curve."""
    curve = model.loss_curve_
    head = f"SoftmaxRegression(solver='sgd') stopped at max_iter={model.max_iter} epochs"
    if len(curve) > 1 and curve[-1] > curve[0]:
        return (
            f"{head} with the loss rising ({curve[0]:.6g} after the first epoch, "
            f"{curve[-1]:.6g} after the last): the steps are too large for this data. "
            f"{_lower_rate(model)} or scale the features."
        )
    if stalled:
        return (
            f"{head}: the loss ({curve[-1]:.6g}) had not improved by more than "
            f"tol={model.tol} for its last {stalled} epoch(s), fewer than "
            f"n_iter_no_change={model.n_iter_no_change}. Increase max_iter, or set "
            "tol=None to run exactly max_iter epochs."
        )
    return (
        f"{head} while the loss was still falling by more than tol={model.tol} "
        f"({curve[0]:.6g} after the first epoch, {curve[-1]:.6g} after the last). "
        "Increase max_iter, or set tol=None to run exactly max_iter epochs."
    )


def sgd_epoch(model, X, y, weights, rng, epoch):
    """One pass of minibatch SGD over (X, y); returns the epoch's mean objective."""
    coef, intercept = model.coef_, model.intercept_
    dtype = coef.dtype
    n, n_classes = X.shape[0], coef.shape[0]
    batch = min(model.batch_size, n)
    lr, alpha, mu = model.learning_rate_, float(model.alpha), float(model.momentum)
    nesterov, fit_intercept = model.nesterov, model.fit_intercept
    vel = getattr(model, "_velocity", None)
    if vel is None or vel.shape != coef.shape or vel.dtype != dtype:
        model._reset_velocity()
    vel, vel_b = model._velocity, model._velocity_intercept
    # Without momentum the kernel scales the gradient of the scores by the
    # learning rate, so that the product with the batch is the step itself.
    scale = lr if mu == 0.0 else 1.0

    # Every array the loop writes, allocated once per epoch.
    order = rng.permutation(n) if model.shuffle else None
    grad, grad_b = np.empty_like(coef), np.empty_like(intercept)
    tmp = np.empty_like(coef) if mu or alpha else None
    ls, n_threads = float(model.label_smoothing), check_n_threads(model.n_threads)
    if fused_rows(X, n_classes, dtype):
        batch_grad = _fused_batches(model, X, y, weights, order, batch, scale, ls, n_threads)
    elif not sp.issparse(X):
        return _gemm_epoch(model, X, y, weights, order, batch, scale, ls, epoch)
    else:
        batch_grad = _sparse_batches(model, X, y, weights, order, batch, scale, ls, n_threads)

    total = 0.0
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        m = stop - start
        loss = batch_grad(start, stop, grad, grad_b if fit_intercept else None)
        if not math.isfinite(loss):
            diverged(model, loss, epoch, start // batch + 1)
        total += loss * m
        if mu == 0.0:  # grad is already lr times the gradient
            if alpha:
                coef *= 1.0 - lr * alpha
            coef -= grad
            if fit_intercept:
                intercept -= grad_b
            continue
        # As torch.optim.SGD: weight decay joins the gradient, which joins
        # the velocity; Nesterov steps along gradient + momentum * velocity.
        if alpha:
            grad += np.multiply(coef, alpha, out=tmp)
        vel *= mu
        vel += grad
        if nesterov:
            grad += np.multiply(vel, mu, out=tmp)
            step = grad
        else:
            step = vel
        coef -= np.multiply(step, lr, out=tmp)
        if fit_intercept:
            vel_b *= mu
            vel_b += grad_b
            intercept -= lr * (grad_b + mu * vel_b if nesterov else vel_b)
    return _objective(model, total / n, epoch)


def _objective(model, mean_loss, epoch):
    coef_flat = model.coef_.reshape(-1)
    objective = mean_loss + 0.5 * float(model.alpha) * float(np.dot(coef_flat, coef_flat))
    if not math.isfinite(objective):
        diverged(model, objective, epoch, None)
    return objective


def _gemm_epoch(model, X, y, weights, order, batch, scale, ls, epoch):
    """An epoch of dense X with many classes: each batch's products and step by GemmSteps."""
    n = X.shape[0]
    steps = GemmSteps(model, X, y, weights, batch, scale, ls)
    total = 0.0
    try:
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            loss = steps.step(start, stop, order)
            if not math.isfinite(loss):
                diverged(model, loss, epoch, start // batch + 1)
            total += loss * (stop - start)
    finally:
        steps.finish()
    return _objective(model, total / n, epoch)


def _fused_batches(model, X, y, weights, order, batch, scale, ls, n_threads):
    """Batch gradients from the fused linear + cross-entropy kernel: each row of
    the batch is read once, straight from X (no gathered copy)."""
    coef, intercept = model.coef_, model.intercept_
    fused = FusedGrad(*coef.shape, coef.dtype, batch, _FUSED_PARTS)
    labels = np.ascontiguousarray(y, dtype=np.int64)
    w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    threads = threads_for(n_threads, batch * coef.shape[1])

    def batch_grad(start, stop, grad, grad_b):
        m = stop - start
        if order is None:  # the rows in place
            rows, idx, sl = X[start:stop], None, slice(start, stop)
        else:
            rows, idx, sl = X, order[start:stop], slice(None)
        total = fused(
            rows,
            idx,
            labels[sl],
            None if w is None else w[sl],
            scale / m,
            coef,
            intercept if grad_b is not None else None,
            ls,
            threads,
            grad,
            grad_b,
        )
        return total / m

    return batch_grad


def _sparse_batches(model, X, y, weights, order, batch, scale, ls, n_threads):
    """Batch gradients of sparse X (many classes): two sparse products around
    the fused kernel."""
    coef, intercept = model.coef_, model.intercept_
    n_classes = coef.shape[0]
    coef_t = coef.T
    z_buf = np.empty((batch, n_classes), dtype=coef.dtype)
    g_buf = None if weights is None else np.empty(batch)
    loss_buf, lse_buf = np.empty(batch), np.empty(batch)

    def batch_grad(start, stop, grad, grad_b):
        m = stop - start
        if order is None:
            xb, yb = X[start:stop], y[start:stop]
            gb = None if weights is None else weights[start:stop]
        else:
            idx = order[start:stop]
            xb, yb = X[idx], y[idx]
            gb = None if weights is None else weights[idx]
        if gb is not None:
            gb = np.multiply(gb, scale / m, out=g_buf[:m])
        z = z_buf[:m]
        z[...] = safe_sparse_dot(xb, coef_t, dense_output=True)
        if grad_b is not None:
            z += intercept
        # The scores become (scale times) d(batch loss)/d(scores), in place;
        # the labels were checked once, when they were encoded.
        rows = batch_loss_grad(z, yb, gb, scale / m, ls, n_threads, loss_buf, lse_buf)
        loss = float(rows.sum()) / m if gb is None else float(np.dot(rows, gb)) / scale
        grad[...] = safe_sparse_dot(xb.T, z, dense_output=True).T
        if grad_b is not None:
            np.sum(z, axis=0, out=grad_b)
        return loss

    return batch_grad


def diverged(model, loss, epoch, batch):
    where = f"epoch {epoch}" + ("" if batch is None else f", batch {batch}")
    raise Diverged(
        f"The training loss became {loss} at {where} of solver='sgd' with "
        f"learning_rate={model.learning_rate_:.6g}: the steps are too large for this "
        f"data. {_lower_rate(model)} (and/or momentum), or scale the features (e.g. "
        "with StandardScaler)."
    )
