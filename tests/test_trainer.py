"""SoftmaxRegression: scikit-learn's estimator checks, the optimum against
LogisticRegression, both solvers, partial_fit, weights, sparse input and errors."""

import pickle
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import check_grad
from scipy.special import log_softmax as ref_log_softmax
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

import fastsoftmax
from fastsoftmax import SoftmaxRegression
from fastsoftmax.linear_model._objective import Objective as _Objective


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    # The data here is small: a second BLAS thread gains nothing, and on a
    # busy machine waiting for it can make a fit hundreds of times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X / 16
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def objective(model, X, y, alpha, sample_weight=None):
    """Sample-weighted mean cross-entropy plus alpha / 2 * ||coef||^2, in float64 NumPy."""
    coef = model.coef_.astype(np.float64)
    z = X @ coef.T + model.intercept_.astype(np.float64)
    rows = -ref_log_softmax(z, axis=1)[np.arange(len(y)), np.searchsorted(model.classes_, y)]
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    return float(rows @ w / w.sum()) + 0.5 * alpha * float(np.sum(coef**2))


# ---------------------------------------------------------------- scikit-learn checks


# Small max_iter keeps the L-BFGS checks fast; the checks' tiny data sets
# then sometimes stop at max_iter, which the ConvergenceWarning filter below
# expects. SGD runs with every parameter at its default: its step comes from
# the data, which the checks feed unscaled (magnitudes near 20).
@parametrize_with_checks(
    [
        SoftmaxRegression(max_iter=50),
        SoftmaxRegression(solver="sgd"),
    ]
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# --------------------------------------------------------- the optimum of sklearn's model


@pytest.mark.parametrize("C", [1.0, 0.1])
def test_lbfgs_reaches_logistic_regression_optimum(digits, C):
    X_train, X_test, y_train, y_test = digits
    n = X_train.shape[0]
    alpha = 1.0 / (C * n)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X_train, y_train)
    model = SoftmaxRegression(alpha=alpha, tol=1e-8, max_iter=2000).fit(X_train, y_train)
    f_ref = objective(ref, X_train, y_train, alpha)
    f = objective(model, X_train, y_train, alpha)
    assert abs(f - f_ref) <= 1e-5 * f_ref
    assert model.loss_curve_[-1] == pytest.approx(f, rel=1e-12)
    # The penalty makes the coefficients' rows sum to zero; the intercepts are
    # free up to a common shift.
    np.testing.assert_allclose(model.coef_, ref.coef_, atol=2e-3 * np.abs(ref.coef_).max())
    np.testing.assert_allclose(
        model.intercept_ - model.intercept_.mean(),
        ref.intercept_ - ref.intercept_.mean(),
        atol=2e-3,
    )
    np.testing.assert_allclose(model.predict_proba(X_test), ref.predict_proba(X_test), atol=1e-3)
    assert np.mean(model.predict(X_test) == ref.predict(X_test)) >= 0.995
    assert model.score(X_test, y_test) > 0.93


def test_default_tol_matches_logistic_regression_defaults(digits):
    X_train, X_test, y_train, y_test = digits
    n = X_train.shape[0]
    ref = LogisticRegression().fit(X_train, y_train)
    model = SoftmaxRegression(alpha=1.0 / n).fit(X_train, y_train)
    assert model.n_iter_ < 100
    f_ref = objective(ref, X_train, y_train, 1.0 / n)
    assert objective(model, X_train, y_train, 1.0 / n) <= f_ref * (1 + 1e-3)
    assert model.score(X_test, y_test) == pytest.approx(ref.score(X_test, y_test), abs=0.01)


def test_binary_problem_matches_logistic_regression():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    n, C = X.shape[0], 1.0
    model = SoftmaxRegression(alpha=1.0 / (C * n), tol=1e-8, max_iter=2000).fit(X, y)
    # Two rows of coefficients: at the optimum coef_[1] = -coef_[0] = v / 2, and
    # alpha/2 * (|v/2|^2 + |v/2|^2) is LogisticRegression's penalty with 2 C.
    ref = LogisticRegression(C=2 * C, tol=1e-10, max_iter=10000).fit(X, y)
    v = model.coef_[1] - model.coef_[0]
    np.testing.assert_allclose(v, ref.coef_[0], atol=1e-3 * np.abs(ref.coef_).max())
    dec = model.decision_function(X)
    assert dec.shape == (n,)
    np.testing.assert_array_equal(model.predict(X), model.classes_[(dec > 0).astype(int)])
    np.testing.assert_allclose(model.predict_proba(X), ref.predict_proba(X), atol=1e-4)


def test_objective_gradient_is_exact():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))
    y = rng.integers(0, 4, size=40)
    w = rng.random(40) * 2
    for weights, smoothing, fit_intercept in [
        (None, 0.0, True),
        (w / w.mean(), 0.2, True),
        (w / w.mean(), 0.0, False),
    ]:
        f = _Objective(X, y, weights, 4, 0.3, fit_intercept, smoothing, None)
        w0 = rng.standard_normal(24 + 4 * fit_intercept)
        assert check_grad(lambda p, f=f: f(p)[0], lambda p, f=f: f(p)[1], w0) < 1e-5


def _reference_objective(X, y, weights, n_classes, alpha, fit_intercept, smoothing, w):
    """The L-BFGS objective and its gradient in float64, from the scores."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    n, d = X.shape
    coef = w[: n_classes * d].reshape(n_classes, d)
    z = X @ coef.T + (w[n_classes * d :] if fit_intercept else 0.0)
    q = np.full(z.shape, smoothing / n_classes)
    q[np.arange(n), y] += 1 - smoothing
    logp = ref_log_softmax(z, axis=1)
    g = (np.ones(n) if weights is None else weights) / n
    f = float(g @ -(q * logp).sum(axis=1)) + 0.5 * alpha * float(coef.ravel() @ coef.ravel())
    dz = (np.exp(logp) - q) * g[:, None]
    grad = (dz.T @ X + alpha * coef).ravel()
    return f, np.concatenate([grad, dz.sum(axis=0)]) if fit_intercept else grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "layout, n_classes",
    [("C", 3), ("C", 5), ("C", 16), ("C", 17), ("F", 5), ("sparse", 5), ("strided", 7)],
)
def test_objective_of_each_route_matches_the_scores(dtype, layout, n_classes):
    # Up to 16 classes on dense aligned rows (of contiguous elements, any
    # distance apart) the fused linear kernel makes each evaluation; the
    # other layouts and more classes take the matrix products.
    rng = np.random.default_rng(n_classes)
    n, d = 203, 19
    base = rng.standard_normal((n, 2 * d)).astype(dtype)
    X = {"C": np.ascontiguousarray(base[:, :d]), "F": np.asfortranarray(base[:, :d])}.get(
        layout, base[:, :d]
    )
    if layout == "sparse":
        X = sp.csr_matrix(np.where(base[:, :d] > 0.5, base[:, :d], 0))
    y = rng.integers(0, n_classes, size=n)
    raw = rng.random(n) * 2
    for weights, smoothing, fit_intercept in [
        (None, 0.0, True),
        (raw / raw.mean(), 0.2, True),
        (raw / raw.mean(), 0.0, False),
    ]:
        f = _Objective(X, y, weights, n_classes, 0.3, fit_intercept, smoothing, None)
        assert (f.fused is not None) == (layout in ("C", "strided") and n_classes <= 16)
        w = rng.standard_normal(n_classes * (d + fit_intercept))
        got_f, got_g = f(w)
        ref_f, ref_g = _reference_objective(
            X, y, weights, n_classes, 0.3, fit_intercept, smoothing, w
        )
        tol = 1e-5 if dtype == np.float32 else 1e-12
        assert got_f == pytest.approx(ref_f, rel=tol)
        np.testing.assert_allclose(got_g, ref_g, rtol=tol, atol=tol * np.abs(ref_g).max())


def test_label_smoothing_objective():
    X, y = load_iris(return_X_y=True)
    eps = 0.1
    model = SoftmaxRegression(alpha=1e-2, label_smoothing=eps, tol=1e-8, max_iter=1000)
    model.fit(X, y)
    z = X @ model.coef_.T + model.intercept_
    logp = ref_log_softmax(z, axis=1)
    target = np.full(z.shape, eps / 3)
    target[np.arange(len(y)), y] += 1 - eps
    expected = -np.mean(np.sum(target * logp, axis=1)) + 0.5e-2 * np.sum(model.coef_**2)
    assert model.loss_curve_[-1] == pytest.approx(expected, rel=1e-10)
    # Smoothing keeps the probabilities away from 0 and 1.
    assert model.predict_proba(X).max() < 1 - eps / 3


# ---------------------------------------------------------------------------- SGD


def test_sgd_approaches_the_optimum(digits):
    X_train, X_test, y_train, y_test = digits
    alpha = 1e-3
    best = SoftmaxRegression(alpha=alpha, tol=1e-8, max_iter=1000).fit(X_train, y_train)
    f_best = objective(best, X_train, y_train, alpha)
    model = SoftmaxRegression(
        solver="sgd",
        alpha=alpha,
        batch_size=64,
        learning_rate=0.05,
        max_iter=60,
        tol=None,
        random_state=0,
    ).fit(X_train, y_train)
    assert model.n_iter_ == 60 and len(model.loss_curve_) == 60
    assert objective(model, X_train, y_train, alpha) < 1.05 * f_best
    assert model.score(X_test, y_test) > 0.94


def _many_classes_path(monkeypatch, path):
    """Sends every class count to the path of many classes (two BLAS products
    around the kernel, the step inside the second) when ``path`` says so."""
    if path == "gemm":
        import fastsoftmax.linear_model._fused as fused_kernel

        monkeypatch.setattr(fused_kernel, "MAX_CLASSES", 0)


@pytest.mark.parametrize("path", ["fused", "gemm"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_step_rules_match_a_reference_loop(
    momentum, nesterov, fit_intercept, path, monkeypatch
):
    # Two epochs, no shuffling: the same steps as a plain NumPy loop in the way
    # torch.optim.SGD takes them (weight decay added to the gradient, not to
    # the intercept's).
    _many_classes_path(monkeypatch, path)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 5))
    y = rng.integers(0, 3, size=50)
    lr, alpha, batch = 0.1, 0.01, 16
    model = SoftmaxRegression(
        solver="sgd",
        learning_rate=lr,
        alpha=alpha,
        batch_size=batch,
        momentum=momentum,
        nesterov=nesterov,
        shuffle=False,
        fit_intercept=fit_intercept,
        max_iter=2,
        tol=None,
    ).fit(X, y)
    W, b = np.zeros((3, 5)), np.zeros(3)
    vW, vb = np.zeros_like(W), np.zeros_like(b)
    for _ in range(2):
        for s in range(0, 50, batch):
            xb, yb = X[s : s + batch], y[s : s + batch]
            p = np.exp(ref_log_softmax(xb @ W.T + b, axis=1))
            p[np.arange(len(yb)), yb] -= 1
            p /= len(yb)
            gW, gb = p.T @ xb + alpha * W, p.sum(0)
            if momentum:
                vW, vb = momentum * vW + gW, momentum * vb + gb
                gW, gb = (gW + momentum * vW, gb + momentum * vb) if nesterov else (vW, vb)
            W, b = W - lr * gW, b - lr * gb * fit_intercept
    np.testing.assert_allclose(model.coef_, W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.intercept_, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", ["fused", "gemm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shuffled_weighted_sgd_matches_a_reference_loop(dtype, path, monkeypatch):
    # Shuffled rows (the library's gather), sample weights and label smoothing:
    # the same steps as a NumPy loop drawing the same permutations.
    _many_classes_path(monkeypatch, path)
    rng = np.random.default_rng(2)
    n, d, c, batch, lr, ls = 70, 6, 4, 16, 0.2, 0.1
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, c, size=n)
    sw = rng.uniform(0.1, 2.0, size=n)
    model = SoftmaxRegression(
        solver="sgd",
        learning_rate=lr,
        alpha=0.0,
        momentum=0.0,
        batch_size=batch,
        label_smoothing=ls,
        random_state=3,
        max_iter=2,
        tol=None,
    ).fit(X, y, sample_weight=sw)
    w = sw * (n / sw.sum())
    X64 = X.astype(np.float64)
    W, b = np.zeros((c, d)), np.zeros(c)
    orders = np.random.RandomState(3)
    for _ in range(2):
        order = orders.permutation(n)
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            xb, yb, wb = X64[idx], y[idx], w[idx]
            p = np.exp(ref_log_softmax(xb @ W.T + b, axis=1))
            q = np.full_like(p, ls / c)
            q[np.arange(len(yb)), yb] += 1 - ls
            p = (p - q) * (wb / len(yb))[:, None]
            W, b = W - lr * (p.T @ xb), b - lr * p.sum(0)
    tol = 2e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(model.coef_, W, rtol=tol, atol=tol)
    np.testing.assert_allclose(model.intercept_, b, rtol=tol, atol=tol)


def test_sgd_allocates_nothing_of_size_samples_by_classes():
    rng = np.random.default_rng(0)
    n, d, c = 4000, 20, 100
    X = rng.standard_normal((n, d))
    y = rng.integers(0, c, size=n)
    model = SoftmaxRegression(solver="sgd", batch_size=128, learning_rate=0.01)
    model.partial_fit(X, y, classes=np.arange(c))
    tracemalloc.start()
    try:
        model.partial_fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n * c * 8 / 4, peak


def test_partial_fit(digits):
    X_train, X_test, y_train, y_test = digits
    classes = np.unique(y_train)
    model = SoftmaxRegression(solver="sgd", random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(X_train, y_train)
    losses = []
    for _ in range(5):
        model.partial_fit(X_train, y_train, classes=classes)
        losses.append(model.loss_curve_[-1])
    assert model.n_iter_ == 5 and losses[-1] < losses[0]
    assert model.score(X_test, y_test) > 0.9
    # Chunks of the data, labels of a subset of the classes.
    chunked = SoftmaxRegression(solver="sgd", random_state=0)
    for part in np.array_split(np.arange(len(y_train)), 4):
        chunked.partial_fit(X_train[part], y_train[part], classes=classes)
    assert chunked.coef_.shape == (10, 64)
    chunked.partial_fit(X_train[y_train < 3], y_train[y_train < 3])
    with pytest.raises(ValueError, match="not in classes"):
        chunked.partial_fit(X_train[:5], y_train[:5] + 100)
    with pytest.raises(ValueError, match="is not the same"):
        chunked.partial_fit(X_train[:5], y_train[:5], classes=np.arange(11))
    with pytest.raises(ValueError, match="balanced"):
        SoftmaxRegression(class_weight="balanced").partial_fit(X_train, y_train, classes)


def test_partial_fit_is_one_epoch_of_fit(iris):
    X, y = iris
    fitted = SoftmaxRegression(
        solver="sgd", max_iter=1, tol=None, random_state=3, batch_size=32
    ).fit(X, y)
    partial = SoftmaxRegression(solver="sgd", random_state=3, batch_size=32)
    partial.partial_fit(X, y, classes=[0, 1, 2])
    np.testing.assert_array_equal(fitted.coef_, partial.coef_)
    np.testing.assert_array_equal(fitted.intercept_, partial.intercept_)
    # partial_fit continues a fitted lbfgs model too.
    lbfgs = SoftmaxRegression().fit(X, y)
    before = lbfgs.coef_.copy()
    lbfgs.partial_fit(X, y)
    assert lbfgs.n_iter_ > 1 and not np.array_equal(before, lbfgs.coef_)


def test_shuffle_and_random_state(iris):
    X, y = iris
    a = SoftmaxRegression(solver="sgd", random_state=0, batch_size=16, max_iter=3, tol=None)
    b = clone(a).set_params(random_state=1)
    c = clone(a).set_params(shuffle=False)
    coefs = [m.fit(X, y).coef_ for m in (a, b, c)]
    assert not np.array_equal(coefs[0], coefs[1])
    np.testing.assert_array_equal(coefs[0], clone(a).fit(X, y).coef_)
    np.testing.assert_array_equal(coefs[2], clone(c).set_params(random_state=5).fit(X, y).coef_)


# -------------------------------------------------------------------- weights


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_integer_weights_equal_repeated_samples(iris, solver):
    X, y = iris
    sw = np.random.default_rng(0).integers(0, 4, size=len(y))
    params = dict(
        solver=solver, tol=1e-10, max_iter=300, batch_size=1000, learning_rate=0.5, alpha=1e-2
    )
    weighted = SoftmaxRegression(**params).fit(X, y, sample_weight=sw)
    repeated = SoftmaxRegression(**params).fit(np.repeat(X, sw, axis=0), np.repeat(y, sw))
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-6)
    scaled = SoftmaxRegression(**params).fit(X, y, sample_weight=7.5 * sw)
    np.testing.assert_allclose(weighted.predict_proba(X), scaled.predict_proba(X), atol=1e-6)


def test_class_weight_is_folded_into_sample_weights(iris):
    X, y = iris
    cw = {0: 0.5, 1: 2.0, 2: 1.0}
    a = SoftmaxRegression(class_weight=cw, tol=1e-10, max_iter=500).fit(X, y)
    b = SoftmaxRegression(tol=1e-10, max_iter=500).fit(X, y, sample_weight=[cw[k] for k in y])
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-7)
    f = objective(a, X, y, 1e-4, sample_weight=[cw[k] for k in y])
    assert a.loss_curve_[-1] == pytest.approx(f, rel=1e-10)
    # 'balanced' on unbalanced data raises the recall of the rare class.
    keep = np.r_[np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:8]]
    plain = SoftmaxRegression(alpha=0.05).fit(X[keep], y[keep])
    balanced = SoftmaxRegression(alpha=0.05, class_weight="balanced").fit(X[keep], y[keep])
    rare = y == 2
    assert np.mean(balanced.predict(X[rare]) == 2) >= np.mean(plain.predict(X[rare]) == 2)


def test_weight_errors(iris):
    X, y = iris
    with pytest.raises(ValueError, match="at least 2 classes"):
        SoftmaxRegression().fit(X, y, sample_weight=(y == 1).astype(float))
    with pytest.raises(ValueError, match="at least 2 classes"):
        SoftmaxRegression().fit(X[:10], np.zeros(10))
    with pytest.raises(ValueError, match="(?i)negative"):
        SoftmaxRegression().fit(X, y, sample_weight=-np.ones(len(y)))


# ------------------------------------------------------------------ inputs, dtypes


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_input_matches_dense(iris, solver, dtype):
    X, y = iris
    X = np.where(np.abs(X) < 0.5, 0.0, X).astype(dtype)
    params = dict(solver=solver, max_iter=20, tol=None, random_state=0, batch_size=32)
    dense = SoftmaxRegression(**params).fit(X, y)
    sparse = SoftmaxRegression(**params).fit(sp.csr_matrix(X), y)
    assert sparse.coef_.dtype == dtype
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    if solver == "lbfgs" and dtype == np.float32:
        # Dense rows take the fused linear kernel, sparse ones the matrix
        # products: float32 roundings that differ send L-BFGS's steps apart,
        # and each run stops where float32 no longer resolves the objective.
        f_dense, f_sparse = (objective(m, X, y, m.alpha) for m in (dense, sparse))
        assert f_dense == pytest.approx(f_sparse, rel=1e-5)
        rtol = 1e-2
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(
        sparse.predict_proba(sp.csr_array(X)), dense.predict_proba(X), rtol=rtol, atol=rtol
    )


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_text_features(solver):
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(0)
    topics = {
        "space": "orbit rocket launch planet moon star telescope astronaut nasa mars",
        "food": "recipe bake oven flour sugar butter taste dinner cook kitchen",
        "sport": "match goal team score league player coach season win ball",
    }
    common = "the a of and to in is it for on with as this that".split()
    docs, labels = [], []
    for label, words in topics.items():
        words = words.split()
        for _ in range(60):
            docs.append(" ".join(rng.choice(words, 6).tolist() + rng.choice(common, 10).tolist()))
            labels.append(label)
    X = TfidfVectorizer().fit_transform(docs)
    assert sp.issparse(X)
    X_train, X_test, y_train, y_test = train_test_split(X, labels, random_state=0)
    model = SoftmaxRegression(solver=solver, learning_rate=1.0, max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    assert model.score(X_test, y_test) > 0.95
    assert list(model.classes_) == ["food", "space", "sport"]


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_dtypes(iris, solver):
    X, y = iris
    m32 = SoftmaxRegression(solver=solver, max_iter=5, tol=None).fit(X.astype(np.float32), y)
    assert m32.coef_.dtype == np.float32 and m32.intercept_.dtype == np.float32
    assert m32.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert m32.decision_function(X.astype(np.float32)).dtype == np.float32
    m_int = SoftmaxRegression(solver=solver, max_iter=5, tol=None).fit((X * 4).astype(int), y)
    assert m_int.coef_.dtype == np.float64
    m16 = SoftmaxRegression(solver=solver, max_iter=5, tol=None).fit(X.astype(np.float16), y)
    assert m16.coef_.dtype == np.float64


def test_float32_lbfgs_reaches_the_float64_optimum(digits):
    X_train, _, y_train, _ = digits
    alpha = 1e-3
    m64 = SoftmaxRegression(alpha=alpha, tol=1e-6, max_iter=1000).fit(X_train, y_train)
    m32 = SoftmaxRegression(alpha=alpha, tol=1e-6, max_iter=1000)
    m32.fit(X_train.astype(np.float32), y_train)
    assert m32.coef_.dtype == np.float32
    f64 = objective(m64, X_train, y_train, alpha)
    assert objective(m32, X_train, y_train, alpha) <= f64 * (1 + 1e-5)


def test_string_labels_and_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True, as_frame=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = SoftmaxRegression().fit(X, names)
    assert list(model.feature_names_in_) == list(X.columns)
    assert model.predict(X).dtype == names.dtype
    assert model.score(X, names) > 0.95
    assert isinstance(X, pd.DataFrame)


# -------------------------------------------------------------- stopping and errors


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_names_the_learning_rate(iris):
    X, y = iris
    model = SoftmaxRegression(solver="sgd", learning_rate=1e30, momentum=0.0)
    with pytest.raises(ValueError, match=r"learning_rate=1e\+30"):
        model.fit(X * 1e10, y)
    X32 = (X * 1e30).astype(np.float32)
    with pytest.raises(ValueError, match="learning_rate"):
        SoftmaxRegression(solver="sgd", learning_rate=1e10).fit(X32, y)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_lbfgs_overflow_is_an_error():
    # Scores beyond float32's range make the loss NaN: an error, not a silent stop.
    X = np.full((4, 2), 1e30, dtype=np.float32)
    objective = _Objective(X, np.array([0, 1, 0, 1]), None, 2, 0.0, True, 0.0, None)
    with pytest.raises(ValueError, match="non-finite.*Scale them"):
        objective(np.full(6, 1e10))


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_max_iter_raises_convergence_warning(digits, solver):
    X_train, _, y_train, _ = digits
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        SoftmaxRegression(solver=solver, max_iter=3).fit(X_train, y_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = SoftmaxRegression(solver=solver, max_iter=3, tol=None).fit(X_train, y_train)
    assert model.n_iter_ == 3


def test_sgd_early_stopping(iris):
    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = SoftmaxRegression(
            solver="sgd", tol=1e-2, n_iter_no_change=3, max_iter=500, random_state=0
        ).fit(X, y)
    assert 3 < model.n_iter_ < 500


def test_invalid_parameters(iris):
    X, y = iris
    for params in [
        dict(solver="adam"),
        dict(alpha=-1.0),
        dict(learning_rate=0.0),
        dict(momentum=1.0),
        dict(batch_size=0),
        dict(label_smoothing=2.0),
        dict(class_weight="uniform"),
        dict(tol=-1.0),
    ]:
        with pytest.raises(ValueError):
            SoftmaxRegression(**params).fit(X, y)
    with pytest.raises(NotFittedError):
        SoftmaxRegression().predict(X)


# --------------------------------------------------------------- workflow helpers


def test_pipeline_grid_search_and_cross_val_score():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), SoftmaxRegression())
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.9
    grid = GridSearchCV(
        pipe,
        {"softmaxregression__alpha": [1e-3, 1e-1], "softmaxregression__solver": ["lbfgs", "sgd"]},
        cv=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert grid.best_score_ > 0.9
    assert grid.predict(X).shape == (150,)


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_pickle_round_trip(digits, solver):
    X_train, X_test, y_train, _ = digits
    model = SoftmaxRegression(solver=solver, max_iter=10, tol=None, random_state=0)
    model.fit(X_train, y_train)
    clone_ = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone_.predict(X_test), model.predict(X_test))
    np.testing.assert_array_equal(clone_.predict_proba(X_test), model.predict_proba(X_test))
    # The unpickled model trains on where the original left off.
    model.partial_fit(X_train, y_train)
    clone_.partial_fit(X_train, y_train)
    np.testing.assert_array_equal(clone_.coef_, model.coef_)


def test_warm_start(digits):
    X_train, _, y_train, _ = digits
    cold = SoftmaxRegression(tol=1e-6, max_iter=500).fit(X_train, y_train)
    warm = SoftmaxRegression(tol=1e-6, max_iter=500, warm_start=True).fit(X_train, y_train)
    first = warm.n_iter_
    warm.fit(X_train, y_train)
    assert warm.n_iter_ < first / 4
    np.testing.assert_allclose(warm.predict_proba(X_train), cold.predict_proba(X_train), atol=1e-4)


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_callback(iris, solver):
    X, y = iris
    seen = []

    def callback(model, info):
        seen.append((info["iteration"], info["loss"], model.predict(X[:3])))
        return info["iteration"] == 4

    model = SoftmaxRegression(solver=solver, max_iter=50, tol=None)
    model.fit(X, y, callback=callback)
    assert [s[0] for s in seen] == [1, 2, 3, 4]
    assert model.n_iter_ == 4
    assert [s[1] for s in seen] == model.loss_curve_[:4]


def test_verbose(iris, capsys):
    X, y = iris
    SoftmaxRegression(solver="sgd", max_iter=2, tol=None, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "epoch 1: loss" in out and "epoch 2: loss" in out


def test_predict_methods_agree(digits):
    X_train, X_test, y_train, _ = digits
    model = SoftmaxRegression().fit(X_train, y_train)
    scores = model.decision_function(X_test)
    proba = model.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.log(proba), model.predict_log_proba(X_test), atol=1e-10)
    np.testing.assert_array_equal(model.predict(X_test), model.classes_[np.argmax(scores, axis=1)])


def test_lbfgs_limits_only_scipys_own_blas():
    import scipy
    from threadpoolctl import threadpool_info

    from fastsoftmax.linear_model._blas import _scipy_own_blas

    own = _scipy_own_blas()
    blas = [p["filepath"] for p in threadpool_info() if p["user_api"] == "blas"]
    if own is None:  # NumPy and scipy share one BLAS (or scipy brings none)
        return
    paths = [c.filepath for c in own.lib_controllers]
    root = Path(scipy.__file__).resolve().parent
    assert paths and all(str(Path(p).resolve()).startswith(str(root)) for p in paths)
    assert len(paths) < len(blas)  # NumPy's BLAS keeps its threads
    with own.limit(limits=1):
        info = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
        assert all(info[p] == 1 for p in paths)


def test_import_is_lazy():
    code = (
        "import sys, fastsoftmax; "
        "assert 'sklearn' not in sys.modules and 'scipy' not in sys.modules, "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')); "
        "from fastsoftmax import SoftmaxRegression; assert 'sklearn' in sys.modules; "
        "assert 'SoftmaxRegression' in fastsoftmax.__all__; "
        "import fastsoftmax.datasets"
    )
    # Run where the package under test lives, so the child imports that package.
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=Path(fastsoftmax.__file__).resolve().parents[1],
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shuffle", [True, False])
def test_sgd_fused_and_blas_paths_agree(monkeypatch, dtype, shuffle):
    # Few classes go through the fused linear + cross-entropy kernel, many
    # through two matrix products: forced either way, the same training.
    import fastsoftmax.linear_model._fused as fused_kernel

    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 17)).astype(dtype)
    y = rng.integers(0, 6, size=300)
    sw = rng.uniform(0.5, 1.5, size=300)
    params = dict(
        solver="sgd",
        batch_size=32,
        max_iter=3,
        tol=None,
        random_state=0,
        label_smoothing=0.05,
        alpha=1e-3,
        shuffle=shuffle,
    )
    fused = SoftmaxRegression(**params).fit(X, y, sample_weight=sw)
    monkeypatch.setattr(fused_kernel, "MAX_CLASSES", 0)
    blas = SoftmaxRegression(**params).fit(X, y, sample_weight=sw)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(fused.coef_, blas.coef_, rtol=tol, atol=tol)
    np.testing.assert_allclose(fused.intercept_, blas.intercept_, rtol=tol, atol=tol)
    np.testing.assert_allclose(fused.loss_curve_, blas.loss_curve_, rtol=tol)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_diverging_run_leaves_the_model_as_it_was(iris, solver, monkeypatch):
    # A diverging fit leaves no model of infinite or NaN coefficients behind:
    # the estimator is unfitted again (a first fit) or keeps the previous model.
    import fastsoftmax.linear_model._objective as objective

    X, y = iris
    X = X.astype(np.float32)
    huge = X * np.float32(1e30)
    if solver == "lbfgs":  # the objective turns non-finite at its third evaluation
        calls, penalised = [], objective.penalised

        def failing(w, *args):
            calls.append(1)
            return penalised(w * (np.inf if len(calls) == 3 else 1), *args)

        monkeypatch.setattr(objective, "penalised", failing)
    model = SoftmaxRegression(solver=solver, learning_rate=1e10, max_iter=5, batch_size=16)
    with pytest.raises(ValueError, match="learning_rate|non-finite"):
        model.fit(huge, y)
    assert not hasattr(model, "coef_")
    with pytest.raises(NotFittedError):
        model.predict(X)

    good = SoftmaxRegression(solver="sgd", max_iter=3, tol=None, random_state=0, batch_size=16)
    good.fit(X, y)
    coef, intercept, curve = good.coef_.copy(), good.intercept_.copy(), list(good.loss_curve_)
    good.set_params(learning_rate=1e10)
    with pytest.raises(ValueError, match="learning_rate"):
        good.partial_fit(X * np.float32(1e30), y)
    np.testing.assert_array_equal(good.coef_, coef)
    np.testing.assert_array_equal(good.intercept_, intercept)
    assert good.loss_curve_ == curve and good.n_iter_ == 3

    fresh = SoftmaxRegression(solver="sgd", learning_rate=1e10, batch_size=16)
    with pytest.raises(ValueError, match="learning_rate"):
        fresh.partial_fit(X * np.float32(1e30), y, classes=np.unique(y))
    assert not hasattr(fresh, "coef_")
    fresh.set_params(learning_rate=0.1).partial_fit(X, y, classes=np.unique(y))
    assert np.isfinite(fresh.coef_).all()


@pytest.mark.parametrize(
    "curve, stalled, says",
    [
        ([1.64594, 1.65237, 1.65272], 2, "with the loss rising (1.64594 after the first epoch"),
        ([2.0, 1.5, 1.49999], 1, "had not improved by more than tol=0.0001 for its last 1"),
        ([2.0, 1.5, 1.0], 0, "while the loss was still falling by more than tol=0.0001 (2 after"),
    ],
)
def test_sgd_convergence_warning_says_what_happened(curve, stalled, says):
    from fastsoftmax.linear_model._sgd import not_converged_message

    model = SoftmaxRegression(solver="sgd", learning_rate=0.1, max_iter=3)
    model.loss_curve_ = curve
    message = not_converged_message(model, stalled)
    assert message.startswith("SoftmaxRegression(solver='sgd') stopped at max_iter=3 epochs")
    assert says in message
    if curve[-1] > curve[0]:
        assert "Lower learning_rate (now 0.1)" in message
        assert "still falling" not in message


@pytest.mark.filterwarnings("ignore:.*stopped at max_iter:sklearn.exceptions.ConvergenceWarning")
def test_sgd_worse_than_a_uniform_guess_warns():
    # Unscaled features and the default step: the run ends above log(20), the
    # loss of predicting every class alike, and says what to change.
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=2000,
        n_features=20,
        n_informative=15,
        n_classes=20,
        n_clusters_per_class=1,
        random_state=0,
    )
    X = X * 50 + 10
    with pytest.warns(ConvergenceWarning, match=r"above log\(20\) = 2.996, the loss of a uni"):
        model = SoftmaxRegression(solver="sgd", learning_rate=0.1, random_state=0, max_iter=5)
        model.fit(X, y)
    assert model.loss_curve_[-1] > np.log(20)
    # the default step comes from the data: below the uniform guess in one epoch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = SoftmaxRegression(solver="sgd", random_state=0, max_iter=1, tol=None).fit(X, y)
    assert model.loss_curve_[0] < np.log(20)
    assert model.score(X, y) > 0.3  # 20 classes: a uniform guess scores 0.05
    # scaled, the same run ends below it and says nothing of the kind
    X = (X - X.mean(0)) / X.std(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = SoftmaxRegression(solver="sgd", random_state=0, max_iter=5, tol=None).fit(X, y)
    assert model.loss_curve_[-1] < np.log(20)


def test_auto_learning_rate_is_one_over_the_curvature_bound():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=300, n_features=8, n_classes=3, n_informative=5,
                               random_state=1)  # fmt: skip
    X = X * 7
    w = np.random.default_rng(0).random(300) + 0.5
    model = SoftmaxRegression(solver="sgd", alpha=1e-3, max_iter=2, tol=None).fit(X, y)
    bound = 0.5 * ((X**2).sum(1) + 1).max() + 1e-3
    assert model.learning_rate_ == pytest.approx(1 / bound, rel=1e-12)
    model = SoftmaxRegression(solver="sgd", fit_intercept=False, max_iter=1, tol=None)
    model.fit(X, y, sample_weight=w)  # weights leave the rate as it is
    bound = 0.5 * (X**2).sum(1).max() + 1e-4
    assert model.learning_rate_ == pytest.approx(1 / bound, rel=1e-12)
    with warnings.catch_warnings():  # 0.05 is too large a step here, and it warns so
        warnings.simplefilter("ignore", ConvergenceWarning)
        fixed = SoftmaxRegression(solver="sgd", learning_rate=0.05, max_iter=1, tol=None)
        fixed.fit(X, y)
    assert fixed.learning_rate_ == 0.05
    part = SoftmaxRegression(solver="sgd").partial_fit(X[:50], y[:50], classes=[0, 1, 2])
    first = part.learning_rate_
    assert first == pytest.approx(1 / (0.5 * ((X[:50] ** 2).sum(1) + 1).max() + 1e-4))
    part.partial_fit(X * 10, y)  # later batches keep the first batch's rate
    assert part.learning_rate_ == first


def test_auto_learning_rate_advice_names_what_auto_chose():
    from fastsoftmax.linear_model._sgd import worse_than_uniform_message

    model = SoftmaxRegression(solver="sgd")
    model.coef_ = np.zeros((4, 2))
    model.loss_curve_ = [5.0]
    model.learning_rate_ = 0.0123
    msg = worse_than_uniform_message(model)
    assert "Pass a learning_rate below the one 'auto' chose (0.0123)" in msg
