/*
 * Softmax cross-entropy for one dtype (see reduce.h for how this file is
 * instantiated).
 *
 * Notation for one row: z = scores after softcap (z = s tanh(x / s)), m =
 * max z, shift = m (0 if not finite), S = sum exp(z - shift), lse = shift +
 * log S, p = exp(z - lse), w = class weights (1 if none), W = sum w, eps =
 * smoothing, C = n_classes, g = the row's gradient scale. Both kinds of
 * target are a point mass and a spread u over the classes:
 *   class index y:  point = (1 - eps) w_y,  u_c = eps / C w_c,  U = eps / C W
 *   probabilities:  point = 0,              u_c = w_c q'_c,     U = sum u_c,
 *                   q' = (1 - eps) q + eps / C
 * and then, with gap = sum_c u_c (shift - z_c),
 *   loss = point ((shift - z_y) + log S) + U log S + gap + z_loss lse^2
 *   dloss/dz_c = a p_c - u_c - [c == y] point,  a = point + U + 2 z_loss lse
 * times dz/dx = 1 - (z / s)^2 with softcap. lse - z is summed as
 * (shift - z) + log S, two non-negative parts, so the loss keeps its
 * relative precision when the scores are large.
 */

/* The score after the optional softcap (fs_math.h's tanh, which vectorises). */
#define FS_SCORE(v) (capped ? cap * FS_TANH((v) / cap) : (v))
/* d score / d x at the score z. */
#define FS_DSCORE(z) (capped ? (FS_T)1 - ((z) / cap) * ((z) / cap) : (FS_T)1)

/* U of a class-index target, eps / C W: 0 without smoothing, so that an
 * infinite class weight does not turn every row's gradient into NaN. */
FS_INLINE double FS_LOCAL(uniform_mass)(const fs_xent_opts *o)
{
    return o->smoothing != 0.0 ? o->smoothing / (double)o->n_classes * o->weight_sum : 0.0;
}

/* The two formulas of the notation above, shared by every body. */
FS_INLINE double FS_LOCAL(xent_loss)(double point, double shift_minus_zy, int with_u, double U,
                                     double gap, double log_s, double lse, double z_loss)
{
    /* the terms that are 0 by the options are left out (0 * inf would be NaN) */
    double loss = point * (shift_minus_zy + log_s);
    loss += with_u ? U * log_s + gap : 0.0;
    return loss + (z_loss != 0.0 ? z_loss * lse * lse : 0.0);
}

FS_INLINE double FS_LOCAL(xent_coef)(double g, double point, double U, double lse, double z_loss)
{
    return g * (point + U + 2.0 * z_loss * lse);
}

/* u_c times g (spread = g eps / C, keep = g (1 - eps)): the target's spread. */
#define FS_SPREAD(i) \
    ((probs ? q[(i) * qs] * keep + spread : spread) * (weighted ? (FS_T)w[i] : (FS_T)1))

/* u_c of class i (see spread_block) */
FS_INLINE double FS_LOCAL(spread_u)(const FS_T *q, fs_index qs, const double *w, fs_index i,
                                    double keep, double spread, FS_T keep_t, FS_T spread_t,
                                    const int probs, const int weighted, const int wide)
{
    return wide ? (probs ? (double)q[i * qs] * keep + spread : spread) * (weighted ? w[i] : 1.0)
                : (double)((probs ? q[i * qs] * keep_t + spread_t : spread_t)
                           * (weighted ? (FS_T)w[i] : (FS_T)1));
}

/* sum of u_c and, with `with_gap`, of u_c (shift - z_c) over the n classes
 * of a block, z_c in z (q and w start at the block too; z unused without).
 * u_c in FS_T, or with `wide` in double: a spread eps / C that is 0 in FS_T
 * must stay non-zero where it meets an infinite gap (the loss is then inf,
 * not NaN); FS_T otherwise, 5% faster with smoothing or probabilities.
 * The sums run in FS_LANES fixed partial sums, as exp_block's: the order of
 * the additions is then the code's, not the vectoriser's, which chose
 * another for a block read at unit stride (the forward with softcap, from a
 * stack copy of z) than at a run-time one (the fused row, z in grad), and
 * the forward's loss then differed from the fused call's in the last bit. */
FS_INLINE void FS_LOCAL(spread_block)(const FS_T *z, fs_index zs, const FS_T *q, fs_index qs,
                                      const double *w, fs_index n, FS_T shift, double keep,
                                      double spread, double *U, double *gap, const int probs,
                                      const int weighted, const int with_gap, const int wide)
{
    double bu[FS_LANES] = {0}, bgap[FS_LANES] = {0};
    const FS_T keep_t = (FS_T)keep, spread_t = (FS_T)spread;
    fs_index i0 = 0;
    for (; i0 + FS_LANES <= n; i0 += FS_LANES) {
        FS_SIMD()
        for (fs_index l = 0; l < FS_LANES; l++) {
            const fs_index i = i0 + l;
            const double u = FS_LOCAL(spread_u)(q, qs, w, i, keep, spread, keep_t, spread_t, probs,
                                                weighted, wide);
            bu[l] += u;
            if (with_gap)
                bgap[l] += u * (double)(shift - z[i * zs]);
        }
    }
    const fs_index rest = n - i0;
    FS_SIMD()
    for (fs_index l = 0; l < FS_LANES; l++) {
        if (l < rest) {
            const fs_index i = i0 + l;
            const double u = FS_LOCAL(spread_u)(q, qs, w, i, keep, spread, keep_t, spread_t, probs,
                                                weighted, wide);
            bu[l] += u;
            if (with_gap)
                bgap[l] += u * (double)(shift - z[i * zs]);
        }
    }
    for (fs_index h = FS_LANES / 2; h > 0; h /= 2) {
        FS_SIMD()
        for (fs_index l = 0; l < h; l++) {
            bu[l] += bu[l + h];
            bgap[l] += bgap[l + h];
        }
    }
    *U = bu[0];
    *gap = bgap[0];
}

/*
 * The gradient pass: grad_c = (a E_c - g u_c) dz_c, with E_c, where the pass
 * finds it (`mode`):
 *   0  E stored in src (exp(z - shift), src is grad);
 *   1  z stored in src (softcap), E = exp(z - shift);
 *   2  src is x, z = score(x), E = exp(z - shift).
 * `a` already holds the 1 / S of p = E / S. grad may be src.
 */
FS_INLINE void FS_LOCAL(grad_block)(const FS_T *src, fs_index ss, const FS_T *q, fs_index qs,
                                    const double *w, fs_index b0, fs_index b1, FS_T shift, FS_T a,
                                    FS_T keep, FS_T spread, FS_T cap, FS_T *grad, fs_index gs,
                                    const int mode, const int capped, const int probs,
                                    const int with_u, const int weighted, const int fast)
{
    FS_SIMD()
    for (fs_index i = b0; i < b1; i++) {
        const FS_T v = src[i * ss];
        const FS_T z = mode == 2 ? FS_SCORE(v) : v;
        const FS_T e = mode == 0 ? v : FS_EXPQ(z - shift);
        const FS_T dz = mode != 0 ? FS_DSCORE(z) : (FS_T)1;
        const FS_T u = with_u ? FS_SPREAD(i) : (FS_T)0;
        grad[i * gs] = (a * e - u) * dz;
    }
}

/* The flags a row body runs with, as compile-time constants after inlining. */
#define FS_GRAD_BLOCK(fast_)                                                                     \
    FS_LOCAL(grad_block)(src, ss, q, qs, w, b0, b1, shift, a, keep, spread, cap, grad, gs, mode, \
                         capped, probs, with_u, weighted, fast_)

FS_INLINE void FS_LOCAL(grad_pass)(const FS_T *src, fs_index ss, const FS_T *q, fs_index qs,
                                   const double *w, fs_index n, FS_T shift, FS_T a, FS_T keep,
                                   FS_T spread, FS_T cap, FS_T *grad, fs_index gs, const int mode,
                                   const int capped, const int probs, const int with_u,
                                   const int weighted)
{
    if (mode == 0) { /* no exp: one loop over the row, not one per block */
        const fs_index b0 = 0, b1 = n;
        FS_GRAD_BLOCK(0);
        return;
    }
    FS_BLOCKS(b0, b1, n) {
        /* the fast-exp policy on the exps' arguments (mode 2 with softcap
         * does not hold them, and takes the accurate exp) */
        if ((mode == 2 && capped) || !FS_LOCAL(fast_range)(src, b0, b1, ss, shift))
            FS_GRAD_BLOCK(0);
        else
            FS_GRAD_BLOCK(1);
    }
}

/* What one row's target is: a class (t < 0: ignored) or a probability row. */
typedef struct FS_LOCAL(xent_target) {
    int64_t t;
    const FS_T *q;
    fs_index qs;
} FS_LOCAL(xent_target);

/* The sum pass of xent_row: S = sum exp(z - shift) (each exp stored in grad
 * when the gradient follows without softcap), and with the target's spread
 * U = sum u_c and gap = sum u_c (shift - z_c). With softcap z is in grad
 * already (keep_z) or, without a gradient, taken again from x. fast_row: the
 * row is all_fast (no block needs its check). */
FS_INLINE void FS_LOCAL(xent_sums)(const FS_T *x, fs_index xs, FS_LOCAL(xent_target) tg,
                                   const double *w, fs_index n, FS_T shift, double keep,
                                   double spread, FS_T cap, FS_T *grad, fs_index gs, double *s_out,
                                   double *U_out, double *gap_out, const int store,
                                   const int capped, const int probs, const int with_u,
                                   const int fast_row)
{
    const FS_T *q = tg.q;
    const fs_index qs = tg.qs;
    const int keep_z = store && capped;
    const int wide = spread != 0.0 && (FS_T)spread == (FS_T)0; /* see spread_block */
    const FS_T *src = keep_z ? grad : x;
    const fs_index ss = keep_z ? gs : xs;
    fs_sum sum = {0.0, 0.0}, U = {0.0, 0.0}, gap = {0.0, 0.0};
    FS_BLOCKS(b0, b1, n) {
        /* The block's scores from src, or with softcap and no gradient buffer,
         * from a stack copy of z: the same exps and sums, so the same loss, as
         * the fused call (which keeps z in grad). */
        const fs_index len = b1 - b0;
        const FS_T *bz = src + b0 * ss;
        fs_index bzs = ss;
        FS_T zb[FS_SUM_BLOCK];
        if (capped && !keep_z) {
            FS_SIMD()
            for (fs_index i = 0; i < len; i++)
                zb[i] = FS_SCORE(x[(b0 + i) * xs]);
            bz = zb;
            bzs = 1;
        }
        const FS_T *bq = probs ? q + b0 * qs : NULL;
        if (with_u) {
            double bu, bgap;
            if (wide) /* (rare: the flags at run time) */
                FS_LOCAL(spread_block)(bz, bzs, bq, qs, w ? w + b0 : NULL, len, shift, keep, spread,
                                       &bu, &bgap, probs, w != NULL, 1, 1);
            else if (w)
                FS_LOCAL(spread_block)(bz, bzs, bq, qs, w + b0, len, shift, keep, spread, &bu,
                                       &bgap, probs, 1, 1, 0);
            else
                FS_LOCAL(spread_block)(bz, bzs, bq, qs, NULL, len, shift, keep, spread, &bu, &bgap,
                                       probs, 0, 1, 0);
            fs_sum_add(&U, bu);
            fs_sum_add(&gap, bgap);
        }
        const int fast = fast_row || FS_LOCAL(fast_range)(bz, 0, len, bzs, shift);
        const int st = store && !capped;
        FS_T *bg = st ? grad + b0 * gs : NULL;
        fs_sum_add(&sum, fast ? FS_LOCAL(exp_block)(bz, 0, len, bzs, shift, bg, gs, 1, st, 0)
                              : FS_LOCAL(exp_block)(bz, 0, len, bzs, shift, bg, gs, 0, st, 0));
    }
    *s_out = sum.s;
    *U_out = U.s;
    *gap_out = gap.s;
}

/* The gradient of one row from the scale a (1 / S included) by grad_pass,
 * E found in src as `mode` says, then the target's point mass at class t:
 * shared by the fused row and the backward from lse. */
FS_INLINE void FS_LOCAL(write_grad)(const fs_xent_opts *o, const FS_T *src, fs_index ss,
                                    FS_LOCAL(xent_target) tg, FS_T shift, FS_T a, double g,
                                    double point, FS_T zy, FS_T *grad, fs_index gs, const int mode,
                                    const int capped, const int probs)
{
    const fs_index n = o->n_classes;
    const double eps = o->smoothing, *w = o->weight;
    const FS_T cap = (FS_T)o->softcap;
    const FS_T gkeep = (FS_T)(g * (1.0 - eps)), gspread = (FS_T)(g * eps / (double)n);
    const int with_u = probs || eps != 0.0;
    if (with_u && w)
        FS_LOCAL(grad_pass)(src, ss, tg.q, tg.qs, w, n, shift, a, gkeep, gspread, cap, grad, gs,
                            mode, capped, probs, 1, 1);
    else
        FS_LOCAL(grad_pass)(src, ss, tg.q, tg.qs, w, n, shift, a, gkeep, gspread, cap, grad, gs,
                            mode, capped, probs, with_u, 0);
    if (!probs)
        grad[tg.t * gs] -= (FS_T)(g * point) * FS_DSCORE(zy);
}

/*
 * Loss (returned) and lse of one row; with `store`, the gradient scaled by g
 * into grad (which may alias x). One exp per element without softcap: the
 * sum pass stores exp(z - shift) in grad, the gradient pass turns it into
 * the gradient. With softcap the max pass stores z in grad (so x may be
 * overwritten), and the gradient pass takes the exps again from z.
 */
FS_INLINE double FS_LOCAL(xent_row)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                    FS_LOCAL(xent_target) tg, double g, FS_T *grad, fs_index gs,
                                    double *lse_out, const int store, const int capped,
                                    const int probs)
{
    const fs_index n = o->n_classes;
    const double eps = o->smoothing, *w = o->weight;
    const FS_T cap = (FS_T)o->softcap;
    const fs_index t = tg.t;
    const FS_T zy = !probs && t >= 0 ? FS_SCORE(x[t * xs]) : (FS_T)0; /* before grad is written */
    const int keep_z = store && capped; /* z lives in grad from the max pass on */
    FS_T m = -(FS_T)INFINITY, lo = (FS_T)INFINITY;
    FS_SIMD(reduction(max : m) reduction(min : lo))
    for (fs_index i = 0; i < n; i++) {
        const FS_T z = FS_SCORE(x[i * xs]);
        if (keep_z)
            grad[i * gs] = z;
        m = z > m ? z : m;
        lo = z < lo ? z : lo;
    }
    const FS_T shift = isfinite(m) ? m : (FS_T)0;
    const int with_u = probs || eps != 0.0;
    double s, Usum, gapsum;
    FS_LOCAL(xent_sums)(x, xs, tg, w, n, shift, 1.0 - eps, eps / (double)n, cap, grad, gs, &s,
                        &Usum, &gapsum, store, capped, probs, with_u,
                        FS_LOCAL(all_fast)(lo, m, shift));
    const double log_s = fs_log_row(s), lse = (double)shift + log_s;
    *lse_out = lse;
    if (!probs && t < 0) { /* ignored target */
        if (store)
            FS_LOCAL(fill)(grad, n, gs, 0);
        return 0.0;
    }
    if (m == (FS_T)INFINITY) { /* log-softmax of a row holding +inf is NaN, as in torch */
        if (store)
            FS_LOCAL(fill)(grad, n, gs, (FS_T)NAN);
        return NAN;
    }
    const double point = probs ? 0.0 : (1.0 - eps) * (w ? w[t] : 1.0);
    const double Us = probs ? Usum : FS_LOCAL(uniform_mass)(o);
    const double loss = FS_LOCAL(xent_loss)(point, (double)shift - (double)zy, with_u, Us, gapsum,
                                            log_s, lse, o->z_loss);
    if (!store)
        return loss;
    const FS_T a = (FS_T)(FS_LOCAL(xent_coef)(g, point, Us, lse, o->z_loss) / s);
    FS_LOCAL(write_grad)(o, grad, gs, tg, shift, a, g, point, zy, grad, gs, capped ? 1 : 0, capped,
                         probs);
    return loss;
}

/* The gradient alone of one row, from its lse: p = exp(z - lse), taken as
 * exp(z - shift) / S with shift = lse rounded to FS_T and S = exp(lse - shift). */
FS_INLINE void FS_LOCAL(xent_row_grad)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                       FS_LOCAL(xent_target) tg, double lse, double g, FS_T *grad,
                                       fs_index gs, const int capped, const int probs)
{
    const fs_index n = o->n_classes, t = tg.t, qs = tg.qs;
    const double eps = o->smoothing, *w = o->weight;
    const FS_T cap = (FS_T)o->softcap, *q = tg.q;
    if (!probs && t < 0) {
        FS_LOCAL(fill)(grad, n, gs, 0);
        return;
    }
    if (lse == INFINITY) {
        FS_LOCAL(fill)(grad, n, gs, (FS_T)NAN);
        return;
    }
    const FS_T zy = !probs ? FS_SCORE(x[t * xs]) : (FS_T)0; /* before grad is written */
    const FS_T shift = (FS_T)lse;
    const double s = fs_exp_f64(lse - (double)shift);
    const double keep = 1.0 - eps, spread = eps / (double)n;
    double Us = FS_LOCAL(uniform_mass)(o);
    if (probs) {
        fs_sum U = {0.0, 0.0};
        FS_BLOCKS(b0, b1, n) {
            double bu, bgap;
            FS_LOCAL(spread_block)(NULL, 0, q + b0 * qs, qs, w ? w + b0 : NULL, b1 - b0, 0, keep,
                                   spread, &bu, &bgap, 1, w != NULL, 0, 1); /* U alone */
            fs_sum_add(&U, bu);
        }
        Us = U.s;
    }
    const double point = probs ? 0.0 : (1.0 - eps) * (w ? w[t] : 1.0);
    const FS_T a = (FS_T)(FS_LOCAL(xent_coef)(g, point, Us, lse, o->z_loss) / s);
    FS_LOCAL(write_grad)(o, x, xs, tg, shift, a, g, point, zy, grad, gs, 2, capped, probs);
}

/* The exps of classes c0..c1 of a strip: sums into bs (and, with `gap`, the
 * weighted gaps w_c (shift - z_c), u_c / (eps / C), into bgap), each exp
 * stored in grad with `store`. */
FS_INLINE void FS_LOCAL(xent_strip_exps)(const FS_T *x, fs_index cs, fs_index w, fs_index c0,
                                         fs_index c1, const FS_T *shift, const double *wt,
                                         FS_T *grad, fs_index gcs, double *bs, double *bgap,
                                         const int fast, const int gap, const int store)
{
    for (fs_index c = c0; c < c1; c++) {
        const FS_T *col = x + c * cs;
        const double wc = wt ? wt[c] : 1.0;
        FS_T *out = store ? grad + c * gcs : NULL;
        FS_SIMD()
        for (fs_index j = 0; j < w; j++) {
            const FS_T v = col[j];
            const FS_T e = FS_EXPQ(v - shift[j]);
            bs[j] += (double)e;
            if (gap)
                bgap[j] += wc * (double)(shift[j] - v);
            if (store)
                out[j] = e;
        }
    }
}

/*
 * Cross-entropy of a strip of w columns (reduce.h) against class indices t[j]
 * (< 0: ignored) with scales g[j], no softcap: loss and lse into loss[j],
 * lse[j], the gradient (unless grad is NULL) into grad[c * gcs + j], which
 * may be x itself. The formulas of xent_row, across columns.
 */
FS_INLINE void FS_LOCAL(xent_strip)(const fs_xent_opts *o, const FS_T *x, fs_index cs, fs_index w,
                                    const int64_t *t, const double *g, FS_T *grad, fs_index gcs,
                                    double *loss, double *lse)
{
    const fs_index n = o->n_classes;
    const double eps = o->smoothing, zl = o->z_loss, *wt = o->weight;
    FS_T m[FS_TILE], shift[FS_TILE], zy[FS_TILE], fillv[FS_TILE];
    double bs[FS_TILE], bgap[FS_TILE], point[FS_TILE], a[FS_TILE], gb[FS_TILE];
    FS_T af[FS_TILE], gbf[FS_TILE];
    fs_sum s[FS_TILE], gap[FS_TILE];
    int live[FS_TILE];
    /* Loops without branches, so that they vectorise: at C = 10 the work of
     * each column is as much as that of its ten scores. */
    for (fs_index j = 0; j < w; j++)
        s[j].s = s[j].c = gap[j].s = gap[j].c = 0.0;
    FS_SIMD()
    for (fs_index j = 0; j < w; j++) {
        const int on = t[j] >= 0;
        const int64_t tj = on ? t[j] : 0;
        zy[j] = on ? x[tj * cs + j] : (FS_T)0; /* before grad overwrites x */
        point[j] = on ? (1.0 - eps) * (wt ? wt[tj] : 1.0) : 0.0;
    }
    const int fast = FS_LOCAL(strip_max)(x, cs, w, n, m, shift, 0), with_gap = eps != 0.0;
    FS_SIMD()
    for (fs_index j = 0; j < w; j++) {
        /* a column with a +inf score has a NaN log-softmax; an ignored one is 0 */
        live[j] = (t[j] >= 0) & (m[j] != (FS_T)INFINITY);
        fillv[j] = t[j] < 0 ? (FS_T)0 : (FS_T)NAN;
    }
    FS_BLOCKS(c0, c1, n) {
        for (fs_index j = 0; j < w; j++)
            bs[j] = bgap[j] = 0.0;
        /* The common case with constant flags: its loop has neither the gap
         * sums nor the accurate exp. */
        if (fast && !with_gap)
            FS_LOCAL(xent_strip_exps)(x, cs, w, c0, c1, shift, wt, grad, gcs, bs, bgap, 1, 0,
                                      grad != NULL);
        else
            FS_LOCAL(xent_strip_exps)(x, cs, w, c0, c1, shift, wt, grad, gcs, bs, bgap, fast,
                                      with_gap, grad != NULL);
        FS_SIMD()
        for (fs_index j = 0; j < w; j++) {
            fs_sum_add(&s[j], bs[j]);
            fs_sum_add(&gap[j], bgap[j]);
        }
    }
    const double U = FS_LOCAL(uniform_mass)(o);
    FS_SIMD()
    for (fs_index j = 0; j < w; j++) {
        const double log_s = fs_log_f64(s[j].s), l = (double)shift[j] + log_s;
        const double v = FS_LOCAL(xent_loss)(point[j], (double)shift[j] - (double)zy[j], with_gap,
                                             U, eps / (double)n * gap[j].s, log_s, l, zl);
        if (lse) /* NULL when the caller keeps no lse */
            lse[j] = l;
        loss[j] = live[j] ? v : (double)fillv[j];
        a[j] = FS_LOCAL(xent_coef)(g[j], point[j], U, l, zl) / s[j].s;
        gb[j] = g[j] * eps / (double)n;
        af[j] = (FS_T)a[j];
        gbf[j] = (FS_T)gb[j];
    }
    if (!grad)
        return;
    for (fs_index c = 0; c < n; c++) {
        FS_T *out = grad + c * gcs;
        /* gbf is 0 without smoothing: not times a weight that may be inf */
        const FS_T wc = wt && eps != 0.0 ? (FS_T)wt[c] : (FS_T)1;
        FS_SIMD()
        for (fs_index j = 0; j < w; j++)
            out[j] = live[j] ? af[j] * out[j] - gbf[j] * wc : fillv[j];
    }
    for (fs_index j = 0; j < w; j++)
        if (live[j])
            grad[t[j] * gcs + j] -= (FS_T)(g[j] * point[j]);
}

/* Rows of few classes: transposed into a class-major tile, then a strip. */
FS_INLINE void FS_LOCAL(xent_tile)(const fs_xent_opts *o, const FS_T *x, fs_index xrs, fs_index nr,
                                   const int64_t *t, const double *g, FS_T *grad, fs_index grs,
                                   double *loss, double *lse)
{
    FS_T xt[FS_SMALL_C * FS_TILE];
    FS_LOCAL(tile_in)(x, xrs, nr, o->n_classes, xt);
    FS_LOCAL(xent_strip)(o, xt, FS_TILE, nr, t, g, grad ? xt : NULL, FS_TILE, loss, lse);
    if (grad)
        FS_LOCAL(tile_out)(xt, nr, o->n_classes, grad, grs);
}

/* The target of row (i, j): its label (the ignored one as -1), or its
 * probability row. */
FS_INLINE FS_LOCAL(xent_target) FS_LOCAL(target_of)(const fs_xent_batch *b, const fs_row_walk *rw)
{
    FS_LOCAL(xent_target) tg = {-1, NULL, 0};
    if (b->target.p) {
        const int64_t t = ((const int64_t *)b->target.p)[fs_walk_offset(rw, &b->target)];
        tg.t = t == b->ignore_index ? -1 : t;
    } else {
        tg.q = (const FS_T *)b->q.p + fs_walk_offset(rw, &b->q);
        tg.qs = b->q.s1;
    }
    return tg;
}

FS_INLINE double FS_LOCAL(scale_of)(const fs_xent_batch *b, const fs_row_walk *rw)
{
    return b->g.p ? ((const double *)b->g.p)[fs_walk_offset(rw, &b->g)] : b->g_value;
}

/* One row of a batch in the FS_ROWS plan: the flags as constants, and the
 * unit strides as constants where every array has them. */
#define FS_XENT_ROW(tg_, xs_, gs_, store_, capped_, probs_) \
    FS_LOCAL(xent_row)(&b->o, xr, xs_, tg_, gr_scale, gr, gs_, &lse, store_, capped_, probs_)
#define FS_XENT_ROW_GRAD(tg_, xs_, gs_, capped_, probs_) \
    FS_LOCAL(xent_row_grad)(&b->o, xr, xs_, tg_, lse, gr_scale, gr, gs_, capped_, probs_)

/* The forward and the backward of one row are compiled apart (a clone each,
 * as the softmax rows): inlined into the task function, the fused row of
 * 1000 classes and more was 8% slower on one thread. */
FS_DISPATCH double FS_CAT(fs_xent_forward_row_, FS_SUF)(const fs_xent_batch *b, const FS_T *xr,
                                                        FS_LOCAL(xent_target) tg, double gr_scale,
                                                        FS_T *gr, double *lse_out)
{
    const int probs = tg.q != NULL, capped = b->o.softcap != 0.0, store = gr != NULL;
    const fs_index xs = b->x.s1, gs = b->grad.s1;
    const int unit = xs == 1 && (!store || gs == 1) && (!probs || tg.qs == 1);
    FS_LOCAL(xent_target) tu = tg; /* the target of the unit-stride calls: qs a constant 1 */
    tu.qs = 1;
    double lse, loss;
    if (capped && unit) /* (the softcap's tanh vectorises only at unit stride) */
        loss = probs ? (store ? FS_XENT_ROW(tu, 1, 1, 1, 1, 1) : FS_XENT_ROW(tu, 1, 1, 0, 1, 1))
                     : (store ? FS_XENT_ROW(tu, 1, 1, 1, 1, 0) : FS_XENT_ROW(tu, 1, 1, 0, 1, 0));
    else if (capped)
        loss = probs
                   ? (store ? FS_XENT_ROW(tg, xs, gs, 1, 1, 1) : FS_XENT_ROW(tg, xs, gs, 0, 1, 1))
                   : (store ? FS_XENT_ROW(tg, xs, gs, 1, 1, 0) : FS_XENT_ROW(tg, xs, gs, 0, 1, 0));
    else if (probs)
        loss = store ? (unit ? FS_XENT_ROW(tu, 1, 1, 1, 0, 1) : FS_XENT_ROW(tg, xs, gs, 1, 0, 1))
                     : (unit ? FS_XENT_ROW(tu, 1, 1, 0, 0, 1) : FS_XENT_ROW(tg, xs, gs, 0, 0, 1));
    else
        loss = store ? (unit ? FS_XENT_ROW(tu, 1, 1, 1, 0, 0) : FS_XENT_ROW(tg, xs, gs, 1, 0, 0))
                     : (unit ? FS_XENT_ROW(tu, 1, 1, 0, 0, 0) : FS_XENT_ROW(tg, xs, gs, 0, 0, 0));
    *lse_out = lse;
    return loss;
}

FS_DISPATCH void FS_CAT(fs_xent_backward_row_, FS_SUF)(const fs_xent_batch *b, const FS_T *xr,
                                                       FS_LOCAL(xent_target) tg, double lse,
                                                       double gr_scale, FS_T *gr)
{
    const int probs = tg.q != NULL, capped = b->o.softcap != 0.0;
    const fs_index xs = b->x.s1, gs = b->grad.s1;
    const int unit = xs == 1 && gs == 1 && (!probs || tg.qs == 1);
    FS_LOCAL(xent_target) tu = tg; /* the target of the unit-stride calls: qs a constant 1 */
    tu.qs = 1;
    if (capped && unit)
        probs ? FS_XENT_ROW_GRAD(tu, 1, 1, 1, 1) : FS_XENT_ROW_GRAD(tu, 1, 1, 1, 0);
    else if (capped)
        probs ? FS_XENT_ROW_GRAD(tg, xs, gs, 1, 1) : FS_XENT_ROW_GRAD(tg, xs, gs, 1, 0);
    else if (probs)
        unit ? FS_XENT_ROW_GRAD(tu, 1, 1, 0, 1) : FS_XENT_ROW_GRAD(tg, xs, gs, 0, 1);
    else
        unit ? FS_XENT_ROW_GRAD(tu, 1, 1, 0, 0) : FS_XENT_ROW_GRAD(tg, xs, gs, 0, 0);
}

FS_INLINE void FS_LOCAL(xent_rows)(const fs_xent_batch *b, fs_index r0, fs_index r1)
{
    const FS_T *x = (const FS_T *)b->x.p;
    FS_T *grad = (FS_T *)b->grad.p;
    fs_row_walk rw = fs_walk_from(r0, b->inner);
    for (fs_index r = r0; r < r1; r++, fs_walk_next(&rw)) {
        const FS_T *xr = x + fs_walk_offset(&rw, &b->x);
        FS_T *gr = grad ? grad + fs_walk_offset(&rw, &b->grad) : NULL;
        const FS_LOCAL(xent_target) tg = FS_LOCAL(target_of)(b, &rw);
        const double g = FS_LOCAL(scale_of)(b, &rw);
        if (b->lse_in.p) {
            const double lse = ((const double *)b->lse_in.p)[fs_walk_offset(&rw, &b->lse_in)];
            FS_CAT(fs_xent_backward_row_, FS_SUF)(b, xr, tg, lse, g, gr);
        } else {
            double lse_row; /* where the caller keeps no lse */
            b->loss[r] = FS_CAT(fs_xent_forward_row_, FS_SUF)(b, xr, tg, g, gr,
                                                              b->lse ? &b->lse[r] : &lse_row);
        }
    }
}

FS_DISPATCH void FS_CAT(fs_xent_task_, FS_SUF)(const fs_xent_batch *b, fs_index task)
{
    const FS_T *x = (const FS_T *)b->x.p;
    FS_T *grad = (FS_T *)b->grad.p;
    const fs_index rows = b->outer * b->inner, per = b->plan.per_task;
    fs_index r0 = task * per, r1 = rows - r0 < per ? rows : r0 + per;
    fs_index i = 0, j0 = 0;
    if (b->plan.kind == FS_ROWS) {
        FS_LOCAL(xent_rows)(b, r0, r1);
        return;
    }
    if (b->plan.kind == FS_STRIPS) { /* columns j0 .. j0 + w of sample i */
        const fs_strip st = fs_strip_at(&b->plan, b->inner, task);
        i = st.i;
        j0 = st.j0;
        r0 = i * b->inner + j0;
        r1 = r0 + st.w;
    }
    /* labels and scales of the task's rows, gathered on this thread's stack */
    int64_t tbuf[FS_TILE];
    double gbuf[FS_TILE];
    if (b->inner == 1) { /* every tile: row r at r s0 of each array */
        const int64_t *tp = (const int64_t *)b->target.p + r0 * b->target.s0, ig = b->ignore_index;
        const fs_index ts = b->target.s0;
        FS_SIMD()
        for (fs_index r = 0; r < r1 - r0; r++)
            tbuf[r] = tp[r * ts] == ig ? -1 : tp[r * ts];
        if (b->g.p) {
            const double *gp = (const double *)b->g.p + r0 * b->g.s0;
            for (fs_index r = 0; r < r1 - r0; r++)
                gbuf[r] = gp[r * b->g.s0];
        } else {
            for (fs_index r = 0; r < r1 - r0; r++)
                gbuf[r] = b->g_value;
        }
    } else {
        fs_row_walk rw = fs_walk_from(r0, b->inner);
        for (fs_index r = r0; r < r1; r++, fs_walk_next(&rw)) {
            tbuf[r - r0] = FS_LOCAL(target_of)(b, &rw).t;
            gbuf[r - r0] = FS_LOCAL(scale_of)(b, &rw);
        }
    }
    if (b->plan.kind == FS_STRIPS)
        FS_LOCAL(xent_strip)(&b->o, x + i * b->x.s0 + j0, b->x.s1, r1 - r0, tbuf, gbuf,
                             grad ? grad + i * b->grad.s0 + j0 : NULL, b->grad.s1, b->loss + r0,
                             b->lse ? b->lse + r0 : NULL);
    else
        FS_LOCAL(xent_tile)(&b->o, x + r0 * b->x.s0, b->x.s0, r1 - r0, tbuf, gbuf,
                            grad ? grad + r0 * b->grad.s0 : NULL, b->grad.s0, b->loss + r0,
                            b->lse ? b->lse + r0 : NULL);
}
