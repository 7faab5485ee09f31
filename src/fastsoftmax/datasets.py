"""Data for training: scikit-learn's digits, MNIST IDX files, CSV and svmlight files.

Nothing here downloads: digits ships with scikit-learn, and the other
loaders read files already on disk.

- :func:`load_digits` -- the 8 x 8 digits of scikit-learn, scaled to [0, 1].
- :func:`load_mnist` -- MNIST or Fashion-MNIST from the standard IDX files
  (gzipped or not) in a folder.
- :func:`load_csv` -- a numeric CSV file with a label column (Kaggle-style).
- :func:`load_svmlight` -- a svmlight / libsvm file, as a sparse CSR matrix.
- :func:`load_dataset` -- one of the above from a short specification
  (``'digits'``, ``'mnist:DIR'``, ``'csv:PATH'``, ``'svmlight:PATH'``), split
  into training and test sets.
"""

import gzip
import io
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastsoftmax._typing import Array, DTypeLike, PathLike

__all__ = [
    "Dataset",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_svmlight",
    "read_idx",
]

# The four files of MNIST and Fashion-MNIST; each may also end in ".gz", and
# some copies spell "-idx3-" as ".idx3-".
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# IDX type codes: https://yann.lecun.com/exdb/mnist/ (data big-endian).
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Column names taken as the label when a CSV file has a header.
LABEL_NAMES = ("label", "labels", "target", "class", "y", "digit", "species")


@dataclass
class Dataset:
    """A data set split into training and test parts.

    Parameters
    ----------
    X_train : {ndarray, sparse matrix} of shape (n_train, n_features)
        Training features.
    X_test : {ndarray, sparse matrix} of shape (n_test, n_features)
        Test features.
    y_train : ndarray of shape (n_train,)
        Training labels.
    y_test : ndarray of shape (n_test,)
        Test labels.
    name : str
        What was loaded, for reports.
    fixed_split : bool
        True when the test set came with the data (MNIST's t10k files)
        rather than from a random split.
    scaled : bool
        True when the features are already in [0, 1] (digits, MNIST).
    """

    X_train: object
    X_test: object
    y_train: np.ndarray
    y_test: np.ndarray
    name: str
    fixed_split: bool = False
    scaled: bool = False

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def classes(self) -> Array:
        return np.unique(np.concatenate([self.y_train, self.y_test]))


def load_digits(*, scale: bool = True, dtype: DTypeLike = np.float64) -> tuple[Array, Array]:
    """The 8 x 8 handwritten digits of scikit-learn (1797 samples, 64 features, 10 classes).

    Parameters
    ----------
    scale : bool, default=True
        Divide the pixel values (0 to 16) by 16.
    dtype : dtype, default=np.float64
        Floating dtype of ``X``.

    Returns
    -------
    X : ndarray of shape (1797, 64)
        The 8 x 8 images, one row each.
    y : ndarray of shape (1797,)
        Digits 0 to 9.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    X, y = sk_load_digits(return_X_y=True)
    X = X.astype(dtype)
    if scale:
        X /= 16
    return X, y


def read_idx(path: PathLike) -> Array:
    """Read an IDX file (the format of MNIST), gzipped or not.

    Parameters
    ----------
    path : str or path-like
        The file. Gzip compression is recognised from the content, not the name.

    Returns
    -------
    array : ndarray
        Of the shape and (native-endian) dtype the file's header gives.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(
            f"{os.fspath(path)!r} is not an IDX file (bad magic number {data[:4].hex() or 'empty'})"
        )
    dtype, ndim = _IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{os.fspath(path)!r}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{os.fspath(path)!r}: an IDX array of shape {shape} and dtype "
            f"{dtype} needs {expected} bytes, the file holds {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _find_idx(folder, name):
    """The path of one MNIST file in ``folder``, whichever of the usual spellings it has."""
    stems = [name, name.replace("-idx", ".idx")]
    for stem in stems:
        for candidate in (stem, stem + ".gz"):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
    return None


def load_mnist(
    path: PathLike, kind: str = "train", *, scale: bool = True, dtype: DTypeLike = np.float32
) -> tuple[Array, Array]:
    """MNIST or Fashion-MNIST from the standard IDX files in a folder.

    The folder holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``
    (``kind='train'``, 60000 images) and ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte`` (``kind='test'``, 10000 images), each
    possibly gzipped (``.gz``) and possibly spelled with ``.idx`` instead of
    ``-idx``. Any number of images of any size is accepted.

    Parameters
    ----------
    path : str or path-like
        The folder.
    kind : {'train', 'test'}, default='train'
        Which pair of files to read.
    scale : bool, default=True
        Divide the pixel values (0 to 255) by 255.
    dtype : dtype, default=np.float32
        Floating dtype of ``X``.

    Returns
    -------
    X : ndarray of shape (n_images, n_pixels)
        One flattened image a row.
    y : ndarray of shape (n_images,)
        Labels, as int64.

    Raises
    ------
    FileNotFoundError
        When the folder or one of the two files is missing; the message
        names the files expected.
    """
    if kind not in MNIST_FILES:
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}")
    folder = os.fspath(path)
    names = MNIST_FILES[kind]
    paths = [_find_idx(folder, name) for name in names]
    if None in paths:
        every = [n for pair in MNIST_FILES.values() for n in pair]
        missing = [n for n, p in zip(names, paths) if p is None]
        where = "is not a folder" if not os.path.isdir(folder) else f"lacks {' and '.join(missing)}"
        raise FileNotFoundError(
            f"MNIST data not found: {folder!r} {where}. load_mnist expects the four IDX "
            f"files of MNIST or Fashion-MNIST in one folder: {', '.join(every)} (each may "
            "be gzipped, ending in .gz)."
        )
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim < 2:
        raise ValueError(
            f"{paths[0]!r} holds an array of shape {images.shape}, "
            "expected images (n_images, rows, columns)"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{paths[1]!r} holds labels of shape {labels.shape} for "
            f"{images.shape[0]} images in {paths[0]!r}"
        )
    X = images.reshape(images.shape[0], -1).astype(dtype)
    if scale:
        X /= 255
    return X, labels.astype(np.int64)


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


# Delimiters the sniffer chooses from.
_DELIMITERS = ",;\t|"
# Files from this size read in chunks behind a progress bar (progress=True).
_PROGRESS_BYTES = 32 * 2**20


def _sniff(path, delimiter, header):
    """(delimiter, header) of a CSV file: those given, else read from its start."""
    import csv

    with open(path, newline="") as f:
        sample = f.read(64 * 1024)
    if not sample.strip():
        raise ValueError(f"{path!r} is empty")
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
        except csv.Error:  # one column, or no delimiter it recognises
            delimiter = ","
    lines = [line for line in sample.splitlines() if line.strip()]
    if header is None:
        # A first line with more non-numeric fields than the second holds names.
        def non_numeric(line):
            return sum(not _is_number(f.strip().strip("\"'")) for f in line.split(delimiter))

        header = non_numeric(lines[0]) > (non_numeric(lines[1]) if len(lines) > 1 else 0)
    return delimiter, header


def _read_frame(path, delimiter, header, progress):
    """The file as a DataFrame of strings and numbers (pandas' C reader)."""
    import pandas as pd

    options = dict(
        sep=delimiter,
        header=0 if header else None,
        skipinitialspace=True,
        skip_blank_lines=False,
        low_memory=False,
    )
    size = os.path.getsize(path)
    if not progress or size < _PROGRESS_BYTES:
        return pd.read_csv(path, **options)
    from tqdm.auto import tqdm

    parts = []
    with (
        open(path, "rb") as f,
        tqdm(
            total=size, unit="B", unit_scale=True, desc=f"reading {os.path.basename(path)}"
        ) as bar,
    ):
        for chunk in pd.read_csv(f, chunksize=200_000, **options):
            parts.append(chunk)
            bar.update(f.tell() - bar.n)
    return pd.concat(parts, ignore_index=True)


def _line(row, header):
    """The 1-based line of a data row (blank lines are rows: skip_blank_lines=False)."""
    return row + 1 + int(header)


def _column_name(frame, header, i):
    return repr(str(frame.columns[i])) if header else f"{i} (0-based)"


def _numeric(frame, i, header, path):
    """Column ``i`` as float64, or a ValueError naming the column, line and problem."""
    import pandas as pd

    col = frame.iloc[:, i]
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(values) & col.notna().to_numpy())
    missing = np.flatnonzero(col.isna().to_numpy())
    if bad.size or missing.size:
        row = min(bad[0] if bad.size else np.inf, missing[0] if missing.size else np.inf)
        row = int(row)
        where = f"{path!r}, line {_line(row, header)}, column {_column_name(frame, header, i)}"
        if missing.size and row == missing[0]:
            raise ValueError(f"{where}: missing value ({missing.size} in that column)")
        raise ValueError(
            f"{where}: {str(col.iloc[row])!r} is not a number (features must be numeric; "
            "choose a text column as the label with --target, or drop it)"
        )
    return values


def _is_index(frame, header):
    """True when the first column is an unnamed 0..n-1 row index (pandas' to_csv)."""
    if frame.shape[1] < 3:
        return False
    if header:
        name = str(frame.columns[0])
        if name.strip() and not name.startswith("Unnamed:"):
            return False
    elif frame.shape[0] < 3:
        return False
    values = frame.iloc[:, 0]
    if not np.issubdtype(values.dtype, np.integer):
        return False
    return bool(np.array_equal(values.to_numpy(), np.arange(len(values))))


def _labels(values):
    """Integer labels when every value is an integer, else the strings as they are."""
    values = np.char.strip(np.asarray(values, dtype=str), "\"' ")
    try:
        numbers = values.astype(np.float64)
    except ValueError:
        return values
    if np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)):
        return numbers.astype(np.int64)
    return numbers


def load_csv(
    path: PathLike,
    *,
    target: int | str | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    dtype: DTypeLike = np.float64,
    progress: bool = False,
) -> tuple[Array, Array]:
    """A CSV file of numeric features and one label column, such as Kaggle's data.

    Read by pandas' ``read_csv``. The delimiter (``,``, ``;``, tab or ``|``)
    and whether the first line is a header are found from the file's start
    unless given. An unnamed first column holding 0, 1, ..., n-1 (the index
    pandas' ``to_csv`` writes) is dropped, with a warning.

    Parameters
    ----------
    path : str or path-like
        The file.
    target : int or str, default=None
        The label column: its index (negative counts from the end) or its
        name in the header. By default the column named label, labels,
        target, class, y, digit or species (any case) when the header has one,
        else the last column.
    delimiter : str, default=None
        Field separator; None sniffs it.
    header : bool, default=None
        Whether the first line holds column names; None decides from the
        file (a first line with more non-numeric fields than the second).
    dtype : dtype, default=np.float64
        Floating dtype of ``X``.
    progress : bool, default=False
        Show a progress bar while reading files of 32 MiB or more.

    Returns
    -------
    X : ndarray of shape (n_samples, n_columns - 1)
        Every other column, as numbers.
    y : ndarray of shape (n_samples,)
        The labels: int64 when they are all integers, else str.

    Raises
    ------
    ValueError
        For a text or missing value in a feature column (naming the column
        and the 1-based line), a file without data rows, or a numeric label
        column that looks continuous (non-integer values, or more distinct
        values than a tenth of the rows, in a column not given as ``target``):
        that is not a classification target, and the message says which
        column was taken and how to choose another.
    """
    path = os.fspath(path)
    delimiter, header = _sniff(path, delimiter, header)
    frame = _read_frame(path, delimiter, header, progress)
    if frame.shape[0] == 0:
        raise ValueError(f"{path!r} has a header but no data rows")
    n_columns = frame.shape[1]
    if n_columns < 2:
        raise ValueError(
            f"{path!r} has {n_columns} column with delimiter {delimiter!r}; "
            "it needs features and a label column (give the delimiter with --delimiter)"
        )
    names = [str(c).strip() for c in frame.columns] if header else None
    if target is None and _is_index(frame, header):
        import warnings

        warnings.warn(
            f"{path!r}: the first column (unnamed, 0 to {frame.shape[0] - 1}) is a row "
            "index, as pandas' to_csv writes: it is dropped, not used as a feature",
            UserWarning,
            stacklevel=2,
        )
        frame = frame.iloc[:, 1:]
        names = names[1:] if names else None
        n_columns -= 1
    column, chosen = _target_column(path, target, names, n_columns)
    features = [i for i in range(n_columns) if i != column]
    X = np.empty((frame.shape[0], len(features)), dtype=dtype)
    for j, i in enumerate(features):
        X[:, j] = _numeric(frame, i, header, path)
    labels = frame.iloc[:, column]
    if labels.isna().any():
        row = int(np.flatnonzero(labels.isna().to_numpy())[0])
        raise ValueError(
            f"{path!r}, line {_line(row, header)}: missing label in column "
            f"{_column_name(frame, header, column)}"
        )
    y = _labels(labels.astype(str).to_numpy())
    # Non-integer numbers are never class labels (scikit-learn refuses them
    # too); many distinct integers are suspect only in a column taken by default.
    n_distinct = len(np.unique(y))
    many = chosen != "given" and y.dtype.kind == "i" and n_distinct > max(10, len(y) // 10)
    if y.dtype.kind == "f" or many:
        what = "non-integer values" if y.dtype.kind == "f" else f"{n_distinct} distinct values"
        raise ValueError(
            f"{path!r}: the label column {_column_name(frame, header, column)} ({chosen}) has "
            f"{what} for {len(y)} rows: it looks continuous, not a class label. Choose "
            "the label column with target= (--target NAME or INDEX on the command line)."
        )
    return X, y


def _target_column(path, target, names, n_columns):
    """(index, how it was chosen) of the label column."""
    if target is None:
        lowered = [n.lower() for n in names] if names else []
        named = [lowered.index(n) for n in LABEL_NAMES if n in lowered]
        if named:
            return named[0], "its name"
        return n_columns - 1, "the last column, by default"
    if isinstance(target, str):
        if names is None:
            raise ValueError(f"target={target!r} names a column, but {path!r} has no header")
        if target not in names:
            raise ValueError(f"no column named {target!r} in {path!r}; columns: {names}")
        return names.index(target), "given"
    column = int(target)
    if not -n_columns <= column < n_columns:
        raise ValueError(f"target={target} is out of range for {n_columns} columns")
    return column % n_columns, "given"


def load_svmlight(
    path: PathLike,
    *,
    n_features: int | None = None,
    dtype: DTypeLike = np.float64,
    progress: bool = False,
) -> tuple[Any, Array]:
    """A svmlight / libsvm file (``label index:value ...`` lines), as sparse CSR features.

    Parameters
    ----------
    path : str or path-like
        The file (``.gz`` and ``.bz2`` are decompressed).
    n_features : int, default=None
        Number of features; None infers it from the largest index.
    dtype : dtype, default=np.float64
        Floating dtype of ``X``.
    progress : bool, default=False
        Show a progress bar while reading an uncompressed file of 32 MiB or
        more (read then in parts of 32 MiB).

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features)
        The features, sparse.
    y : ndarray of shape (n_samples,)
        int64 when every label is an integer, else float64.
    """
    path = os.fspath(path)
    try:
        X, y = _read_svmlight(path, n_features, dtype, progress)
    except ValueError as e:
        line = _first_bad_svmlight_line(path)
        where = f"{path!r}, line {line}" if line else repr(path)
        raise ValueError(f"{where}: not a svmlight / libsvm line ({e})") from None
    if np.all(y == np.round(y)):
        y = y.astype(np.int64)
    return X, y


def _read_svmlight(path, n_features, dtype, progress):
    """scikit-learn's reader, in parts of _PROGRESS_BYTES behind a progress
    bar for a large uncompressed file (progress=True)."""
    import scipy.sparse as sp
    from sklearn.datasets import load_svmlight_file

    size = os.path.getsize(path)
    if not progress or size < _PROGRESS_BYTES or path.endswith((".gz", ".bz2")):
        return load_svmlight_file(path, n_features=n_features, dtype=dtype)
    from tqdm.auto import tqdm

    # The file is cut at line ends into parts of about _PROGRESS_BYTES, each
    # parsed with raw (zero-based) indices; as the whole-file reader's
    # zero_based='auto', they shift down by one when no index 0 occurs.
    parts, labels = [], []

    def parse(data):
        X, y = load_svmlight_file(io.BytesIO(data), dtype=dtype, zero_based=True)
        parts.append(X)
        labels.append(y)

    with (
        open(path, "rb") as f,
        tqdm(
            total=size, unit="B", unit_scale=True, desc=f"reading {os.path.basename(path)}"
        ) as bar,
    ):
        rest = b""
        while block := f.read(_PROGRESS_BYTES):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:
                parse(data[:cut])
            bar.update(len(block))
        if rest.strip() or not parts:
            parse(rest)
    width = max(X.shape[1] for X in parts)
    for X in parts:
        X.resize((X.shape[0], width))
    X = sp.vstack(parts, format="csr")
    shift = int(X.nnz > 0 and X.indices.min() > 0)
    width = (int(X.indices.max()) if X.nnz else 0) + 1 - shift
    X = X[:, shift : shift + width]
    if n_features is not None:
        if width > n_features:
            raise ValueError(
                f"n_features was set to {n_features}, but the file holds {width} features"
            )
        X.resize((X.shape[0], n_features))
    return X, np.concatenate(labels)


def _first_bad_svmlight_line(path):
    """The 1-based number of the first line that is not ``label [qid:q] i:v ...``."""
    import bz2

    opener = gzip.open if path.endswith(".gz") else bz2.open if path.endswith(".bz2") else open
    with opener(path, "rt", errors="replace") as f:
        for number, line in enumerate(f, 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if not _is_number(fields[0]):
                return number
            for field in fields[1:]:
                key, sep, value = field.partition(":")
                if not sep or not _is_number(value) or not (key == "qid" or key.isdigit()):
                    return number
    return None


def load_dataset(
    spec: str = "digits",
    *,
    test_size: float = 0.25,
    random_state: int = 0,
    target: int | str | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    progress: bool = False,
) -> Dataset:
    """Load a data set from a short specification and split it for training and testing.

    Parameters
    ----------
    spec : str, default='digits'
        ``'digits'``; ``'mnist:DIR'`` (the folder of the MNIST or
        Fashion-MNIST IDX files, whose t10k files are the test set);
        ``'csv:PATH'``; or ``'svmlight:PATH'``.
    test_size : float in (0, 1), default=0.25
        Fraction of the samples held out for testing (stratified by class
        when every class has at least two samples). Not used for MNIST.
    random_state : int, default=0
        Seed of the split.
    target : int or str, default=None
        Label column of a CSV file (see :func:`load_csv`).
    delimiter : str, default=None
        Field separator of a CSV file; None sniffs it.
    header : bool, default=None
        Whether a CSV file's first line holds column names; None decides.
    progress : bool, default=False
        Show a progress bar while reading a large CSV or svmlight file.

    Returns
    -------
    dataset : Dataset
        The training and test parts.
    """
    kind, _, location = spec.partition(":")
    kind = kind.lower()
    location = os.path.expanduser(location)
    if kind == "mnist":
        if not location:
            raise ValueError("mnist needs a folder: --data mnist:DIR")
        X_train, y_train = load_mnist(location, "train")
        X_test, y_test = load_mnist(location, "test")
        return Dataset(
            X_train, X_test, y_train, y_test, f"mnist:{location}", fixed_split=True, scaled=True
        )
    if kind == "digits":
        if location:
            raise ValueError(f"digits takes nothing after it: use --data digits, not {spec!r}")
        X, y = load_digits()
        scaled = True
    elif kind == "csv":
        if not location:
            raise ValueError("csv needs a file: csv:PATH")
        X, y = load_csv(
            location, target=target, delimiter=delimiter, header=header, progress=progress
        )
        scaled = False
    elif kind in ("svmlight", "libsvm"):
        if not location:
            raise ValueError("svmlight needs a file: svmlight:PATH")
        X, y = load_svmlight(location, progress=progress)
        scaled = False
    else:
        raise ValueError(
            f"unknown data set {spec!r}: use digits, mnist:DIR, csv:PATH or svmlight:PATH"
        )
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(y, return_counts=True)
    try:
        if counts.min() < 2:
            raise ValueError("a class has a single sample")
        parts = train_test_split(X, y, test_size=test_size, random_state=random_state, stratify=y)
    except ValueError:  # too few samples of a class, or too few test samples, to stratify
        parts = train_test_split(X, y, test_size=test_size, random_state=random_state)
    X_train, X_test, y_train, y_test = parts
    return Dataset(X_train, X_test, y_train, y_test, spec, scaled=scaled)
