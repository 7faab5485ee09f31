"""The data loaders, on files written here: IDX (MNIST), CSV and svmlight."""

import gzip
import struct

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file

from fastsoftmax import datasets

IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def write_idx(path, array, compress=False):
    """Write ``array`` in the IDX format (big-endian), gzipped when asked."""
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, IDX_CODES[big], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(big).tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if compress else data)


def make_mnist(folder, n_train=30, n_test=12, size=(28, 28), compress=False, dotted=False, seed=0):
    """A small MNIST-shaped data set in ``folder``; returns its arrays."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for kind, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n,) + size, dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        names = datasets.MNIST_FILES[kind]
        for name, array in zip(names, (images, labels)):
            if dotted:
                name = name.replace("-idx", ".idx")
            write_idx(folder / (name + (".gz" if compress else "")), array, compress)
        arrays[kind] = images, labels
    return arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, compress):
    array = (
        (np.arange(24).reshape(2, 3, 4) * 3 - 20).astype(dtype)
        if dtype != np.uint8
        else np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    )
    path = tmp_path / "a.idx"
    write_idx(path, array, compress)
    back = datasets.read_idx(path)
    assert back.shape == array.shape and back.dtype == np.dtype(dtype)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_read_idx_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.read_idx(bad)
    short = tmp_path / "short"
    write_idx(short, np.zeros((5, 4), np.uint8))
    short.write_bytes(short.read_bytes()[:-3])
    with pytest.raises(ValueError, match="needs 32 bytes"):
        datasets.read_idx(short)


@pytest.mark.parametrize("compress,dotted", [(False, False), (True, False), (True, True)])
def test_load_mnist(tmp_path, compress, dotted):
    arrays = make_mnist(tmp_path, compress=compress, dotted=dotted)
    X, y = datasets.load_mnist(tmp_path)
    images, labels = arrays["train"]
    assert X.shape == (30, 784) and X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(X, images.reshape(30, -1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    X_test, y_test = datasets.load_mnist(tmp_path, "test", scale=False, dtype=np.float64)
    assert X_test.shape == (12, 784) and X_test.dtype == np.float64
    np.testing.assert_array_equal(X_test, arrays["test"][0].reshape(12, -1))
    np.testing.assert_array_equal(y_test, arrays["test"][1])


def test_load_mnist_missing_files_say_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder") as info:
        datasets.load_mnist(tmp_path / "nowhere")
    message = str(info.value)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        ".gz",
    ):
        assert name in message
    make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    datasets.load_mnist(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="lacks t10k-labels-idx1-ubyte"):
        datasets.load_mnist(tmp_path, "test")
    with pytest.raises(ValueError, match="kind"):
        datasets.load_mnist(tmp_path, "validation")


def test_load_mnist_mismatched_files(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(7, np.uint8))
    with pytest.raises(ValueError, match="labels of shape"):
        datasets.load_mnist(tmp_path)


def test_load_digits():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    X32, _ = datasets.load_digits(scale=False, dtype=np.float32)
    assert X32.dtype == np.float32 and X32.max() == 16.0


def test_load_csv_kaggle_style(tmp_path):
    # Kaggle's digit recognizer: a header, the label first.
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(20, 6))
    labels = rng.integers(0, 10, size=20)
    path = tmp_path / "train.csv"
    header = "label," + ",".join(f"pixel{i}" for i in range(6))
    np.savetxt(
        path, np.column_stack([labels, pixels]), fmt="%d", delimiter=",", header=header, comments=""
    )
    X, y = datasets.load_csv(path)
    np.testing.assert_array_equal(X, pixels)
    np.testing.assert_array_equal(y, labels)
    assert y.dtype == np.int64 and X.dtype == np.float64
    X2, y2 = datasets.load_csv(path, target="pixel5", dtype=np.float32)
    np.testing.assert_array_equal(y2, pixels[:, 5])
    assert X2.shape == (20, 6) and X2.dtype == np.float32
    np.testing.assert_array_equal(X2[:, 0], labels)


def test_load_csv_without_header_and_string_labels(tmp_path):
    path = tmp_path / "iris.csv"
    path.write_text(
        "5.1,3.5,1.4,0.2,setosa\n7.0,3.2,4.7,1.4,versicolor\n"
        "6.3,3.3,6.0,2.5,virginica\n4.9,3.0,1.4,0.2,setosa\n"
    )
    X, y = datasets.load_csv(path)
    assert X.shape == (4, 4)
    assert list(y) == ["setosa", "versicolor", "virginica", "setosa"]
    X, y = datasets.load_csv(path, target=-1)
    assert X.shape == (4, 4) and y[1] == "versicolor"
    with pytest.raises(ValueError, match="setosa"):
        datasets.load_csv(path, target=0)  # the species column is not a number
    with pytest.raises(ValueError, match="no header"):
        datasets.load_csv(path, target="species")
    with pytest.raises(ValueError, match="out of range"):
        datasets.load_csv(path, target=7)


def test_load_csv_delimiter_and_quoted_header(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('"a";"b";"Target"\n1;2;0\n3;4;1\n5;6;1\n')
    X, y = datasets.load_csv(path, delimiter=";")
    np.testing.assert_array_equal(X, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(y, [0, 1, 1])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        datasets.load_csv(empty)


def test_load_svmlight(tmp_path):
    rng = np.random.default_rng(0)
    X = sp.random(30, 50, density=0.1, format="csr", random_state=0)
    y = rng.integers(0, 3, size=30)
    path = tmp_path / "data.svm"
    dump_svmlight_file(X, y, str(path))
    X2, y2 = datasets.load_svmlight(path)
    assert sp.issparse(X2) and X2.format == "csr"
    assert X2.shape[0] == 30 and X2.shape[1] <= 50
    np.testing.assert_allclose(X2.toarray(), X.toarray()[:, : X2.shape[1]])
    np.testing.assert_array_equal(y2, y)
    assert y2.dtype == np.int64
    X3, _ = datasets.load_svmlight(path, n_features=50, dtype=np.float32)
    assert X3.shape == (30, 50) and X3.dtype == np.float32


def test_load_dataset(tmp_path):
    data = datasets.load_dataset("digits", test_size=0.25, random_state=0)
    assert data.X_train.shape == (1347, 64) and data.X_test.shape == (450, 64)
    assert data.scaled and not data.fixed_split and data.n_features == 64
    # Stratified: every class keeps its share in the test set.
    counts = np.bincount(data.y_test)
    assert counts.min() >= 43 and counts.max() <= 46
    make_mnist(tmp_path, compress=True)
    mnist = datasets.load_dataset(f"mnist:{tmp_path}")
    assert mnist.fixed_split and mnist.X_train.shape == (30, 784)
    assert mnist.X_test.shape == (12, 784)
    csv = tmp_path / "d.csv"
    csv.write_text("f1,f2,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    data = datasets.load_dataset(f"csv:{csv}", test_size=0.5)
    assert data.X_train.shape == (20, 2) and not data.scaled
    np.testing.assert_array_equal(data.classes, [0, 1])
    with pytest.raises(ValueError, match="unknown data set"):
        datasets.load_dataset("imagenet")
    with pytest.raises(ValueError, match="folder"):
        datasets.load_dataset("mnist")
    with pytest.raises(FileNotFoundError):
        datasets.load_dataset(f"csv:{tmp_path / 'missing.csv'}")


def test_load_dataset_falls_back_to_a_plain_split(tmp_path):
    csv = tmp_path / "few.csv"
    csv.write_text("x,label\n" + "".join(f"{i},{i % 7}\n" for i in range(12)))
    data = datasets.load_dataset(f"csv:{csv}", test_size=0.25)
    assert data.X_train.shape[0] + data.X_test.shape[0] == 12


# ------------------------------------------------------------ CSV files as they come


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


IRIS_ROWS = [
    ("5.1", "3.5", "1.4", "0.2", "0"),
    ("7.0", "3.2", "4.7", "1.4", "1"),
    ("6.3", "3.3", "6.0", "2.5", "2"),
    ("4.9", "3.0", "1.4", "0.2", "0"),
    ("6.4", "3.2", "4.5", "1.5", "1"),
    ("5.8", "2.7", "5.1", "1.9", "2"),
]


def test_csv_delimiters_and_quotes_are_sniffed(tmp_path):
    for sep in (",", ";", "\t", "|"):
        for quote in ("", '"'):
            text = sep.join(f"{quote}{h}{quote}" for h in ("a", "b", "c", "d", "label")) + "\n"
            text += "".join(sep.join(f"{quote}{v}{quote}" for v in r) + "\n" for r in IRIS_ROWS)
            X, y = datasets.load_csv(_write(tmp_path, "f.csv", text))
            assert X.shape == (6, 4), (sep, quote)
            np.testing.assert_array_equal(y, [0, 1, 2, 0, 1, 2])
            assert X[1, 0] == 7.0


def test_csv_headerless_label_first_is_refused_and_target_chooses(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        f"{rng.integers(0, 3)}," + ",".join(f"{v:.3f}" for v in rng.random(4)) for _ in range(60)
    ]
    path = _write(tmp_path, "f.csv", "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"label column 4 \(0-based\) \(the last column, by def"):
        datasets.load_csv(path)
    with pytest.raises(ValueError, match="looks continuous.*--target NAME or INDEX"):
        datasets.load_csv(path)
    X, y = datasets.load_csv(path, target=0)
    assert X.shape == (60, 4) and set(y) <= {0, 1, 2}
    # many distinct integers in a column taken by default are suspect too
    ints = _write(tmp_path, "g.csv", "".join(f"{i % 13},{i}\n" for i in range(50)))
    with pytest.raises(ValueError, match="50 distinct values for 50 rows"):
        datasets.load_csv(ints)
    X, y = datasets.load_csv(ints, target=-1)  # given: taken as it is
    assert len(np.unique(y)) == 50


def test_csv_index_column_of_to_csv_is_dropped_with_a_warning(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(IRIS_ROWS, columns=["a", "b", "c", "d", "species"]).astype(float)
    frame["species"] = frame["species"].astype(int)
    path = tmp_path / "f.csv"
    frame.to_csv(path)  # writes the index as an unnamed first column
    with pytest.warns(UserWarning, match="first column .* is a row index"):
        X, y = datasets.load_csv(path)
    assert X.shape == (6, 4)
    np.testing.assert_array_equal(X[:, 0], frame["a"])


def test_csv_text_and_missing_values_name_column_and_line(tmp_path):
    head = "a,b,c,label\n"
    path = _write(tmp_path, "f.csv", head + "1,2,3,0\n4,oops,6,1\n7,8,9,0\n")
    with pytest.raises(ValueError, match=r"f.csv', line 3, column 'b': 'oops' is not a number"):
        datasets.load_csv(path)
    path = _write(tmp_path, "g.csv", head + "1,2,3,0\n4,5,6,1\n7,,9,0\n")
    with pytest.raises(ValueError, match=r"line 4, column 'b': missing value"):
        datasets.load_csv(path)
    path = _write(tmp_path, "h.csv", head + "1,2,3,0\n4,5,6,\n")
    with pytest.raises(ValueError, match=r"line 3: missing label in column 'label'"):
        datasets.load_csv(path)
    with pytest.raises(ValueError, match="has a header but no data rows"):
        datasets.load_csv(_write(tmp_path, "e.csv", head))
    text = "1;2;3\n4;5;6\n"
    with pytest.raises(ValueError, match="1 column with delimiter ','"):
        datasets.load_csv(_write(tmp_path, "s.csv", text), delimiter=",")


def test_csv_header_can_be_forced_off(tmp_path):
    # A first line of names is guessed from text; --no-header says it is data.
    path = _write(tmp_path, "f.csv", "".join(",".join(r) + "\n" for r in IRIS_ROWS))
    X, y = datasets.load_csv(path, header=False)
    assert X.shape == (6, 4)
    X, y = datasets.load_csv(path, header=True)  # the first row taken as names
    assert X.shape == (5, 4)


def test_csv_long_reads_show_progress(tmp_path, monkeypatch, capsys):
    text = "a,b,label\n" + "".join(f"{i % 7},{i % 5},{i % 3}\n" for i in range(3000))
    path = _write(tmp_path, "big.csv", text)
    want = datasets.load_csv(path)
    monkeypatch.setattr(datasets, "_PROGRESS_BYTES", 1)
    got = datasets.load_csv(path, progress=True)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert "reading big.csv" in capsys.readouterr().err


@pytest.mark.parametrize("zero_based", [False, True])
@pytest.mark.parametrize("part_bytes", [1, 97, 1000])
def test_large_svmlight_files_read_in_parts_behind_a_bar(
    tmp_path, monkeypatch, capsys, zero_based, part_bytes
):
    from sklearn.datasets import load_svmlight_file

    X = sp.random(120, 40, density=0.15, format="lil", random_state=1)
    X[3, 0] = 2.5  # index 0 (or 1, one-based) occurs
    X = X.tocsr()
    y = np.random.default_rng(1).integers(0, 4, size=120)
    path = tmp_path / "big.svm"
    dump_svmlight_file(X, y, str(path), zero_based=zero_based)
    want_X, want_y = load_svmlight_file(str(path))
    monkeypatch.setattr(datasets, "_PROGRESS_BYTES", part_bytes)
    got_X, got_y = datasets.load_svmlight(path, progress=True)
    assert got_X.format == "csr" and got_X.shape == want_X.shape
    assert (got_X != want_X).nnz == 0
    np.testing.assert_array_equal(got_y, want_y)
    assert "reading big.svm" in capsys.readouterr().err
    got_X, _ = datasets.load_svmlight(path, n_features=45, progress=True)
    assert got_X.shape == (120, 45) and (got_X[:, : want_X.shape[1]] != want_X).nnz == 0
    with pytest.raises(ValueError, match=r"big.svm'.*n_features was set to 30, but the file"):
        datasets.load_svmlight(path, n_features=30, progress=True)
    # A bad line late in the file is named by its number as well.
    lines = path.read_text().splitlines()
    lines[100] = "1 x:2"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"big.svm', line 101: not a svmlight"):
        datasets.load_svmlight(path, progress=True)
    # Only comments and blank lines: no samples, as the whole-file reader gives.
    path.write_text("# nothing\n\n" * 20)
    got_X, got_y = datasets.load_svmlight(path, progress=True)
    assert got_X.shape[0] == 0 and got_y.shape == (0,)


def test_svmlight_errors_name_the_file_and_line(tmp_path):
    path = _write(tmp_path, "data.svm", "0 1:0.5 3:1\n1 2:1.5\n2 x:1\n")
    with pytest.raises(ValueError, match=r"data.svm', line 3: not a svmlight"):
        datasets.load_svmlight(path)
    csv_path = _write(tmp_path, "iris.csv", "sepal,petal,label\n1,2,0\n")
    with pytest.raises(ValueError, match=r"iris.csv', line 1: not a svmlight"):
        datasets.load_svmlight(csv_path)
