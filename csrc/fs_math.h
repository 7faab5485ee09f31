/*
 * Branch-free exp for float and double that GCC and Clang vectorise inside
 * `#pragma omp simd` loops (libm's exp is an opaque call and is not).
 *
 * exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in
 * [-ln2/2, ln2/2] (Cody-Waite split of ln 2), exp(r) by a Taylor polynomial
 * (degree 7 for float, 13 for double: truncation error below half an ulp).
 * 2^n is applied as two factors 2^(n/2) so that results that land in the
 * subnormal range are rounded once, as libm does, instead of flushed to 0.
 *
 * Special values follow C99: exp(-inf) = 0, exp(+inf) = +inf, exp(NaN) = NaN,
 * overflow gives +inf, underflow gives the (possibly subnormal) nearest value.
 * Accuracy: about 1 ulp in float and 2 ulp in double over the whole range.
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
#define FS_MATH_INLINE static __forceinline
#else
#define FS_MATH_INLINE static inline __attribute__((always_inline))
#endif

FS_MATH_INLINE float fs_bits_to_f32(int32_t i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

FS_MATH_INLINE double fs_bits_to_f64(int64_t i)
{
    double d;
    memcpy(&d, &i, sizeof d);
    return d;
}

FS_MATH_INLINE int64_t fs_f64_to_bits(double d)
{
    int64_t i;
    memcpy(&i, &d, sizeof i);
    return i;
}

FS_MATH_INLINE float fs_exp_f32(float x)
{
    const float hi = 88.72283935546875f;   /* above: +inf            */
    const float lo = -103.97208404541016f; /* below: 0 (round down) */
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.428606765330187045e-06f;
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */

    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    float t = xc * log2e + shifter;
    float n = t - shifter;
    float r = xc - n * ln2_hi;
    r = r - n * ln2_lo;

    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;

    /* n is an integer in [-150, 128]; split it so each half is a normal power of 2. */
    int32_t ni = (int32_t)n;
    int32_t n1 = ni >> 1;
    int32_t n2 = ni - n1;
    float s1 = fs_bits_to_f32((n1 + 127) << 23);
    float s2 = fs_bits_to_f32((n2 + 127) << 23);
    float y = (p * s1) * s2;

    y = x > hi ? INFINITY : y;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

FS_MATH_INLINE double fs_exp_f64(double x)
{
    const double hi = 709.782712893383973;
    const double lo = -745.1332191019412;
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 6.93147180369123816490e-01;
    const double ln2_lo = 1.90821492927058770002e-10;
    const double shifter = 6755399441055744.0; /* 1.5 * 2^52 */

    double xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    double t = xc * log2e + shifter;
    double n = t - shifter;
    double r = xc - n * ln2_hi;
    r = r - n * ln2_lo;

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
    p = p * r + 1.0;

    /* n is an integer in [-1075, 1024]. Halve it and read the integers back
     * through the shifter's bits: AVX2 has no double -> int64 conversion. */
    double n1 = (n * 0.5 - 0.25 + shifter) - shifter; /* floor(n / 2) */
    double n2 = n - n1;
    int64_t shifter_bits = fs_f64_to_bits(shifter);
    int64_t e1 = fs_f64_to_bits(n1 + shifter) - shifter_bits + 1023;
    int64_t e2 = fs_f64_to_bits(n2 + shifter) - shifter_bits + 1023;
    double s1 = fs_bits_to_f64(e1 << 52);
    double s2 = fs_bits_to_f64(e2 << 52);
    double y = (p * s1) * s2;

    y = x > hi ? (double)INFINITY : y;
    y = x < lo ? 0.0 : y;
    return x != x ? x : y;
}

/*
 * The common case, fast: exp of x in [FS_EXP_FAST_LO_*, 0], where the result
 * is a normal number. No clamping and no special values, so about half the
 * instructions of fs_exp_*; same polynomial (about 1 ulp). The kernels check
 * a block of arguments (x - max) first and use this only when every one of
 * them is in range (which a NaN or -inf never is).
 */
#define FS_EXP_FAST_LO_F32 (-87.0f)
#define FS_EXP_FAST_LO_F64 (-708.0)

FS_MATH_INLINE float fs_exp_fast_f32(float x)
{
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.428606765330187045e-06f;
    /* 1.5 * 2^23 + 127: t's low bits hold n + 127, the biased exponent of 2^n */
    const float shifter = 12582912.0f + 127.0f;
    float t = x * log2e + shifter;
    float n = t - shifter;
    float r = x - n * ln2_hi;
    r = r - n * ln2_lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t ti;
    memcpy(&ti, &t, sizeof ti);
    return p * fs_bits_to_f32((int32_t)((uint32_t)ti << 23));
}

FS_MATH_INLINE double fs_exp_fast_f64(double x)
{
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 6.93147180369123816490e-01;
    const double ln2_lo = 1.90821492927058770002e-10;
    const double shifter = 6755399441055744.0 + 1023.0; /* low bits: n + 1023 */
    double t = x * log2e + shifter;
    double n = t - shifter;
    double r = x - n * ln2_hi;
    r = r - n * ln2_lo;
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
    p = p * r + 1.0;
    return p * fs_bits_to_f64((int64_t)((uint64_t)fs_f64_to_bits(t) << 52));
}

/*
 * log for double, vectorisable: x = 2^k m with m in [sqrt(1/2), sqrt(2)),
 * log(m) = log1p(f) with f = m - 1 by the classic rational form in
 * s = f / (2 + f) (fdlibm's coefficients), k ln 2 added in two parts.
 * Domain: positive normal numbers, and 0 (-inf), +inf (+inf), negative or
 * NaN (NaN). Subnormal inputs are not handled (the kernels only take the log
 * of sums that are 0 or >= 1). About 1 ulp.
 */
FS_MATH_INLINE double fs_log_f64(double x)
{
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double lg1 = 6.666666666666735130e-01, lg2 = 3.999999999940941908e-01;
    const double lg3 = 2.857142874366239149e-01, lg4 = 2.222219843214978396e-01;
    const double lg5 = 1.818357216161805012e-01, lg6 = 1.531383769920937332e-01;
    const double lg7 = 1.479819860511658591e-01;
    int64_t ix = fs_f64_to_bits(x);
    int64_t e = (int64_t)((uint64_t)ix >> 52) & 0x7ff;
    double m = fs_bits_to_f64((ix & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
    int big = m > 1.4142135623730951;
    m = big ? m * 0.5 : m;
    e = big ? e + 1 : e;
    /* e as a double without an int64 -> double conversion (none in AVX2). */
    double k = fs_bits_to_f64(e | 0x4330000000000000LL) - 4503599627370496.0 - 1023.0;
    double f = m - 1.0;
    double s = f / (2.0 + f);
    double z = s * s, w = z * z;
    double t1 = w * (lg2 + w * (lg4 + w * lg6));
    double t2 = z * (lg1 + w * (lg3 + w * (lg5 + w * lg7)));
    double hfsq = 0.5 * f * f;
    double y = k * ln2_hi - ((hfsq - (s * (hfsq + t2 + t1) + k * ln2_lo)) - f);
    y = x == 0.0 ? -(double)INFINITY : y;
    y = x == (double)INFINITY ? x : y;
    return (x < 0.0 || x != x) ? (double)NAN : y;
}

/*
 * Long sums: each block of FS_SUM_BLOCK terms is summed in SIMD lanes, and
 * the block sums are added with Kahan's compensation, so the rounding error
 * stays at a few ulp however long the row (as NumPy's pairwise sum), where
 * one accumulator per lane would lose about n / lanes ulp.
 */
#define FS_SUM_BLOCK 256
#define FS_BLOCK_END(b, n) ((n) - (b) < FS_SUM_BLOCK ? (n) : (b) + FS_SUM_BLOCK)
#define FS_BLOCKS(b0, b1, n) \
    for (fs_index b0 = 0, b1 = FS_BLOCK_END(0, n); b0 < (n); b0 = b1, b1 = FS_BLOCK_END(b1, n))

typedef struct fs_sum {
    double s, c; /* sum, compensation */
} fs_sum;

FS_MATH_INLINE void fs_sum_add(fs_sum *acc, double v)
{
    double y = v - acc->c;
    double t = acc->s + y;
    /* An infinite sum stays infinite (inf - inf in the compensation would make it NaN). */
    acc->c = isfinite(t) ? (t - acc->s) - y : 0.0;
    acc->s = t;
}

#endif /* FS_MATH_H */
