/*
 * The 2-byte conversions of a unit-stride run of values by the CPU's own
 * instructions, where it has them: F16C (x86-64-v3 and up) widens and rounds
 * float16, AVX-512 BF16 rounds bfloat16 (bfloat16 widens by a shift, which
 * the integer loops of fs_half.h already do in two instructions). They give
 * the results of fs_half.h's conversions bit for bit, but for NaNs: F16C
 * quiets a signalling NaN it widens and keeps the top bits of the payload of
 * one it rounds (a NaN stays a NaN of its sign either way).
 *
 * vcvtneps2bf16 flushes float32 subnormals to zero, so the lanes that hold
 * one are rounded by the integer formula instead (an exp of a score 87
 * below the row's maximum is one).
 *
 * Built with GCC's runtime dispatch (the instructions are then in target
 * functions the CPU is asked about); fs_half_simd_off turns them off, for
 * the tests of the integer conversions on a CPU that has them.
 */
#ifndef FS_HALF_SIMD_H
#define FS_HALF_SIMD_H

#include "fs_half.h"

static int fs_half_simd_off;

#if FS_HAVE_DISPATCH
#include <immintrin.h>

#define FS_F16C __attribute__((target("arch=x86-64-v3"), noinline))
#define FS_AVX512_BF16 __attribute__((target("arch=x86-64-v4,avx512bf16"), noinline))
#define FS_ROUND_NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

static int fs_f16_simd(void)
{
    return !fs_half_simd_off && __builtin_cpu_supports("x86-64-v3");
}

static int fs_avx512_simd(void)
{
    return !fs_half_simd_off && __builtin_cpu_supports("x86-64-v4");
}

static int fs_bf16_simd(void)
{
    return !fs_half_simd_off && __builtin_cpu_supports("x86-64-v4")
           && __builtin_cpu_supports("avx512bf16");
}

FS_F16C static void fs_widen_f16_simd(const uint16_t *x, fs_index n, float *y)
{
    fs_index i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++)
        y[i] = fs_f16_to_f32(x[i]);
}

/* 1 when a and b are both +0: ((x - a) - b) f is then x f for every x (x -
 * (+0) is x, -0 included; x - (-0) is not: -0 - (-0) = +0). */
FS_INLINE int fs_both_plus_zero(float a, float b)
{
    return (fs_f32_to_bits(a) | fs_f32_to_bits(b)) == 0;
}

/* y = ((x - a) - b) f, rounded once (the outputs of staged.h's rows); without
 * shift (a = b = +0: softmax, a gradient), x f alone. */
static inline __attribute__((target("arch=x86-64-v3"), always_inline)) void
fs_narrow_f16_run(const float *x, fs_index n, float a, float b, float f, const int shift,
                  uint16_t *y)
{
    const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b), vf = _mm256_set1_ps(f);
    fs_index i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_loadu_ps(x + i);
        if (shift)
            d = _mm256_sub_ps(_mm256_sub_ps(d, va), vb);
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_mul_ps(d, vf), FS_ROUND_NEAREST));
    }
    for (; i < n; i++)
        y[i] = fs_f32_to_f16(((x[i] - a) - b) * f);
}

FS_F16C static void fs_narrow_f16_simd(const float *x, fs_index n, float a, float b, float f,
                                       uint16_t *y)
{
    if (fs_both_plus_zero(a, b))
        fs_narrow_f16_run(x, n, a, b, f, 0, y);
    else
        fs_narrow_f16_run(x, n, a, b, f, 1, y);
}

/* 16 floats (the lanes of k) x as ((x - a) - b) f (x f without shift) into
 * bfloat16 at y; subnormal lanes are looked for only with tiny. */
static inline __attribute__((target("arch=x86-64-v4,avx512bf16"), always_inline)) void
fs_narrow_bf16_16(const float *x, __m512 va, __m512 vb, __m512 vf, __mmask16 k, const int shift,
                  const int tiny, uint16_t *y)
{
    __m512 d = _mm512_maskz_loadu_ps(k, x);
    if (shift)
        d = _mm512_sub_ps(_mm512_sub_ps(d, va), vb);
    const __m512 v = _mm512_mul_ps(d, vf);
    __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
    if (!tiny) {
        _mm256_mask_storeu_epi16(y, k, h);
        return;
    }
    const __m512i u = _mm512_castps_si512(v);
    const __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    /* subnormal lanes: 0 < a < 2^-126, as a - 1 < 0x7fffff unsigned */
    const __mmask16 sub = _mm512_cmplt_epu32_mask(_mm512_sub_epi32(a, _mm512_set1_epi32(1)),
                                                  _mm512_set1_epi32(0x7fffff));
    if (sub) { /* rare: those lanes by fs_half.h's formula */
        float vs[16];
        uint16_t hs[16];
        _mm512_storeu_ps(vs, v);
        _mm256_storeu_si256((__m256i *)hs, h);
        for (int l = 0; l < 16; l++)
            if ((sub >> l) & 1)
                hs[l] = fs_f32_to_bf16(vs[l]);
        h = _mm256_loadu_si256((const __m256i *)hs);
    }
    _mm256_mask_storeu_epi16(y, k, h);
}

static inline __attribute__((target("arch=x86-64-v4,avx512bf16"), always_inline)) void
fs_narrow_bf16_run(const float *x, fs_index n, float a, float b, float f, const int shift,
                   const int tiny, uint16_t *y)
{
    const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b), vf = _mm512_set1_ps(f);
    fs_index i = 0;
    for (; i + 16 <= n; i += 16)
        fs_narrow_bf16_16(x + i, va, vb, vf, (__mmask16)0xffff, shift, tiny, y + i);
    if (i < n)
        fs_narrow_bf16_16(x + i, va, vb, vf, (__mmask16)((1u << (n - i)) - 1), shift, tiny, y + i);
}

/* tiny 0: the caller knows that no result is a nonzero subnormal. */
FS_AVX512_BF16 static void fs_narrow_bf16_simd(const float *x, fs_index n, float a, float b,
                                               float f, int tiny, uint16_t *y)
{
    if (!fs_both_plus_zero(a, b))
        fs_narrow_bf16_run(x, n, a, b, f, 1, 1, y);
    else if (tiny)
        fs_narrow_bf16_run(x, n, a, b, f, 0, 1, y);
    else
        fs_narrow_bf16_run(x, n, a, b, f, 0, 0, y);
}

/* 16 2-byte values widened (bfloat16 by a shift, float16 by vcvtph2ps). */
static inline __attribute__((target("arch=x86-64-v4"), always_inline)) __m512
fs_widen_16(__m256i h, const int bf16)
{
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                : _mm512_cvtph_ps(h);
}

/* n 2-byte values at x widened into y, with their largest (*hi) and
 * smallest (*lo), NaN ignored: max(v, m) keeps m where v is a NaN. Masks
 * only in the tail (masked loads and stores are slower on AMD's cores). */
static inline __attribute__((target("arch=x86-64-v4"), always_inline)) void
fs_widen_range_run(const uint16_t *x, fs_index n, float *y, float *hi, float *lo, const int bf16)
{
    __m512 m = _mm512_set1_ps(-INFINITY), l = _mm512_set1_ps(INFINITY);
    fs_index i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = fs_widen_16(_mm256_loadu_si256((const __m256i *)(x + i)), bf16);
        _mm512_storeu_ps(y + i, v);
        m = _mm512_max_ps(v, m);
        l = _mm512_min_ps(v, l);
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = fs_widen_16(_mm256_maskz_loadu_epi16(k, x + i), bf16);
        _mm512_mask_storeu_ps(y + i, k, v);
        m = _mm512_mask_max_ps(m, k, v, m);
        l = _mm512_mask_min_ps(l, k, v, l);
    }
    *hi = _mm512_reduce_max_ps(m);
    *lo = _mm512_reduce_min_ps(l);
}

__attribute__((target("arch=x86-64-v4"), noinline)) static void
fs_widen_range_bf16_simd(const uint16_t *x, fs_index n, float *y, float *hi, float *lo)
{
    fs_widen_range_run(x, n, y, hi, lo, 1);
}

__attribute__((target("arch=x86-64-v4"), noinline)) static void
fs_widen_range_f16_simd(const uint16_t *x, fs_index n, float *y, float *hi, float *lo)
{
    fs_widen_range_run(x, n, y, hi, lo, 0);
}

/* For staged.h: 1 when the instructions ran, 0 when the caller must convert. */
#define FS_BF16_WIDEN_RANGE_SIMD(x, n, y, hi, lo) \
    (fs_avx512_simd() ? (fs_widen_range_bf16_simd(x, n, y, hi, lo), 1) : 0)
#define FS_F16_WIDEN_RANGE_SIMD(x, n, y, hi, lo) \
    (fs_avx512_simd() ? (fs_widen_range_f16_simd(x, n, y, hi, lo), 1) : 0)
#define FS_F16_WIDEN_SIMD(x, n, y) (fs_f16_simd() ? (fs_widen_f16_simd(x, n, y), 1) : 0)
#define FS_F16_NARROW_SIMD(x, n, a, b, f, tiny, y) \
    (fs_f16_simd() ? (fs_narrow_f16_simd(x, n, a, b, f, y), 1) : 0)
#define FS_BF16_NARROW_SIMD(x, n, a, b, f, tiny, y) \
    (fs_bf16_simd() ? (fs_narrow_bf16_simd(x, n, a, b, f, tiny, y), 1) : 0)

const char *fs_half_simd(void)
{
    __builtin_cpu_init();
    if (fs_bf16_simd())
        return "F16C (float16) and AVX512_BF16 (rounding bfloat16), chosen at run time";
    if (fs_f16_simd())
        return "F16C (float16, chosen at run time) and integer SIMD arithmetic (bfloat16)";
    return "integer SIMD arithmetic";
}
#else
#define FS_F16_WIDEN_SIMD(x, n, y) 0
#define FS_BF16_WIDEN_RANGE_SIMD(x, n, y, hi, lo) 0
#define FS_F16_WIDEN_RANGE_SIMD(x, n, y, hi, lo) 0
#define FS_F16_NARROW_SIMD(x, n, a, b, f, tiny, y) 0
#define FS_BF16_NARROW_SIMD(x, n, a, b, f, tiny, y) 0
const char *fs_half_simd(void)
{
    return "integer SIMD arithmetic";
}
#endif

/* 1 turns the instructions off, 0 on (where the CPU has them); the previous
 * setting is returned. */
int fs_half_simd_disable(int off)
{
    const int was = fs_half_simd_off;
    fs_half_simd_off = off;
    return was;
}

#endif /* FS_HALF_SIMD_H */
