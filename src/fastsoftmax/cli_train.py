"""``fastsoftmax train``: train a SoftmaxRegression on a data set and report how it does.

Only argparse is imported with this module; NumPy, scikit-learn, tqdm and
matplotlib load when :func:`run` starts.
"""

import argparse
import os
import sys

DESCRIPTION = """\
Train a softmax regression model (fastsoftmax.SoftmaxRegression) and report
its train and test accuracy, the training time and the test set's confusion
matrix. With no options it trains on scikit-learn's digits (shipped with
scikit-learn: nothing is downloaded) with L-BFGS.

data sets (--data):
  digits          scikit-learn's 8x8 digits: 1797 images, 64 features, 10 classes
  mnist:DIR       MNIST or Fashion-MNIST: the IDX files train-images-idx3-ubyte,
                  train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
                  t10k-labels-idx1-ubyte (each may end in .gz) in folder DIR;
                  the t10k files are the test set
  csv:PATH        a numeric CSV file with a label column (see --target)
  svmlight:PATH   a svmlight / libsvm file (sparse features)

examples:
  fastsoftmax train
  fastsoftmax train --data mnist:data/mnist --solver sgd --epochs 10
  fastsoftmax train --data csv:train.csv --target label --save model.joblib --plot curves.png
"""


def _number(text, kind=float):
    """``kind(text)``, or an argparse error that shows what was given."""
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {noun}, got {text!r}") from None


def _tol(text):
    if text.lower() == "none":
        return None
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or 'none', got {text}")
    return value


def _fraction(text):
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive_int(text):
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text):
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _learning_rate(text):
    if text.lower() == "auto":
        return "auto"
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive or 'auto', got {text}")
    return value


def add_arguments(parser):
    """Add the options of ``train`` to ``parser``."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        default="digits",
        metavar="SPEC",
        help="digits, mnist:DIR, csv:PATH or svmlight:PATH (default: digits)",
    )
    data.add_argument(
        "--target",
        default=None,
        metavar="COLUMN",
        help="label column of a CSV file, by name or index (default: a column "
        "named label/target/class/y, else the last one)",
    )
    data.add_argument(
        "--delimiter",
        default=None,
        metavar="SEP",
        help="field separator of a CSV file, e.g. ';' or tab (default: found from the file)",
    )
    data.add_argument(
        "--no-header",
        action="store_true",
        help="the CSV file's first line is data, not column names (default: found from the file)",
    )
    data.add_argument(
        "--test-size",
        type=_fraction,
        default=0.25,
        metavar="FRACTION",
        help="fraction of the samples held out for testing, stratified by class; "
        "MNIST has its own test set (default: 0.25)",
    )
    data.add_argument(
        "--scale",
        choices=["auto", "none", "standard", "maxabs"],
        default="auto",
        help="feature scaling fitted on the training set: auto is none for digits "
        "and MNIST (already in [0, 1]) and maxabs (keeps sparsity) for CSV "
        "and svmlight files (default: auto)",
    )
    data.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the train/test split and of SGD's shuffling (default: 0)",
    )

    _model_arguments(parser.add_argument_group("model and solver"))
    _output_arguments(parser.add_argument_group("output"))
    return parser


def _model_arguments(model):
    model.add_argument(
        "--solver",
        choices=["lbfgs", "sgd"],
        default="lbfgs",
        help="lbfgs: full-batch L-BFGS; sgd: minibatch SGD with momentum (default: lbfgs)",
    )
    model.add_argument(
        "--epochs",
        type=_positive_int,
        default=100,
        metavar="N",
        help="most iterations (lbfgs) or epochs (sgd) (default: 100)",
    )
    model.add_argument(
        "--lr",
        type=_learning_rate,
        default="auto",
        metavar="RATE",
        help="learning rate of sgd, or auto: from the data's largest row norm (default: auto)",
    )
    model.add_argument(
        "--batch-size",
        type=_positive_int,
        default=256,
        metavar="N",
        help="minibatch size of sgd (default: 256)",
    )
    model.add_argument(
        "--momentum", type=float, default=0.9, help="momentum of sgd, in [0, 1) (default: 0.9)"
    )
    model.add_argument(
        "--alpha", type=float, default=1e-4, help="L2 penalty alpha/2 * ||coef||^2 (default: 1e-4)"
    )
    model.add_argument(
        "--tol",
        type=_tol,
        default=1e-4,
        help="stopping tolerance, or 'none' to run all --epochs (default: 1e-4)",
    )
    model.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="OpenMP threads of the kernels (default: OMP_NUM_THREADS or all)",
    )


def _output_arguments(out):
    out.add_argument(
        "--save",
        default=None,
        metavar="PATH",
        help="save the fitted model (with its scaler, if any) with joblib, "
        "e.g. model.joblib; load it with joblib.load",
    )
    out.add_argument(
        "--plot",
        default=None,
        metavar="PATH",
        help="save loss and accuracy curves and the confusion matrix as an image, "
        "e.g. curves.png (needs matplotlib: pip install 'fastsoftmax[plot]')",
    )
    out.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it shows only on a terminal anyway)",
    )


def build_parser():
    """A standalone parser for ``train`` (the same options as ``fastsoftmax train``)."""
    parser = argparse.ArgumentParser(
        prog="fastsoftmax train",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return add_arguments(parser)


def _error(message):
    print(f"fastsoftmax train: error: {message}", file=sys.stderr)
    return 2


def _confusion_text(cm, labels):
    """The confusion matrix as text: rows are true classes, columns predicted ones."""
    names = [str(label) for label in labels]
    width = max(max(len(n) for n in names), len(str(int(cm.max()))) if cm.size else 1)
    head = " " * (width + 2) + " ".join(n.rjust(width) for n in names)
    rows = [
        f"{n.rjust(width)}  " + " ".join(str(int(v)).rjust(width) for v in row)
        for n, row in zip(names, cm)
    ]
    return "\n".join([head] + rows)


# Above this many classes a confusion matrix is a smear: its most frequent
# errors are shown instead.
MATRIX_MAX_CLASSES = 30


def most_confused(cm, labels, k=15):
    """The ``k`` largest off-diagonal counts: [(true label, predicted label, count)]."""
    import numpy as np

    off = cm.astype(np.int64, copy=True)
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None, kind="stable")[::-1][:k]
    pairs = [np.unravel_index(i, off.shape) for i in flat]
    return [(labels[i], labels[j], int(off[i, j])) for i, j in pairs if off[i, j] > 0]


def _plot(path, history, unit, cm, labels, train_label="train"):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5), layout="constrained")
    ax_loss, ax_acc, ax_cm = fig.subplots(1, 3)
    steps = history["step"]
    ax_loss.plot(steps, history["loss"], marker="." if len(steps) < 50 else None)
    ax_loss.set_xlabel(unit)
    ax_loss.set_ylabel("training objective")
    ax_loss.set_title("loss")
    ax_acc.plot(steps, history["train"], label=train_label)
    ax_acc.plot(steps, history["test"], label="test")
    ax_acc.set_xlabel(unit)
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("accuracy")
    ax_acc.legend()
    if len(labels) > MATRIX_MAX_CLASSES:
        pairs = most_confused(cm, labels)[::-1]
        ax_cm.barh(range(len(pairs)), [c for _, _, c in pairs], color="tab:blue")
        ax_cm.set_yticks(range(len(pairs)), [f"{t} as {p}" for t, p, _ in pairs])
        ax_cm.set_xlabel("test samples")
        ax_cm.set_title(f"most frequent errors (test set, {len(labels)} classes)")
        fig.savefig(path, dpi=110)
        return
    ax_cm.imshow(cm, cmap="Blues")
    ticks = range(len(labels))
    ax_cm.set_xticks(
        ticks, [str(label) for label in labels], rotation=90 if len(labels) > 10 else 0
    )
    ax_cm.set_yticks(ticks, [str(label) for label in labels])
    ax_cm.set_xlabel("predicted class")
    ax_cm.set_ylabel("true class")
    ax_cm.set_title("confusion matrix (test set)")
    if len(labels) <= 20:
        top = cm.max() if cm.size else 0
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax_cm.text(
                    j,
                    i,
                    str(int(cm[i, j])),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if cm[i, j] > top / 2 else "black",
                )
    fig.savefig(path, dpi=110)


def run(args):
    """Train a SoftmaxRegression as the options say and report accuracy, time and errors."""
    problem = _check_options(args)
    if problem:
        return _error(problem)
    try:
        data, scaler = _load(args)
    except (OSError, ValueError) as exc:
        return _error(str(exc))
    model = _model(args)
    print(f"model     {model!r}")
    progress = _Progress(args, data)
    try:
        seconds, converged = _fit(model, data, progress)
    except ValueError as exc:
        return _error(in_option_names(str(exc)))
    _report(args, model, data, seconds, converged, progress, scaler)
    return 0


# The estimator's words for its parameters, and the command line's for the
# same options: its messages are shown in the terms the user typed.
_OPTION_NAMES = [
    (r"SoftmaxRegression\(solver='(\w+)'\)", r"--solver \1"),
    (r"solver='(\w+)'", r"--solver \1"),
    (r"max_iter=(\d+) (epochs|iterations)", r"\1 \2 (--epochs \1)"),
    (r"run exactly max_iter epochs", "run all --epochs"),
    (r"max_iter=(\d+)", r"--epochs \1"),
    (r"\bmax_iter\b", "--epochs"),
    (r"tol=None", "--tol none"),
    (r"\btol=", "--tol "),
    (r"a learning_rate below the one 'auto' chose", "an --lr below the one auto chose"),
    (r"learning_rate=", "--lr "),
    (r"\blearning_rate\b", "--lr"),
    (r"\(and/or momentum\)", "(and/or --momentum)"),
    (r"n_iter_no_change=(\d+)", r"the \1 it waits for"),
    (r"\(e\.g\. (?:with )?StandardScaler\)", "(--scale standard)"),
]


def in_option_names(message):
    """An estimator message with its parameter names as the command line's options."""
    import re

    for pattern, replacement in _OPTION_NAMES:
        message = re.sub(pattern, replacement, message)
    return message


def _check_options(args):
    """What is wrong with the options before any work, or None."""
    for option, path in (("--save", args.save), ("--plot", args.plot)):
        problem = path and _unwritable(path)
        if problem:
            return f"{option} {path}: {problem}"
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return (
                "--plot needs matplotlib, which is not installed: "
                "pip install matplotlib (or pip install 'fastsoftmax[plot]')"
            )
        problem = _unknown_image_format(args.plot)
        if problem:
            return f"--plot {args.plot}: {problem}"
    if not 0 <= args.momentum < 1:
        return f"--momentum must be in [0, 1), got {args.momentum}"
    if args.alpha < 0:
        return f"--alpha must be >= 0, got {args.alpha}"
    return None


def _unwritable(path):
    """Why a file cannot be written at ``path`` (checked before training), or None."""
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        return "is a folder; give a file name"
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK):
        return f"the folder {folder} is not writable"
    return None


def _unknown_image_format(path):
    """None when matplotlib can save an image under this name's extension."""
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if not ext:
        return None  # matplotlib saves a PNG and adds .png
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    if ext in formats:
        return None
    return f"matplotlib cannot save .{ext} images; use one of " + ", ".join(
        f".{f}" for f in sorted(formats)
    )


def _load(args):
    """The data set of --data, split and scaled as the options say: (data, scaler)."""
    import scipy.sparse as sp

    from fastsoftmax.datasets import load_dataset

    target = args.target
    if target is not None and target.lstrip("-").isdigit():
        target = int(target)
    delimiter = args.delimiter
    if delimiter is not None and delimiter.lower() in ("tab", "\\t"):
        delimiter = "\t"
    data = load_dataset(
        args.data,
        test_size=args.test_size,
        random_state=args.seed,
        target=target,
        delimiter=delimiter,
        header=False if args.no_header else None,
        progress=True,
    )
    X_train = data.X_train
    sparse = sp.issparse(X_train)
    print(
        f"data      {data.name}: {X_train.shape[0]} training and {data.X_test.shape[0]} test "
        f"samples, {data.n_features} features{' (sparse)' if sparse else ''}, "
        f"{len(data.classes)} classes, {X_train.dtype}"
    )
    scale = args.scale
    if scale == "auto":
        scale = "none" if data.scaled else "maxabs"
    if scale == "standard" and sparse:
        raise ValueError("--scale standard would make the sparse features dense; use maxabs")
    if scale == "none":
        return data, None
    from sklearn.preprocessing import MaxAbsScaler, StandardScaler

    scaler = StandardScaler() if scale == "standard" else MaxAbsScaler()
    data.X_train = scaler.fit_transform(X_train)
    data.X_test = scaler.transform(data.X_test)
    print(f"scaling   {type(scaler).__name__}, fitted on the training set")
    return data, scaler


def _model(args):
    from fastsoftmax.linear_model import SoftmaxRegression

    return SoftmaxRegression(
        solver=args.solver,
        alpha=args.alpha,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_iter=args.epochs,
        momentum=args.momentum,
        tol=args.tol,
        random_state=args.seed,
        n_threads=args.threads,
    )


class _Progress:
    """The progress bar and the learning curves, fed by the fit's callback."""

    def __init__(self, args, data):
        import numpy as np
        from tqdm.auto import tqdm

        self.unit = "iteration" if args.solver == "lbfgs" else "epoch"
        self.bar = tqdm(
            total=args.epochs,
            unit=self.unit,
            desc=args.solver,
            leave=True,
            disable=True if args.no_progress else None,
            file=sys.stderr,
        )
        self.track = args.plot is not None or not self.bar.disable
        n = data.X_train.shape[0]
        # Training accuracy on a sample of at most this many rows, so that the
        # curve costs little against training; labelled as such where shown.
        m = min(n, 10000)
        rows = np.sort(np.random.default_rng(args.seed).choice(n, m, replace=False))
        self.train_label = "train" if m == n else f"train ({m:,}-row sample)"
        self.X_eval, self.y_eval = data.X_train[rows], data.y_train[rows]
        self.X_test, self.y_test = data.X_test, data.y_test
        self.history = {"step": [], "loss": [], "train": [], "test": []}
        self.seconds = 0.0  # spent here, not in training

    def __call__(self, fitted, info):
        import time

        import numpy as np

        if not self.track:
            return False
        start = time.perf_counter()
        train_acc = float(np.mean(fitted.predict(self.X_eval) == self.y_eval))
        test_acc = float(np.mean(fitted.predict(self.X_test) == self.y_test))
        for key, value in zip(self.history, (info["iteration"], info["loss"], train_acc, test_acc)):
            self.history[key].append(value)
        self.bar.set_postfix(
            {"loss": f"{info['loss']:.4f}", self.train_label: f"{train_acc:.4f}"},
            test=f"{test_acc:.4f}",
            refresh=False,
        )
        self.bar.update(1)
        self.seconds += time.perf_counter() - start
        return False


def _fit(model, data, progress):
    """Fit with the progress callback: (training seconds, converged); the
    ConvergenceWarning is printed, other warnings go on."""
    import time
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        try:
            model.fit(data.X_train, data.y_train, callback=progress)
        finally:
            progress.bar.close()
        seconds = time.perf_counter() - start - progress.seconds
    sys.stdout.flush()
    converged = True
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            converged = False
            print(f"warning   {in_option_names(str(w.message))}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return seconds, converged


def _report(args, model, data, seconds, converged, progress, scaler):
    """Accuracy, time, the confusion matrix, and the saved model and plot."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    train_acc = float(np.mean(model.predict(data.X_train) == data.y_train))
    y_pred = model.predict(data.X_test)
    test_acc = float(np.mean(y_pred == data.y_test))
    unit = progress.unit
    state = "converged" if converged else "stopped at --epochs"
    if args.tol is None:
        state = (
            "ran every epoch (--tol none)"
            if args.solver == "sgd"
            else "ran to --epochs (--tol none)"
        )
    print(
        f"training  {seconds:.3f} s, {model.n_iter_} {unit}s, final loss "
        f"{model.loss_curve_[-1]:.6g} ({state})"
    )
    print(f"accuracy  train {train_acc:.4f}  test {test_acc:.4f}")
    cm = confusion_matrix(data.y_test, y_pred, labels=model.classes_)
    if len(model.classes_) <= 20:
        print("confusion matrix (test set; rows: true class, columns: predicted class)")
        print(_confusion_text(cm, model.classes_))
    else:
        pairs = most_confused(cm, model.classes_)
        print(
            f"most frequent errors (test set, {len(model.classes_)} classes; "
            "true class as predicted class: count)"
        )
        for true, predicted, count in pairs:
            print(f"  {true} as {predicted}: {count}")
    if args.save:
        import joblib
        from sklearn.pipeline import make_pipeline

        saved = model if scaler is None else make_pipeline(scaler, model)
        joblib.dump(saved, args.save)
        print(f"saved     {args.save} ({type(saved).__name__}; joblib.load it to predict)")
    if args.plot:
        _plot(args.plot, progress.history, unit, cm, model.classes_, progress.train_label)
        print(f"plot      {args.plot}")


def main(argv=None):
    """``fastsoftmax train`` on its own; returns the exit status."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
