"""SoftmaxRegression: multinomial logistic regression as a scikit-learn classifier."""

import contextlib
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state, compute_class_weight
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.multiclass import _check_partial_fit_first_call, check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from fastsoftmax._special import log_softmax, softmax
from fastsoftmax._typing import Array, ArrayLike
from fastsoftmax.linear_model._common import (
    FLOAT_DTYPES,
    NON_NEGATIVE,
    Diverged,
    is_dask_array,
    validate_data,
)
from fastsoftmax.linear_model._lbfgs import fit_lbfgs
from fastsoftmax.linear_model._sgd import fit_sgd, set_learning_rate, sgd_epoch

__all__ = ["SoftmaxRegression"]


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
    learning_rate : float > 0 or 'auto', default='auto'
        Step size of 'sgd' (constant). 'auto' takes it from the data:
        ``1 / L``, with ``L = (max_i ||x_i||**2 + fit_intercept) / 2 + alpha``
        (over the samples of nonzero weight) a bound on the curvature of
        every sample's objective (as scikit-learn's SAG solver), so unscaled
        features get smaller steps; the rate used is ``learning_rate_``.
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
        and threadpoolctl. BLAS threads follow threadpoolctl. With more than
        16 classes, 'sgd' on dense X runs the cross-entropy of each batch on
        one thread between its two BLAS products, which is faster there.
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
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during fit, when ``X`` had string column
        names.
    n_iter_ : int
        Iterations ('lbfgs') or epochs ('sgd') run; ``partial_fit`` adds one.
    loss_curve_ : list of float
        The objective after each iteration ('lbfgs'), or its running mean
        over each epoch's batches ('sgd').
    learning_rate_ : float
        The step size 'sgd' used: ``learning_rate``, or the one 'auto' chose
        (in ``partial_fit``, from the first batch).

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
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
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
        solver: str = "lbfgs",
        *,
        alpha: float = 0.0001,
        learning_rate: float | str = "auto",
        batch_size: int = 256,
        max_iter: int = 100,
        momentum: float = 0.9,
        nesterov: bool = False,
        tol: float | None = 0.0001,
        n_iter_no_change: int = 5,
        fit_intercept: bool = True,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        class_weight: dict[Any, float] | str | None = None,
        label_smoothing: float = 0.0,
        warm_start: bool = False,
        n_threads: int | None = None,
        verbose: int = 0,
    ) -> None:
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
    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        sample_weight: ArrayLike | None = None,
        *,
        callback: "Callable[[SoftmaxRegression, dict[str, Any]], Any] | None" = None,
    ) -> "SoftmaxRegression":
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
        if is_dask_array(X) or is_dask_array(y):
            from fastsoftmax.linear_model import _dask

            return _dask.fit(self, X, y, sample_weight, callback)
        with self._rollback_on_divergence():
            return self._fit(X, y, sample_weight, callback)

    def _fit(self, X, y, sample_weight, callback):
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=FLOAT_DTYPES)
        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        weights = self._sample_weights(X, y_enc, classes, sample_weight, for_fit=True)
        warm = self._start_fit(classes, X.dtype)
        y_enc = y_enc.astype(np.intp, copy=False)
        if self.solver == "lbfgs":
            fit_lbfgs(self, X, y_enc, weights, callback)
        else:
            if not warm:
                self._reset_velocity()
            if not sp.issparse(X):
                # C-contiguous and aligned: the kernels load whole rows of elements
                # (np.ascontiguousarray would keep an unaligned buffer, as dask's can be).
                X = np.require(X, requirements=["C", "A"])
            self._rng = check_random_state(self.random_state)
            set_learning_rate(self, X, weights)
            fit_sgd(self, X, y_enc, weights, self._rng, callback)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        classes: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> "SoftmaxRegression":
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
        dtype = FLOAT_DTYPES if first else self.coef_.dtype
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=dtype, reset=first)
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
        if first or not hasattr(self, "learning_rate_"):
            set_learning_rate(self, X, weights)  # 'auto': from the first batch
        loss = sgd_epoch(
            self, X, y_enc.astype(np.intp, copy=False), weights, self._rng, self.n_iter_ + 1
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
        except Diverged:
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
            else _check_sample_weight(sample_weight, X, dtype=np.float64, **NON_NEGATIVE)
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

    def _start_fit(self, classes, dtype):
        """Set the classes and the starting coefficients of a fit (from the
        current ones with a matching warm start, else zeros); True when warm.
        ``n_features_in_`` is already set."""
        warm = (
            self.warm_start
            and hasattr(self, "coef_")
            and self.coef_.shape == (len(classes), self.n_features_in_)
            and np.array_equal(self.classes_, classes)
        )
        self.classes_ = classes
        if warm:
            self.coef_ = self.coef_.astype(dtype)
            self.intercept_ = self.intercept_.astype(dtype)
        else:
            self._init_params(dtype)
        self.n_iter_ = 0
        self.loss_curve_ = []
        return warm

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

    # -------------------------------------------------------------- prediction

    def _scores(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=FLOAT_DTYPES, reset=False)
        if sp.issparse(X):
            z = safe_sparse_dot(X, self.coef_.T, dense_output=True)
        else:
            z = X @ self.coef_.T
        z += self.intercept_
        return z

    def _dask_method(self, name, X):
        check_is_fitted(self)
        from fastsoftmax.linear_model import _dask

        return _dask.predict(self, name, X)

    def decision_function(self, X: ArrayLike) -> Array:
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
        if is_dask_array(X):
            return self._dask_method("decision_function", X)
        z = self._scores(X)
        if z.shape[1] == 2:
            return z[:, 1] - z[:, 0]
        return z

    def predict(self, X: ArrayLike) -> Array:
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
        if is_dask_array(X):
            return self._dask_method("predict", X)
        scores = self._scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X: ArrayLike) -> Array:
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
        if is_dask_array(X):
            return self._dask_method("predict_proba", X)
        return softmax(self._scores(X), axis=1, n_threads=self.n_threads)

    def predict_log_proba(self, X: ArrayLike) -> Array:
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
        if is_dask_array(X):
            return self._dask_method("predict_log_proba", X)
        return log_softmax(self._scores(X), axis=1, n_threads=self.n_threads)
