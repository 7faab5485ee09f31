"""Softmax regression (multinomial logistic regression) trained by the fused kernels.

:class:`SoftmaxRegression` is a scikit-learn classifier. Both solvers get the
loss and its gradient with respect to the scores from one call of
:func:`fastsoftmax.cross_entropy_with_grad`, and the rest from two matrix
products (both through NumPy, so one BLAS library and its threads do them):

- ``solver='lbfgs'`` hands the full-batch objective to
  ``scipy.optimize.minimize(method='L-BFGS-B')``;
- ``solver='sgd'`` runs minibatch SGD (with optional momentum) in buffers
  allocated once per epoch: the scores of a batch become their own gradient
  in place, scaled by the learning rate when there is no momentum, so that
  their product with the batch is the step itself.
"""

import contextlib
import functools
import inspect
import math
import numbers
import os
import warnings

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state, compute_class_weight
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.multiclass import _check_partial_fit_first_call, check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from fastsoftmax import _kernels
from fastsoftmax._special import log_softmax, softmax
from fastsoftmax._threads import check_n_threads, threads_for
from fastsoftmax._xent import batch_loss_grad, cross_entropy_with_grad

try:
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn < 1.6

    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


if "ensure_non_negative" in inspect.signature(_check_sample_weight).parameters:
    _NON_NEGATIVE = {"ensure_non_negative": True}
else:  # scikit-learn < 1.6
    _NON_NEGATIVE = {"only_non_negative": True}

__all__ = ["SoftmaxRegression"]

_FLOAT_DTYPES = [np.float64, np.float32]


@functools.lru_cache(maxsize=1)
def _scipy_own_blas():
    """threadpoolctl's handle on the BLAS libraries that scipy ships apart from NumPy's, or None.

    Wheels of NumPy and scipy each bundle an OpenBLAS. When both keep
    threads, the idle threads of one spin while the other computes; L-BFGS-B
    (scipy's BLAS, on vectors the size of the coefficients) alternating with
    the objective's products (NumPy's BLAS) then runs many times slower on a
    machine with few cores. scipy's BLAS gains nothing from threads here.
    """
    try:
        import scipy
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - scikit-learn requires threadpoolctl
        return None
    root = os.path.realpath(os.path.dirname(scipy.__file__))
    homes = tuple(os.path.join(d, "") for d in (root, root + ".libs"))
    blas_libs = ThreadpoolController().select(user_api="blas")
    own = [
        c.filepath
        for c in blas_libs.lib_controllers
        if os.path.realpath(c.filepath).startswith(homes)
    ]
    return blas_libs.select(filepath=own) if own else None


def _one_scipy_blas_thread():
    own = _scipy_own_blas()
    return contextlib.nullcontext() if own is None else own.limit(limits=1)


# Up to this many classes, SGD runs the fused linear + cross-entropy kernel,
# which reads each row once and needs no gathered copy of a shuffled batch;
# above it, two matrix products (BLAS) around the cross-entropy kernel win.
_FUSED_MAX_CLASSES = _kernels.LINEAR_MAX_CLASSES
# Parts of a batch summed separately (and then in a fixed order) by that kernel.
_FUSED_PARTS = 8


class _Diverged(ValueError):
    """The training loss or its gradient stopped being finite."""


def _is_dask_array(x):
    """True for a dask array, without importing dask."""
    return type(x).__module__.partition(".")[0] == "dask" and hasattr(x, "chunks")


def _loss_grad(X, y, grad_output, coef, intercept, label_smoothing, n_threads, out=None):
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
    if np.ndim(grad_output) == 0:
        loss, _ = cross_entropy_with_grad(
            Z,
            y,
            reduction="sum",
            label_smoothing=label_smoothing,
            n_threads=n_threads,
            grad_output=grad_output,
            inplace=True,
        )
        loss = float(loss) * float(grad_output)
    else:
        rows, _ = cross_entropy_with_grad(
            Z,
            y,
            reduction="none",
            label_smoothing=label_smoothing,
            n_threads=n_threads,
            grad_output=grad_output,
            inplace=True,
        )
        loss = float(np.dot(rows, grad_output))
    if sp.issparse(X):
        grad_coef = np.asarray(safe_sparse_dot(X.T, Z, dense_output=True)).T
    else:
        grad_coef = Z.T @ X
    return loss, grad_coef, Z.sum(axis=0)


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """Multinomial logistic (softmax) regression trained by the fused cross-entropy kernels.

    Minimises the (sample-weighted) mean cross-entropy of ``softmax(X @ coef_.T
    + intercept_)`` plus ``alpha / 2 * ||coef_||**2``; the intercept is not
    penalised. With ``alpha = 1 / (C * n_samples)`` the optimum is that of
    scikit-learn's ``LogisticRegression(C=C)`` (up to the shift of all rows of
    ``coef_`` by one vector, which leaves the probabilities unchanged).

    Parameters
    ----------
    solver : {'lbfgs', 'sgd'}, default='lbfgs'
        'lbfgs': full-batch L-BFGS-B from scipy.optimize, for data that fits
        in memory. 'sgd': minibatch stochastic gradient descent with momentum.
    alpha : float >= 0, default=1e-4
        L2 penalty on ``coef_``: ``alpha / 2 * ||coef_||**2``.
    learning_rate : float > 0, default=0.1
        Step size of 'sgd' (constant).
    batch_size : int >= 1, default=256
        Minibatch size of 'sgd' (at most the number of samples).
    max_iter : int >= 1, default=100
        Iterations of 'lbfgs', epochs (passes over the data) of 'sgd'.
    momentum : float in [0, 1), default=0.9
        Momentum of 'sgd', as in ``torch.optim.SGD`` (no dampening).
    nesterov : bool, default=False
        Use Nesterov momentum in 'sgd'.
    tol : float >= 0 or None, default=1e-4
        'lbfgs' stops when the largest entry of the gradient is at most
        ``tol`` (the gradient with respect to the coefficients and the
        intercepts of the model of centred features, which has the same
        optimum). 'sgd' stops when the epoch loss has not fallen by more
        than ``tol`` below its best value for ``n_iter_no_change`` epochs in
        a row. None disables early stopping: the solver runs ``max_iter``
        iterations (epochs) and no ConvergenceWarning is raised.
    n_iter_no_change : int >= 1, default=5
        Epochs without improvement before 'sgd' stops (see ``tol``).
    fit_intercept : bool, default=True
        Fit an intercept (bias) per class.
    shuffle : bool, default=True
        Shuffle the samples at every 'sgd' epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling of 'sgd'.
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, ``{label: weight}``; 'balanced' uses
        ``n_samples / (n_classes * np.bincount(y))``. Class weights multiply
        the sample weights, and the loss is the weighted mean.
    label_smoothing : float in [0, 1], default=0.0
        Mixes each one-hot target with the uniform distribution over classes.
    warm_start : bool, default=False
        Start ``fit`` from the previous solution (and keep the momentum of
        'sgd') when the classes and features are the same.
    n_threads : int or None, default=None
        OpenMP threads of the fused kernels; None follows ``OMP_NUM_THREADS``
        and threadpoolctl. BLAS threads follow threadpoolctl.
    verbose : int, default=0
        Print the loss of every iteration (epoch) when > 0.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        Coefficients, in the training data's floating dtype (float32 or
        float64). Two rows also for binary problems.
    intercept_ : ndarray of shape (n_classes,)
        Intercepts (zeros when ``fit_intercept=False``).
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit, when ``X`` had string column
        names.
    n_iter_ : int
        Iterations ('lbfgs') or epochs ('sgd') run; ``partial_fit`` adds one.
    loss_curve_ : list of float
        The objective after each iteration ('lbfgs'), or its running mean
        over each epoch's batches ('sgd').

    See Also
    --------
    sklearn.linear_model.LogisticRegression : The same model fitted by scikit-learn.

    Notes
    -----
    The model computes in ``X``'s floating dtype: float32 data gives float32
    coefficients and scores; any other dtype is converted to float64.
    Dense arrays and scipy.sparse matrices (converted to CSR) are accepted.
    ``fit`` with dask arrays runs 'lbfgs' over the chunks on the dask
    workers; wrap a ``solver='sgd'`` model in ``dask_ml.wrappers.Incremental``
    to train on the blocks one after another.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastsoftmax import SoftmaxRegression
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SoftmaxRegression(alpha=1e-3).fit(X, y)
    >>> clf.predict(X[:2])
    array([0, 0])
    >>> clf.predict_proba(X[:1]).shape
    (1, 3)
    """

    _parameter_constraints: dict = {
        "solver": [StrOptions({"lbfgs", "sgd"})],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "nesterov": ["boolean"],
        "tol": [Interval(numbers.Real, 0, None, closed="left"), None],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "fit_intercept": ["boolean"],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "label_smoothing": [Interval(numbers.Real, 0, 1, closed="both")],
        "warm_start": ["boolean"],
        "n_threads": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        solver="lbfgs",
        *,
        alpha=1e-4,
        learning_rate=0.1,
        batch_size=256,
        max_iter=100,
        momentum=0.9,
        nesterov=False,
        tol=1e-4,
        n_iter_no_change=5,
        fit_intercept=True,
        shuffle=True,
        random_state=None,
        class_weight=None,
        label_smoothing=0.0,
        warm_start=False,
        n_threads=None,
        verbose=0,
    ):
        self.solver = solver
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.momentum = momentum
        self.nesterov = nesterov
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.fit_intercept = fit_intercept
        self.shuffle = shuffle
        self.random_state = random_state
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing
        self.warm_start = warm_start
        self.n_threads = n_threads
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------ fitting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, callback=None):
        """Fit the model to the training data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. A dask array (with ``solver='lbfgs'``) is fitted
            chunk by chunk on the dask workers.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample; None weighs them all alike.
        callback : callable, default=None
            Called as ``callback(model, info)`` after each iteration ('lbfgs')
            or epoch ('sgd'), once ``coef_`` and ``intercept_`` hold the
            current solution; ``info`` is a dict with the ``iteration`` number
            (from 1) and the ``loss``. Returning True stops the training.

        Returns
        -------
        self : SoftmaxRegression
            The fitted model.
        """
        if _is_dask_array(X) or _is_dask_array(y):
            from fastsoftmax import _dask

            return _dask.fit(self, X, y, sample_weight, callback)
        with self._rollback_on_divergence():
            return self._fit(X, y, sample_weight, callback)

    def _fit(self, X, y, sample_weight, callback):
        X, y = _validate_data(self, X, y, accept_sparse="csr", dtype=_FLOAT_DTYPES)
        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        weights = self._sample_weights(X, y_enc, classes, sample_weight, for_fit=True)
        warm = (
            self.warm_start
            and hasattr(self, "coef_")
            and self.coef_.shape == (len(classes), X.shape[1])
            and np.array_equal(self.classes_, classes)
        )
        self.classes_ = classes
        if warm:
            self.coef_ = self.coef_.astype(X.dtype)
            self.intercept_ = self.intercept_.astype(X.dtype)
        else:
            self._init_params(X.dtype)
        self.n_iter_ = 0
        self.loss_curve_ = []
        y_enc = y_enc.astype(np.intp, copy=False)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, y_enc, weights, callback)
        else:
            if not warm:
                self._reset_velocity()
            if not sp.issparse(X):
                # C-contiguous and aligned: the kernels load whole rows of elements
                # (np.ascontiguousarray would keep an unaligned buffer, as dask's can be).
                X = np.require(X, requirements=["C", "A"])
            self._rng = check_random_state(self.random_state)
            self._fit_sgd(X, y_enc, weights, self._rng, callback)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Run one epoch of minibatch SGD over the given samples.

        The first call needs ``classes``; later calls continue from the
        current coefficients (and momentum), whatever ``solver`` is.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels, all in ``classes``.
        classes : array-like of shape (n_classes,), default=None
            Every class label of the problem. Required on the first call,
            optional (and then checked) afterwards.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample.

        Returns
        -------
        self : SoftmaxRegression
            The updated model.
        """
        if self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' needs the class frequencies of the whole data set "
                "and partial_fit sees one part at a time. Compute them from the labels "
                "with sklearn.utils.compute_class_weight('balanced', classes=classes, y=y) "
                "and pass the result as a dict: class_weight={label: weight}."
            )
        with self._rollback_on_divergence():
            return self._partial_fit(X, y, classes, sample_weight)

    def _partial_fit(self, X, y, classes, sample_weight):
        first = not hasattr(self, "coef_")
        if first:
            # A previous failed call may have left classes_ without coefficients.
            self.__dict__.pop("classes_", None)
        _check_partial_fit_first_call(self, classes)
        dtype = _FLOAT_DTYPES if first else self.coef_.dtype
        X, y = _validate_data(self, X, y, accept_sparse="csr", dtype=dtype, reset=first)
        check_classification_targets(y)
        if len(self.classes_) < 2:
            raise ValueError(
                f"SoftmaxRegression needs at least 2 classes, got classes={self.classes_!r}"
            )
        y_enc = np.searchsorted(self.classes_, y)
        unknown = (y_enc >= len(self.classes_)) | (
            self.classes_[np.minimum(y_enc, len(self.classes_) - 1)] != y
        )
        if unknown.any():
            raise ValueError(
                f"y holds labels not in classes: {np.unique(y[unknown])!r} "
                f"(classes={self.classes_!r})"
            )
        weights = self._sample_weights(X, y_enc, self.classes_, sample_weight, for_fit=False)
        if first:
            self._init_params(X.dtype)
            self._reset_velocity()
            self.n_iter_ = 0
            self.loss_curve_ = []
        if not hasattr(self, "_rng"):
            self._rng = check_random_state(self.random_state)
        if not sp.issparse(X):
            X = np.require(X, requirements=["C", "A"])  # as in fit
        loss = self._sgd_epoch(
            X, y_enc.astype(np.intp, copy=False), weights, self._rng, self.n_iter_ + 1
        )
        self.n_iter_ += 1
        self.loss_curve_.append(loss)
        return self

    @contextlib.contextmanager
    def _rollback_on_divergence(self):
        """On a diverging run, put the model back as it was before the call (not
        fitted, or the previous model) rather than leave infinite or NaN
        coefficients behind; the error goes on to the caller."""
        saved = {
            k: (v.copy() if isinstance(v, (np.ndarray, list)) else v)
            for k, v in self.__dict__.items()
        }
        try:
            yield
        except _Diverged:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _sample_weights(self, X, y_enc, classes, sample_weight, for_fit):
        """Per-sample weights (float64, mean 1) folding in class weights, or None."""
        if sample_weight is None and self.class_weight is None:
            if for_fit and len(classes) < 2:
                raise ValueError(
                    f"SoftmaxRegression needs samples of at least 2 classes in "
                    f"the data, got 1 class: {classes[0]!r}"
                )
            return None
        w = (
            np.ones(X.shape[0])
            if sample_weight is None
            else _check_sample_weight(sample_weight, X, dtype=np.float64, **_NON_NEGATIVE)
        )
        if self.class_weight is not None:
            if for_fit:
                cw = compute_class_weight(self.class_weight, classes=classes, y=classes[y_enc])
            else:
                cw = np.array([self.class_weight.get(c, 1.0) for c in classes.tolist()])
            w = w * cw[y_enc]
        total = float(w.sum())
        if for_fit:
            weighted = np.bincount(y_enc, weights=w, minlength=len(classes)) > 0
            if np.count_nonzero(weighted) < 2:
                raise ValueError(
                    "SoftmaxRegression needs samples of at least 2 classes with a positive "
                    f"weight, got {np.count_nonzero(weighted)} class(es) (classes="
                    f"{classes!r})"
                )
        if not (total > 0 and math.isfinite(total)):
            raise ValueError(
                f"the sample weights (times the class weights) must have a "
                f"positive finite sum, got {total}"
            )
        return w * (len(w) / total)

    def _init_params(self, dtype):
        n_classes, n_features = len(self.classes_), self.n_features_in_
        self.coef_ = np.zeros((n_classes, n_features), dtype=dtype)
        self.intercept_ = np.zeros(n_classes, dtype=dtype)

    def _reset_velocity(self):
        self._velocity = np.zeros_like(self.coef_)
        self._velocity_intercept = np.zeros_like(self.intercept_)

    def _report(self, iteration, loss, callback):
        """Verbose output and the user's callback; True when the callback asks to stop."""
        if self.verbose:
            unit = "iteration" if self.solver == "lbfgs" else "epoch"
            print(f"{unit} {iteration}: loss {loss:.6g}")
        if callback is not None:
            return bool(callback(self, {"iteration": iteration, "loss": loss}))
        return False

    # ------------------------------------------------------------------- L-BFGS

    def _fit_lbfgs(self, X, y_enc, weights, callback):
        objective = _Objective(
            X,
            y_enc,
            weights,
            len(self.classes_),
            self.alpha,
            self.fit_intercept,
            self.label_smoothing,
            self.n_threads,
        )
        center = None
        if self.fit_intercept:
            w = np.ones(X.shape[0]) if weights is None else weights  # mean 1
            center = (
                np.asarray(safe_sparse_dot(X.T, w, dense_output=True), dtype=np.float64).ravel()
                / X.shape[0]
            )
        result = self._run_lbfgs(objective, callback, center)
        self.n_iter_ = int(result.nit)

    def _run_lbfgs(self, objective, callback, center=None):
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
        n_classes, n_features = self.coef_.shape
        dtype = self.coef_.dtype
        size = n_classes * n_features
        fit_intercept = self.fit_intercept
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
            self.coef_ = coef.astype(dtype)
            if fit_intercept:
                self.intercept_ = intercept.astype(dtype)

        def fun(v):
            if center is None:
                return objective(v)
            coef, intercept = natural(v)
            f, g = objective(np.concatenate([coef.ravel(), intercept]))
            # d/d coef of f(coef, shifted - coef @ center)
            g[:size] -= np.outer(g[size:], center).ravel()
            return f, g

        def step(intermediate_result):
            self.loss_curve_.append(float(intermediate_result.fun))
            if self.verbose or callback is not None:
                unpack(intermediate_result.x)
                if self._report(len(self.loss_curve_), float(intermediate_result.fun), callback):
                    raise StopIteration

        v0 = self.coef_.astype(np.float64).ravel()
        if fit_intercept:
            shifted = self.intercept_.astype(np.float64)
            if center is not None:
                shifted = shifted + self.coef_.astype(np.float64) @ center
            v0 = np.concatenate([v0, shifted])
        # As scikit-learn's LogisticRegression: stop on the gradient, hardly
        # ever on the relative decrease of the loss. In float32 the line search
        # may end the run first, once the loss stops decreasing in its precision.
        options = {
            "maxiter": self.max_iter,
            "maxls": 50,
            "gtol": 0.0 if self.tol is None else self.tol,
            "ftol": 0.0 if self.tol is None else 64 * np.finfo(np.float64).eps,
        }
        with _one_scipy_blas_thread():
            result = scipy.optimize.minimize(
                fun, v0, method="L-BFGS-B", jac=True, callback=step, options=options
            )
        unpack(result.x)
        if not self.loss_curve_:
            self.loss_curve_.append(float(result.fun))
        if result.status == 1 and self.tol is not None:
            warnings.warn(
                f"SoftmaxRegression(solver='lbfgs') stopped at max_iter={self.max_iter} "
                f"iterations before reaching tol={self.tol} (largest gradient entry "
                f"{np.max(np.abs(result.jac)):.3g}). Increase max_iter, or scale the "
                "features (e.g. with StandardScaler).",
                ConvergenceWarning,
                stacklevel=5,
            )
        return result

    # ---------------------------------------------------------------------- SGD

    def _fit_sgd(self, X, y_enc, weights, rng, callback):
        best, stalled, converged = np.inf, 0, False
        for epoch in range(1, self.max_iter + 1):
            loss = self._sgd_epoch(X, y_enc, weights, rng, epoch)
            self.n_iter_ = epoch
            self.loss_curve_.append(loss)
            if self._report(epoch, loss, callback):
                return
            if self.tol is not None:
                stalled = stalled + 1 if loss > best - self.tol else 0
                best = min(best, loss)
                if stalled >= self.n_iter_no_change:
                    converged = True
                    break
        if not converged and self.tol is not None:
            warnings.warn(
                f"SoftmaxRegression(solver='sgd') stopped at max_iter={self.max_iter} epochs "
                f"while the loss was still falling by more than tol={self.tol}. Increase "
                "max_iter, or set tol=None to run exactly max_iter epochs.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _sgd_epoch(self, X, y, weights, rng, epoch):
        """One pass of minibatch SGD over (X, y); returns the epoch's mean objective."""
        coef, intercept = self.coef_, self.intercept_
        dtype = coef.dtype
        n, n_classes = X.shape[0], coef.shape[0]
        batch = min(self.batch_size, n)
        lr, alpha, mu = float(self.learning_rate), float(self.alpha), float(self.momentum)
        nesterov, fit_intercept = self.nesterov, self.fit_intercept
        dense = not sp.issparse(X)
        vel = getattr(self, "_velocity", None)
        if vel is None or vel.shape != coef.shape or vel.dtype != dtype:
            self._reset_velocity()
        vel, vel_b = self._velocity, self._velocity_intercept
        coef_flat = coef.reshape(-1)
        # Without momentum the kernel scales the gradient of the scores by the
        # learning rate, so that the product with the batch is the step itself.
        scale = lr if mu == 0.0 else 1.0

        # Every array the loop writes, allocated once per epoch.
        order = rng.permutation(n) if self.shuffle else None
        grad, grad_b = np.empty_like(coef), np.empty_like(intercept)
        tmp = np.empty_like(coef) if mu or alpha else None
        ls, n_threads = float(self.label_smoothing), check_n_threads(self.n_threads)
        rows_contiguous = dense and (X.shape[1] <= 1 or X.strides[1] == dtype.itemsize)
        if (
            rows_contiguous
            and X.flags.aligned
            and n_classes <= _FUSED_MAX_CLASSES
            and X.dtype == dtype
        ):
            batch_grad = self._fused_batches(X, y, weights, order, batch, scale, ls, n_threads)
        else:
            batch_grad = self._blas_batches(X, y, weights, order, batch, scale, ls, n_threads)

        total = 0.0
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            m = stop - start
            loss = batch_grad(start, stop, grad, grad_b if fit_intercept else None)
            if not math.isfinite(loss):
                self._diverged(loss, epoch, start // batch + 1)
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
        objective = total / n + 0.5 * alpha * float(np.dot(coef_flat, coef_flat))
        if not math.isfinite(objective):
            self._diverged(objective, epoch, None)
        return objective

    def _fused_batches(self, X, y, weights, order, batch, scale, ls, n_threads):
        """Batch gradients from the fused linear + cross-entropy kernel: each row of
        the batch is read once, straight from X (no gathered copy)."""
        coef, intercept = self.coef_, self.intercept_
        dtype, (n_classes, n_features) = coef.dtype, coef.shape
        # A fixed number of parts per batch, each with its own sums, so that the
        # result does not depend on the number of threads.
        parts = max(1, min(_FUSED_PARTS, batch))
        gW_parts = np.empty((parts, n_classes, n_features), dtype=dtype)
        gb_parts = np.empty((parts, n_classes), dtype=dtype)
        z_parts = np.empty((parts, _kernels.linear_rows() * n_classes), dtype=dtype)
        totals = np.empty(parts)
        labels = np.ascontiguousarray(y, dtype=np.int64)
        w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
        threads = threads_for(n_threads, batch * n_features)

        def batch_grad(start, stop, grad, grad_b):
            m = stop - start
            idx = None if order is None else order[start:stop]
            rows = X if order is not None else X[start:stop]
            total = _kernels.linear_xent(
                rows,
                idx,
                labels if order is not None else labels[start:stop],
                w if (w is None or order is not None) else w[start:stop],
                scale / m,
                coef,
                intercept if grad_b is not None else None,
                gW_parts,
                gb_parts if grad_b is not None else None,
                z_parts,
                totals,
                ls,
                threads,
            )
            np.sum(gW_parts, axis=0, out=grad)
            if grad_b is not None:
                np.sum(gb_parts, axis=0, out=grad_b)
            return total / m

        return batch_grad

    def _blas_batches(self, X, y, weights, order, batch, scale, ls, n_threads):
        """Batch gradients from two matrix products around the fused kernel
        (many classes, sparse X)."""
        coef, intercept = self.coef_, self.intercept_
        dtype, n_classes = coef.dtype, coef.shape[0]
        dense = not sp.issparse(X)
        coef_t = coef.T
        x_buf = np.empty((batch, X.shape[1]), dtype=dtype) if dense and order is not None else None
        z_buf = np.empty((batch, n_classes), dtype=dtype)
        y_buf = np.empty(batch, dtype=y.dtype)
        g_buf = None if weights is None else np.empty(batch)
        loss_buf, lse_buf = np.empty(batch), np.empty(batch)

        def batch_grad(start, stop, grad, grad_b):
            m = stop - start
            if order is None:
                xb, yb = X[start:stop], y[start:stop]
                gb = (
                    None
                    if weights is None
                    else np.multiply(weights[start:stop], scale / m, out=g_buf[:m])
                )
            else:
                # mode='clip' (the indices are valid) lets take write straight
                # into the buffer; the default mode buffers the output first.
                idx = order[start:stop]
                xb = np.take(X, idx, axis=0, out=x_buf[:m], mode="clip") if dense else X[idx]
                yb = np.take(y, idx, out=y_buf[:m], mode="clip")
                gb = None if weights is None else np.take(weights, idx, out=g_buf[:m], mode="clip")
                if gb is not None:
                    gb *= scale / m
            z = z_buf[:m]
            if dense:
                np.matmul(xb, coef_t, out=z)
            else:
                z[...] = safe_sparse_dot(xb, coef_t, dense_output=True)
            if grad_b is not None:
                z += intercept
            # The scores become (scale times) d(batch loss)/d(scores), in place;
            # the labels were checked once, when they were encoded.
            rows = batch_loss_grad(z, yb, gb, scale / m, ls, n_threads, loss_buf, lse_buf)
            loss = float(rows.sum()) / m if gb is None else float(np.dot(rows, gb)) / scale
            if dense:
                np.matmul(z.T, xb, out=grad)
            else:
                grad[...] = safe_sparse_dot(xb.T, z, dense_output=True).T
            if grad_b is not None:
                np.sum(z, axis=0, out=grad_b)
            return loss

        return batch_grad

    def _diverged(self, loss, epoch, batch):
        where = f"epoch {epoch}" + ("" if batch is None else f", batch {batch}")
        raise _Diverged(
            f"The training loss became {loss} at {where} of solver='sgd' with "
            f"learning_rate={self.learning_rate}: the steps are too large for this data. "
            "Lower learning_rate (and/or momentum), or scale the features (e.g. with "
            "StandardScaler)."
        )

    # -------------------------------------------------------------- prediction

    def _scores(self, X):
        check_is_fitted(self)
        X = _validate_data(self, X, accept_sparse="csr", dtype=_FLOAT_DTYPES, reset=False)
        if sp.issparse(X):
            z = safe_sparse_dot(X, self.coef_.T, dense_output=True)
        else:
            z = X @ self.coef_.T
        z += self.intercept_
        return z

    def _dask_method(self, name, X):
        check_is_fitted(self)
        from fastsoftmax import _dask

        return _dask.predict(self, name, X)

    def decision_function(self, X):
        """Class scores ``X @ coef_.T + intercept_`` (log-odds for binary problems).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples (a dask array gives a dask array).

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
            For two classes, the score of the second class minus that of the
            first: positive means ``classes_[1]``.
        """
        if _is_dask_array(X):
            return self._dask_method("decision_function", X)
        z = self._scores(X)
        if z.shape[1] == 2:
            return z[:, 1] - z[:, 0]
        return z

    def predict(self, X):
        """Predict the class of each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples (a dask array gives a dask array).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The class of highest score.
        """
        if _is_dask_array(X):
            return self._dask_method("predict", X)
        scores = self._scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X):
        """Class probabilities: the softmax of the scores.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples (a dask array gives a dask array).

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities of the classes in the order of ``classes_``.
        """
        if _is_dask_array(X):
            return self._dask_method("predict_proba", X)
        return softmax(self._scores(X), axis=1, n_threads=self.n_threads)

    def predict_log_proba(self, X):
        """Logarithms of the class probabilities (the log-softmax of the scores).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples (a dask array gives a dask array).

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities of the classes in the order of ``classes_``.
        """
        if _is_dask_array(X):
            return self._dask_method("predict_log_proba", X)
        return log_softmax(self._scores(X), axis=1, n_threads=self.n_threads)


class _Objective:
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
        loss, grad_coef, grad_b = _loss_grad(
            self.X,
            self.y,
            self.grad_output,
            coef,
            intercept,
            self.label_smoothing,
            self.n_threads,
            out=self.scores,
        )
        return _penalised(w, loss, grad_coef, grad_b, size, self.alpha, self.fit_intercept)


def _penalised(w, loss, grad_coef, grad_b, size, alpha, fit_intercept):
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
        raise _Diverged(
            f"The {what} became non-finite with solver='lbfgs' (which has no learning_rate): "
            "the features are too large for the floating dtype. Scale them (e.g. with "
            "StandardScaler) or use float64 data."
        )
    return f, g
