/*
 * Reductions shared by every kernel, for one dtype. fs_instance.h includes
 * this file once per dtype with FS_T (element type) and FS_SUF (f32, f64)
 * defined; the names below get the suffix through FS_LOCAL.
 */

#define FS_CAT2(a, b) a##b
#define FS_CAT(a, b) FS_CAT2(a, b)
#define FS_LOCAL(name) FS_CAT(FS_CAT(name, _), FS_SUF)
#define FS_EXP FS_CAT(fs_exp_, FS_SUF)
#define FS_EXP_FAST FS_CAT(fs_exp_fast_, FS_SUF)
#define FS_EXP_HALF FS_CAT(fs_exp_half_, FS_SUF)
#define FS_TANH FS_CAT(fs_tanh_, FS_SUF)
#define FS_EXP_LO FS_CAT(FS_EXP_FAST_LO_, FS_SUF)

/* exp(v), by the fast version where the block was found in its range (fast
 * == 2: the 2-byte rows' shorter one). */
#define FS_EXPQ(v) (fast == 2 ? FS_EXP_HALF(v) : fast ? FS_EXP_FAST(v) : FS_EXP(v))

/* Largest element (returned) and smallest (*lo), NaN ignored (a NaN still
 * poisons the sums that follow). */
FS_INLINE FS_T FS_LOCAL(row_range)(const FS_T *x, fs_index n, fs_index xs, FS_T *lo)
{
    FS_T m = -(FS_T)INFINITY, l = (FS_T)INFINITY;
    FS_SIMD(reduction(max : m) reduction(min : l))
    for (fs_index i = 0; i < n; i++) {
        m = x[i * xs] > m ? x[i * xs] : m;
        l = x[i * xs] < l ? x[i * xs] : l;
    }
    *lo = l;
    return m;
}

/* 1 when every x - shift of a row whose extremes are lo and m is in the
 * fast exp's range (rounding is monotonic): every block then passes
 * fast_range, which need not run. A NaN, ignored by lo and m, gives a NaN
 * through either exp, and its row is NaN either way. */
FS_INLINE int FS_LOCAL(all_fast)(FS_T lo, FS_T m, FS_T shift)
{
    return (lo - shift >= FS_EXP_LO) & (m - shift <= (FS_T)0);
}

/* The fast-exp policy: 1 when every x - shift of the block is in the fast
 * exp's range (never for a NaN or an infinity). */
FS_INLINE int FS_LOCAL(fast_range)(const FS_T *x, fs_index b0, fs_index b1, fs_index xs, FS_T shift)
{
    int ok = 1;
    FS_SIMD(reduction(& : ok))
    for (fs_index i = b0; i < b1; i++) {
        const FS_T d = x[i * xs] - shift;
        ok &= (d >= FS_EXP_LO) & (d <= (FS_T)0);
    }
    return ok;
}

/* sum of exp(x - shift) over a block; with `store`, each exp goes to y too
 * (y may alias x). The sum runs in FS_LANES partial sums, added pairwise at
 * the end; with `parts`, each lane adds FS_PART exps in FS_T before they go
 * into its double (at most FS_PART - 1 more roundings of the block's terms):
 * converting and adding each exp in double is a tenth of a softmax row and
 * of a 2-byte streaming row (A/B, 2 threads, cold, 1024 x 32000: bfloat16
 * fused 7.29 -> 6.14 ms, float32 softmax 0.88 to 1.0 times), but the float32
 * fused row ran 3 to 16% slower with it, so it does without. The last lanes
 * of the block are masked, not scalar: `reduction(+ : bs)` added its lanes
 * one after another (16 dependent additions a row) and left a scalar tail of
 * exps, together a quarter of a row of 100 floats. */
#define FS_LANES 16
#define FS_PART 4
FS_INLINE double FS_LOCAL(exp_block)(const FS_T *x, fs_index b0, fs_index b1, fs_index xs,
                                     FS_T shift, FS_T *y, fs_index ys, const int fast,
                                     const int store, const int parts)
{
    double acc[FS_LANES] = {0};
    fs_index i = b0;
    for (; parts && i + FS_PART * FS_LANES <= b1; i += FS_PART * FS_LANES) {
        FS_T part[FS_LANES] = {0};
        for (fs_index j = 0; j < FS_PART * FS_LANES; j += FS_LANES) {
            FS_SIMD()
            for (fs_index l = 0; l < FS_LANES; l++) {
                const FS_T e = FS_EXPQ(x[(i + j + l) * xs] - shift);
                if (store)
                    y[(i + j + l) * ys] = e;
                part[l] += e;
            }
        }
        FS_SIMD()
        for (fs_index l = 0; l < FS_LANES; l++)
            acc[l] += (double)part[l];
    }
    for (; i + FS_LANES <= b1; i += FS_LANES) {
        FS_SIMD()
        for (fs_index l = 0; l < FS_LANES; l++) {
            const FS_T e = FS_EXPQ(x[(i + l) * xs] - shift);
            if (store)
                y[(i + l) * ys] = e;
            acc[l] += (double)e;
        }
    }
    const fs_index rest = b1 - i;
    FS_SIMD()
    for (fs_index l = 0; l < FS_LANES; l++) {
        if (l < rest) {
            const FS_T e = FS_EXPQ(x[(i + l) * xs] - shift);
            if (store)
                y[(i + l) * ys] = e;
            acc[l] += (double)e;
        }
    }
    for (fs_index h = FS_LANES / 2; h > 0; h /= 2) {
        FS_SIMD()
        for (fs_index l = 0; l < h; l++)
            acc[l] += acc[l + h];
    }
    return acc[0];
}

/* Blocked, compensated sum of exp(x - shift) over a row (stored in y with
 * `store`), each block through the fast exp where the policy allows (every
 * block, unchecked, when the row is all_fast). */
FS_INLINE double FS_LOCAL(sum_exp)(const FS_T *x, fs_index n, fs_index xs, FS_T shift, FS_T *y,
                                   fs_index ys, const int store, const int all_fast)
{
    fs_sum s = {0.0, 0.0};
    FS_BLOCKS(b0, b1, n) {
        const double bs = all_fast || FS_LOCAL(fast_range)(x, b0, b1, xs, shift)
                              ? FS_LOCAL(exp_block)(x, b0, b1, xs, shift, y, ys, 1, store, 1)
                              : FS_LOCAL(exp_block)(x, b0, b1, xs, shift, y, ys, 0, store, 1);
        fs_sum_add(&s, bs);
    }
    return s.s;
}

FS_INLINE void FS_LOCAL(fill)(FS_T *y, fs_index n, fs_index ys, FS_T value)
{
    for (fs_index i = 0; i < n; i++)
        y[i * ys] = value;
}

/* ------------------------------------------------------------ strips */

/* Each lane's largest and smallest value, into m and lo, over n rows of w
 * lanes, a row every rs elements: a strip's columns (strip_max) and the
 * lanes of columns.h. */
FS_INLINE void FS_LOCAL(lane_range)(const FS_T *x, fs_index rs, fs_index w, fs_index n, FS_T *m,
                                    FS_T *lo)
{
    for (fs_index r = 0; r < n; r++) {
        const FS_T *xr = x + r * rs;
        FS_SIMD()
        for (fs_index l = 0; l < w; l++) {
            m[l] = xr[l] > m[l] ? xr[l] : m[l];
            lo[l] = xr[l] < lo[l] ? xr[l] : lo[l];
        }
    }
}

/*
 * A strip is w <= FS_TILE columns computed together: column j holds the n
 * scores x[c * cs + j], so every step is a contiguous loop across columns.
 * It serves a class axis that is not the last one (the columns are the
 * inner axis) and, after a transpose, tiles of rows with few classes.
 *
 * strip_max: each column's maximum into m; returns 1 when the fast exp
 * serves every x - shift of the strip (the smallest score minus the shift
 * in range: rounding is monotonic), with the shift of each
 * column its maximum if finite, else `nonfinite` (softmax shifts by the
 * maximum itself, the others by 0).
 */
FS_INLINE int FS_LOCAL(strip_max)(const FS_T *x, fs_index cs, fs_index w, fs_index n, FS_T *m,
                                  FS_T *shift, const int shift_nonfinite_by_max)
{
    /* No NaN test: the fast exp of a NaN is NaN, as the accurate one's, so a
     * column holding one comes out NaN either way; -inf, whose fast exp is
     * not 0, is kept out by the minimum. */
    FS_T lo[FS_TILE];
    int bad = 0;
    for (fs_index j = 0; j < w; j++) {
        m[j] = -(FS_T)INFINITY;
        lo[j] = (FS_T)INFINITY;
    }
    FS_LOCAL(lane_range)(x, cs, w, n, m, lo);
    for (fs_index j = 0; j < w; j++) {
        const FS_T sh = isfinite(m[j]) || shift_nonfinite_by_max ? m[j] : (FS_T)0;
        shift[j] = sh;
        bad |= !(lo[j] - sh >= FS_EXP_LO) | !(m[j] - sh <= (FS_T)0);
    }
    return !bad;
}

/* Tiles: nr <= FS_TILE rows of n contiguous classes (at most FS_SMALL_C, or
 * FS_HALF_SMALL_C for the widened 2-byte rows of staged.h), transposed
 * into a class-major stack buffer xt[c * FS_TILE + r] and back; in AVX-512
 * or AVX2 registers where the CPU has them (fs_transpose.h). */
FS_INLINE void FS_LOCAL(tile_in)(const FS_T *x, fs_index xrs, fs_index nr, fs_index n, FS_T *xt)
{
#if FS_HAVE_AVX512_TILES
    if (fs_many_registers()) {
        FS_CAT(fs_tile_in_avx512_, FS_SUF)(x, xrs, nr, n, xt);
        return;
    }
#endif
#if FS_HAVE_AVX2_TILES
    /* doubles of more than 16 classes: no faster than the loop below (Zen 3,
     * fused, 1 thread: C = 24 1.00, C = 64 1.05 times; C = 10 0.91) */
    if (fs_has_avx2() && (sizeof(FS_T) == 4 || n <= 16)) {
        FS_CAT(fs_tile_in_avx2_, FS_SUF)(x, xrs, nr, n, xt);
        return;
    }
#endif
    for (fs_index r = 0; r < nr; r++)
        for (fs_index c = 0; c < n; c++)
            xt[c * FS_TILE + r] = x[r * xrs + c];
}

FS_INLINE void FS_LOCAL(tile_out)(const FS_T *xt, fs_index nr, fs_index n, FS_T *y, fs_index yrs)
{
#if FS_HAVE_AVX512_TILES
    if (fs_many_registers()) {
        FS_CAT(fs_tile_out_avx512_, FS_SUF)(xt, nr, n, y, yrs);
        return;
    }
#endif
#if FS_HAVE_AVX2_TILES
    if (fs_has_avx2() && (sizeof(FS_T) == 4 || n <= 16)) { /* as tile_in */
        FS_CAT(fs_tile_out_avx2_, FS_SUF)(xt, nr, n, y, yrs);
        return;
    }
#endif
    for (fs_index r = 0; r < nr; r++)
        for (fs_index c = 0; c < n; c++)
            y[r * yrs + c] = xt[c * FS_TILE + r];
}
