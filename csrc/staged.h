/*
 * The kernels of a 2-byte dtype (float16, bfloat16): fastsoftmax.c includes
 * this file once per 2-byte dtype, after the float32 instantiation, with
 * FS_H_SUF (f16, bf16), FS_H_LOAD (bits -> float) and FS_H_STORE (float ->
 * bits, rounded to nearest even) defined.
 *
 * Each row (or tile of rows) is widened into float32 on the thread's own
 * scratch, computed there by the float32 bodies, and each output element is
 * rounded once on the way back: so every value is computed in float32 from
 * the exact 2-byte inputs (sums in double, as for float32) and the results
 * are float32's, correctly rounded. Memory sees 2 bytes read and 2 written
 * per element; the float32 copies of a row stay in the cache (a row of 128k
 * classes is 512 KiB). Losses, lse and logsumexp come out in float32 (or
 * double, as for every dtype); probability targets come as float32.
 *
 * Scratch: rows (FS_ROWS) use b->scratch, a row of floats for each thread of
 * the call (fs_scratch_stride apart), given by the caller; tiles use the stack. 2-byte batches are
 * never planned as strips (fs_*_plan): their rows read across the inner axis.
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

/* The unit stride as a constant where the row has it. */
FS_INLINE void FS_HLOCAL(widen_row)(const uint16_t *x, fs_index n, fs_index xs, float *out)
{
    if (xs == 1)
        FS_HLOCAL(widen)(x, n, 1, out);
    else
        FS_HLOCAL(widen)(x, n, xs, out);
}

FS_INLINE void FS_HLOCAL(narrow_row)(const float *in, fs_index n, uint16_t *y, fs_index ys)
{
    if (ys == 1)
        FS_HLOCAL(narrow)(in, n, y, 1);
    else
        FS_HLOCAL(narrow)(in, n, y, ys);
}

/* nr rows of n <= FS_SMALL_C contiguous classes into a class-major float
 * tile xt[c * FS_TILE + r], and back (as tile_in and tile_out). Rows that
 * follow each other in memory (xrs == n) are converted in one vectorised
 * loop through buf and transposed as floats: converting element by element
 * inside the transpose made a float16 tile 1.9 times a float32 one. */
FS_INLINE void FS_HLOCAL(tile_in)(const uint16_t *x, fs_index xrs, fs_index nr, fs_index n,
                                  float *xt, float *buf)
{
    if (xrs == n) {
        FS_HLOCAL(widen)(x, nr * n, 1, buf);
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
        FS_HLOCAL(narrow)(buf, nr * n, y, 1);
        return;
    }
    for (fs_index r = 0; r < nr; r++)
        for (fs_index c = 0; c < n; c++)
            y[r * yrs + c] = FS_H_STORE(xt[c * FS_TILE + r]);
}

FS_DISPATCH void FS_HCAT(fs_softmax_task_)(const fs_softmax_batch *b, fs_index task)
{
    const uint16_t *x = (const uint16_t *)b->x.p;
    const fs_index n = b->n, rows = b->outer * b->inner, per = b->plan.per_task;
    const fs_index r0 = task * per, r1 = rows - r0 < per ? rows : r0 + per;
    if (b->plan.kind == FS_TILES) { /* inner == 1, unit class strides */
        float xt[FS_SMALL_C * FS_TILE], buf[FS_SMALL_C * FS_TILE];
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
    fs_row_walk rw = fs_walk_from(r0, b->inner);
    for (fs_index r = r0; r < r1; r++, fs_walk_next(&rw)) {
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
        float xt[FS_SMALL_C * FS_TILE], buf[FS_SMALL_C * FS_TILE];
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
    for (fs_index r = r0; r < r1; r++, fs_walk_next(&rw)) {
        uint16_t *gr = grad ? grad + fs_walk_offset(&rw, &b->grad) : NULL;
        const xent_target_f32 tg = target_of_f32(b, &rw);
        const double g = scale_of_f32(b, &rw);
        FS_HLOCAL(widen_row)(x + fs_walk_offset(&rw, &b->x), n, b->x.s1, row);
        if (b->lse_in.p) {
            const double lse = ((const double *)b->lse_in.p)[fs_walk_offset(&rw, &b->lse_in)];
            fs_xent_backward_row_f32(&fb, row, tg, lse, g, row);
        } else {
            double lse_row; /* where the caller keeps no lse */
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
