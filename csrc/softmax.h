/*
 * softmax, log_softmax and logsumexp for one dtype (see reduce.h for how
 * this file is instantiated). Special values are scipy.special's.
 */

/* Sum over a block of exp(x - m) for x != m; counts the x == m into *k. */
FS_INLINE double FS_LOCAL(lse_block)(const FS_T *x, fs_index b0, fs_index b1, fs_index xs, FS_T m,
                                     double *k, const int fast)
{
    double bs = 0.0, bk = 0.0;
    FS_SIMD(reduction(+ : bs, bk))
    for (fs_index i = b0; i < b1; i++) {
        const FS_T v = x[i * xs];
        const int is_max = v == m;
        const FS_T e = FS_EXPQ(v - m);
        bs += is_max ? 0.0 : (double)e; /* a NaN is never the max: it lands here */
        bk += is_max ? 1.0 : 0.0;
    }
    *k += bk;
    return bs;
}

/* scipy's logsumexp from the maximum m, the sum of the other terms and the
 * number k of maximal terms: log1p(rest / k) + log(k) + m, so that a row
 * like [0, -50] keeps its tiny answer. */
FS_INLINE FS_T FS_LOCAL(lse_from_max)(FS_T m, double rest, double k)
{
    return (FS_T)(fs_log1p_f64(rest / k) + fs_log_f64(k) + (double)m);
}

/* One row: op FS_SOFTMAX or FS_LOG_SOFTMAX into y, or returns the logsumexp. */
FS_INLINE FS_T FS_LOCAL(softmax_row)(const FS_T *x, fs_index n, fs_index xs, FS_T *y, fs_index ys,
                                     const int op)
{
    FS_T lo;
    const FS_T m = FS_LOCAL(row_range)(x, n, xs, &lo);
    if (op == FS_SOFTMAX) {
        if (!isfinite(m)) { /* exp(x - max) has inf - inf or -inf - -inf in it */
            FS_LOCAL(fill)(y, n, ys, (FS_T)NAN);
            return 0;
        }
        /* One exp per element: exp(x - max) goes to y (the row is then in
         * cache) and is scaled by 1 / sum in an exp-free pass. */
        const FS_T r =
            (FS_T)(1.0 / FS_LOCAL(sum_exp)(x, n, xs, m, y, ys, 1, FS_LOCAL(all_fast)(lo, m, m)));
        FS_SIMD()
        for (fs_index i = 0; i < n; i++)
            y[i * ys] *= r;
        return 0;
    }
    const FS_T shift = isfinite(m) ? m : (FS_T)0; /* as scipy: a non-finite max shifts by 0 */
    if (op == FS_LOG_SOFTMAX) {
        const int fast_row = FS_LOCAL(all_fast)(lo, m, shift);
        const FS_T log_s =
            (FS_T)fs_log_row(FS_LOCAL(sum_exp)(x, n, xs, shift, NULL, 0, 0, fast_row));
        FS_SIMD()
        for (fs_index i = 0; i < n; i++)
            y[i * ys] = (x[i * xs] - shift) - log_s;
        return 0;
    }
    if (!isfinite(m)) /* +-inf or NaN: log(sum(exp(x))) directly */
        return (FS_T)fs_log_row(FS_LOCAL(sum_exp)(x, n, xs, 0, NULL, 0, 0, 0));
    fs_sum rest = {0.0, 0.0};
    double k = 0.0; /* exact: an integer below 2^53 */
    const int fast_row = FS_LOCAL(all_fast)(lo, m, m);
    FS_BLOCKS(b0, b1, n) {
        fs_sum_add(&rest, fast_row || FS_LOCAL(fast_range)(x, b0, b1, xs, m)
                              ? FS_LOCAL(lse_block)(x, b0, b1, xs, m, &k, 1)
                              : FS_LOCAL(lse_block)(x, b0, b1, xs, m, &k, 0));
    }
    return FS_LOCAL(lse_from_max)(m, rest.s, k);
}

/* The exps of classes c0..c1 of a strip: sums into bs; for FS_SOFTMAX each
 * exp goes to y, for FS_LOGSUMEXP the maximal terms are counted into k
 * instead of summed. */
FS_INLINE void FS_LOCAL(softmax_strip_exps)(const FS_T *x, fs_index cs, fs_index w, fs_index c0,
                                            fs_index c1, const FS_T *m, const FS_T *shift, FS_T *y,
                                            fs_index ycs, double *bs, double *k, const int op,
                                            const int fast)
{
    for (fs_index c = c0; c < c1; c++) {
        const FS_T *col = x + c * cs;
        FS_T *out = y + c * ycs;
        FS_SIMD()
        for (fs_index j = 0; j < w; j++) {
            const FS_T e = FS_EXPQ(col[j] - shift[j]);
            /* a maximal term, where the maximum is finite (it is then the shift) */
            const int is_max = op == FS_LOGSUMEXP && col[j] == m[j] && m[j] == shift[j];
            bs[j] += is_max ? 0.0 : (double)e;
            if (op == FS_LOGSUMEXP)
                k[j] += is_max ? 1.0 : 0.0;
            if (op == FS_SOFTMAX)
                out[j] = e;
        }
    }
}

/*
 * A strip of w columns (reduce.h): op FS_SOFTMAX or FS_LOG_SOFTMAX into
 * y[c * ycs + j] (y may alias x), FS_LOGSUMEXP into lse[j * ls]. Sums over
 * classes are blocked and compensated as in the row kernels; special values
 * are theirs.
 */
FS_INLINE void FS_LOCAL(softmax_strip)(const FS_T *x, fs_index cs, fs_index w, fs_index n, FS_T *y,
                                       fs_index ycs, FS_T *lse, fs_index ls, const int op)
{
    FS_T m[FS_TILE], shift[FS_TILE], f[FS_TILE];
    double bs[FS_TILE], k[FS_TILE];
    fs_sum s[FS_TILE];
    const int fast = FS_LOCAL(strip_max)(x, cs, w, n, m, shift, op == FS_SOFTMAX);
    for (fs_index j = 0; j < w; j++) {
        s[j].s = s[j].c = 0.0;
        k[j] = 0.0;
    }
    FS_BLOCKS(c0, c1, n) {
        for (fs_index j = 0; j < w; j++)
            bs[j] = 0.0;
        if (fast)
            FS_LOCAL(softmax_strip_exps)(x, cs, w, c0, c1, m, shift, y, ycs, bs, k, op, 1);
        else
            FS_LOCAL(softmax_strip_exps)(x, cs, w, c0, c1, m, shift, y, ycs, bs, k, op, 0);
        for (fs_index j = 0; j < w; j++)
            fs_sum_add(&s[j], bs[j]);
    }
    if (op == FS_LOGSUMEXP) {
        for (fs_index j = 0; j < w; j++)
            lse[j * ls] = isfinite(m[j]) ? FS_LOCAL(lse_from_max)(m[j], s[j].s, k[j])
                                         : (FS_T)fs_log_f64(s[j].s);
        return;
    }
    FS_SIMD()
    for (fs_index j = 0; j < w; j++)
        f[j] = op == FS_SOFTMAX ? (isfinite(m[j]) ? (FS_T)(1.0 / s[j].s) : (FS_T)NAN)
                                : (FS_T)fs_log_f64(s[j].s);
    for (fs_index c = 0; c < n; c++) {
        const FS_T *col = x + c * cs;
        FS_T *out = y + c * ycs;
        if (op == FS_SOFTMAX) {
            FS_SIMD()
            for (fs_index j = 0; j < w; j++)
                out[j] *= f[j];
        } else {
            FS_SIMD()
            for (fs_index j = 0; j < w; j++)
                out[j] = (col[j] - shift[j]) - f[j];
        }
    }
}

/* Rows of few classes: transposed into a class-major tile, then a strip. */
FS_INLINE void FS_LOCAL(softmax_tile)(const FS_T *x, fs_index xrs, fs_index nr, fs_index n, FS_T *y,
                                      fs_index yrs, fs_index ls, const int op)
{
    FS_T xt[FS_SMALL_C * FS_TILE];
    FS_LOCAL(tile_in)(x, xrs, nr, n, xt);
    FS_LOCAL(softmax_strip)(xt, FS_TILE, nr, n, xt, FS_TILE, y, ls, op);
    if (op != FS_LOGSUMEXP)
        FS_LOCAL(tile_out)(xt, nr, n, y, yrs);
}

/* One row of each op, compiled apart (as a clone of its own): inlined into
 * the task function, the long-row log_softmax lost 14% on one thread. */
FS_DISPATCH FS_T FS_CAT(fs_softmax_row_, FS_SUF)(const FS_T *x, fs_index n, fs_index xs, FS_T *y,
                                                 fs_index ys, int op)
{
    const int unit = xs == 1 && (op == FS_LOGSUMEXP || ys == 1);
    if (op == FS_SOFTMAX)
        return unit ? FS_LOCAL(softmax_row)(x, n, 1, y, 1, FS_SOFTMAX)
                    : FS_LOCAL(softmax_row)(x, n, xs, y, ys, FS_SOFTMAX);
    if (op == FS_LOG_SOFTMAX)
        return unit ? FS_LOCAL(softmax_row)(x, n, 1, y, 1, FS_LOG_SOFTMAX)
                    : FS_LOCAL(softmax_row)(x, n, xs, y, ys, FS_LOG_SOFTMAX);
    return unit ? FS_LOCAL(softmax_row)(x, n, 1, NULL, 0, FS_LOGSUMEXP)
                : FS_LOCAL(softmax_row)(x, n, xs, NULL, 0, FS_LOGSUMEXP);
}

/* Rows r0 .. r1 one at a time. */
FS_INLINE void FS_LOCAL(softmax_rows)(const fs_softmax_batch *b, fs_index r0, fs_index r1)
{
    const FS_T *x = (const FS_T *)b->x.p;
    FS_T *y = (FS_T *)b->y.p;
    fs_row_walk rw = fs_walk_from(r0, b->inner);
    for (fs_index r = r0; r < r1; r++, fs_walk_next(&rw)) {
        const FS_T *xr = x + fs_walk_offset(&rw, &b->x);
        FS_T *yr = y + fs_walk_offset(&rw, &b->y);
        const FS_T v = FS_CAT(fs_softmax_row_, FS_SUF)(xr, b->n, b->x.s1, yr, b->y.s1, b->op);
        if (b->op == FS_LOGSUMEXP)
            *yr = v;
    }
}

FS_DISPATCH void FS_CAT(fs_softmax_task_, FS_SUF)(const fs_softmax_batch *b, fs_index task)
{
    const FS_T *x = (const FS_T *)b->x.p;
    FS_T *y = (FS_T *)b->y.p;
    const fs_index rows = b->outer * b->inner, per = b->plan.per_task;
    if (b->plan.kind == FS_STRIPS) {
        const fs_strip st = fs_strip_at(&b->plan, b->inner, task);
        const fs_index w = st.w;
        const FS_T *xs = x + st.i * b->x.s0 + st.j0;
        FS_T *ys = y + st.i * b->y.s0 + st.j0;
        if (b->op == FS_LOGSUMEXP)
            FS_LOCAL(softmax_strip)(xs, b->x.s1, w, b->n, NULL, 0, ys, 1, FS_LOGSUMEXP);
        else if (b->op == FS_SOFTMAX)
            FS_LOCAL(softmax_strip)(xs, b->x.s1, w, b->n, ys, b->y.s1, NULL, 0, FS_SOFTMAX);
        else
            FS_LOCAL(softmax_strip)(xs, b->x.s1, w, b->n, ys, b->y.s1, NULL, 0, FS_LOG_SOFTMAX);
        return;
    }
    const fs_index r0 = task * per, r1 = rows - r0 < per ? rows : r0 + per;
    if (b->plan.kind == FS_ROWS) {
        FS_LOCAL(softmax_rows)(b, r0, r1);
        return;
    }
    /* FS_TILES: inner == 1, unit class strides */
    const FS_T *xt = x + r0 * b->x.s0;
    FS_T *yt = y + r0 * b->y.s0;
    if (b->op == FS_SOFTMAX)
        FS_LOCAL(softmax_tile)(xt, b->x.s0, r1 - r0, b->n, yt, b->y.s0, 0, FS_SOFTMAX);
    else if (b->op == FS_LOG_SOFTMAX)
        FS_LOCAL(softmax_tile)(xt, b->x.s0, r1 - r0, b->n, yt, b->y.s0, 0, FS_LOG_SOFTMAX);
    else
        FS_LOCAL(softmax_tile)(xt, b->x.s0, r1 - r0, b->n, yt, 0, b->y.s0, FS_LOGSUMEXP);
}
