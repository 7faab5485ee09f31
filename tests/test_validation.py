"""Malformed arguments: the exception type, and a message that says what was wrong.

Every case checks the type (TypeError, ValueError or IndexError) and that the
message names the argument and shows what was expected: both shapes for a
shape mismatch, the value and its position for an out-of-range label. The
inputs of a call that raised are checked to be unchanged.

scipy's drop-ins (softmax, log_softmax, logsumexp) raise what scipy raises;
tests/test_special.py holds them to that. Here they appear only for the
arguments scipy does not have (n_threads, out=).
"""

import warnings

import numpy as np
import pytest

import fastsoftmax as fs

XENT = ["cross_entropy", "cross_entropy_with_grad", "cross_entropy_backward"]
GRAD = ["cross_entropy_with_grad", "cross_entropy_backward"]
SPECIAL = ["softmax", "log_softmax", "logsumexp"]


def scores(shape=(4, 3), dtype=np.float64):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def labels(shape=(4,), n_classes=3):
    return (np.arange(int(np.prod(shape))) % n_classes).reshape(shape)


def loss_shape(x):
    x = np.asarray(x)
    if x.ndim == 0:
        return ()
    return () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]


def call(name, x, target, *args, lse=None, **kwargs):
    """Call one of the cross-entropy functions; the backward gets an lse of the right shape."""
    fn = getattr(fs, name)
    if name == "cross_entropy_backward":
        if lse is None:
            lse = np.zeros(loss_shape(x))
        return fn(x, target, lse, *args, **kwargs)
    return fn(x, target, *args, **kwargs)


def check_raises(exc_type, fragments, fn, *args, **kwargs):
    """fn(*args, **kwargs) raises exc_type with every fragment in its message.

    The array arguments are compared before and after: a call that raises
    leaves them alone.
    """
    arrays = [a for a in list(args) + list(kwargs.values()) if isinstance(a, np.ndarray)]
    before = [a.copy() for a in arrays]
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)
    return info.value


# ------------------------------------------------------------------- input


BAD_INPUT_DTYPES = [
    pytest.param(np.zeros((4, 3), dtype=object), "object", id="object"),
    pytest.param(np.array([["a", "b", "c"]] * 4), "<U1", id="str"),
    pytest.param(np.zeros((4, 3), dtype=np.complex128), "complex128", id="complex"),
    pytest.param(np.zeros((4, 3), dtype=bool), "bool", id="bool"),
    pytest.param(np.zeros((4, 3), dtype=np.int64), "int64", id="int64"),
    pytest.param(np.zeros((4, 3), dtype=np.uint8), "uint8", id="uint8"),
    pytest.param(np.zeros((4, 3), dtype=np.longdouble), "float128", id="longdouble"),
    pytest.param(np.zeros((4, 3), dtype=[("a", "f8")]), "('a', '<f8')", id="structured"),
]


@pytest.mark.parametrize("x, dtype_text", BAD_INPUT_DTYPES)
@pytest.mark.parametrize("name", XENT)
def test_input_dtype(name, x, dtype_text):
    if dtype_text == "float128" and np.dtype(np.longdouble) == np.float64:
        dtype_text = "float64"  # long double is double here: a valid input
        pytest.skip("long double is float64 on this platform")
    check_raises(
        TypeError,
        ["input", "float32, float64, float16 or bfloat16", dtype_text],
        call,
        name,
        x,
        labels(),
    )


@pytest.mark.parametrize("name", XENT)
def test_input_zero_dimensional(name):
    check_raises(
        ValueError, ["input", "0-d"], call, name, np.float64(1.0), np.int64(0), lse=np.float64(0.0)
    )


@pytest.mark.parametrize("shape", [(4, 0), (0,), (2, 0, 5)])
@pytest.mark.parametrize("name", XENT)
def test_input_without_classes(name, shape):
    x = np.zeros(shape)
    check_raises(
        ValueError, ["input", str(shape)], call, name, x, np.zeros(loss_shape(x), dtype=np.int64)
    )


# ------------------------------------------------------------------ target


TARGET_SHAPES = [
    # (input shape, wrong class-index target shape, the expected one)
    ((4, 3), (3,), (4,)),
    ((4, 3), (4, 1), (4,)),
    ((4, 3), (), (4,)),
    ((4, 3), (1, 4), (4,)),
    ((3,), (1,), ()),
    ((2, 3, 5), (2, 4), (2, 5)),
    ((2, 3, 5), (2,), (2, 5)),
    ((2, 3, 5, 4), (2, 4, 5), (2, 5, 4)),
]


@pytest.mark.parametrize("x_shape, t_shape, expected", TARGET_SHAPES)
@pytest.mark.parametrize("name", XENT)
def test_target_shape_shows_both_shapes(name, x_shape, t_shape, expected):
    x = scores(x_shape)
    t = np.zeros(t_shape, dtype=np.int64)
    check_raises(
        ValueError, ["target", str(t_shape), str(expected), str(x_shape)], call, name, x, t
    )


@pytest.mark.parametrize("t_shape", [(4, 4), (3, 3), (4,), (3, 4)])
@pytest.mark.parametrize("name", XENT)
def test_probability_target_shape_shows_both_shapes(name, t_shape):
    # A float target holds class probabilities: it must have the input's shape.
    x = scores((4, 3))
    q = np.full(t_shape, 1 / 3)
    check_raises(ValueError, ["target", "probabilities", str(t_shape), "(4, 3)"], call, name, x, q)


@pytest.mark.parametrize(
    "t",
    [
        pytest.param(np.array([0.0, 1.5, 2.0, 1.0]), id="non-integer"),
        pytest.param(np.array([0.0, 1.0, 2.0, 1.0]), id="integral-floats"),
        pytest.param(np.array([0.0, 1.0, 2.0, 1.0], dtype=np.float32), id="float32"),
        pytest.param([0.0, 1.0, 2.0, 1.0], id="list-of-floats"),
    ],
)
@pytest.mark.parametrize("name", XENT)
def test_float_class_indices(name, t):
    """Class indices given as floats are taken for probabilities, whose shape is wrong."""
    check_raises(
        ValueError, ["target", "class probabilities", "(4,)", "(4, 3)"], call, name, scores(), t
    )


OUT_OF_RANGE = [
    # (input shape, target, the bad value as printed, its position as printed)
    ((4, 3), np.array([0, 1, 5, 1]), "5", "(2,)"),
    ((4, 3), np.array([0, -1, 2, 1]), "-1", "(1,)"),
    ((4, 3), np.array([0, 1, 2, 3]), "3", "(3,)"),  # == n_classes
    ((4, 3), np.array([0, 1, 2, -101]), "-101", "(3,)"),  # next to ignore_index
    ((4, 3), np.array([0, 7, 9, 1], dtype=np.int8), "7", "(1,)"),  # the first one
    ((4, 3), np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64), str(2**64 - 1), "(3,)"),
    ((4, 3), np.array([0, 1, 2**63, 1], dtype=np.uint64), str(2**63), "(2,)"),
    ((4, 3), np.array([0, 1, -(2**63), 1]), str(-(2**63)), "(2,)"),
    ((4, 3), np.array([0, 1, 300, 1], dtype=np.uint16), "300", "(2,)"),
    ((2, 3, 2), np.array([[0, 1], [7, 1]]), "7", "(1, 0)"),
    ((2, 3, 2, 2), np.array([[[0, 1], [2, 1]], [[0, 1], [1, -5]]]), "-5", "(1, 1, 1)"),
    ((3,), np.int64(3), "3", ""),
]


@pytest.mark.parametrize("x_shape, t, value, position", OUT_OF_RANGE)
@pytest.mark.parametrize("name", XENT)
def test_label_out_of_range_shows_value_and_position(name, x_shape, t, value, position):
    fragments = ["target", f"target {value} ", f"{x_shape[0 if len(x_shape) == 1 else 1]} classes"]
    if position:
        fragments.append(f"position {position}")
    check_raises(IndexError, fragments, call, name, scores(x_shape), t)


@pytest.mark.parametrize("where", [5, 4095, 4096, 9000])
@pytest.mark.parametrize("name", XENT)
def test_label_out_of_range_in_a_long_target(name, where):
    """Contiguous int64 labels take a check of their own, by blocks of 4096:
    the first bad label of any block, after ignored ones and a second bad one."""
    t = np.arange(10000) % 3
    t[::7] = -100
    t[where] = 3
    t[where + 11] = 4
    check_raises(
        IndexError, ["target 3 ", f"position ({where},)"], call, name, scores((10000, 3)), t
    )


@pytest.mark.parametrize("name", XENT)
def test_label_out_of_range_with_weights(name):
    check_raises(
        IndexError,
        ["target 3 ", "position (1,)"],
        call,
        name,
        scores(),
        np.array([0, 3, 1, 1]),
        weight=np.ones(3),
    )


@pytest.mark.parametrize("name", XENT)
def test_ignore_index_is_the_only_exception_to_the_range(name):
    # -100 is ignored by default, 5 is not; with ignore_index=5 it is the other way round.
    t = np.array([0, -100, 5, 1])
    check_raises(IndexError, ["target 5 ", "position (2,)"], call, name, scores(), t)
    check_raises(
        IndexError,
        ["target -100 ", "position (1,)", "ignore_index=5"],
        call,
        name,
        scores(),
        t,
        ignore_index=5,
    )


@pytest.mark.parametrize(
    "t, dtype_text",
    [
        pytest.param(np.array([0, 1, 1, 0], dtype=bool), "bool", id="bool"),
        pytest.param(np.array([0, 1, 2, 1], dtype=np.complex128), "complex128", id="complex"),
        pytest.param(np.array([0, 1, 2, 1], dtype=object), "object", id="object"),
        pytest.param(np.array(["0", "1", "2", "1"]), "<U1", id="str"),
        pytest.param(None, "object", id="None"),
        pytest.param(2**70, "object", id="huge-python-int"),
    ],
)
@pytest.mark.parametrize("name", XENT)
def test_target_dtype(name, t, dtype_text):
    check_raises(TypeError, ["target", "integer", "float", dtype_text], call, name, scores(), t)


@pytest.mark.parametrize("ignore_index", [0, 2, 100])
@pytest.mark.parametrize("name", XENT)
def test_ignore_index_with_probability_target(name, ignore_index):
    q = np.full((4, 3), 1 / 3)
    check_raises(
        ValueError,
        ["ignore_index", str(ignore_index)],
        call,
        name,
        scores(),
        q,
        ignore_index=ignore_index,
    )


@pytest.mark.parametrize("ignore_index", [1.0, 1.5, "1", None, np.float64(1)], ids=repr)
@pytest.mark.parametrize("name", XENT)
def test_ignore_index_type(name, ignore_index):
    check_raises(
        TypeError,
        ["ignore_index", repr(ignore_index)],
        call,
        name,
        scores(),
        labels(),
        ignore_index=ignore_index,
    )


# ------------------------------------------------------------------ weight


@pytest.mark.parametrize(
    "w, shape_text",
    [
        pytest.param(np.ones(4), "(4,)", id="too-long"),
        pytest.param(np.ones(2), "(2,)", id="too-short"),
        pytest.param(np.ones(0), "(0,)", id="empty"),
        pytest.param(np.ones((1, 3)), "(1, 3)", id="2-d"),
        pytest.param(2.0, "()", id="scalar"),
    ],
)
@pytest.mark.parametrize("name", XENT)
def test_weight_length(name, w, shape_text):
    check_raises(
        ValueError, ["weight", shape_text, "(3,)"], call, name, scores(), labels(), weight=w
    )


@pytest.mark.parametrize(
    "w, dtype_text",
    [
        pytest.param(np.ones(3, dtype=np.complex128), "complex128", id="complex"),
        pytest.param(np.ones(3, dtype=bool), "bool", id="bool"),
        pytest.param(np.array([1, None, 2], dtype=object), "object", id="object"),
        pytest.param(np.array(["1", "2", "3"]), "<U1", id="str"),
    ],
)
@pytest.mark.parametrize("name", XENT)
def test_weight_dtype(name, w, dtype_text):
    check_raises(TypeError, ["weight", dtype_text], call, name, scores(), labels(), weight=w)


# --------------------------------------------------------- scalar options


@pytest.mark.parametrize(
    "value", [-0.1, 1.5, -1e-300, 1 + 1e-12, np.nan, np.inf, -np.inf], ids=repr
)
@pytest.mark.parametrize("name", XENT)
def test_label_smoothing_range(name, value):
    check_raises(
        ValueError,
        ["label_smoothing", "[0", "1", repr(float(value))],
        call,
        name,
        scores(),
        labels(),
        label_smoothing=value,
    )


@pytest.mark.parametrize("value", ["0.1", None, 0.1j, np.array([0.1]), True], ids=repr)
@pytest.mark.parametrize("name", XENT)
def test_label_smoothing_type(name, value):
    check_raises(
        TypeError, ["label_smoothing"], call, name, scores(), labels(), label_smoothing=value
    )


@pytest.mark.parametrize(
    "value", ["avg", "MEAN", "", None, "elementwise_mean", 0, ("mean",)], ids=repr
)
@pytest.mark.parametrize("name", XENT)
def test_unknown_reduction(name, value):
    check_raises(
        ValueError,
        ["reduction", "'mean'", "'sum'", "'none'", repr(value)],
        call,
        name,
        scores(),
        labels(),
        reduction=value,
    )


@pytest.mark.parametrize("name", XENT)
def test_reduction_array(name):
    check_raises(
        ValueError,
        ["reduction"],
        call,
        name,
        scores(),
        labels(),
        reduction=np.array(["mean", "sum"]),
    )


@pytest.mark.parametrize("value", [-1.0, -1e-9, np.nan, -np.inf], ids=repr)
@pytest.mark.parametrize("name", XENT)
def test_z_loss_range(name, value):
    check_raises(
        ValueError, ["z_loss", repr(float(value))], call, name, scores(), labels(), z_loss=value
    )


@pytest.mark.parametrize("value", ["1", None, 1j], ids=repr)
@pytest.mark.parametrize("name", XENT)
def test_z_loss_type(name, value):
    check_raises(TypeError, ["z_loss"], call, name, scores(), labels(), z_loss=value)


@pytest.mark.parametrize("value", [0, 0.0, -1.0, np.inf, np.nan], ids=repr)
@pytest.mark.parametrize("name", XENT)
def test_softcap_range(name, value):
    check_raises(
        ValueError,
        ["softcap", "positive", repr(float(value))],
        call,
        name,
        scores(),
        labels(),
        softcap=value,
    )


@pytest.mark.parametrize("value", ["30", 1j, [30.0]], ids=repr)
@pytest.mark.parametrize("name", XENT)
def test_softcap_type(name, value):
    check_raises(TypeError, ["softcap"], call, name, scores(), labels(), softcap=value)


# --------------------------------------------------------------- n_threads


def call_any(name, x, **kwargs):
    if name in SPECIAL:
        return getattr(fs, name)(x, axis=-1, **kwargs)
    return call(name, x, labels(x.shape[:1], x.shape[-1]), **kwargs)


@pytest.mark.parametrize("value", [0, -1, -(2**40)], ids=repr)
@pytest.mark.parametrize("name", SPECIAL + XENT)
def test_n_threads_range(name, value):
    check_raises(
        ValueError, ["n_threads", "positive", str(value)], call_any, name, scores(), n_threads=value
    )


@pytest.mark.parametrize("value", [1.5, 2.0, "2", True, np.float64(2), [2], 2j], ids=repr)
@pytest.mark.parametrize("name", SPECIAL + XENT)
def test_n_threads_type(name, value):
    check_raises(TypeError, ["n_threads", repr(value)], call_any, name, scores(), n_threads=value)


@pytest.mark.parametrize("name", SPECIAL + XENT)
def test_n_threads_checked_before_anything_else(name):
    # Even an input that would fail later is not looked at first.
    check_raises(ValueError, ["n_threads"], call_any, name, scores((2, 5)), n_threads=0)


# -------------------------------------------------------------- grad_output


@pytest.mark.parametrize("name", GRAD)
def test_grad_output_shape_for_none(name):
    check_raises(
        ValueError,
        ["grad_output", "(3,)", "(4,)", "'none'"],
        call,
        name,
        scores(),
        labels(),
        reduction="none",
        grad_output=np.ones(3),
    )


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", GRAD)
def test_grad_output_not_scalar(name, reduction):
    check_raises(
        ValueError,
        ["grad_output", "scalar", "(4,)", reduction],
        call,
        name,
        scores(),
        labels(),
        reduction=reduction,
        grad_output=np.ones(4),
    )


BAD_GRAD_OUTPUT = [
    pytest.param("mean", 1j, id="mean-complex"),
    pytest.param("mean", "2", id="mean-str"),
    pytest.param("mean", "a", id="mean-non-numeric-str"),
    pytest.param("mean", object(), id="mean-object"),
    pytest.param("sum", np.array(True), id="sum-bool"),
    pytest.param("none", np.ones(4, dtype=np.complex128), id="none-complex"),
    pytest.param("none", np.array(["1"] * 4), id="none-str"),
    pytest.param("none", np.ones(4, dtype=bool), id="none-bool"),
    pytest.param("none", np.ones(4, dtype=object), id="none-object"),
]


@pytest.mark.parametrize("reduction, value", BAD_GRAD_OUTPUT)
@pytest.mark.parametrize("name", GRAD)
def test_grad_output_dtype(name, reduction, value):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumPy's ComplexWarning is not what is tested
        check_raises(
            TypeError,
            ["grad_output"],
            call,
            name,
            scores(),
            labels(),
            reduction=reduction,
            grad_output=value,
        )


# ---------------------------------------------------------------------- lse


@pytest.mark.parametrize(
    "x_shape, lse_shape, expected",
    [
        ((4, 3), (3,), "(4,)"),
        ((4, 3), (4, 1), "(4,)"),
        ((4, 3), (), "(4,)"),
        ((3,), (1,), "()"),
        ((2, 3, 5), (2,), "(2, 5)"),
    ],
)
def test_lse_shape(x_shape, lse_shape, expected):
    x = scores(x_shape)
    check_raises(
        ValueError,
        ["lse", str(lse_shape), expected, str(x_shape)],
        fs.cross_entropy_backward,
        x,
        np.zeros(loss_shape(x), dtype=np.int64),
        np.zeros(lse_shape),
    )


@pytest.mark.parametrize(
    "lse, dtype_text",
    [
        pytest.param(np.zeros(4, dtype=np.complex128), "complex128", id="complex"),
        pytest.param(np.zeros(4, dtype=bool), "bool", id="bool"),
        pytest.param(np.zeros(4, dtype=object), "object", id="object"),
        pytest.param(np.array(["1"] * 4), "<U1", id="str"),
    ],
)
def test_lse_dtype(lse, dtype_text):
    check_raises(TypeError, ["lse", dtype_text], fs.cross_entropy_backward, scores(), labels(), lse)


# ---------------------------------------------------------------------- out=


@pytest.mark.parametrize("name", GRAD)
def test_out_not_an_array(name):
    check_raises(
        TypeError,
        ["out", "numpy.ndarray", "list"],
        call,
        name,
        scores(),
        labels(),
        out=np.zeros((4, 3)).tolist(),
    )


@pytest.mark.parametrize("shape", [(3, 4), (4, 3, 1), (12,), (4, 4)])
@pytest.mark.parametrize("name", GRAD)
def test_out_shape(name, shape):
    check_raises(
        ValueError,
        ["out", str(shape), "(4, 3)"],
        call,
        name,
        scores(),
        labels(),
        out=np.zeros(shape),
    )


@pytest.mark.parametrize(
    "x_dtype, out_dtype",
    [
        (np.float64, np.float32),
        (np.float32, np.float64),
        (np.float64, np.int64),
        (np.float64, np.complex128),
        (np.float64, np.dtype(">f8")),
    ],
    ids=str,
)
@pytest.mark.parametrize("name", GRAD)
def test_out_dtype(name, x_dtype, out_dtype):
    check_raises(
        TypeError,
        [
            "out",
            np.dtype(out_dtype).str
            if np.dtype(out_dtype).byteorder == ">"
            else str(np.dtype(out_dtype)),
            str(np.dtype(x_dtype)),
        ],
        call,
        name,
        scores(dtype=x_dtype),
        labels(),
        out=np.zeros((4, 3), out_dtype),
    )


@pytest.mark.parametrize("layout", ["F", "sliced", "negative", "transposed"])
@pytest.mark.parametrize("name", GRAD)
def test_out_layout(name, layout):
    out = {
        "F": np.zeros((4, 3), order="F"),
        "sliced": np.zeros((8, 3))[::2],
        "negative": np.zeros((4, 3))[::-1],
        "transposed": np.zeros((3, 4)).T,
    }[layout]
    check_raises(ValueError, ["out", "C-contiguous"], call, name, scores(), labels(), out=out)


@pytest.mark.parametrize("name", GRAD)
def test_out_read_only(name):
    out = np.zeros((4, 3))
    out.setflags(write=False)
    check_raises(ValueError, ["out", "read-only"], call, name, scores(), labels(), out=out)
    check_raises(
        ValueError,
        ["out"],
        call,
        name,
        scores(),
        labels(),
        out=np.broadcast_to(np.zeros(3), (4, 3)),
    )


@pytest.mark.parametrize("name", GRAD)
def test_out_and_inplace(name):
    check_raises(
        ValueError,
        ["out", "inplace"],
        call,
        name,
        scores(),
        labels(),
        out=np.zeros((4, 3)),
        inplace=True,
    )


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_special_out_messages(name):
    fn = getattr(fs, name)
    x = scores()
    check_raises(ValueError, ["out", "(3, 4)", "(4, 3)"], fn, x, axis=1, out=np.zeros((3, 4)))
    check_raises(
        TypeError, ["out", "float32", "float64"], fn, x, axis=1, out=np.zeros((4, 3), np.float32)
    )
    read_only = np.zeros((4, 3))
    read_only.setflags(write=False)
    check_raises(ValueError, ["out", "read-only"], fn, x, axis=1, out=read_only)
    check_raises(TypeError, ["out", "list"], fn, x, axis=1, out=[[0.0] * 3] * 4)
    # The NumPy fallback (integer input) checks out= as well.
    check_raises(
        ValueError,
        ["out", "(3, 4)", "(4, 3)"],
        fn,
        np.ones((4, 3), np.int64),
        axis=1,
        out=np.zeros((3, 4)),
    )


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_special_axis_out_of_range_message(name):
    # The type is scipy's (numpy.exceptions.AxisError); its message names the axis.
    check_raises(ValueError, ["axis 2", "dimension 2"], getattr(fs, name), scores(), axis=2)
    check_raises(ValueError, ["axis -3", "dimension 2"], getattr(fs, name), scores(), axis=-3)


# ----------------------------------------------------------------- inplace=


@pytest.mark.parametrize("name", GRAD)
def test_inplace_read_only(name):
    x = scores()
    x.setflags(write=False)
    check_raises(ValueError, ["inplace", "read-only"], call, name, x, labels(), inplace=True)


@pytest.mark.parametrize("name", GRAD)
def test_inplace_broadcast_view(name):
    x = np.broadcast_to(scores((1, 3)), (4, 3))
    check_raises(ValueError, ["inplace", "read-only"], call, name, x, labels(), inplace=True)


@pytest.mark.parametrize(
    "x",
    [
        pytest.param(scores().tolist(), id="list"),
        pytest.param(scores().astype(">f8"), id="byte-swapped"),
    ],
)
@pytest.mark.parametrize("name", GRAD)
def test_inplace_needs_a_native_array(name, x):
    check_raises(TypeError, ["inplace", "numpy.ndarray"], call, name, x, labels(), inplace=True)


# ------------------------------------------------- aliasing and odd layouts


def _field(values):
    """values as the float64 field of a packed record array: strides of 12 bytes."""
    values = np.asarray(values, dtype=np.float64)
    rec = np.zeros(values.shape, dtype=[("v", "f8"), ("pad", "i4")])
    rec["v"] = values
    view = rec["v"]
    assert view.strides[-1] % 8 != 0
    return view


def _unaligned(values):
    """A copy of values whose data pointer is not aligned for its dtype."""
    values = np.asarray(values)
    raw = np.zeros(values.nbytes + 1, dtype=np.uint8)[1:]
    view = raw.view(values.dtype).reshape(values.shape)
    view[...] = values
    assert not view.flags.aligned or values.dtype.itemsize == 1
    return view


@pytest.mark.parametrize(
    "layout", [_unaligned, lambda a: np.asarray(a)[::-1][::-1]], ids=["unaligned", "view"]
)
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_arguments_of_any_alignment(reduction, layout):
    """Unaligned targets, weights, lse and grad_output give the aligned results."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, 6)
    w = rng.random(5) + 0.5
    g = rng.standard_normal(6) if reduction == "none" else 1.5
    loss, grad, lse = fs.cross_entropy_with_grad(
        x, t, w, reduction=reduction, grad_output=g, return_lse=True
    )
    g2 = layout(g) if reduction == "none" else g
    loss2, grad2, lse2 = fs.cross_entropy_with_grad(
        layout(x), layout(t), layout(w), reduction=reduction, grad_output=g2, return_lse=True
    )
    np.testing.assert_array_equal(loss2, loss)
    np.testing.assert_array_equal(grad2, grad)
    np.testing.assert_array_equal(lse2, lse)
    back = fs.cross_entropy_backward(
        layout(x), layout(t), layout(lse), layout(w), reduction=reduction, grad_output=g2
    )
    np.testing.assert_allclose(back, grad, rtol=1e-14, atol=1e-15)
    q = rng.random((6, 5))
    np.testing.assert_array_equal(
        fs.cross_entropy(layout(x), layout(q), reduction=reduction),
        fs.cross_entropy(x, q, reduction=reduction),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_inputs_are_aligned(dtype):
    from fastsoftmax._layout import as_kernel_input

    x = _unaligned(np.arange(12.0, dtype=dtype).reshape(3, 4))
    assert x.flags.c_contiguous and not x.flags.aligned
    assert as_kernel_input(x).flags.aligned


def test_argument_buffers_are_aligned():
    """Unaligned contiguous target, weight, grad_output and lse are copied:
    the kernels load whole, aligned elements (UBSan checks it)."""
    from fastsoftmax._xent import _Call

    x = np.zeros((6, 5))
    t = _unaligned(np.arange(6) % 5)
    w = _unaligned(np.ones(5))
    g = _unaligned(np.ones(6))
    call = _Call(x, t, w, -100, "none", 0.0, 0.0, None, None)
    assert call.t2.flags.aligned
    assert call.weight.flags.aligned
    assert call.grad_scale(g)[0].flags.aligned
    # lse: the same gradient from an unaligned copy (the sanitizer build checks the loads)
    x = np.random.default_rng(3).standard_normal((6, 5))
    _, grad, lse = fs.cross_entropy_with_grad(x, t, w, reduction="none", return_lse=True)
    back = fs.cross_entropy_backward(x, t, _unaligned(lse), w, reduction="none")
    np.testing.assert_array_equal(back, fs.cross_entropy_backward(x, t, lse, w, reduction="none"))
    np.testing.assert_allclose(back, grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", XENT)
def test_record_fields_as_input_target_weight(name):
    """float64 fields of record arrays (strides not a multiple of 8) as arguments."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 5))
    q = rng.random((6, 5))
    w = rng.random(5)
    lse = fs.cross_entropy_with_grad(x, q, w, reduction="none", return_lse=True)[2]
    expected = call(name, x, q, w, reduction="none", lse=lse)
    got = call(name, _field(x), _field(q), _field(w), reduction="none", lse=_field(lse))
    if not isinstance(expected, tuple):
        expected, got = (expected,), (got,)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", GRAD)
def test_record_field_as_grad_output(name):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, 6)
    g = rng.standard_normal(6)
    lse = fs.cross_entropy_with_grad(x, t, reduction="none", return_lse=True)[2]
    expected = call(name, x, t, reduction="none", grad_output=g, lse=lse)
    got = call(name, x, t, reduction="none", grad_output=_field(g), lse=lse)
    if isinstance(expected, tuple):
        expected, got = expected[1], got[1]
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)


def _same_or_refused(fn, expected, *args, **kwargs):
    """fn(*args, **kwargs) gives ``expected``, or refuses the overlap with a ValueError."""
    try:
        got = fn(*args, **kwargs)
    except ValueError as exc:
        assert "out" in str(exc)
        return
    got = got[1] if isinstance(got, tuple) else got
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_out_is_the_probability_target():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 5))
    q = rng.random((6, 5))
    q /= q.sum(axis=1, keepdims=True)
    _, expected = fs.cross_entropy_with_grad(x, q)
    q2 = q.copy()
    _same_or_refused(fs.cross_entropy_with_grad, expected, x, q2, out=q2)


def test_out_is_the_transposed_input():
    rng = np.random.default_rng(7)
    x = np.asfortranarray(rng.standard_normal((5, 5)))
    t = rng.integers(0, 5, 5)
    _, expected = fs.cross_entropy_with_grad(x.copy(), t)
    _same_or_refused(fs.cross_entropy_with_grad, expected, x, t, out=x.T)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_special_out_is_the_transposed_input(name):
    x = np.random.default_rng(8).standard_normal((5, 5))
    expected = getattr(fs, name)(x.copy(), axis=1)
    _same_or_refused(getattr(fs, name), expected, x, axis=1, out=x.T)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, 1, None])
def test_special_out_is_the_input(name, axis):
    """out=x itself is a supported in-place call."""
    x = np.random.default_rng(9).standard_normal((5, 7))
    expected = getattr(fs, name)(x, axis=axis)
    assert getattr(fs, name)(x, axis=axis, out=x) is x
    np.testing.assert_allclose(x, expected, rtol=1e-13, atol=1e-15)
