"""SoftmaxRegression on dask arrays: the L-BFGS objective evaluated chunk by chunk on the workers.

Each evaluation sends the (small) parameters to every chunk of rows; the
workers return the chunk's weighted loss and gradient, computed by the same
function as the in-memory solver, and the client sums them. The optimum is
therefore that of the in-memory fit on the concatenated data.

Minibatch SGD over dask arrays is dask-ml's ``Incremental`` wrapper around a
``solver='sgd'`` model, which calls ``partial_fit`` on one block after another.
"""

import functools

import numpy as np
from sklearn.utils import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array

from fastsoftmax.linear_model._lbfgs import run_lbfgs
from fastsoftmax.linear_model._objective import loss_grad, penalised

__all__ = ["fit", "predict"]


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - a dask array implies dask
        raise ImportError(
            "fitting on dask arrays needs dask: pip install 'fastsoftmax[dask]'"
        ) from exc
    return dask, da


def _rows_like(a, X, name):
    """``a`` as a 1-D dask array chunked like the rows of ``X``."""
    _, da = _import_dask()
    a = da.asarray(a)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.shape[0] != X.shape[0]:
        raise ValueError(f"{name} has {a.shape[0]} entries for {X.shape[0]} samples in X")
    return a.rechunk((X.chunks[0],))


def _encode(y, classes):
    return np.searchsorted(classes, y).astype(np.intp)


def _weights(y_enc, sample_weight, class_weights):
    w = (
        np.ones(len(y_enc))
        if sample_weight is None
        else np.asarray(sample_weight, dtype=np.float64)
    )
    if class_weights is not None:
        w = w * class_weights[y_enc]
    return w


def _chunk_loss_grad(X, y, grad_output, coef, intercept, label_smoothing, n_threads):
    return loss_grad(X, y, grad_output, coef, intercept, label_smoothing, n_threads)


def _grad_output(model, X, y_enc, y_local, classes, sample_weight):
    """Each row's weight in the mean loss (a dask array summing to 1), or None
    when every row weighs the same."""
    _, da = _import_dask()
    if sample_weight is None and model.class_weight is None:
        return None
    cw = (
        None
        if model.class_weight is None
        else compute_class_weight(model.class_weight, classes=classes, y=y_local)
    )
    sw = (
        None
        if sample_weight is None
        else _rows_like(sample_weight, X, "sample_weight").astype(np.float64)
    )
    w = (
        da.map_blocks(_weights, y_enc, sw, cw, dtype=np.float64)
        if sw is not None
        else y_enc.map_blocks(_weights, None, cw, dtype=np.float64)
    )
    w = w.persist()
    if bool((w < 0).any().compute()):
        raise ValueError("sample_weight must be non-negative")
    total = float(w.sum().compute())
    if not total > 0:
        raise ValueError(
            f"the sample weights (times the class weights) must have a positive sum, got {total}"
        )
    return w / total


def fit(model, X, y, sample_weight, callback):
    """Fit ``model`` (solver='lbfgs') on dask arrays; the body of ``SoftmaxRegression.fit``."""
    dask, da = _import_dask()
    if model.solver != "lbfgs":
        raise ValueError(
            "fit() on dask arrays runs solver='lbfgs' over the chunks. For minibatch SGD "
            "over the blocks of a dask array, wrap the model: dask_ml.wrappers.Incremental("
            "SoftmaxRegression(solver='sgd')).fit(X, y, classes=classes)."
        )
    X = da.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if X.dtype != np.float32:
        X = X.astype(np.float64)
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    X = X.rechunk({1: -1})
    validate = functools.partial(check_array, dtype=X.dtype, ensure_min_samples=0)
    X = X.map_blocks(validate, dtype=X.dtype)

    # The labels are small: bring them to the client once, for the classes
    # and the class weights.
    y = _rows_like(y, X, "y")
    y_local = np.asarray(y.compute())
    check_classification_targets(y_local)
    classes = np.unique(y_local)
    if len(classes) < 2:
        raise ValueError(
            f"SoftmaxRegression needs samples of at least 2 classes in the data, "
            f"got 1 class: {classes[0]!r}"
        )
    y_enc = y.map_blocks(_encode, classes, dtype=np.intp)

    n = X.shape[0]
    grad_output = _grad_output(model, X, y_enc, y_local, classes, sample_weight)
    X, y_enc, grad_output = dask.persist(X, y_enc, grad_output)
    # The weighted mean of the features: L-BFGS works on the model of the
    # centred features, as in memory.
    if grad_output is None:
        center = X.mean(axis=0, dtype=np.float64)
    else:
        center = (X.astype(np.float64) * grad_output[:, None]).sum(axis=0)
    center = np.asarray(center.compute(), dtype=np.float64)

    model.__dict__.pop("feature_names_in_", None)
    model.n_features_in_ = X.shape[1]
    model._start_fit(classes, X.dtype)

    x_blocks = X.to_delayed().ravel().tolist()
    y_blocks = y_enc.to_delayed().ravel().tolist()
    g_blocks = (
        [1.0 / n] * len(x_blocks)
        if grad_output is None
        else grad_output.to_delayed().ravel().tolist()
    )
    objective = _ChunkedObjective(
        x_blocks,
        y_blocks,
        g_blocks,
        model.coef_.shape,
        X.dtype,
        model.alpha,
        model.fit_intercept,
        model.label_smoothing,
        model.n_threads,
    )
    result = run_lbfgs(model, objective, callback, center)
    model.n_iter_ = int(result.nit)
    return model


class _ChunkedObjective:
    """The L-BFGS objective summed over chunks of rows by dask."""

    def __init__(
        self,
        x_blocks,
        y_blocks,
        g_blocks,
        shape,
        dtype,
        alpha,
        fit_intercept,
        label_smoothing,
        n_threads,
    ):
        self.blocks = list(zip(x_blocks, y_blocks, g_blocks))
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.alpha, self.fit_intercept = alpha, fit_intercept
        self.label_smoothing, self.n_threads = label_smoothing, n_threads

    def __call__(self, w):
        dask, _ = _import_dask()
        size = self.shape[0] * self.shape[1]
        coef = w[:size].reshape(self.shape).astype(self.dtype)
        intercept = w[size:].astype(self.dtype) if self.fit_intercept else None
        task = dask.delayed(_chunk_loss_grad, pure=True)
        parts = dask.compute(
            *[
                task(x, y, g, coef, intercept, self.label_smoothing, self.n_threads)
                for x, y, g in self.blocks
            ]
        )
        loss = sum(p[0] for p in parts)
        grad_coef = functools.reduce(np.add, (p[1] for p in parts))
        grad_b = functools.reduce(np.add, (p[2] for p in parts))
        return penalised(w, loss, grad_coef, grad_b, size, self.alpha, self.fit_intercept)


def predict(model, method, X):
    """``model.<method>`` mapped over the row chunks of the dask array ``X``."""
    _, da = _import_dask()
    X = da.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    X = X.rechunk({1: -1})
    fn = getattr(model, method)
    sample = fn(np.zeros((1, X.shape[1]), dtype=X.dtype))
    if sample.ndim == 1:
        return X.map_blocks(fn, drop_axis=1, dtype=sample.dtype)
    return X.map_blocks(fn, chunks=(X.chunks[0], (sample.shape[1],)), dtype=sample.dtype)
