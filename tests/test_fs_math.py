"""csrc/fs_math.h on its own: exp, the fast exp (and the 2-byte rows' shorter one),
log, log1p and tanh against correct references, at the ulp bounds its header
claims, and their special values.

Every float32 of the fast exp's range is checked (in C, against libm's
double exp, which is correctly rounded for float); the accurate float32 exp
on a stride through its whole range; float64 by dense sampling against long
double.
"""

import numpy as np
import pytest

from fastsoftmax import _kernels

EXP, EXP_FAST, LOG, LOG1P, TANH, EXP_HALF = 0, 1, 2, 3, 4, 5
CODES = {np.float32: _kernels.F32, np.float64: _kernels.F64}


def evaluate(fn, x):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _kernels.math_eval(x, y, fn, CODES[x.dtype.type])
    return y


def bits(value):
    return int(np.array(value, np.float32).view(np.uint32))


def ulps(y, ref):
    """|y - ref| in units of the float64 spacing at ref (ref in long double)."""
    spacing = np.spacing(np.abs(ref.astype(np.float64))).astype(np.longdouble)
    return np.abs((y.astype(np.longdouble) - ref) / spacing).astype(np.float64)


long_double = pytest.mark.skipif(
    np.finfo(np.longdouble).nmant <= np.finfo(np.float64).nmant,
    reason="long double is no wider than double here: no float64 reference",
)


def test_fast_float32_exp_on_every_float_of_its_range():
    # [-87, 0]: the bits of -0.0 up to those of -87.0.
    worst, above_one = _kernels.exp_f32_ulp(bits(-0.0), bits(-87.0), True, 2)
    assert worst < 1.25
    assert above_one < 2e-5 * (bits(-87.0) - bits(-0.0))


def test_half_rows_exp_on_every_float_of_its_range():
    # The 2-byte rows' degree-5 exp: 2.28 ulp at worst, 2% of the range above
    # 1 ulp, far below the 2^-8 and 2^-11 of the dtypes it is rounded to.
    worst, above_one = _kernels.exp_f32_ulp(bits(-0.0), bits(-87.0), 2, 2)
    assert worst < 2.5
    assert above_one < 0.025 * (bits(-87.0) - bits(-0.0))
    x = np.array([0.0, -0.0, -87.0, -43.5], dtype=np.float32)
    np.testing.assert_array_max_ulp(
        evaluate(EXP_HALF, x), np.exp(x.astype(np.float64)).astype(np.float32), maxulp=2
    )


@pytest.mark.parametrize(
    "lo, hi",
    [(-0.0, -87.0), (-87.0, -103.97208404541016), (0.0, 88.72283935546875)],
    ids=["fast range", "down to underflow", "up to overflow"],
)
def test_accurate_float32_exp_on_a_stride_through_its_range(lo, hi):
    # Every float of each range in 64 spans, each checked on its first 1/16.
    a, b = sorted((bits(lo), bits(hi)))
    step = (b - a) // 64 + 1
    for start in range(a, b + 1, step):
        stop = min(b, start + step // 16)
        worst, _ = _kernels.exp_f32_ulp(start, stop, False, 2)
        assert worst < 1.25, (start, stop)


def test_float32_exp_agrees_with_the_fast_one_where_both_hold():
    x = np.random.default_rng(0).uniform(-87, 0, 100_000).astype(np.float32)
    np.testing.assert_array_max_ulp(evaluate(EXP, x), evaluate(EXP_FAST, x), maxulp=1)


@long_double
@pytest.mark.parametrize(
    "fn, lo, hi",
    [(EXP, -745.13, 709.78), (EXP, -708.0, 0.0), (EXP_FAST, -708.0, 0.0)],
    ids=["exp", "exp fast range", "exp fast"],
)
def test_float64_exp_sampled(fn, lo, hi):
    x = np.random.default_rng(fn).uniform(lo, hi, 1_000_000)
    err = ulps(evaluate(fn, x), np.exp(x.astype(np.longdouble)))
    assert err.max() < 1.2


@long_double
def test_float64_log_and_log1p_sampled():
    rng = np.random.default_rng(3)
    x = np.exp(rng.uniform(-700, 700, 1_000_000))
    assert ulps(evaluate(LOG, x), np.log(x.astype(np.longdouble))).max() < 0.75
    # log1p on the arguments the kernels give it (rest / k >= 0), small and large
    q = np.concatenate([np.exp(rng.uniform(-60, 40, 1_000_000)), [0.0, 1e-300, 5e-324]])
    assert ulps(evaluate(LOG1P, q), np.log1p(q.astype(np.longdouble))).max() < 1.2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_special_values(dtype):
    info = np.finfo(dtype)
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, 1e6, -1e6, 1.0], dtype=dtype)
    y = evaluate(EXP, x)
    np.testing.assert_array_equal(y[:2], [0.0, np.inf])
    assert np.isnan(y[2])
    np.testing.assert_array_equal(y[3:7], [1.0, 1.0, np.inf, 0.0])
    np.testing.assert_array_max_ulp(y[7], np.exp(dtype(1.0)), maxulp=1)
    # The largest finite result, the first overflow, and a rounded subnormal.
    top = np.log(info.max.astype(np.float64))
    below, above = np.nextafter(dtype(top), dtype(0)), np.nextafter(dtype(top), dtype(np.inf))
    assert np.isfinite(evaluate(EXP, np.array([below], dtype=dtype))[0])
    assert evaluate(EXP, np.array([above], dtype=dtype))[0] == np.inf
    tiny = np.array([np.log(float(info.smallest_subnormal)) + 0.1], dtype=dtype)
    assert evaluate(EXP, tiny)[0] == info.smallest_subnormal


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_exp_at_the_ends_of_its_range(dtype):
    lo = -87.0 if dtype is np.float32 else -708.0
    x = np.array([0.0, -0.0, lo, lo / 2], dtype=dtype)
    np.testing.assert_array_max_ulp(
        evaluate(EXP_FAST, x), np.exp(x.astype(np.float64)).astype(dtype), maxulp=1
    )


def test_log_and_log1p_special_values():
    x = np.array([0.0, np.inf, -1.0, np.nan, 1.0, 2.0])
    y = evaluate(LOG, x)
    np.testing.assert_array_equal(y[:2], [-np.inf, np.inf])
    assert np.isnan(y[2]) and np.isnan(y[3])
    assert y[4] == 0.0
    np.testing.assert_array_max_ulp(y[5], np.log(2.0), maxulp=1)
    q = evaluate(LOG1P, np.array([0.0, np.inf, np.nan, 1e-20]))
    assert q[0] == 0.0 and q[1] == np.inf and np.isnan(q[2]) and q[3] == 1e-20


def float32_ulps(y, ref):
    """|y - ref| in units of the float32 spacing at ref (ref in float64)."""
    spacing = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    return np.abs(y.astype(np.float64) - ref) / spacing


def test_float32_tanh_on_a_stride_through_every_float_up_to_saturation():
    # Every 23rd float from the smallest subnormal to 10 (tanh is 1 in float
    # beyond 9.02), and both signs: about 47 million values in blocks.
    top = bits(10.0)
    worst = 0.0
    for start in range(0, top, 1 << 24):
        b = np.arange(start, min(top, start + (1 << 24)), 23, dtype=np.uint32)
        x = b.view(np.float32)
        y = evaluate(TANH, x)
        worst = max(worst, float(float32_ulps(y, np.tanh(x.astype(np.float64))).max()))
        np.testing.assert_array_equal(evaluate(TANH, -x), -y)
    assert worst < 1.6


@long_double
def test_float64_tanh_sampled():
    rng = np.random.default_rng(4)
    x = np.concatenate(
        [
            rng.uniform(0.0, 20.0, 1_000_000),
            rng.uniform(0.6, 0.65, 200_000),  # on both sides of the switch
            np.exp(rng.uniform(-700, 0, 200_000)),
        ]
    )
    x = np.concatenate([x, -x])
    assert ulps(evaluate(TANH, x), np.tanh(x.astype(np.longdouble))).max() < 1.6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_special_values(dtype):
    info = np.finfo(dtype)
    x = np.array(
        [-np.inf, np.inf, np.nan, 0.0, -0.0, info.max, -info.max, info.smallest_subnormal, 40.0],
        dtype=dtype,
    )
    y = evaluate(TANH, x)
    np.testing.assert_array_equal(y[:2], [-1.0, 1.0])
    assert np.isnan(y[2])
    assert y[3] == 0.0 and not np.signbit(y[3]) and y[4] == 0.0 and np.signbit(y[4])
    np.testing.assert_array_equal(y[5:], [1.0, -1.0, info.smallest_subnormal, 1.0])
