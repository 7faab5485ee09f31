"""Training on dask arrays, on a LocalCluster of two worker processes:
dask-ml's Incremental over SGD blocks, and L-BFGS summed over chunks."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
wrappers = pytest.importorskip("dask_ml.wrappers")

from sklearn.datasets import load_digits  # noqa: E402

from fastsoftmax import SoftmaxRegression  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            # One BLAS thread per worker: two workers already fill two cores.
            client.run(_one_blas_thread)
            yield client


def _one_blas_thread():
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


def objective(model, X, y, alpha, sample_weight=None):
    from scipy.special import log_softmax

    z = X @ model.coef_.T + model.intercept_
    rows = -log_softmax(z, axis=1)[np.arange(len(y)), np.searchsorted(model.classes_, y)]
    w = np.ones(len(y)) if sample_weight is None else sample_weight
    return float(rows @ w / w.sum()) + 0.5 * alpha * float(np.sum(model.coef_**2))


def test_workers_are_processes(client):
    info = client.scheduler_info()
    assert len(info["workers"]) == 2
    pids = client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2


def test_incremental_sgd_over_blocks(client, digits):
    X, y = digits
    Xd = da.from_array(X, chunks=(300, 64))
    yd = da.from_array(y, chunks=300)
    model = wrappers.Incremental(
        SoftmaxRegression(solver="sgd", learning_rate=0.1, batch_size=64, random_state=0),
        random_state=0,
    )
    for _ in range(3):
        model.partial_fit(Xd, yd, classes=np.arange(10))
    fitted = model.estimator_
    assert fitted.n_iter_ == 3 * Xd.numblocks[0]
    assert fitted.coef_.shape == (10, 64)
    assert model.score(Xd, yd) > 0.9
    predicted = model.predict(Xd)
    assert isinstance(predicted, da.Array)
    assert np.mean(predicted.compute() == y) > 0.9


@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_on_dask_arrays_reaches_the_in_memory_optimum(client, digits, weighted):
    X, y = digits
    alpha = 0.1  # well conditioned: about 35 iterations, each a round trip to the workers
    params = dict(alpha=alpha, tol=1e-6, max_iter=500)
    sw = np.random.default_rng(0).random(len(y)) + 0.5 if weighted else None
    if weighted:
        params["class_weight"] = {0: 2.0, 1: 0.5}
    local = SoftmaxRegression(**params).fit(X, y, sample_weight=sw)
    Xd = da.from_array(X, chunks=(400, 32))  # column chunks are joined
    yd = da.from_array(y, chunks=500)  # rechunked like X's rows
    swd = None if sw is None else da.from_array(sw, chunks=250)
    model = SoftmaxRegression(**params).fit(Xd, yd, sample_weight=swd)
    assert not hasattr(model, "feature_names_in_")
    assert model.n_features_in_ == 64
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    w = None if sw is None else sw * np.where(y == 0, 2.0, np.where(y == 1, 0.5, 1.0))
    f_local = objective(local, X, y, alpha, w)
    f_dask = objective(model, X, y, alpha, w)
    assert f_dask == pytest.approx(f_local, rel=1e-9)
    assert model.loss_curve_[-1] == pytest.approx(f_dask, rel=1e-10)
    np.testing.assert_allclose(model.predict_proba(X), local.predict_proba(X), atol=1e-4)
    # Predictions on dask arrays are dask arrays, chunk by chunk.
    proba = model.predict_proba(Xd)
    assert isinstance(proba, da.Array)
    np.testing.assert_allclose(proba.compute(), model.predict_proba(X), rtol=1e-12)
    np.testing.assert_array_equal(model.predict(Xd).compute(), model.predict(X))


def test_float32_chunks_stay_float32(client, digits):
    X, y = digits
    Xd = da.from_array(X.astype(np.float32), chunks=(600, 64))
    model = SoftmaxRegression(alpha=1e-2).fit(Xd, da.from_array(y, chunks=600))
    assert model.coef_.dtype == np.float32
    assert model.score(X.astype(np.float32), y) > 0.95


def test_sgd_fit_on_dask_arrays_points_to_incremental(client, digits):
    X, y = digits
    Xd, yd = da.from_array(X, chunks=(600, 64)), da.from_array(y, chunks=600)
    with pytest.raises(ValueError, match="Incremental"):
        SoftmaxRegression(solver="sgd").fit(Xd, yd)


def test_bad_chunks_are_errors(client, digits):
    X, y = digits
    Xd = da.from_array(X, chunks=(600, 64))
    with pytest.raises(ValueError, match="entries for 1797 samples"):
        SoftmaxRegression().fit(Xd, da.from_array(y[:100], chunks=50))
    bad = X.copy()
    bad[5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SoftmaxRegression().fit(da.from_array(bad, chunks=(600, 64)), da.from_array(y, chunks=600))
