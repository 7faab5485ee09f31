/*
 * The tile transposes of rows with few classes (reduce.h's tile_in and
 * tile_out) in vector registers: in AVX-512 16 x 16 floats or 8 x 8 doubles
 * at a time, in AVX2 8 x 8 floats or 4 x 4 doubles, each row read or written
 * by one vector access (below), the transpose by in-register shuffles. The
 * scalar loops they replace cost more than the kernel's exps at C = 10 (a
 * round trip of 65536 x 10 float32: 0.29 ms scalar, 0.07 ms in AVX-512, one
 * thread, Zen 4; in AVX2 the scalar loops were a quarter of a fused call of
 * that shape on Zen 3).
 *
 * Built where the compiler can target the instruction set (GCC's runtime
 * dispatch, or a build for it) and used when the CPU runs it
 * (fs_many_registers, fs_has_avx2); FS_HAVE_AVX512_TILES and
 * FS_HAVE_AVX2_TILES say which. The functions keep tile_in's and tile_out's
 * contracts: xt[c * FS_TILE + r] = x[r * xrs + c] for r < nr, c < n, where
 * the loads and stores touch nothing of x or y outside those rows and
 * classes (rows of xt past nr may be written, with zeros).
 */
#ifndef FS_TRANSPOSE_H
#define FS_TRANSPOSE_H

#if FS_HAVE_DISPATCH || (defined(__AVX512F__) && defined(__GNUC__))
#define FS_HAVE_AVX512_TILES 1
#else
#define FS_HAVE_AVX512_TILES 0
#endif
#if FS_HAVE_DISPATCH || (defined(__AVX2__) && defined(__GNUC__))
#define FS_HAVE_AVX2_TILES 1
#else
#define FS_HAVE_AVX2_TILES 0
#endif

#if FS_HAVE_AVX512_TILES || FS_HAVE_AVX2_TILES
#include <immintrin.h>

/*
 * The loops over blocks: B rows by B classes, where B is the vector's lanes.
 * Masked accesses are slow on memory that is not in cache (Zen 4: a masked
 * round trip of 65536 x 10 floats took 2.6 times a copy, full vectors 1.0),
 * so rows of at most B classes are read and written as whole vectors that
 * run on into the rows after them, wherever that stays inside the tile:
 * a load reads a little of the next rows (discarded), a store writes into
 * the next rows what their own stores, which come later, overwrite. That
 * needs rows with no gap between them (yrs == n) on the way out; the last
 * rows of the tile, and classes past the first B, take masked accesses.
 * With OVERLAP, rows of at least B classes take none: their last block of
 * classes starts at n - B, over classes the block before it has done
 * already (read again, or written again with the same values).
 */
#define FS_LAST_BLOCK(OVERLAP, B)             \
    if ((OVERLAP) && n > (B) && c0 + (B) > n) \
    c0 = n - (B)
#define FS_TILE_IN_BODY(T, B, V, zero, maskz_load, load, store, transpose, OVERLAP)             \
    /* rows up to `whole` read B elements inside the tile's span */                             \
    const fs_index span = (nr - 1) * xrs + n;                                                   \
    const fs_index whole = n <= B && xrs >= n && span >= B ? (span - B) / xrs : -1;             \
    for (fs_index c0 = 0; c0 < n; c0 += B) {                                                    \
        FS_LAST_BLOCK(OVERLAP, B);                                                              \
        const fs_index nc = n - c0 < B ? n - c0 : B;                                            \
        const unsigned mask = (1u << nc) - 1;                                                   \
        for (fs_index r0 = 0; r0 < nr; r0 += B) {                                               \
            V v[B];                                                                             \
            for (fs_index i = 0; i < B; i++) {                                                  \
                const T *row = x + (r0 + i) * xrs + c0;                                         \
                const int in = r0 + i < nr, full = in && OVERLAP && nc == B;                    \
                v[i] = full || r0 + i <= whole ? load(row) : in ? maskz_load(mask, row) : zero; \
            }                                                                                   \
            transpose(v);                                                                       \
            for (fs_index c = 0; c < nc; c++)                                                   \
                store(xt + (c0 + c) * FS_TILE + r0, v[c]);                                      \
        }                                                                                       \
    }
#define FS_TILE_OUT_BODY(T, B, V, zero, load, mask_store, store, transpose, OVERLAP)  \
    /* rows up to `whole` write B elements inside the tile's rows, in order */        \
    const fs_index whole = n <= B && yrs == n && nr * n >= B ? (nr * n - B) / n : -1; \
    for (fs_index c0 = 0; c0 < n; c0 += B) {                                          \
        FS_LAST_BLOCK(OVERLAP, B);                                                    \
        const fs_index nc = n - c0 < B ? n - c0 : B;                                  \
        const unsigned mask = (1u << nc) - 1;                                         \
        for (fs_index r0 = 0; r0 < nr; r0 += B) {                                     \
            V v[B];                                                                   \
            for (fs_index c = 0; c < B; c++)                                          \
                v[c] = c < nc ? load(xt + (c0 + c) * FS_TILE + r0) : zero;            \
            transpose(v);                                                             \
            for (fs_index i = 0; i < B && r0 + i < nr; i++) {                         \
                T *row = y + (r0 + i) * yrs + c0;                                     \
                if (r0 + i <= whole || (OVERLAP && nc == B))                          \
                    store(row, v[i]);                                                 \
                else                                                                  \
                    mask_store(row, mask, v[i]);                                      \
            }                                                                         \
        }                                                                             \
    }

/* tile_in and tile_out of one instruction set and dtype: the functions'
 * attribute, their names' suffix, element, lanes, vector type and zero, the
 * accesses, the transpose, OVERLAP. */
#define FS_TILE_FUNCS(ATTR, NAME, T, B, V, zero, maskz_load, load, mask_store, store, transpose,  \
                      OVERLAP)                                                                    \
    ATTR static void fs_tile_in_##NAME(const T *x, fs_index xrs, fs_index nr, fs_index n, T *xt)  \
    {                                                                                             \
        FS_TILE_IN_BODY(T, B, V, zero, maskz_load, load, store, transpose, OVERLAP);              \
    }                                                                                             \
    ATTR static void fs_tile_out_##NAME(const T *xt, fs_index nr, fs_index n, T *y, fs_index yrs) \
    {                                                                                             \
        FS_TILE_OUT_BODY(T, B, V, zero, load, mask_store, store, transpose, OVERLAP);             \
    }

#if FS_HAVE_AVX512_TILES
#if FS_HAVE_DISPATCH
#define FS_AVX512_TARGET target("arch=x86-64-v4"),
#else
#define FS_AVX512_TARGET
#endif
/* the tile functions are called, the transposes inlined into them */
#define FS_AVX512 __attribute__((FS_AVX512_TARGET noinline))
#define FS_AVX512_INLINE static inline __attribute__((FS_AVX512_TARGET always_inline))

/* Rows r[0..15] become columns: r[i] lane j <- r[j] lane i. */
#define FS_PD(v) _mm512_castps_pd(v)
#define FS_PS(v) _mm512_castpd_ps(v)
FS_AVX512_INLINE void fs_transpose_16x16(__m512 *r)
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) { /* pairs of rows, interleaved by element */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* then by pairs of elements */
        r[i] = FS_PS(_mm512_unpacklo_pd(FS_PD(t[i]), FS_PD(t[i + 2])));
        r[i + 1] = FS_PS(_mm512_unpackhi_pd(FS_PD(t[i]), FS_PD(t[i + 2])));
        r[i + 2] = FS_PS(_mm512_unpacklo_pd(FS_PD(t[i + 1]), FS_PD(t[i + 3])));
        r[i + 3] = FS_PS(_mm512_unpackhi_pd(FS_PD(t[i + 1]), FS_PD(t[i + 3])));
    }
    for (int i = 0; i < 4; i++) { /* then 128-bit lanes, twice */
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

FS_AVX512_INLINE void fs_transpose_8x8(__m512d *r)
{
    __m512d t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0x88);
        r[i + 1] = _mm512_shuffle_f64x2(t[i + 1], t[i + 3], 0x88);
        r[i + 2] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0xdd);
        r[i + 3] = _mm512_shuffle_f64x2(t[i + 1], t[i + 3], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f64x2(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f64x2(r[i], r[i + 4], 0xdd);
    }
    for (int i = 0; i < 8; i++)
        r[i] = t[i];
}
#undef FS_PD
#undef FS_PS

/* Without OVERLAP, not measured on an AVX-512 CPU yet. */
FS_TILE_FUNCS(FS_AVX512, avx512_f32, float, 16, __m512, _mm512_setzero_ps(), _mm512_maskz_loadu_ps,
              _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_storeu_ps, fs_transpose_16x16, 0)
FS_TILE_FUNCS(FS_AVX512, avx512_f64, double, 8, __m512d, _mm512_setzero_pd(), _mm512_maskz_loadu_pd,
              _mm512_loadu_pd, _mm512_mask_storeu_pd, _mm512_storeu_pd, fs_transpose_8x8, 0)
#endif

#if FS_HAVE_AVX2_TILES
#if FS_HAVE_DISPATCH
#define FS_AVX2_TARGET target("arch=x86-64-v3"),
#else
#define FS_AVX2_TARGET
#endif
#define FS_AVX2 __attribute__((FS_AVX2_TARGET noinline))
#define FS_AVX2_INLINE static inline __attribute__((FS_AVX2_TARGET always_inline))

/* Rows r[0..7] become columns: r[i] lane j <- r[j] lane i. */
FS_AVX2_INLINE void fs_transpose_8x8_ps(__m256 *r)
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) { /* pairs of rows, interleaved by element */
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) { /* four rows' elements k and k + 4 */
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) { /* then 128-bit halves */
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

FS_AVX2_INLINE void fs_transpose_4x4_pd(__m256d *r)
{
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* AVX2's masked accesses take a vector of lanes, not bits: the first
 * popcount(mask) lanes (the masks here are always low bits). */
FS_AVX2_INLINE __m256i fs_lanes_ps(unsigned mask)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(__builtin_popcount(mask)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
FS_AVX2_INLINE __m256i fs_lanes_pd(unsigned mask)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(__builtin_popcount(mask)),
                              _mm256_setr_epi64x(0, 1, 2, 3));
}
#define FS_AVX2_MASK_FUNCS(I, T, V)                                  \
    FS_AVX2_INLINE V fs_maskz_loadu_##I(unsigned mask, const T *p)   \
    {                                                                \
        return _mm256_maskload_##I(p, fs_lanes_##I(mask));           \
    }                                                                \
    FS_AVX2_INLINE void fs_mask_storeu_##I(T *p, unsigned mask, V v) \
    {                                                                \
        _mm256_maskstore_##I(p, fs_lanes_##I(mask), v);              \
    }
FS_AVX2_MASK_FUNCS(ps, float, __m256)
FS_AVX2_MASK_FUNCS(pd, double, __m256d)
#undef FS_AVX2_MASK_FUNCS

/* Here rows of at least B classes take full vectors (OVERLAP): a masked
 * store is slow on Zen 3 and C = 10 is more than 8 floats. */
FS_TILE_FUNCS(FS_AVX2, avx2_f32, float, 8, __m256, _mm256_setzero_ps(), fs_maskz_loadu_ps,
              _mm256_loadu_ps, fs_mask_storeu_ps, _mm256_storeu_ps, fs_transpose_8x8_ps, 1)
FS_TILE_FUNCS(FS_AVX2, avx2_f64, double, 4, __m256d, _mm256_setzero_pd(), fs_maskz_loadu_pd,
              _mm256_loadu_pd, fs_mask_storeu_pd, _mm256_storeu_pd, fs_transpose_4x4_pd, 1)
#endif

#undef FS_TILE_FUNCS
#undef FS_LAST_BLOCK
#undef FS_TILE_IN_BODY
#undef FS_TILE_OUT_BODY
#endif

#endif
