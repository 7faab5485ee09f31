/*
 * The kernels of a 2-byte dtype (float16, bfloat16): fastsoftmax.c includes
 * this file once per 2-byte dtype, after the float32 instantiation, with
 * FS_H_SUF (f16, bf16), FS_H_LOAD (bits -> float) and FS_H_STORE (float ->
 * bits, rounded to nearest even) defined.
 *
 * Softmax, log_softmax and plain cross-entropy rows of contiguous classes
 * stream (below: a block at a time in L1, then one scaled pass). Every other
 * row (or tile of rows) is widened into float32 on the thread's own
 * scratch, computed there by the float32 bodies, and each output element is
 * rounded once on the way back. Either way every value is computed in float32 from
 * the exact 2-byte inputs (sums in double, as for float32) and each result
 * is rounded once from float32. Memory sees 2 bytes read and 2 written
 * per element; the float32 copies of a row stay in the cache (a row of 128k
 * classes is 512 KiB). Losses, lse and logsumexp come out in float32 (or
 * double, as for every dtype); probability targets come as float32.
 *
 * Scratch: rows (FS_ROWS) use b->scratch, a row of floats (and two floats
 * per block, fs_stream_blocks of each) for each thread of the call
 * (fs_scratch_stride apart), given by the caller; tiles use the stack.
 * 2-byte batches are never planned as strips (fs_*_plan): their rows read
 * across the inner axis.
 */

#define FS_HCAT2(a, b) a##b
#define FS_HCAT1(a, b) FS_HCAT2(a, b)
#define FS_HCAT(name) FS_HCAT1(name, FS_H_SUF)
#define FS_HLOCAL(name) FS_HCAT1(name##_, FS_H_SUF)

/* A row of n 2-byte values, element stride xs, into n floats (and back). */
FS_INLINE void FS_HLOCAL(widen)(const uint16_t *x, fs_index n, fs_index xs, float *out)
{
    FS_SIMD()
    for (fs_index i = 0; i < n; i++)
        out[i] = FS_H_LOAD(x[i * xs]);
}

FS_INLINE void FS_HLOCAL(narrow)(const float *in, fs_index n, uint16_t *y, fs_index ys)
{
    FS_SIMD()
    for (fs_index i = 0; i < n; i++)
        y[i * ys] = FS_H_STORE(in[i]);
}

/* A unit-stride run, by the CPU's conversion instructions where the dtype
 * has them (FS_H_WIDEN_SIMD and FS_H_NARROW_SIMD: 1 when they ran,
 * fs_half_simd.h); narrow1 rounds ((in - a) - b) f, computed in float32
 * (x - 0 is x: a run rounded as it is takes a = b = 0, f = 1). tiny 0 says
 * that no result is a nonzero float32 subnormal (which bfloat16's
 * instruction would flush: its lanes are then not looked for). */
FS_INLINE void FS_HLOCAL(widen1)(const uint16_t *x, fs_index n, float *out)
{
    if (!FS_H_WIDEN_SIMD(x, n, out))
        FS_HLOCAL(widen)(x, n, 1, out);
}

FS_INLINE void FS_HLOCAL(narrow1)(const float *in, fs_index n, float a, float b, float f, int tiny,
                                  uint16_t *y)
{
    if (FS_H_NARROW_SIMD(in, n, a, b, f, tiny, y))
        return;
    FS_SIMD()
    for (fs_index i = 0; i < n; i++)
        y[i] = FS_H_STORE(((in[i] - a) - b) * f);
}

/* widen1, then row_range: the run's largest value (returned) and its
 * smallest (*lo), NaN ignored; in one pass where the CPU has AVX-512 (a
 * loop of GCC's own did it in 256-bit compares and blends). */
FS_INLINE float FS_HLOCAL(widen_range)(const uint16_t *x, fs_index n, float *out, float *lo)
{
    float m;
    if (FS_H_WIDEN_RANGE_SIMD(x, n, out, &m, lo))
        return m;
    FS_HLOCAL(widen1)(x, n, out);
    return row_range_f32(out, n, 1, lo);
}

/* The unit stride as a constant where the row has it. */
FS_INLINE void FS_HLOCAL(widen_row)(const uint16_t *x, fs_index n, fs_index xs, float *out)
{
    if (xs == 1)
        FS_HLOCAL(widen1)(x, n, out);
    else
        FS_HLOCAL(widen)(x, n, xs, out);
}

FS_INLINE void FS_HLOCAL(narrow_row)(const float *in, fs_index n, uint16_t *y, fs_index ys)
{
    if (ys == 1)
        FS_HLOCAL(narrow1)(in, n, 0.0f, 0.0f, 1.0f, 1, y);
    else
        FS_HLOCAL(narrow)(in, n, y, ys);
}

/* nr rows of n <= FS_HALF_SMALL_C contiguous classes into a class-major float
 * tile xt[c * FS_TILE + r], and back (as tile_in and tile_out). Rows that
 * follow each other in memory (xrs == n) are converted in one vectorised
 * loop through buf and transposed as floats: converting element by element
 * inside the transpose made a float16 tile 1.9 times a float32 one. */
FS_INLINE void FS_HLOCAL(tile_in)(const uint16_t *x, fs_index xrs, fs_index nr, fs_index n,
                                  float *xt, float *buf)
{
    if (xrs == n) {
        FS_HLOCAL(widen1)(x, nr * n, buf);
        tile_in_f32(buf, n, nr, n, xt);
        return;
    }
    for (fs_index r = 0; r < nr; r++)
        for (fs_index c = 0; c < n; c++)
            xt[c * FS_TILE + r] = FS_H_LOAD(x[r * xrs + c]);
}

FS_INLINE void FS_HLOCAL(tile_out)(const float *xt, fs_index nr, fs_index n, uint16_t *y,
                                   fs_index yrs, float *buf)
{
    if (yrs == n) {
        tile_out_f32(xt, nr, n, buf, n);
        FS_HLOCAL(narrow1)(buf, nr * n, 0.0f, 0.0f, 1.0f, 1, y);
        return;
    }
    for (fs_index r = 0; r < nr; r++)
        for (fs_index c = 0; c < n; c++)
            y[r * yrs + c] = FS_H_STORE(xt[c * FS_TILE + r]);
}

/*
 * Streaming rows: softmax, log_softmax and the plain cross-entropy of a
 * unit-stride row in one sweep over its blocks of FS_SUM_BLOCK and one over
 * the float32 row on scratch e. The first widens each block into a buffer
 * that stays in L1 (prefetching two blocks ahead), takes the block's maximum
 * bm[k] and its exps from that maximum (kept in e, or for log_softmax the
 * widened scores are), and adds the blocks' sums up by their maxima into the
 * row's maximum m and sum s; the second scales each block of exps by
 * exp(bm[k] - m) / s and rounds it once into the output. The 2-byte row is
 * then read once and the float32 one written once and read once, where the
 * staged row (widen, max, exps, gradient, round) passes over it five times.
 * Exps from the block's maximum rather than the row's add one rounding of a
 * float32 product, far below a 2-byte ulp.
 *
 * stream_sums returns 0, having written only scratch, for a row with a block
 * whose maximum is not finite (+inf, or a block of -inf or NaN alone): such
 * rows take the staged row and its special values.
 */
#define FS_KEEP_NONE 0 /* the sums alone (a loss without its gradient) */
#define FS_KEEP_EXPS 1
#define FS_KEEP_SCORES 2

FS_INLINE int FS_HLOCAL(stream_sums)(const uint16_t *x, fs_index n, float *e, float *bm,
                                     const int keep, float *m, double *s)
{
    float buf[FS_SUM_BLOCK];
    const fs_index ahead = 2 * FS_SUM_BLOCK, line = 32; /* 2-byte values in a 64-byte line */
    float row_m = 0.0f;
    double row_s = 0.0;
    fs_index k = 0;
    for (fs_index i = 0; i < ahead && i < n; i += line)
        FS_PREFETCH(x + i);
    FS_BLOCKS(b0, b1, n) {
        const fs_index len = b1 - b0;
        for (fs_index i = b0 + ahead; i < b1 + ahead && i < n; i += line)
            FS_PREFETCH(x + i);
        float *xb = keep == FS_KEEP_SCORES ? e + b0 : buf;
        float lo;
        const float mb = FS_HLOCAL(widen_range)(x + b0, len, xb, &lo);
        if (!isfinite(mb))
            return 0;
        /* fast blocks take the shorter exp (fs_math.h), the others the accurate one */
        const int fast = all_fast_f32(lo, mb, mb);
        double sb;
        if (keep == FS_KEEP_EXPS)
            sb = fast ? exp_block_f32(xb, 0, len, 1, mb, e + b0, 1, 2, 1, 1)
                      : exp_block_f32(xb, 0, len, 1, mb, e + b0, 1, 0, 1, 1);
        else
            sb = fast ? exp_block_f32(xb, 0, len, 1, mb, NULL, 0, 2, 0, 1)
                      : exp_block_f32(xb, 0, len, 1, mb, NULL, 0, 0, 0, 1);
        if (k == 0) {
            row_m = mb;
            row_s = sb;
        } else if (mb > row_m) { /* the sum so far, rescaled to the new maximum */
            row_s = row_s * fs_exp_f64((double)row_m - (double)mb) + sb;
            row_m = mb;
        } else {
            row_s += sb * fs_exp_f64((double)mb - (double)row_m);
        }
        bm[k] = mb;
        bm[fs_stream_blocks(n) + k++] = fast ? lo - mb : -INFINITY;
    }
    *m = row_m;
    *s = row_s;
    return 1;
}

/* Block k's factor: f exp(bm[k] - m), in float32. */
FS_INLINE float FS_HLOCAL(stream_factor)(const float *bm, fs_index k, float m, double f)
{
    return (float)(f * fs_exp_f64((double)bm[k] - (double)m));
}

/* y = e times its block's factor, rounded once. A block's smallest result
 * is |fb| exp(lo - bm) (its exps are normal: fast blocks only) or 0: above
 * twice the smallest normal, with room for the exps' error, none is a
 * subnormal. */
FS_INLINE void FS_HLOCAL(stream_scale)(const float *e, fs_index n, const float *bm, float m,
                                       double f, uint16_t *y)
{
    const float *span = bm + fs_stream_blocks(n); /* lo - bm of fast blocks, else -inf */
    fs_index k = 0;
    FS_BLOCKS(b0, b1, n) {
        const float fb = FS_HLOCAL(stream_factor)(bm, k, m, f);
        const double least = fabs((double)fb) * fs_exp_f64((double)span[k++]);
        FS_HLOCAL(narrow1)(e + b0, b1 - b0, 0.0f, 0.0f, fb, fb != 0.0f && least < 0x1p-125, y + b0);
    }
}

/* softmax or log_softmax of a streaming row into y (which may be x); 0: the
 * row is not one (nothing written). Compiled apart, as the float32 rows. */
FS_DISPATCH int FS_HCAT(fs_softmax_stream_row_)(const uint16_t *x, fs_index n, float *e,
                                                uint16_t *y, int op)
{
    float *bm = e + fs_scratch_row(n), m;
    double s;
    if (!FS_HLOCAL(stream_sums)(x, n, e, bm, op == FS_SOFTMAX ? FS_KEEP_EXPS : FS_KEEP_SCORES, &m,
                                &s))
        return 0;
    if (op == FS_SOFTMAX) {
        FS_HLOCAL(stream_scale)(e, n, bm, m, 1.0 / s, y);
        return 1;
    }
    const float log_s = (float)fs_log_row(s);
    FS_HLOCAL(narrow1)(e, n, m, log_s, 1.0f, 1, y);
    return 1;
}

/* The conversions of unit-stride runs, elementwise (the tests' window on
 * widen1 and narrow1), compiled apart as the rows. */
FS_DISPATCH void FS_HCAT(fs_half_eval_)(int widen, const void *x, void *y, fs_index n)
{
    if (widen)
        FS_HLOCAL(widen1)((const uint16_t *)x, n, (float *)y);
    else
        FS_HLOCAL(narrow1)((const float *)x, n, 0.0f, 0.0f, 1.0f, 1, (uint16_t *)y);
}

/*
 * The plain cross-entropy of a streaming row (class-index target t, < 0
 * ignored; no softcap, no smoothing: class weights change only the point
 * mass): xent.h's formulas from the row's m and s. Loss into *loss, lse into
 * *lse, the gradient scaled by g into grad unless it is NULL (grad may be x).
 * 0: not a streaming row (nothing written).
 */
FS_DISPATCH int FS_HCAT(fs_xent_stream_row_)(const fs_xent_opts *o, const uint16_t *x, int64_t t,
                                             double g, float *e, uint16_t *grad, double *loss,
                                             double *lse)
{
    const fs_index n = o->n_classes;
    float *bm = e + fs_scratch_row(n), m;
    double s;
    if (!FS_HLOCAL(stream_sums)(x, n, e, bm, grad ? FS_KEEP_EXPS : FS_KEEP_NONE, &m, &s))
        return 0;
    const double log_s = fs_log_row(s);
    *lse = (double)m + log_s;
    if (t < 0) { /* ignored target */
        *loss = 0.0;
        if (grad)
            for (fs_index i = 0; i < n; i++)
                grad[i] = 0; /* +0 in both dtypes */
        return 1;
    }
    const float zy = FS_H_LOAD(x[t]); /* before grad, which may be x, is written */
    const double point = o->weight ? o->weight[t] : 1.0;
    *loss = xent_loss_f32(point, (double)m - (double)zy, 0, 0.0, 0.0, log_s, *lse, o->z_loss);
    if (!grad)
        return 1;
    const double a = xent_coef_f32(g, point, 0.0, *lse, o->z_loss) / s;
    FS_HLOCAL(stream_scale)(e, n, bm, m, a, grad);
    /* the gradient at t before its point mass, then with it */
    const float at = e[t] * FS_HLOCAL(stream_factor)(bm, t / FS_SUM_BLOCK, m, a);
    grad[t] = FS_H_STORE(at - (float)(g * point));
    return 1;
}

FS_DISPATCH void FS_HCAT(fs_softmax_task_)(const fs_softmax_batch *b, fs_index task)
{
    const uint16_t *x = (const uint16_t *)b->x.p;
    const fs_index n = b->n, rows = b->outer * b->inner, per = b->plan.per_task;
    const fs_index r0 = task * per, r1 = rows - r0 < per ? rows : r0 + per;
    if (b->plan.kind == FS_TILES) { /* inner == 1, unit class strides */
        float xt[FS_HALF_SMALL_C * FS_TILE], buf[FS_HALF_SMALL_C * FS_TILE];
        const fs_index nr = r1 - r0;
        FS_HLOCAL(tile_in)(x + r0 * b->x.s0, b->x.s0, nr, n, xt, buf);
        if (b->op == FS_LOGSUMEXP) {
            float *lse = (float *)b->y.p + r0 * b->y.s0;
            softmax_strip_f32(xt, FS_TILE, nr, n, NULL, 0, lse, b->y.s0, FS_LOGSUMEXP);
            return;
        }
        if (b->op == FS_SOFTMAX)
            softmax_strip_f32(xt, FS_TILE, nr, n, xt, FS_TILE, NULL, 0, FS_SOFTMAX);
        else
            softmax_strip_f32(xt, FS_TILE, nr, n, xt, FS_TILE, NULL, 0, FS_LOG_SOFTMAX);
        FS_HLOCAL(tile_out)(xt, nr, n, (uint16_t *)b->y.p + r0 * b->y.s0, b->y.s0, buf);
        return;
    }
    float *row = b->scratch + (fs_index)fs_thread_num() * fs_scratch_stride(n);
    const int stream = b->op != FS_LOGSUMEXP && b->x.s1 == 1 && b->y.s1 == 1;
    fs_row_walk rw = fs_walk_from(r0, b->inner);
    for (fs_index r = r0; r < r1; r++, fs_walk_next(&rw)) {
        if (stream
            && FS_HCAT(fs_softmax_stream_row_)(x + fs_walk_offset(&rw, &b->x), n, row,
                                               (uint16_t *)b->y.p + fs_walk_offset(&rw, &b->y),
                                               b->op))
            continue;
        FS_HLOCAL(widen_row)(x + fs_walk_offset(&rw, &b->x), n, b->x.s1, row);
        const float v = fs_softmax_row_f32(row, n, 1, row, 1, b->op);
        if (b->op == FS_LOGSUMEXP)
            ((float *)b->y.p)[fs_walk_offset(&rw, &b->y)] = v;
        else
            FS_HLOCAL(narrow_row)(row, n, (uint16_t *)b->y.p + fs_walk_offset(&rw, &b->y), b->y.s1);
    }
}

FS_DISPATCH void FS_HCAT(fs_xent_task_)(const fs_xent_batch *b, fs_index task)
{
    const uint16_t *x = (const uint16_t *)b->x.p;
    uint16_t *grad = (uint16_t *)b->grad.p;
    const fs_index n = b->o.n_classes, rows = b->outer * b->inner, per = b->plan.per_task;
    const fs_index r0 = task * per, r1 = rows - r0 < per ? rows : r0 + per;
    fs_row_walk rw = fs_walk_from(r0, b->inner);
    if (b->plan.kind == FS_TILES) { /* inner == 1, class-index targets, the fused forward */
        int64_t tbuf[FS_TILE];
        double gbuf[FS_TILE];
        float xt[FS_HALF_SMALL_C * FS_TILE], buf[FS_HALF_SMALL_C * FS_TILE];
        const fs_index nr = r1 - r0;
        for (fs_index r = r0; r < r1; r++, fs_walk_next(&rw)) {
            tbuf[r - r0] = target_of_f32(b, &rw).t;
            gbuf[r - r0] = scale_of_f32(b, &rw);
        }
        FS_HLOCAL(tile_in)(x + r0 * b->x.s0, b->x.s0, nr, n, xt, buf);
        xent_strip_f32(&b->o, xt, FS_TILE, nr, tbuf, gbuf, grad ? xt : NULL, FS_TILE, b->loss + r0,
                       b->lse ? b->lse + r0 : NULL);
        if (grad)
            FS_HLOCAL(tile_out)(xt, nr, n, grad + r0 * b->grad.s0, b->grad.s0, buf);
        return;
    }
    /* The float32 rows read the batch's options and strides: a copy whose
     * scores and gradient are the unit-stride row on scratch. The targets
     * (labels, or float32 probabilities) and scales are read as they are. */
    float *row = b->scratch + (fs_index)fs_thread_num() * fs_scratch_stride(n);
    fs_xent_batch fb = *b;
    fb.x.s1 = fb.grad.s1 = 1;
    const int stream = b->target.p && !b->lse_in.p && b->o.softcap == 0.0 && b->o.smoothing == 0.0
                       && b->x.s1 == 1 && (!grad || b->grad.s1 == 1);
    for (fs_index r = r0; r < r1; r++, fs_walk_next(&rw)) {
        uint16_t *gr = grad ? grad + fs_walk_offset(&rw, &b->grad) : NULL;
        const xent_target_f32 tg = target_of_f32(b, &rw);
        const double g = scale_of_f32(b, &rw);
        double lse_row; /* where the caller keeps no lse */
        if (stream
            && FS_HCAT(fs_xent_stream_row_)(&b->o, x + fs_walk_offset(&rw, &b->x), tg.t, g, row, gr,
                                            &b->loss[r], b->lse ? &b->lse[r] : &lse_row))
            continue;
        FS_HLOCAL(widen_row)(x + fs_walk_offset(&rw, &b->x), n, b->x.s1, row);
        if (b->lse_in.p) {
            const double lse = ((const double *)b->lse_in.p)[fs_walk_offset(&rw, &b->lse_in)];
            fs_xent_backward_row_f32(&fb, row, tg, lse, g, row);
        } else {
            b->loss[r] = fs_xent_forward_row_f32(&fb, row, tg, g, gr ? row : NULL,
                                                 b->lse ? &b->lse[r] : &lse_row);
        }
        if (gr)
            FS_HLOCAL(narrow_row)(row, n, gr, b->grad.s1);
    }
}

#undef FS_HCAT2
#undef FS_HCAT1
#undef FS_HCAT
#undef FS_HLOCAL
#undef FS_H_SUF
#undef FS_H_LOAD
#undef FS_H_STORE
#undef FS_H_WIDEN_SIMD
#undef FS_H_WIDEN_RANGE_SIMD
#undef FS_H_NARROW_SIMD
#undef FS_KEEP_NONE
#undef FS_KEEP_EXPS
#undef FS_KEEP_SCORES
