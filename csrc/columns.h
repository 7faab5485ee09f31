/*
 * softmax, log_softmax and logsumexp over a long class axis that is not the
 * last one (FS_COLUMNS, for one dtype; see reduce.h for how this file is
 * instantiated). A strip (softmax.h) holds a column's whole class axis, so a
 * (65536, 10) array reduced over axis 0 was one strip of 10 lanes on one
 * thread. Here the class axis of each sample is cut into tasks of
 * plan.per_task rows (and, past FS_COLUMNS_LANES columns, blocks of
 * FS_COLUMNS_BLOCK columns), and a call runs in two phases:
 *
 * phase 0  each task reduces every column to its maximum m_c and the sum of
 *          exp(x - m_c) (for logsumexp over the terms below m_c, with the
 *          count of those equal to it kept apart, as softmax_row does), into
 *          partials. It reads its rows a sub-chunk at a time, twice (the
 *          maxima, then the exps) while the sub-chunk is in L2, and merges
 *          the sub-chunks as it goes.
 * combine  (fs_softmax_combine, one thread) merges the tasks of each column
 *          in order, so results do not depend on the threads: the maximum M,
 *          and sum = sum_c sum_c' exp(m_c - M); logsumexp is then written.
 * phase 1  softmax writes exp(x - M) / sum, log_softmax (x - M) - log(sum).
 *          softmax takes a second exp rather than store the exps in phase 0:
 *          the scores are read twice either way, and the stored exps would
 *          add a write and a read of the output.
 *
 * The special values are softmax_row's: a column whose maximum is not finite
 * is NaN for softmax and shifted by 0 for the others (the sums then run
 * unshifted: exp(m_c) times each chunk's sum).
 *
 * Where the rows are contiguous, `unit` rows are read as one row of
 * unit * inner lanes (lane l is column l % inner), so that a few columns
 * still fill whole vectors; the rows left over at a sub-chunk's end are read
 * one at a time.
 */

/* Each lane's sum of exp(x - shift) over nu units into bs; with `count`, the
 * terms equal to the lane's mx go to bk instead (mx is NaN where no term
 * should count). FS_PART units are added in FS_T before each addition in
 * double, as exp_block does (reduce.h): converting each exp to double was a
 * fifth of a 65536 x 10 logsumexp over axis 0 on one thread. */
FS_INLINE void FS_LOCAL(col_exps)(const FS_T *x, fs_index us, fs_index w, fs_index nu,
                                  const FS_T *shift, const FS_T *mx, double *bs, double *bk,
                                  const int fast, const int count)
{
    fs_index u = 0;
    for (; u + FS_PART <= nu; u += FS_PART) {
        const FS_T *xu = x + u * us;
        FS_SIMD()
        for (fs_index l = 0; l < w; l++) {
            FS_T part = 0, kpart = 0;
            for (fs_index g = 0; g < FS_PART; g++) {
                const FS_T v = xu[g * us + l];
                const FS_T e = FS_EXPQ(v - shift[l]);
                const int is_max = count && v == mx[l];
                part += is_max ? (FS_T)0 : e;
                kpart += is_max ? (FS_T)1 : (FS_T)0;
            }
            bs[l] += (double)part;
            if (count)
                bk[l] += (double)kpart;
        }
    }
    for (; u < nu; u++) {
        const FS_T *xu = x + u * us;
        FS_SIMD()
        for (fs_index l = 0; l < w; l++) {
            const FS_T v = xu[l];
            const FS_T e = FS_EXPQ(v - shift[l]);
            const int is_max = count && v == mx[l];
            bs[l] += is_max ? 0.0 : (double)e;
            if (count)
                bk[l] += is_max ? 1.0 : 0.0;
        }
    }
}

/* The first inner lanes of a[unit * inner] replicated to the others. */
FS_INLINE void FS_LOCAL(col_spread)(FS_T *a, fs_index inner, fs_index unit)
{
    for (fs_index u = 1; u < unit; u++)
        for (fs_index j = 0; j < inner; j++)
            a[u * inner + j] = a[j];
}

/* Where task `task` of a batch lies: a chunk of rows of sample i, and of
 * columns j0 .. j0 + cols (all of them unless inner > FS_COLUMNS_LANES, then
 * a block of FS_COLUMNS_BLOCK). */
typedef struct FS_LOCAL(col_chunk) {
    const FS_T *x; /* its first element */
    FS_T *y;
    fs_index i, chunk, j0, cols;
    fs_index rows;
    fs_index nu;      /* whole units */
    fs_index left;    /* rows after them */
    fs_index unit, w; /* rows a unit, lanes a unit */
} FS_LOCAL(col_chunk);

FS_INLINE FS_LOCAL(col_chunk) FS_LOCAL(col_chunk_at)(const fs_softmax_batch *b, fs_index task)
{
    FS_LOCAL(col_chunk) ch;
    const fs_index per = b->plan.per_task, n_chunks = fs_columns_chunks(b);
    const fs_index n_blocks = fs_columns_blocks(b), blk = task % n_blocks;
    ch.chunk = task / n_blocks;
    ch.i = ch.chunk / n_chunks;
    const fs_index r0 = (ch.chunk % n_chunks) * per;
    const fs_index rows = b->n - r0 < per ? b->n - r0 : per;
    ch.rows = rows;
    const fs_index bw = n_blocks == 1 ? b->inner : FS_COLUMNS_BLOCK;
    ch.j0 = blk * bw;
    ch.cols = b->inner - ch.j0 < bw ? b->inner - ch.j0 : bw;
    ch.x = (const FS_T *)b->x.p + ch.i * b->x.s0 + r0 * b->x.s1 + ch.j0;
    ch.y = b->op == FS_LOGSUMEXP ? NULL : (FS_T *)b->y.p + ch.i * b->y.s0 + r0 * b->y.s1 + ch.j0;
    ch.unit = fs_columns_unit(b);
    ch.w = ch.unit * ch.cols;
    ch.nu = rows / ch.unit;
    ch.left = rows - ch.nu * ch.unit;
    return ch;
}

/* One pass of a task's rows r .. r + rows (a sub-chunk, in cache between
 * its two sweeps): each column's maximum into m, its smallest value into
 * lo, its sum of exp(x - m) (m replaced by 0 where not finite) into s and,
 * with `count`, the terms equal to a finite m counted into k, not summed. */
FS_INLINE void FS_LOCAL(col_sums)(const fs_softmax_batch *b, const FS_LOCAL(col_chunk) * ch,
                                  fs_index r, fs_index rows, FS_T *m, FS_T *lo, double *s,
                                  double *k, const int count)
{
    const fs_index inner = ch->cols, w = ch->w, us = ch->unit * b->x.s1;
    const fs_index nu = rows / ch->unit, left = rows - nu * ch->unit;
    const FS_T *x = ch->x + r * b->x.s1, *xl = x + nu * us; /* xl: the rows left over */
    FS_T shift[FS_COLUMNS_LANES], mx[FS_COLUMNS_LANES];
    double bs[FS_COLUMNS_LANES], bk[FS_COLUMNS_LANES];
    for (fs_index l = 0; l < w; l++) {
        m[l] = -(FS_T)INFINITY;
        lo[l] = (FS_T)INFINITY;
        bs[l] = bk[l] = 0.0;
    }
    FS_LOCAL(lane_range)(x, us, w, nu, m, lo);
    FS_LOCAL(lane_range)(xl, b->x.s1, inner, left, m, lo);
    int fast = 1;
    for (fs_index j = 0; j < inner; j++) {
        for (fs_index u = 1; u < ch->unit; u++) {
            const FS_T mu = m[u * inner + j], lu = lo[u * inner + j];
            m[j] = mu > m[j] ? mu : m[j];
            lo[j] = lu < lo[j] ? lu : lo[j];
        }
        shift[j] = isfinite(m[j]) ? m[j] : (FS_T)0;
        mx[j] = isfinite(m[j]) ? m[j] : (FS_T)NAN;
        fast &= (lo[j] - shift[j] >= FS_EXP_LO) & (m[j] - shift[j] <= (FS_T)0);
    }
    FS_LOCAL(col_spread)(shift, inner, ch->unit);
    FS_LOCAL(col_spread)(mx, inner, ch->unit);
    if (fast) {
        FS_LOCAL(col_exps)(x, us, w, nu, shift, mx, bs, bk, 1, count);
        FS_LOCAL(col_exps)(xl, b->x.s1, inner, left, shift, mx, bs, bk, 1, count);
    } else {
        FS_LOCAL(col_exps)(x, us, w, nu, shift, mx, bs, bk, 0, count);
        FS_LOCAL(col_exps)(xl, b->x.s1, inner, left, shift, mx, bs, bk, 0, count);
    }
    for (fs_index j = 0; j < inner; j++) {
        double sj = bs[j], kj = bk[j];
        for (fs_index u = 1; u < ch->unit; u++) {
            sj += bs[u * inner + j];
            kj += bk[u * inner + j];
        }
        s[j] = sj;
        k[j] = kj;
    }
}

/* Phase 0 of task `task`: its sub-chunks merged as they come (the running
 * sum rescaled when the maximum grows; a NaN stays, as 0 * NaN is NaN), then
 * partials + 3 * inner * chunk holds each column's maximum, its sum and,
 * for logsumexp, its count of maximal terms, for the others its smallest
 * value (phase 1's fast-exp check). */
FS_INLINE void FS_LOCAL(columns_reduce)(const fs_softmax_batch *b, fs_index task, const int op)
{
    const FS_LOCAL(col_chunk) ch = FS_LOCAL(col_chunk_at)(b, task);
    const fs_index inner = ch.cols, sub = fs_columns_rows(b), count = op == FS_LOGSUMEXP;
    FS_T m[FS_COLUMNS_LANES], lo[FS_COLUMNS_LANES], rlo[FS_COLUMNS_LANES];
    double s[FS_COLUMNS_LANES], k[FS_COLUMNS_LANES];
    double rm[FS_COLUMNS_LANES], rs[FS_COLUMNS_LANES], rk[FS_COLUMNS_LANES];
    for (fs_index j = 0; j < inner; j++) {
        rm[j] = -INFINITY;
        rs[j] = rk[j] = 0.0;
        rlo[j] = (FS_T)INFINITY;
    }
    for (fs_index r = 0; r < ch.rows; r += sub) {
        FS_LOCAL(col_sums)(b, &ch, r, ch.rows - r < sub ? ch.rows - r : sub, m, lo, s, k, count);
        FS_SIMD()
        for (fs_index j = 0; j < inner; j++) {
            const double mc = (double)m[j], mr = rm[j];
            const int up = mc > mr, same = mc == mr;
            rs[j] = up     ? (rs[j] + rk[j]) * fs_exp_f64(mr - mc) + s[j]
                    : same ? rs[j] + s[j]
                           : rs[j] + (s[j] + k[j]) * fs_exp_f64(mc - mr);
            rk[j] = up ? k[j] : same ? rk[j] + k[j] : rk[j];
            rm[j] = up ? mc : mr;
            rlo[j] = lo[j] < rlo[j] ? lo[j] : rlo[j];
        }
    }
    double *p = b->partials + 3 * b->inner * ch.chunk + ch.j0;
    for (fs_index j = 0; j < inner; j++) {
        p[j] = rm[j];
        p[b->inner + j] = rs[j];
        p[2 * b->inner + j] = count ? rk[j] : (double)rlo[j];
    }
}

/* Each lane of nu units (every us in x, ys in y) written by softmax as
 * exp(x - shift) * f, by log_softmax as (x - shift) - f. */
FS_INLINE void FS_LOCAL(col_out)(const FS_T *x, fs_index us, FS_T *y, fs_index ys, fs_index w,
                                 fs_index nu, const FS_T *shift, const FS_T *f, const int fast,
                                 const int op)
{
    for (fs_index u = 0; u < nu; u++) {
        const FS_T *xu = x + u * us;
        FS_T *yu = y + u * ys;
        FS_SIMD()
        for (fs_index l = 0; l < w; l++)
            yu[l] = op == FS_SOFTMAX ? FS_EXPQ(xu[l] - shift[l]) * f[l] : (xu[l] - shift[l]) - f[l];
    }
}

/* Phase 1 of task `task` (softmax, log_softmax), from the sample's combined
 * shift and factor (softmax: 1 / sum; log_softmax: log(sum)), which follow
 * the chunks' partials. */
FS_INLINE void FS_LOCAL(columns_write)(const fs_softmax_batch *b, fs_index task, const int op)
{
    const FS_LOCAL(col_chunk) ch = FS_LOCAL(col_chunk_at)(b, task);
    const fs_index inner = ch.cols, w = ch.w, us = ch.unit * b->x.s1, ys = ch.unit * b->y.s1;
    const fs_index stride = b->inner; /* between the fields of the partials */
    const double *lo = b->partials + 3 * stride * ch.chunk + 2 * stride + ch.j0;
    const double *q =
        b->partials + 3 * stride * b->outer * fs_columns_chunks(b) + 2 * stride * ch.i + ch.j0;
    FS_T shift[FS_COLUMNS_LANES], f[FS_COLUMNS_LANES];
    int fast = op == FS_SOFTMAX;
    for (fs_index j = 0; j < inner; j++) {
        shift[j] = (FS_T)q[j];
        f[j] = (FS_T)q[stride + j];
        fast &= (FS_T)lo[j] - shift[j] >= FS_EXP_LO;
    }
    FS_LOCAL(col_spread)(shift, inner, ch.unit);
    FS_LOCAL(col_spread)(f, inner, ch.unit);
    const FS_T *xl = ch.x + ch.nu * us;
    FS_T *yl = ch.y + ch.nu * ys;
    if (fast) {
        FS_LOCAL(col_out)(ch.x, us, ch.y, ys, w, ch.nu, shift, f, 1, op);
        FS_LOCAL(col_out)(xl, b->x.s1, yl, b->y.s1, inner, ch.left, shift, f, 1, op);
    } else {
        FS_LOCAL(col_out)(ch.x, us, ch.y, ys, w, ch.nu, shift, f, 0, op);
        FS_LOCAL(col_out)(xl, b->x.s1, yl, b->y.s1, inner, ch.left, shift, f, 0, op);
    }
}

FS_DISPATCH void FS_CAT(fs_columns_task_, FS_SUF)(const fs_softmax_batch *b, fs_index task)
{
    if (b->phase == 0) {
        if (b->op == FS_SOFTMAX)
            FS_LOCAL(columns_reduce)(b, task, FS_SOFTMAX);
        else if (b->op == FS_LOG_SOFTMAX)
            FS_LOCAL(columns_reduce)(b, task, FS_LOG_SOFTMAX);
        else
            FS_LOCAL(columns_reduce)(b, task, FS_LOGSUMEXP);
    } else if (b->op == FS_SOFTMAX) {
        FS_LOCAL(columns_write)(b, task, FS_SOFTMAX);
    } else {
        FS_LOCAL(columns_write)(b, task, FS_LOG_SOFTMAX);
    }
}

/* Between the phases, for each sample: the chunks of each column merged in
 * chunk order (the loops run across columns) at the shift M, its maximum
 * (0 where M is not finite); then logsumexp is written to y, or the shift
 * and factor of phase 1 to the combined area. */
void FS_CAT(fs_columns_combine_, FS_SUF)(const fs_softmax_batch *b)
{
    const fs_index inner = b->inner, n_chunks = fs_columns_chunks(b);
    double *combined = b->partials + 3 * inner * b->outer * n_chunks;
    for (fs_index i = 0; i < b->outer; i++) {
        const double *p0 = b->partials + 3 * inner * n_chunks * i;
        /* M and the sum in the combined area (phase 1 reads them), the
         * sum's compensation and the count in the two rows after it */
        double *mj = combined + 2 * inner * i, *sj = mj + inner;
        double *cj = b->partials + 3 * inner * n_chunks * b->outer + 2 * inner * b->outer;
        double *kj = cj + inner;
        for (fs_index j = 0; j < inner; j++) {
            mj[j] = -INFINITY;
            sj[j] = cj[j] = kj[j] = 0.0;
        }
        for (fs_index c = 0; c < n_chunks; c++) {
            const double *mc = p0 + 3 * inner * c;
            FS_SIMD()
            for (fs_index j = 0; j < inner; j++)
                mj[j] = mc[j] > mj[j] ? mc[j] : mj[j];
        }
        const int count = b->op == FS_LOGSUMEXP;
        for (fs_index c = 0; c < n_chunks; c++) {
            const double *mc = p0 + 3 * inner * c, *sc = mc + inner, *kc = mc + 2 * inner;
            FS_SIMD()
            for (fs_index j = 0; j < inner; j++) {
                /* a chunk at the maximum keeps its count apart; the others'
                 * terms, maximal ones too, are exp(x - m_c) exp(m_c - M) */
                const double shift = isfinite(mj[j]) ? mj[j] : 0.0;
                const double k = count ? kc[j] : 0.0;
                const int at_max = mc[j] == mj[j];
                const double v = at_max ? sc[j] : (sc[j] + k) * fs_exp_f64(mc[j] - shift);
                kj[j] += at_max ? k : 0.0;
                /* fs_sum_add, across columns */
                const double y = v - cj[j], t = sj[j] + y;
                cj[j] = isfinite(t) ? (t - sj[j]) - y : 0.0;
                sj[j] = t;
            }
        }
        for (fs_index j = 0; j < inner; j++) {
            const double m = mj[j], sum = sj[j];
            if (b->op == FS_LOGSUMEXP) {
                FS_T *y = (FS_T *)b->y.p + i * b->y.s0 + j * b->y.s2;
                *y = isfinite(m) ? FS_LOCAL(lse_from_max)((FS_T)m, sum, kj[j])
                                 : (FS_T)fs_log_f64(sum);
            } else if (b->op == FS_SOFTMAX) {
                /* a column whose maximum is not finite is NaN */
                mj[j] = isfinite(m) ? m : 0.0;
                sj[j] = isfinite(m) ? 1.0 / sum : NAN;
            } else {
                mj[j] = isfinite(m) ? m : 0.0;
                sj[j] = fs_log_f64(sum);
            }
        }
    }
}
