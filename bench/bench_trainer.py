"""SoftmaxRegression against scikit-learn and PyTorch.

- digits (scikit-learn's, X / 16, stratified 75/25 split): L-BFGS to
  LogisticRegression's optimum, against LogisticRegression with its defaults
  (also on one BLAS thread, which spares it the contention of NumPy's and
  scipy's two OpenBLAS thread pools). Each fit reports its objective's gap
  to a tightly converged reference, its iterations and its test accuracy.
- An MNIST-sized problem (60000 x 784 float32, 10 classes), full-batch
  L-BFGS at LogisticRegression's C=1 (at most 100 iterations), against
  scikit-learn's LogisticRegression and scikit-learn-intelex's (when
  installed); each fit reports its objective and iterations.
- The same problem: one epoch of
  minibatch SGD (batch 256, learning rate 0.1, no momentum, no penalty),
  against the PyTorch loop (nn.Linear, cross_entropy, optim.SGD) when torch
  is installed, and against the floor: the two matrix products per batch.
  The data are MNIST's training images when FASTSOFTMAX_MNIST names a folder
  of the IDX files, else synthetic digits-like images. Each entry reports
  the training accuracy after one epoch from the start.
- Many classes: one SGD epoch of a 100000 x 512 float32, 1000-class problem
  (batch 256), against its floor: the two matrix products per batch.

Run:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest bench/bench_trainer.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_trainer.py --rounds 9

The second form interleaves the many-class epoch with its two products per
batch, through NumPy and through scipy's BLAS (the library the trainer's
products come from), round by round, and prints each one's median and the
median over rounds of the epoch's time over each floor's in the same round:
on a shared machine whose speed moves by tens of percent from one minute to
the next, only that ratio is comparable from run to run.
"""

import argparse
import contextlib
import functools
import os
import statistics
import time
import warnings

import numpy as np
import pytest
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

import fastsoftmax
from fastsoftmax import SoftmaxRegression
from fastsoftmax.datasets import load_digits, load_mnist

# --------------------------------------------------------------------------- digits

# The L-BFGS gradient tolerance that puts the objective within 1e-5 (relative)
# of the optimum on digits; LogisticRegression's default tol is 1e-4.
DIGITS_TOL = 1e-5


@functools.lru_cache(maxsize=1)
def digits():
    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    alpha = 1.0 / X_train.shape[0]  # LogisticRegression(C=1.0)
    ref = LogisticRegression(tol=1e-12, max_iter=100000).fit(X_train, y_train)
    return X_train, X_test, y_train, y_test, alpha, _objective(ref, X_train, y_train, alpha)


def _objective(model, X, y, alpha):
    from scipy.special import log_softmax

    z = X @ model.coef_.T + model.intercept_
    rows = -log_softmax(z, axis=1)[np.arange(len(y)), np.searchsorted(model.classes_, y)]
    return float(rows.mean()) + 0.5 * alpha * float(np.sum(model.coef_.astype(float) ** 2))


# name: (model for the given alpha, whether BLAS runs on one thread)
DIGITS_FITS = {
    "fastsoftmax lbfgs tol=1e-5": (lambda a: SoftmaxRegression(alpha=a, tol=DIGITS_TOL), False),
    "fastsoftmax lbfgs defaults": (lambda a: SoftmaxRegression(alpha=a), False),
    "sklearn LogisticRegression defaults": (lambda a: LogisticRegression(), False),
    "sklearn LogisticRegression tol=1e-5": (lambda a: LogisticRegression(tol=DIGITS_TOL), False),
    # NumPy's and scipy's wheels each bring an OpenBLAS; with both threaded,
    # LogisticRegression's L-BFGS (scipy's BLAS) and loss (NumPy's) make their
    # idle threads spin against each other on a small machine. One BLAS
    # thread shows LogisticRegression without that.
    "sklearn LogisticRegression defaults, 1 BLAS thread": (lambda a: LogisticRegression(), True),
}


def _report(capsys, benchmark, label):
    """Print a benchmark's extra_info (the table shows times only)."""
    info = ", ".join(f"{k} {v}" for k, v in benchmark.extra_info.items())
    with capsys.disabled():
        print(f"\n  [{label}] {info}")


@pytest.mark.parametrize("impl", list(DIGITS_FITS))
def bench_digits_lbfgs(benchmark, impl, capsys):
    X_train, X_test, y_train, y_test, alpha, f_ref = digits()
    benchmark.group = "digits: L-BFGS to LogisticRegression(C=1)'s optimum"

    make, one_blas_thread = DIGITS_FITS[impl]

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return make(alpha).fit(X_train, y_train)

    with (
        threadpool_limits(limits=1, user_api="blas")
        if one_blas_thread
        else contextlib.nullcontext()
    ):
        model = benchmark(fit)
    gap = (_objective(model, X_train, y_train, alpha) - f_ref) / f_ref
    benchmark.extra_info.update(
        objective_gap=float(f"{gap:.3g}"),
        n_iter=int(np.max(model.n_iter_)),
        test_accuracy=round(float(model.score(X_test, y_test)), 4),
    )
    _report(capsys, benchmark, impl)
    if impl.startswith("fastsoftmax") and "1e-5" in impl:
        assert gap <= 1e-5


# ---------------------------------------------------------------------- MNIST-sized

N_TRAIN, N_PIXELS, N_CLASSES, BATCH, LR = 60000, 784, 10, 256, 0.1


@functools.lru_cache(maxsize=1)
def mnist_sized():
    """MNIST's training set from FASTSOFTMAX_MNIST, else synthetic 28 x 28 'digits'."""
    folder = os.environ.get("FASTSOFTMAX_MNIST")
    if folder:
        X, y = load_mnist(folder)
        return np.ascontiguousarray(X, dtype=np.float32), y.astype(np.int64), "MNIST"
    rng = np.random.default_rng(0)
    # Ten blurred stroke templates sharing their mean image; each image is its
    # class's template, dimmed at random, plus noise, clipped to [0, 1] like
    # MNIST's pixels. Softmax regression reaches about 0.89 training accuracy
    # after one epoch and 0.92 after five, as on MNIST.
    templates = (rng.random((N_CLASSES, 28, 28)) < 0.12).astype(np.float32)
    for _ in range(2):
        templates = (templates + np.roll(templates, 1, 1) + np.roll(templates, 1, 2)) / 2.2
    templates = np.clip(templates, 0, 1)
    common = templates.mean(axis=0)
    templates = common + 0.3 * (templates - common)
    y = rng.integers(0, N_CLASSES, size=N_TRAIN)
    X = np.empty((N_TRAIN, 28, 28), dtype=np.float32)
    for start in range(0, N_TRAIN, 10000):
        part = slice(start, start + 10000)
        X[part] = templates[y[part]]
        X[part] *= rng.uniform(0.6, 1.0, size=(10000, 1, 1)).astype(np.float32)
        X[part] += 0.5 * rng.standard_normal((10000, 28, 28), dtype=np.float32)
    np.clip(X, 0, 1, out=X)
    return X.reshape(N_TRAIN, N_PIXELS), y, "synthetic"


def _fastsoftmax_epoch():
    X, y, _ = mnist_sized()
    model = SoftmaxRegression(
        solver="sgd", learning_rate=LR, momentum=0.0, alpha=0.0, batch_size=BATCH, random_state=0
    )

    def epoch():
        # The data are known to be finite: an epoch need not scan them for NaN first.
        with config_context(assume_finite=True):
            model.partial_fit(X, y, classes=np.arange(N_CLASSES))

    return epoch, lambda: float(model.score(X, y))


def _torch_epoch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    torch.set_num_threads(fastsoftmax.build_info()["default_threads"])
    torch.manual_seed(0)
    X, y, _ = mnist_sized()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    model = torch.nn.Linear(N_PIXELS, N_CLASSES)
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def epoch():
        perm = torch.randperm(N_TRAIN)
        for start in range(0, N_TRAIN, BATCH):
            idx = perm[start : start + BATCH]
            xb, yb = Xt[idx], yt[idx]
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()

    def accuracy():
        with torch.no_grad():
            return float((model(Xt).argmax(1) == yt).float().mean())

    return epoch, accuracy


def _products_epoch(X, n_classes, blas="numpy"):
    """An epoch of the two matrix products of every batch, and nothing else:
    through NumPy (np.matmul), or through scipy's BLAS (gemm) as the
    trainer's many-class steps call it."""
    coef = np.zeros((n_classes, X.shape[1]), dtype=X.dtype)
    z = np.empty((BATCH, n_classes), dtype=X.dtype)
    grad = np.empty_like(coef)
    if blas == "numpy":

        def products(xb, zb):
            np.matmul(xb, coef.T, out=zb)
            np.matmul(zb.T, xb, out=grad)
    else:
        from scipy.linalg.blas import get_blas_funcs

        gemm = get_blas_funcs("gemm", dtype=X.dtype)

        def products(xb, zb):
            # (Fortran's view of C arrays, as in GemmSteps.)
            gemm(1.0, coef.T, xb.T, 0.0, zb.T, 1, 0, 1)
            gemm(1.0, xb.T, zb.T, 0.0, grad.T, 0, 1, 1)

    def epoch():
        for start in range(0, X.shape[0], BATCH):
            xb = X[start : start + BATCH]
            products(xb, z[: xb.shape[0]])

    return epoch


def _floor_epoch():
    return _products_epoch(mnist_sized()[0], N_CLASSES), None


MNIST_EPOCHS = {
    "fastsoftmax SoftmaxRegression sgd": _fastsoftmax_epoch,
    "torch nn.Linear + cross_entropy + optim.SGD": _torch_epoch,
    "floor: the two matrix products per batch": _floor_epoch,
}


@pytest.mark.parametrize("impl", list(MNIST_EPOCHS))
def bench_mnist_sized_sgd_epoch(benchmark, impl, capsys):
    _, _, source = mnist_sized()
    benchmark.group = (
        f"one SGD epoch, {N_TRAIN} x {N_PIXELS} float32 ({source}), "
        f"{N_CLASSES} classes, batch {BATCH}, lr {LR}"
    )
    epoch, accuracy = MNIST_EPOCHS[impl]()
    if accuracy is not None:
        start = time.perf_counter()
        epoch()  # the first epoch, from the start: its training accuracy is reported
        benchmark.extra_info["first_epoch_s"] = round(time.perf_counter() - start, 4)
        benchmark.extra_info["train_accuracy_after_1_epoch"] = round(accuracy(), 4)
    benchmark.pedantic(epoch, rounds=10, warmup_rounds=1)
    if accuracy is not None:
        _report(capsys, benchmark, impl)


# name: model for the given alpha; None when its library is absent
def _sklearnex_logistic():
    try:
        from sklearnex.linear_model import LogisticRegression as IntelLogisticRegression
    except ImportError:
        return None
    return IntelLogisticRegression(max_iter=100)


MNIST_FITS = {
    "fastsoftmax lbfgs defaults": lambda a: SoftmaxRegression(alpha=a, max_iter=100),
    "fastsoftmax lbfgs 100 iterations (tol=None)": lambda a: SoftmaxRegression(
        alpha=a, max_iter=100, tol=None
    ),
    "sklearn LogisticRegression": lambda a: LogisticRegression(max_iter=100),
    "sklearnex LogisticRegression": lambda a: _sklearnex_logistic(),
}


@pytest.mark.parametrize("impl", list(MNIST_FITS))
def bench_mnist_sized_lbfgs(benchmark, impl, capsys):
    X, y, source = mnist_sized()
    benchmark.group = (
        f"L-BFGS fit, {N_TRAIN} x {N_PIXELS} float32 ({source}), {N_CLASSES} classes, "
        "C=1, at most 100 iterations"
    )
    alpha = 1.0 / X.shape[0]
    if MNIST_FITS[impl](alpha) is None:
        pytest.skip("scikit-learn-intelex is not installed")

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return MNIST_FITS[impl](alpha).fit(X, y)

    model = benchmark.pedantic(fit, rounds=3)
    benchmark.extra_info.update(
        objective=float(f"{_objective(model, X, y, alpha):.6g}"),
        n_iter=int(np.max(model.n_iter_)),
        train_accuracy=round(float(model.score(X, y)), 4),
    )
    _report(capsys, benchmark, impl)


# ------------------------------------------------------------------- many classes

MANY = (100_000, 512, 1000)  # rows, features, classes


@functools.lru_cache(maxsize=1)
def many_classes():
    """Each class a random mean in 512 dimensions, its rows that plus noise."""
    n, d, c = MANY
    rng = np.random.default_rng(0)
    means = rng.standard_normal((c, d), dtype=np.float32)
    y = rng.integers(0, c, size=n)
    X = means[y]
    X += 2.0 * rng.standard_normal((n, d), dtype=np.float32)
    return X, y


def _many_fastsoftmax_epoch():
    X, y = many_classes()
    model = SoftmaxRegression(
        solver="sgd", learning_rate=0.05, momentum=0.0, alpha=0.0, batch_size=BATCH,
        random_state=0,
    )  # fmt: skip

    def epoch():
        with config_context(assume_finite=True):
            model.partial_fit(X, y, classes=np.arange(MANY[2]))

    return epoch


def _many_floor_epoch():
    return _products_epoch(many_classes()[0], MANY[2])


MANY_EPOCHS = {
    "fastsoftmax SoftmaxRegression sgd": _many_fastsoftmax_epoch,
    "floor: the two matrix products per batch": _many_floor_epoch,
    "floor: the same products through scipy's BLAS": lambda: _products_epoch(
        many_classes()[0], MANY[2], blas="scipy"
    ),
}


@pytest.mark.parametrize("impl", list(MANY_EPOCHS))
def bench_many_classes_sgd_epoch(benchmark, impl):
    n, d, c = MANY
    benchmark.group = f"one SGD epoch, {n} x {d} float32, {c} classes, batch {BATCH}"
    epoch = MANY_EPOCHS[impl]()
    benchmark.pedantic(epoch, rounds=5, warmup_rounds=1)


# ------------------------------------------------------- interleaved, as a script


PAUSE_S = 0.5


def interleaved_many_classes(rounds):
    """Medians (s) of the epoch and its floors, rounds alternating, and the
    median of the per-round ratios of the epoch to each floor."""
    X = many_classes()[0]
    calls = {
        "fastsoftmax SoftmaxRegression sgd": _many_fastsoftmax_epoch(),
        "floor, NumPy's products": _products_epoch(X, MANY[2]),
        "floor, scipy's BLAS": _products_epoch(X, MANY[2], blas="scipy"),
    }
    for fn in calls.values():
        fn()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            # NumPy's and scipy's OpenBLAS each keep their threads spinning
            # for a while after a product; the pause lets the last call's go
            # to sleep, so that no call pays for the other library's.
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ours = times["fastsoftmax SoftmaxRegression sgd"]
    n, d, c = MANY
    print(f"one SGD epoch, {n} x {d} float32, {c} classes, batch {BATCH}, {rounds} rounds")
    print("| epoch | median s | epoch / this, median of rounds |")
    print("|---|---|---|")
    for name, t in times.items():
        ratio = statistics.median(a / b for a, b in zip(ours, t))
        print(f"| {name} | {statistics.median(t):.3f} | {ratio:.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    interleaved_many_classes(args.rounds)


if __name__ == "__main__":
    main()
