"""The command line: ``fastsoftmax`` / ``python -m fastsoftmax`` and its ``train`` subcommand."""

import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import dump_svmlight_file
from threadpoolctl import threadpool_limits

import fastsoftmax
from fastsoftmax.__main__ import main
from test_datasets import make_mnist

# Children run where the package under test lives (the checkout for an in-place
# build, site-packages for an installed one), so they import that same package.
ROOT = Path(fastsoftmax.__file__).resolve().parents[1]

TRAIN_OPTIONS = [
    "--data",
    "--target",
    "--test-size",
    "--scale",
    "--seed",
    "--solver",
    "--epochs",
    "--lr",
    "--batch-size",
    "--momentum",
    "--alpha",
    "--tol",
    "--threads",
    "--save",
    "--plot",
    "--no-progress",
]


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    # Small data: one BLAS thread is as fast, and immune to a busy machine.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def accuracies(out):
    line = next(s for s in out.splitlines() if s.startswith("accuracy"))
    parts = line.split()
    return float(parts[2]), float(parts[4])


def test_no_arguments_trains_on_digits(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "digits: 1347 training and 450 test samples, 64 features" in out
    train, test = accuracies(out)
    assert train > 0.99 and test > 0.95
    assert "training " in out and " s, " in out
    assert "confusion matrix" in out
    matrix = out.split("predicted class)\n")[1].splitlines()[1:11]
    assert sum(int(v) for row in matrix for v in row.split()[1:]) == 450


def test_options_without_subcommand_go_to_train(capsys):
    assert main(["--solver", "sgd", "--epochs", "3", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "solver='sgd'" in captured.out and "3 epochs" in captured.out
    assert "stopped at 3 epochs (--epochs 3)" in captured.err  # the ConvergenceWarning, one line


def test_python_dash_m_help_explains_every_option():
    result = subprocess.run(
        [sys.executable, "-m", "fastsoftmax", "train", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    for option in TRAIN_OPTIONS:
        assert option in result.stdout
    for spec in ("digits", "mnist:DIR", "csv:PATH", "svmlight:PATH", "t10k-images-idx3-ubyte"):
        assert spec in result.stdout
    top = subprocess.run(
        [sys.executable, "-m", "fastsoftmax", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert "train" in top.stdout and "demo" in top.stdout


def test_demo_is_kept(capsys):
    assert main(["demo", "--samples", "64", "--classes", "5"]) == 0
    assert "fused cross-entropy forward + backward, 64 x 5" in capsys.readouterr().out


def test_mnist_sgd_save_and_load(tmp_path, capsys):
    make_mnist(tmp_path, n_train=200, n_test=50, compress=True)
    model_path = tmp_path / "model.joblib"
    code = main(
        [
            "train",
            "--data",
            f"mnist:{tmp_path}",
            "--solver",
            "sgd",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--lr",
            "0.05",
            "--tol",
            "none",
            "--save",
            str(model_path),
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "200 training and 50 test samples, 784 features" in out
    assert "2 epochs" in out and "ran every epoch" in out
    model = joblib.load(model_path)
    assert model.coef_.shape == (len(model.classes_), 784) and model.coef_.dtype == np.float32
    X = np.zeros((3, 784), dtype=np.float32)
    assert model.predict(X).shape == (3,)


def test_missing_mnist_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--data", f"mnist:{tmp_path / 'none'}"]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and "t10k-labels-idx1-ubyte" in err


def test_csv_with_target_and_scaling(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=120)
    X = rng.standard_normal((120, 4)) + 50 * y[:, None]  # large, separable features
    path = tmp_path / "data.csv"
    np.savetxt(
        path, np.column_stack([X, y]), delimiter=",", fmt="%.6f", header="a,b,c,d,kind", comments=""
    )
    model_path = tmp_path / "m.joblib"
    assert (
        main(["train", "--data", f"csv:{path}", "--target", "kind", "--save", str(model_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "MaxAbsScaler" in out and "3 classes" in out
    assert accuracies(out) == (1.0, 1.0)
    pipe = joblib.load(model_path)
    assert pipe.score(X, y) == 1.0
    assert (
        main(
            [
                "train",
                "--data",
                f"csv:{path}",
                "--target",
                "4",
                "--scale",
                "standard",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "StandardScaler" in capsys.readouterr().out


def test_csv_delimiter_and_no_header_options(tmp_path, capsys):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=90)
    X = rng.standard_normal((90, 3)) + 20 * y[:, None]
    path = tmp_path / "data.tsv"
    # headerless, tab-separated, the label first
    np.savetxt(path, np.column_stack([y, X]), delimiter="\t", fmt="%.4f")
    args = ["train", "--data", f"csv:{path}", "--no-progress", "--target", "0"]
    assert main(args + ["--delimiter", "tab", "--no-header"]) == 0
    assert accuracies(capsys.readouterr().out) == (1.0, 1.0)
    assert main(args) == 0  # the delimiter and the header found from the file
    assert "3 classes" in capsys.readouterr().out
    # the last column, taken by default, is continuous
    assert main(["train", "--data", f"csv:{path}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "looks continuous" in err and "--target" in err


def test_svmlight_sparse(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=200)
    X = rng.random((200, 30)) * (rng.random((200, 30)) < 0.2)
    X[:, 0] = y + 0.1
    path = tmp_path / "data.svm"
    dump_svmlight_file(X, y, str(path))
    assert (
        main(
            [
                "train",
                "--data",
                f"svmlight:{path}",
                "--solver",
                "sgd",
                "--epochs",
                "20",
                "--tol",
                "none",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "(sparse)" in out
    assert accuracies(out)[1] > 0.9
    assert main(["train", "--data", f"svmlight:{path}", "--scale", "standard"]) == 2
    assert "sparse" in capsys.readouterr().err


def test_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    assert main(["train", "--epochs", "15", "--plot", str(path), "--no-progress"]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot      {path}" in capsys.readouterr().out


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["train", "--plot", str(tmp_path / "c.png")]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_progress_bar(capsys, monkeypatch):
    # tqdm draws only on a terminal unless told otherwise; force it on.
    import tqdm.auto

    real = tqdm.auto.tqdm

    def always_on(*args, **kwargs):
        kwargs["disable"] = False
        return real(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", always_on)
    assert main(["train", "--solver", "sgd", "--epochs", "4", "--tol", "none"]) == 0
    err = capsys.readouterr().err
    assert "sgd" in err and "4/4" in err
    assert "loss=" in err and "train=" in err and "test=" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "nothing"], "unknown data set"),
        (["--momentum", "1.5"], "momentum"),
    ],
)
def test_bad_options(args, message, capsys):
    assert main(["train"] + args) == 2
    assert message in capsys.readouterr().err


def test_parser_rejects_bad_values():
    for args in (
        ["--test-size", "2"],
        ["--epochs", "0"],
        ["--lr", "-1"],
        ["--tol", "x"],
        ["--solver", "adam"],
    ):
        with pytest.raises(SystemExit) as info:
            main(["train"] + args)
        assert info.value.code == 2


def test_bench_measures_every_implementation(capsys):
    from fastsoftmax import _bench

    calls = []
    t = _bench.measure(
        (64, 10), repeats=2, cold_bytes=0, extra={"other": lambda x, t: calls.append(x.shape)}
    )
    assert set(t) == {
        "copy",
        "fastsoftmax",
        "fastsoftmax out=",
        "fastsoftmax inplace",
        "reference",
        "other",
    }
    assert all(v > 0 for v in t.values()) and calls[0] == (64, 10)
    _bench.table(shapes=((64, 10), (8, 3000), (4, 1_100_000)), repeats=2)
    out = capsys.readouterr().out
    assert "64 x 10" in out and "8 x 3000" in out and "x copy" in out
    # the reference is skipped at large sizes: '-', never 'nan'
    assert "nan" not in out
    assert out.splitlines()[-1].split()[-2:] == ["-", "-"]


def test_bench_mixed_prints_both_tables(capsys):
    # Not a timing: the mixed-program benchmark runs end to end on tiny shapes,
    # starts its busy process and stops it.
    from fastsoftmax import _bench_mixed

    _bench_mixed.print_report(rounds=2, fused=((64, 10),), softmax=((64, 10),))
    out = capsys.readouterr().out
    assert "Alternating in one process" in out
    assert "NumPy A @ B" in out and "256 x 200 batch" in out
    assert out.count("| cross_entropy_with_grad | 64 x 10 |") == 2  # busy and idle
    assert out.count("| softmax | 64 x 10 |") == 2


def test_bench_busy_core_stops_its_process():
    from fastsoftmax import _bench_mixed

    with _bench_mixed.busy_core() as proc:
        assert proc.poll() is None
    assert proc.poll() is not None


@pytest.mark.parametrize(
    "option, path, message",
    [
        ("--save", "{tmp}/no/such/dir/m.joblib", "the folder {tmp}/no/such/dir does not exist"),
        ("--save", "{tmp}", "is a folder; give a file name"),
        ("--plot", "{tmp}/no/such/dir/p.png", "the folder {tmp}/no/such/dir does not exist"),
        ("--plot", "{tmp}/curves.xyz", "matplotlib cannot save .xyz images; use one of"),
    ],
)
def test_output_paths_are_checked_before_training(tmp_path, capsys, option, path, message):
    if option == "--plot":
        pytest.importorskip("matplotlib")
    path = path.format(tmp=tmp_path)
    assert main(["train", option, path, "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert f"fastsoftmax train: error: {option} {path}: {message.format(tmp=tmp_path)}" in (
        captured.err
    )
    assert "model " not in captured.out  # nothing was trained


def test_plot_without_an_extension_is_accepted(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from fastsoftmax import cli_train

    assert cli_train._unknown_image_format(str(tmp_path / "curves")) is None
    assert cli_train._unknown_image_format(str(tmp_path / "curves.PDF")) is None


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastsoftmax {fastsoftmax.__version__}"


def test_digits_takes_no_location(capsys):
    assert main(["--data", "digits:foo", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "digits takes nothing after it: use --data digits, not 'digits:foo'" in err


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--tol", "abc", "argument --tol: must be a number, got 'abc'"),
        ("--epochs", "two", "argument --epochs: must be an integer, got 'two'"),
        ("--test-size", "half", "argument --test-size: must be a number, got 'half'"),
    ],
)
def test_non_numbers_are_named(capsys, option, value, says):
    with pytest.raises(SystemExit):
        main(["train", option, value])
    assert says in capsys.readouterr().err


def test_bench_help_is_not_an_indented_docstring():
    run = subprocess.run(
        [sys.executable, "-m", "fastsoftmax", "bench", "--help"], capture_output=True, text=True
    )
    assert run.returncode == 0
    assert "\nTime the fused cross-entropy forward + backward" in run.stdout
    assert "\n    For each shape" not in run.stdout


def test_messages_speak_in_the_command_lines_option_names(capsys):
    assert main(["train", "--solver", "sgd", "--epochs", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "stopped at 2 epochs (--epochs 2)" in err and "--tol none" in err
    for word in ("max_iter", "tol=None", "SoftmaxRegression("):
        assert word not in err
    assert main(["train", "--solver", "sgd", "--lr", "1e12", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--lr" in err and "learning_rate" not in err


def test_train_accuracy_of_a_sample_is_labelled_as_one():
    import argparse

    from fastsoftmax import cli_train
    from fastsoftmax.datasets import Dataset

    def progress(n):
        X, y = np.zeros((n, 2)), np.arange(n) % 2
        data = Dataset(X, X[:10], y, y[:10], "test")
        args = argparse.Namespace(solver="sgd", epochs=1, no_progress=True, plot="p.png", seed=0)
        return cli_train._Progress(args, data)

    assert progress(500).train_label == "train"
    big = progress(12000)
    assert big.train_label == "train (10,000-row sample)" and big.X_eval.shape[0] == 10000


def test_many_classes_show_their_most_frequent_errors(tmp_path):
    from fastsoftmax import cli_train

    labels = np.arange(40)
    cm = np.diag(np.full(40, 5))
    cm[3, 7], cm[12, 1], cm[30, 31] = 9, 4, 6
    assert cli_train.most_confused(cm, labels, k=2) == [(3, 7, 9), (30, 31, 6)]
    assert len(cli_train.most_confused(cm, labels)) == 3  # only real errors
    pytest.importorskip("matplotlib")
    history = {"step": [1, 2], "loss": [1.0, 0.5], "train": [0.5, 0.6], "test": [0.4, 0.5]}
    path = tmp_path / "p.png"
    cli_train._plot(str(path), history, "epoch", cm, labels)
    assert path.stat().st_size > 0
