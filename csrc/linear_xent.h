/*
 * One part of a minibatch of a linear softmax model with few classes, for
 * one dtype (see reduce.h for how this file is instantiated; fastsoftmax.h
 * describes fs_linear_batch). Each row x of the part (d features) is read
 * once, while it sits in cache: scores z = W x + b, the row's loss and
 * dz = g_r d loss / dz by xent_row, then gW += dz x^T and gb += dz.
 *
 * Rows go FS_LINEAR_ROWS (four) at a time and classes four at a time where
 * the CPU has 32 vector registers for the 16 sums (two at a time otherwise,
 * where four would spill: 7% slower with AVX2, 17% faster with AVX-512 at
 * 60000 x 784 x 10), so that each load of W or of gW (which need not fit in
 * L1) serves four rows, and each load of x several classes.
 */

/* z_j[c] = W_c . x_j for the four rows and classes c0 .. c0 + 1 (or c0 alone). */
FS_INLINE void FS_LOCAL(linear_scores2)(const FS_T *W, fs_index d, fs_index c, fs_index nc,
                                        const FS_T *const *x, FS_T *const *z)
{
    const FS_T *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    const FS_T *wa = W + c * d, *wb = c + 1 < nc ? wa + d : wa;
    FS_T a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    FS_SIMD(reduction(+ : a0, a1, a2, a3, b0, b1, b2, b3))
    for (fs_index k = 0; k < d; k++) {
        const FS_T u = wa[k], v = wb[k];
        a0 += u * x0[k], a1 += u * x1[k], a2 += u * x2[k], a3 += u * x3[k];
        b0 += v * x0[k], b1 += v * x1[k], b2 += v * x2[k], b3 += v * x3[k];
    }
    z[0][c] = a0, z[1][c] = a1, z[2][c] = a2, z[3][c] = a3;
    if (c + 1 < nc)
        z[0][c + 1] = b0, z[1][c + 1] = b1, z[2][c + 1] = b2, z[3][c + 1] = b3;
}

/* gW_c += sum_j z_j[c] x_j for classes c .. c + 1 (or c alone). */
FS_INLINE void FS_LOCAL(linear_update2)(FS_T *gW, fs_index d, fs_index c, fs_index nc,
                                        const FS_T *const *x, FS_T *const *z)
{
    const FS_T *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    const FS_T p0 = z[0][c], p1 = z[1][c], p2 = z[2][c], p3 = z[3][c];
    FS_T *ga = gW + c * d;
    if (c + 1 < nc) {
        const FS_T q0 = z[0][c + 1], q1 = z[1][c + 1], q2 = z[2][c + 1], q3 = z[3][c + 1];
        FS_T *gb = ga + d;
        FS_SIMD()
        for (fs_index k = 0; k < d; k++) {
            ga[k] += p0 * x0[k] + p1 * x1[k] + p2 * x2[k] + p3 * x3[k];
            gb[k] += q0 * x0[k] + q1 * x1[k] + q2 * x2[k] + q3 * x3[k];
        }
    } else {
        FS_SIMD()
        for (fs_index k = 0; k < d; k++)
            ga[k] += p0 * x0[k] + p1 * x1[k] + p2 * x2[k] + p3 * x3[k];
    }
}

/* z_j[c] = W_c . x_j for the four rows and classes c .. c + 3 (those below nc). */
FS_INLINE void FS_LOCAL(linear_scores4)(const FS_T *W, fs_index d, fs_index c, fs_index nc,
                                        const FS_T *const *x, FS_T *const *z)
{
    const FS_T *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    const FS_T *wa = W + c * d;
    const FS_T *wb = c + 1 < nc ? wa + d : wa, *wc = c + 2 < nc ? wa + 2 * d : wa,
               *wd = c + 3 < nc ? wa + 3 * d : wa;
    FS_T a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    FS_T c0 = 0, c1 = 0, c2 = 0, c3 = 0, d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    FS_SIMD(reduction(+ : a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3))
    for (fs_index k = 0; k < d; k++) {
        const FS_T u = wa[k], v = wb[k], s = wc[k], t = wd[k];
        const FS_T y0 = x0[k], y1 = x1[k], y2 = x2[k], y3 = x3[k];
        a0 += u * y0, a1 += u * y1, a2 += u * y2, a3 += u * y3;
        b0 += v * y0, b1 += v * y1, b2 += v * y2, b3 += v * y3;
        c0 += s * y0, c1 += s * y1, c2 += s * y2, c3 += s * y3;
        d0 += t * y0, d1 += t * y1, d2 += t * y2, d3 += t * y3;
    }
    z[0][c] = a0, z[1][c] = a1, z[2][c] = a2, z[3][c] = a3;
    if (c + 1 < nc)
        z[0][c + 1] = b0, z[1][c + 1] = b1, z[2][c + 1] = b2, z[3][c + 1] = b3;
    if (c + 2 < nc)
        z[0][c + 2] = c0, z[1][c + 2] = c1, z[2][c + 2] = c2, z[3][c + 2] = c3;
    if (c + 3 < nc)
        z[0][c + 3] = d0, z[1][c + 3] = d1, z[2][c + 3] = d2, z[3][c + 3] = d3;
}

/* gW_c += sum_j z_j[c] x_j for classes c .. c + 3 (those below nc). */
FS_INLINE void FS_LOCAL(linear_update4)(FS_T *gW, fs_index d, fs_index c, fs_index nc,
                                        const FS_T *const *x, FS_T *const *z)
{
    const FS_T *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    if (c + 3 < nc) {
        FS_T *ga = gW + c * d, *gb = ga + d, *gc = ga + 2 * d, *gd = ga + 3 * d;
        const FS_T p0 = z[0][c], p1 = z[1][c], p2 = z[2][c], p3 = z[3][c];
        const FS_T q0 = z[0][c + 1], q1 = z[1][c + 1], q2 = z[2][c + 1], q3 = z[3][c + 1];
        const FS_T r0 = z[0][c + 2], r1 = z[1][c + 2], r2 = z[2][c + 2], r3 = z[3][c + 2];
        const FS_T s0 = z[0][c + 3], s1 = z[1][c + 3], s2 = z[2][c + 3], s3 = z[3][c + 3];
        FS_SIMD()
        for (fs_index k = 0; k < d; k++) {
            const FS_T y0 = x0[k], y1 = x1[k], y2 = x2[k], y3 = x3[k];
            ga[k] += p0 * y0 + p1 * y1 + p2 * y2 + p3 * y3;
            gb[k] += q0 * y0 + q1 * y1 + q2 * y2 + q3 * y3;
            gc[k] += r0 * y0 + r1 * y1 + r2 * y2 + r3 * y3;
            gd[k] += s0 * y0 + s1 * y1 + s2 * y2 + s3 * y3;
        }
        return;
    }
    for (; c < nc; c++) {
        FS_T *ga = gW + c * d;
        const FS_T p0 = z[0][c], p1 = z[1][c], p2 = z[2][c], p3 = z[3][c];
        FS_SIMD()
        for (fs_index k = 0; k < d; k++)
            ga[k] += p0 * x0[k] + p1 * x1[k] + p2 * x2[k] + p3 * x3[k];
    }
}

/* Rows a .. e of the batch: returns the sum of g[row] * loss. */
FS_INLINE double FS_LOCAL(linear_part)(const fs_linear_batch *bt, fs_index a, fs_index e, FS_T *gW,
                                       FS_T *gb, FS_T *zbuf)
{
    const fs_index nc = bt->o.n_classes, d = bt->d;
    const FS_T *X = (const FS_T *)bt->X, *W = (const FS_T *)bt->W, *b = (const FS_T *)bt->b;
    const FS_LOCAL(xent_target) none = {0, NULL, 0};
    const int wide = bt->class_block ? bt->class_block == 4 : fs_many_registers();
    const fs_index step = wide ? 4 : 2;
    double total = 0.0;
    for (fs_index j = 0; j < nc * d; j++)
        gW[j] = 0;
    for (fs_index c = 0; gb && c < nc; c++)
        gb[c] = 0;
    for (fs_index r = a; r < e; r += FS_LINEAR_ROWS) {
        const fs_index nr = e - r < FS_LINEAR_ROWS ? e - r : FS_LINEAR_ROWS;
        fs_index rows[FS_LINEAR_ROWS];
        const FS_T *x[FS_LINEAR_ROWS];
        FS_T *z[FS_LINEAR_ROWS];
        for (fs_index j = 0; j < FS_LINEAR_ROWS; j++) { /* missing rows repeat the first */
            const fs_index k = r + (j < nr ? j : 0);
            rows[j] = bt->idx ? (fs_index)bt->idx[k] : k;
            x[j] = X + rows[j] * bt->xrs;
            z[j] = zbuf + j * nc;
        }
        for (fs_index c = 0; c < nc; c += step)
            if (wide)
                FS_LOCAL(linear_scores4)(W, d, c, nc, x, z);
            else
                FS_LOCAL(linear_scores2)(W, d, c, nc, x, z);
        for (fs_index j = 0; j < FS_LINEAR_ROWS; j++) {
            if (j >= nr) { /* a repeated row adds nothing */
                FS_LOCAL(fill)(z[j], nc, 1, 0);
                continue;
            }
            for (fs_index c = 0; b && c < nc; c++)
                z[j][c] += b[c];
            const double weight = bt->g ? bt->g[rows[j]] : 1.0;
            FS_LOCAL(xent_target) tg = none;
            tg.t = bt->labels[rows[j]];
            double lse;
            total += weight
                     * FS_LOCAL(xent_row)(&bt->o, z[j], 1, tg, bt->g_value * weight, z[j], 1, &lse,
                                          1, 0, 0);
            for (fs_index c = 0; gb && c < nc; c++)
                gb[c] += z[j][c];
        }
        for (fs_index c = 0; c < nc; c += step)
            if (wide)
                FS_LOCAL(linear_update4)(gW, d, c, nc, x, z);
            else
                FS_LOCAL(linear_update2)(gW, d, c, nc, x, z);
    }
    return total;
}

FS_DISPATCH void FS_CAT(fs_linear_xent_task_, FS_SUF)(const fs_linear_batch *b, fs_index part)
{
    const fs_index nc = b->o.n_classes;
    const fs_index a = b->n * part / b->n_parts, e = b->n * (part + 1) / b->n_parts;
    FS_T *gb = b->b ? (FS_T *)b->gb_parts + part * nc : NULL;
    b->totals[part] = FS_LOCAL(linear_part)(b, a, e, (FS_T *)b->gW_parts + part * nc * b->d, gb,
                                            (FS_T *)b->z_parts + part * FS_LINEAR_ROWS * nc);
}
