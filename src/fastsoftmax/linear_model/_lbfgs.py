"""Full-batch L-BFGS-B (scipy's) on the objective, in memory or over dask chunks."""

import warnings

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.extmath import safe_sparse_dot

from fastsoftmax.linear_model._blas import one_scipy_blas_thread
from fastsoftmax.linear_model._objective import Objective


def fit_lbfgs(model, X, y_enc, weights, callback):
    objective = Objective(
        X,
        y_enc,
        weights,
        len(model.classes_),
        model.alpha,
        model.fit_intercept,
        model.label_smoothing,
        model.n_threads,
    )
    center = None
    if model.fit_intercept:
        w = np.ones(X.shape[0]) if weights is None else weights  # mean 1
        # In X's dtype: a float64 weight vector would make NumPy copy all of X
        # to float64 first (a second of a 60000 x 784 float32 fit). The centre
        # need not be exact: the same one maps the parameters both ways.
        w = w.astype(X.dtype, copy=False)
        center = (
            np.asarray(safe_sparse_dot(X.T, w, dense_output=True), dtype=np.float64).ravel()
            / X.shape[0]
        )
    result = run_lbfgs(model, objective, callback, center)
    model.n_iter_ = int(result.nit)


def run_lbfgs(model, objective, callback, center=None):
    """Minimise ``objective`` with L-BFGS-B; shared by the in-memory and the dask paths.

    ``objective`` maps the float64 vector ``[coef.ravel(), intercept]`` to
    the loss and its gradient. With ``center`` (the weighted mean of the
    features), L-BFGS works on ``[coef, intercept + coef @ center]``
    instead: the model of the centred features, whose intercepts no
    longer pull against the coefficients. The optimum is the same and
    is reached in far fewer iterations on features that are not centred.
    Sets ``coef_``, ``intercept_`` and ``loss_curve_``; warns with a
    ConvergenceWarning when ``max_iter`` stops the run.
    """
    n_classes, n_features = model.coef_.shape
    dtype = model.coef_.dtype
    size = n_classes * n_features
    fit_intercept = model.fit_intercept
    if not fit_intercept:
        center = None

    def natural(v):
        """Solver parameters -> (coef, intercept) of the model, in float64."""
        coef = v[:size].reshape(n_classes, n_features)
        if not fit_intercept:
            return coef, None
        intercept = v[size:] if center is None else v[size:] - coef @ center
        return coef, intercept

    def unpack(v):
        coef, intercept = natural(v)
        model.coef_ = coef.astype(dtype)
        if fit_intercept:
            model.intercept_ = intercept.astype(dtype)

    def fun(v):
        if center is None:
            return objective(v)
        coef, intercept = natural(v)
        f, g = objective(np.concatenate([coef.ravel(), intercept]))
        # d/d coef of f(coef, shifted - coef @ center)
        g[:size] -= np.outer(g[size:], center).ravel()
        return f, g

    def step(intermediate_result):
        model.loss_curve_.append(float(intermediate_result.fun))
        if model.verbose or callback is not None:
            unpack(intermediate_result.x)
            if model._report(len(model.loss_curve_), float(intermediate_result.fun), callback):
                raise StopIteration

    v0 = model.coef_.astype(np.float64).ravel()
    if fit_intercept:
        shifted = model.intercept_.astype(np.float64)
        if center is not None:
            shifted = shifted + model.coef_.astype(np.float64) @ center
        v0 = np.concatenate([v0, shifted])
    # As scikit-learn's LogisticRegression: stop on the gradient, hardly
    # ever on the relative decrease of the loss. In float32 the line search
    # may end the run first, once the loss stops decreasing in its precision.
    options = {
        "maxiter": model.max_iter,
        "maxls": 50,
        "gtol": 0.0 if model.tol is None else model.tol,
        "ftol": 0.0 if model.tol is None else 64 * np.finfo(np.float64).eps,
    }
    with one_scipy_blas_thread():
        result = scipy.optimize.minimize(
            fun, v0, method="L-BFGS-B", jac=True, callback=step, options=options
        )
    unpack(result.x)
    if not model.loss_curve_:
        model.loss_curve_.append(float(result.fun))
    if result.status == 1 and model.tol is not None:
        warnings.warn(
            f"SoftmaxRegression(solver='lbfgs') stopped at max_iter={model.max_iter} "
            f"iterations before reaching tol={model.tol} (largest gradient entry "
            f"{np.max(np.abs(result.jac)):.3g}). Increase max_iter, or scale the "
            "features (e.g. with StandardScaler).",
            ConvergenceWarning,
            stacklevel=6,
        )
    return result
