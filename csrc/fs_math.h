/*
 * Elementary functions that GCC and Clang vectorise inside `#pragma omp simd`
 * loops (libm's are opaque calls and are not): exp and tanh for float and
 * double, log and log1p for double, and the compensated sum of block sums.
 * Clamps are written as comparisons: fminf/fmaxf keep C99's NaN rule, so GCC
 * calls libm for them and the loop around them runs scalar, 16 times slower
 * (tests/test_build.py checks that the extension imports no such function).
 *
 * exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]
 * (Cody-Waite split of ln 2), exp(r) by a Taylor polynomial of degree 7 for
 * float and 13 for double (truncation error below half an ulp). The two
 * versions of each dtype share the reduction and the polynomial:
 *   fs_exp_<T>       every x: clamped, 2^n applied as two factors so that a
 *                    subnormal result is rounded once, as libm does; C99's
 *                    special values (exp(-inf) = 0, exp(+inf) = +inf, NaN).
 *   fs_exp_fast_<T>  x in [FS_EXP_FAST_LO_<T>, 0] only, where the result is
 *                    normal: no clamping, 2^n built from the shifter's bits,
 *                    about half the instructions. The kernels use it on a
 *                    block only when every argument of the block is in that
 *                    range (fs_fast_range in reduce.h: the one policy).
 * Accuracy, against a correctly rounded exp (tests/test_fs_math.py checks
 * it): float below 1.25 ulp (1.21 at worst over every float of the fast
 * range, 0.01% of them above 1 ulp), double below 1.2 ulp (1.14 at worst in
 * 2 million samples).
 */
#ifndef FS_MATH_H
#define FS_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* `#pragma omp simd` through a macro: MSVC's OpenMP 2.0 rejects it (C3001),
 * so there the loops are left to its own vectoriser. */
#if defined(_MSC_VER) && !defined(__clang__)
#define FS_SIMD(clauses)
#else
#define FS_PRAGMA(x) _Pragma(#x)
#define FS_SIMD(clauses) FS_PRAGMA(omp simd clauses)
#endif

/* Always inlined: an out-of-line call inside a loop stops it vectorising. */
#if defined(_MSC_VER)
#define FS_INLINE static __forceinline
#else
#define FS_INLINE static inline __attribute__((always_inline))
#endif

/* A hint to fetch the line at p into the cache (nothing where there is no
 * such builtin); it never faults. */
#if defined(__GNUC__) || defined(__clang__)
#define FS_PREFETCH(p) __builtin_prefetch(p)
#else
#define FS_PREFETCH(p) ((void)(p))
#endif

FS_INLINE float fs_bits_to_f32(int32_t i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

FS_INLINE int32_t fs_f32_to_bits(float f)
{
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i;
}

FS_INLINE double fs_bits_to_f64(int64_t i)
{
    double d;
    memcpy(&d, &i, sizeof d);
    return d;
}

FS_INLINE int64_t fs_f64_to_bits(double d)
{
    int64_t i;
    memcpy(&i, &d, sizeof i);
    return i;
}

/* ------------------------------------------------------------------ float */

#define FS_EXP_HI_F32 88.72283935546875f     /* above: +inf */
#define FS_EXP_LO_F32 (-103.97208404541016f) /* below: 0 */
#define FS_EXP_FAST_LO_f32 (-87.0f)
#define FS_SHIFTER_F32 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */

/* r = x - n ln 2 for t = x log2(e) + shifter, n = t - shifter. */
FS_INLINE float fs_exp_reduce_f32(float x, float shifter, float *t_out)
{
    const float t = x * 1.44269504088896341f + shifter;
    const float n = t - shifter;
    *t_out = t;
    return (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
}

FS_INLINE float fs_exp_poly_f32(float r)
{
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    return p * r + 1.0f;
}

FS_INLINE float fs_exp_f32(float x)
{
    /* NaN, below lo and above hi: computed at 0, set at the end. (Clamped
     * to lo, each such lane made a subnormal product, which costs many
     * cycles on some CPUs: float32 rows whose exps mostly underflow took
     * 2.4 times as long through the fused cross-entropy on a Zen 5.) */
    float t;
    const float xc = (x >= FS_EXP_LO_F32) & (x <= FS_EXP_HI_F32) ? x : 0.0f;
    const float p = fs_exp_poly_f32(fs_exp_reduce_f32(xc, FS_SHIFTER_F32, &t));
    /* n is an integer in [-150, 128]; split it so each half is a normal power of 2. */
    const int32_t ni = (int32_t)(t - FS_SHIFTER_F32);
    const int32_t n1 = ni >> 1, n2 = ni - n1;
    float y = (p * fs_bits_to_f32((n1 + 127) << 23)) * fs_bits_to_f32((n2 + 127) << 23);
    y = x > FS_EXP_HI_F32 ? INFINITY : y;
    y = x < FS_EXP_LO_F32 ? 0.0f : y;
    return x != x ? x : y;
}

FS_INLINE float fs_exp_fast_f32(float x)
{
    /* shifter + 127: the low bits of t hold n + 127, the biased exponent of 2^n */
    float t;
    const float p = fs_exp_poly_f32(fs_exp_reduce_f32(x, FS_SHIFTER_F32 + 127.0f, &t));
    return p * fs_bits_to_f32((int32_t)((uint32_t)fs_f32_to_bits(t) << 23));
}

/* The fast exp with a polynomial of degree 5 (fitted to exp on the reduced
 * range, minimax in relative error) for the 2-byte rows, whose results are
 * rounded to 8 or 11 bits: 2.28 ulp at worst over every float of its range,
 * 2% of them above 1 ulp (tests/test_fs_math.py), for two FMAs fewer an exp.
 * Same range as fs_exp_fast_f32. */
FS_INLINE float fs_exp_half_f32(float x)
{
    float t;
    const float r = fs_exp_reduce_f32(x, FS_SHIFTER_F32 + 127.0f, &t);
    float p = 0x1.0fa784p-7f;
    p = p * r + 0x1.5739f2p-5f;
    p = p * r + 0x1.555a6ap-3f;
    p = p * r + 0x1.fffdc6p-2f;
    p = p * r + 0x1.fffff6p-1f;
    p = p * r + 1.0f;
    return p * fs_bits_to_f32((int32_t)((uint32_t)fs_f32_to_bits(t) << 23));
}

/* ----------------------------------------------------------------- double */

#define FS_EXP_HI_F64 709.782712893383973
#define FS_EXP_LO_F64 (-745.1332191019412)
#define FS_EXP_FAST_LO_f64 (-708.0)
#define FS_SHIFTER_F64 6755399441055744.0 /* 1.5 * 2^52 */
#define FS_LN2_HI_F64 6.93147180369123816490e-01
#define FS_LN2_LO_F64 1.90821492927058770002e-10

FS_INLINE double fs_exp_reduce_f64(double x, double shifter, double *t_out)
{
    const double t = x * 1.4426950408889634074 + shifter;
    const double n = t - shifter;
    *t_out = t;
    return (x - n * FS_LN2_HI_F64) - n * FS_LN2_LO_F64;
}

FS_INLINE double fs_exp_poly_f64(double r)
{
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r + 1.0;
}

FS_INLINE double fs_exp_f64(double x)
{
    double t; /* NaN, below lo and above hi: computed at 0, set at the end (see float) */
    const double xc = (x >= FS_EXP_LO_F64) & (x <= FS_EXP_HI_F64) ? x : 0.0;
    const double p = fs_exp_poly_f64(fs_exp_reduce_f64(xc, FS_SHIFTER_F64, &t));
    /* n is an integer in [-1075, 1024]. Halve it and read the integers back
     * through the shifter's bits: AVX2 has no double -> int64 conversion. */
    const double n = t - FS_SHIFTER_F64;
    const double n1 = (n * 0.5 - 0.25 + FS_SHIFTER_F64) - FS_SHIFTER_F64; /* floor(n / 2) */
    const double n2 = n - n1;
    const int64_t base = fs_f64_to_bits(FS_SHIFTER_F64) - 1023;
    const double s1 = fs_bits_to_f64((fs_f64_to_bits(n1 + FS_SHIFTER_F64) - base) << 52);
    const double s2 = fs_bits_to_f64((fs_f64_to_bits(n2 + FS_SHIFTER_F64) - base) << 52);
    double y = (p * s1) * s2;
    y = x > FS_EXP_HI_F64 ? (double)INFINITY : y;
    y = x < FS_EXP_LO_F64 ? 0.0 : y;
    return x != x ? x : y;
}

FS_INLINE double fs_exp_fast_f64(double x)
{
    double t; /* low bits: n + 1023 */
    const double p = fs_exp_poly_f64(fs_exp_reduce_f64(x, FS_SHIFTER_F64 + 1023.0, &t));
    return p * fs_bits_to_f64((int64_t)((uint64_t)fs_f64_to_bits(t) << 52));
}

/* No 2-byte dtype is computed in double: the name is there for reduce.h. */
FS_INLINE double fs_exp_half_f64(double x)
{
    return fs_exp_fast_f64(x);
}

/*
 * tanh for float and double (the softcap of the cross-entropy):
 *   |x| < 0.625:  x + x s P(s), s = x^2, P a polynomial fitted to
 *                 (tanh(x) / x - 1) / s in the Chebyshev sense (degree 5 for
 *                 float, 11 for double: about 0.01 ulp of truncation);
 *   otherwise:    (1 - t) / (1 + t) with t = exp(-2 |x|) (the fast exp, its
 *                 argument clamped at -80 where t no longer shows), signed.
 * The small branch keeps x's sign by its form; the large one loses little to
 * cancellation (t <= exp(-1.25)). Both are computed and one is kept, so that
 * a loop of them vectorises. NaN and +-inf as C99's tanh. Accuracy against a
 * correctly rounded tanh (tests/test_fs_math.py): below 1.6 ulp (1.54 float,
 * 1.50 double at worst, both in the large branch).
 */
#define FS_TANH_SMALL 0.625

FS_INLINE float fs_tanh_f32(float x)
{
    const float s = x * x, a = x < 0.0f ? -x : x;
    float p = 2.29274482e-3f;
    p = p * s - 8.34394552e-3f;
    p = p * s + 2.17689187e-2f;
    p = p * s - 5.39592596e-2f;
    p = p * s + 1.33333036e-1f;
    p = p * s - 3.33333332e-1f;
    const float small = x + x * s * p;
    const float c = a < 40.0f ? a : 40.0f;
    const float t = fs_exp_fast_f32(-2.0f * c);
    const float r = (1.0f - t) / (1.0f + t);
    const float y = a < (float)FS_TANH_SMALL ? small : (x < 0.0f ? -r : r);
    return (x != x) | (x == 0.0f) ? x : y; /* NaN, and -0 (small gives +0) */
}

FS_INLINE double fs_tanh_f64(double x)
{
    const double s = x * x, a = x < 0.0 ? -x : x;
    double p = 6.48516348279311315e-6;
    p = p * s - 3.12011014257974000e-5;
    p = p * s + 9.25711612955676827e-5;
    p = p * s - 2.37590649605556196e-4;
    p = p * s + 5.89660657775704335e-4;
    p = p * s - 1.45577541204780551e-3;
    p = p * s + 3.59212175115496227e-3;
    p = p * s - 8.86323510324087793e-3;
    p = p * s + 2.18694885190083058e-2;
    p = p * s - 5.39682539678969917e-2;
    p = p * s + 1.33333333333330416e-1;
    p = p * s - 3.33333333333333329e-1;
    const double small = x + x * s * p;
    const double c = a < 40.0 ? a : 40.0;
    const double t = fs_exp_fast_f64(-2.0 * c);
    const double r = (1.0 - t) / (1.0 + t);
    const double y = a < FS_TANH_SMALL ? small : (x < 0.0 ? -r : r);
    return (x != x) | (x == 0.0) ? x : y; /* NaN, and -0 (small gives +0) */
}

/*
 * log for double: x = 2^k m with m in [sqrt(1/2), sqrt(2)), log(m) = log1p(f)
 * with f = m - 1 by the classic rational form in s = f / (2 + f) (fdlibm's
 * coefficients), k ln 2 added in two parts. Domain: positive normal numbers,
 * and 0 (-inf), +inf (+inf), negative or NaN (NaN); subnormal inputs are not
 * handled (the kernels take the log of sums that are 0 or >= 1, and of
 * counts). Below 0.75 ulp (0.73 at worst in 2 million samples).
 */
FS_INLINE double fs_log_f64(double x)
{
    const double lg1 = 6.666666666666735130e-01, lg2 = 3.999999999940941908e-01;
    const double lg3 = 2.857142874366239149e-01, lg4 = 2.222219843214978396e-01;
    const double lg5 = 1.818357216161805012e-01, lg6 = 1.531383769920937332e-01;
    const double lg7 = 1.479819860511658591e-01;
    const int64_t ix = fs_f64_to_bits(x);
    int64_t e = (int64_t)((uint64_t)ix >> 52) & 0x7ff;
    double m = fs_bits_to_f64((ix & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
    const int big = m > 1.4142135623730951;
    m = big ? m * 0.5 : m;
    e = big ? e + 1 : e;
    /* e as a double without an int64 -> double conversion (none in AVX2). */
    const double k = fs_bits_to_f64(e | 0x4330000000000000LL) - 4503599627370496.0 - 1023.0;
    const double f = m - 1.0;
    const double s = f / (2.0 + f);
    const double z = s * s, w = z * z;
    const double t1 = w * (lg2 + w * (lg4 + w * lg6));
    const double t2 = z * (lg1 + w * (lg3 + w * (lg5 + w * lg7)));
    const double hfsq = 0.5 * f * f;
    double y = k * FS_LN2_HI_F64 - ((hfsq - (s * (hfsq + t2 + t1) + k * FS_LN2_LO_F64)) - f);
    y = x == 0.0 ? -(double)INFINITY : y;
    y = x == (double)INFINITY ? x : y;
    return (x < 0.0 || x != x) ? (double)NAN : y;
}

/* The log of one row's sum, on the row's critical path: libm's, whose
 * latency is lower than fs_log_f64's (a division in its chain): 14% of a
 * log_softmax at 16384 x 100. Loops across rows (strips) use fs_log_f64. */
FS_INLINE double fs_log_row(double x)
{
    return log(x);
}

/* log1p(q) for q >= 0 (or +inf, NaN): log(1 + q), corrected for the rounding
 * of 1 + q; q itself where 1 + q rounds to 1. Below 1.2 ulp (1.13 sampled). */
FS_INLINE double fs_log1p_f64(double q)
{
    const double u = 1.0 + q;
    const double y = u == 1.0 ? q : fs_log_f64(u) - ((u - 1.0) - q) / u;
    return q == (double)INFINITY ? q : y; /* inf - inf / inf would be NaN */
}

/*
 * Long sums: each block of FS_SUM_BLOCK terms is summed in SIMD lanes (in
 * double, for float too: a float accumulator loses up to FS_SUM_BLOCK ulp
 * where the loop is not vectorised; the sums of exps add a few terms in
 * float before each double addition, reduce.h), and the block sums are added with
 * Kahan's compensation, so the rounding error stays at a few ulp however
 * long the row (as NumPy's pairwise sum). Blocks are fixed by position, so
 * a row's sums never depend on the thread that computes it. 1024 rather
 * than 256: the end of a block adds its 16 lanes one by one, which cost 12%
 * of a float32 fused row of 1000 classes at 256 (one thread, hot: 1.84 ->
 * 1.60 ms at 4096 x 1000, 12.1 -> 11.5 ms at 1024 x 32000).
 */
#define FS_SUM_BLOCK 1024
#define FS_BLOCK_END(b, n) ((n) - (b) < FS_SUM_BLOCK ? (n) : (b) + FS_SUM_BLOCK)
#define FS_BLOCKS(b0, b1, n) \
    for (fs_index b0 = 0, b1 = FS_BLOCK_END(0, n); b0 < (n); b0 = b1, b1 = FS_BLOCK_END(b1, n))

typedef struct fs_sum {
    double s, c; /* sum, compensation */
} fs_sum;

FS_INLINE void fs_sum_add(fs_sum *acc, double v)
{
    const double y = v - acc->c;
    const double t = acc->s + y;
    /* An infinite sum stays infinite (inf - inf in the compensation would make it NaN). */
    acc->c = isfinite(t) ? (t - acc->s) - y : 0.0;
    acc->s = t;
}

#endif /* FS_MATH_H */
