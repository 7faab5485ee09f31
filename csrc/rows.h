/*
 * Dtype-generic row kernels. fastsoftmax.c includes this file once per dtype
 * after defining:
 *   FS_T      element type (float or double)
 *   FS_SUF    name suffix (f32 or f64)
 *   FS_EXP    vectorisable exp for FS_T (fs_math.h)
 *   FS_EXP_FAST, FS_EXP_LO  its fast version and the bottom of that one's range
 *   FS_ACC    type of the sums within a block of FS_SUM_BLOCK terms
 *   FS_TANH   libm tanh for FS_T
 *
 * Every public kernel forwards to an always-inline body that takes the
 * strides (and the softcap switch) as arguments; the public function calls it
 * once with stride 1 and once with the general stride, so the compiler emits
 * a vectorised loop for contiguous rows and a plain one for strided rows.
 */

#define FS_CAT2(a, b) a##b
#define FS_CAT(a, b) FS_CAT2(a, b)
#define FS_PUBLIC(op) FS_CAT(FS_CAT(fs_, op), FS_CAT(_, FS_SUF))
#define FS_LOCAL(op) FS_CAT(FS_CAT(op, _body_), FS_SUF)

/* Score after the optional softcap, and its derivative d score / d x. */
#define FS_SCORE(v) (capped ? cap * FS_TANH((v) / cap) : (v))
#define FS_DSCORE(z) (capped ? (FS_T)1 - ((z) / cap) * ((z) / cap) : (FS_T)1)

/* Largest element, NaN ignored (a NaN still poisons the sums that follow). */
FS_INLINE FS_T FS_LOCAL(row_max)(const FS_T *x, fs_index n, fs_index xs, FS_T cap, const int capped)
{
    FS_T m = -(FS_T)INFINITY;
    FS_SIMD(reduction(max : m))
    for (fs_index i = 0; i < n; i++) {
        FS_T z = FS_SCORE(x[i * xs]);
        m = z > m ? z : m;
    }
    return m;
}

/* exp(v), by the fast version when the block was found in its range. */
#define FS_EXPQ(v) (fast ? FS_EXP_FAST(v) : FS_EXP(v))

/* 1 when every x - shift of the block is in the fast exp's range (not NaN). */
FS_INLINE int FS_LOCAL(fast_range)(const FS_T *x, fs_index b0, fs_index b1, fs_index xs, FS_T shift)
{
    int ok = 1;
    FS_SIMD(reduction(& : ok))
    for (fs_index i = b0; i < b1; i++) {
        FS_T d = x[i * xs] - shift;
        ok &= (d >= FS_EXP_LO) & (d <= (FS_T)0);
    }
    return ok;
}

FS_INLINE FS_ACC FS_LOCAL(sum_exp_block)(const FS_T *x, fs_index b0, fs_index b1, fs_index xs,
                                         FS_T shift, const int fast)
{
    FS_ACC bs = 0;
    FS_SIMD(reduction(+ : bs))
    for (fs_index i = b0; i < b1; i++)
        bs += (FS_ACC)FS_EXPQ(x[i * xs] - shift);
    return bs;
}

FS_INLINE double FS_LOCAL(sum_exp)(const FS_T *x, fs_index n, fs_index xs, FS_T shift)
{
    fs_sum s = {0.0, 0.0};
    FS_BLOCKS(b0, b1, n) {
        FS_ACC bs = FS_LOCAL(fast_range)(x, b0, b1, xs, shift)
                        ? FS_LOCAL(sum_exp_block)(x, b0, b1, xs, shift, 1)
                        : FS_LOCAL(sum_exp_block)(x, b0, b1, xs, shift, 0);
        fs_sum_add(&s, (double)bs);
    }
    return s.s;
}

FS_INLINE void FS_LOCAL(fill)(FS_T *y, fs_index n, fs_index ys, FS_T value)
{
    for (fs_index i = 0; i < n; i++)
        y[i * ys] = value;
}

/* ---------------------------------------------------------------- softmax */

/* y = exp(x - m) over a block; returns the block's sum. */
FS_INLINE FS_ACC FS_LOCAL(softmax_block)(const FS_T *x, fs_index b0, fs_index b1, fs_index xs,
                                         FS_T m, FS_T *y, fs_index ys, const int fast)
{
    FS_ACC bs = 0;
    FS_SIMD(reduction(+ : bs))
    for (fs_index i = b0; i < b1; i++) {
        FS_T e = FS_EXPQ(x[i * xs] - m);
        y[i * ys] = e;
        bs += (FS_ACC)e;
    }
    return bs;
}

FS_INLINE void FS_LOCAL(softmax)(const FS_T *x, fs_index n, fs_index xs, FS_T *y, fs_index ys)
{
    FS_T m = FS_LOCAL(row_max)(x, n, xs, 0, 0);
    if (!isfinite(m)) { /* exp(x - max) has inf - inf or -inf - -inf in it */
        FS_LOCAL(fill)(y, n, ys, (FS_T)NAN);
        return;
    }
    /* One exp per element: store exp(x - max) in y (the row is then in cache),
     * and scale it by 1 / sum in a second, exp-free pass. y may alias x. */
    fs_sum s = {0.0, 0.0};
    FS_BLOCKS(b0, b1, n) {
        FS_ACC bs = FS_LOCAL(fast_range)(x, b0, b1, xs, m)
                        ? FS_LOCAL(softmax_block)(x, b0, b1, xs, m, y, ys, 1)
                        : FS_LOCAL(softmax_block)(x, b0, b1, xs, m, y, ys, 0);
        fs_sum_add(&s, (double)bs);
    }
    FS_T r = (FS_T)(1.0 / s.s); /* NaN if x holds a NaN */
    FS_SIMD()
    for (fs_index i = 0; i < n; i++)
        y[i * ys] *= r;
}

FS_DISPATCH void FS_PUBLIC(softmax)(const FS_T *x, fs_index n, fs_index xs, FS_T *y, fs_index ys)
{
    if (xs == 1 && ys == 1)
        FS_LOCAL(softmax)(x, n, 1, y, 1);
    else
        FS_LOCAL(softmax)(x, n, xs, y, ys);
}

FS_INLINE void FS_LOCAL(log_softmax)(const FS_T *x, fs_index n, fs_index xs, FS_T *y, fs_index ys)
{
    FS_T m = FS_LOCAL(row_max)(x, n, xs, 0, 0);
    FS_T shift = isfinite(m) ? m : (FS_T)0; /* as scipy: a non-finite max shifts by 0 */
    FS_T log_s = (FS_T)log(FS_LOCAL(sum_exp)(x, n, xs, shift));
    FS_SIMD()
    for (fs_index i = 0; i < n; i++)
        y[i * ys] = (x[i * xs] - shift) - log_s;
}

FS_DISPATCH void FS_PUBLIC(log_softmax)(const FS_T *x, fs_index n, fs_index xs, FS_T *y,
                                        fs_index ys)
{
    if (xs == 1 && ys == 1)
        FS_LOCAL(log_softmax)(x, n, 1, y, 1);
    else
        FS_LOCAL(log_softmax)(x, n, xs, y, ys);
}

/* Sum over a block of exp(x - m) for x != m; counts the x == m into *k. */
FS_INLINE FS_ACC FS_LOCAL(lse_block)(const FS_T *x, fs_index b0, fs_index b1, fs_index xs, FS_T m,
                                     double *k, const int fast)
{
    FS_ACC bs = 0;
    double bk = 0.0;
    FS_SIMD(reduction(+ : bs, bk))
    for (fs_index i = b0; i < b1; i++) {
        FS_T v = x[i * xs];
        int is_max = v == m;
        FS_T e = FS_EXPQ(v - m);
        bs += is_max ? (FS_ACC)0 : (FS_ACC)e; /* a NaN is never the max: it lands here */
        bk += is_max ? 1.0 : 0.0;
    }
    *k += bk;
    return bs;
}

/* scipy's algorithm: the maximal terms (k of them) are taken out of the sum,
 * out = log1p(rest / k) + log(k) + max, so that a row like [0, -50] keeps its
 * tiny answer. A non-finite max falls back to log(sum(exp(x))). */
FS_INLINE FS_T FS_LOCAL(logsumexp)(const FS_T *x, fs_index n, fs_index xs)
{
    FS_T m = FS_LOCAL(row_max)(x, n, xs, 0, 0);
    if (!isfinite(m))
        return (FS_T)log(FS_LOCAL(sum_exp)(x, n, xs, 0));
    fs_sum rest = {0.0, 0.0};
    double k = 0.0; /* exact: an integer below 2^53 */
    FS_BLOCKS(b0, b1, n) {
        FS_ACC bs = FS_LOCAL(fast_range)(x, b0, b1, xs, m)
                        ? FS_LOCAL(lse_block)(x, b0, b1, xs, m, &k, 1)
                        : FS_LOCAL(lse_block)(x, b0, b1, xs, m, &k, 0);
        fs_sum_add(&rest, (double)bs);
    }
    return (FS_T)(log1p(rest.s / k) + log(k) + (double)m);
}

FS_DISPATCH FS_T FS_PUBLIC(logsumexp)(const FS_T *x, fs_index n, fs_index xs)
{
    return xs == 1 ? FS_LOCAL(logsumexp)(x, n, 1) : FS_LOCAL(logsumexp)(x, n, xs);
}

/* ---------------------------------------------------------- cross-entropy */

/*
 * Notation for one row: z = scores after softcap, m = max z, shift = m (0 if
 * not finite), s = sum exp(z - shift), lse = shift + log s, p = exp(z - lse),
 * w = class weights (1 if none), W = sum w, eps = smoothing, C = n_classes.
 *
 * Class index y:  loss = (1-eps) w_y (lse - z_y) + eps/C sum_c w_c (lse - z_c)
 *                        + z_loss lse^2
 *                 dloss/dz_c = p_c [(1-eps) w_y + eps/C W + 2 z_loss lse]
 *                              - eps/C w_c - [c == y] (1-eps) w_y
 * Probabilities:  q' = (1-eps) q + eps/C, Q = sum w q'
 *                 loss = sum_c w_c q'_c (lse - z_c) + z_loss lse^2
 *                 dloss/dz_c = p_c [Q + 2 z_loss lse] - w_c q'_c
 * lse - z is summed as (shift - z) + log s, two non-negative parts, so the
 * loss keeps its relative precision when the scores are large.
 */

FS_INLINE void FS_LOCAL(xent_stats)(const FS_T *x, fs_index n, fs_index xs, FS_T cap,
                                    const int capped, FS_T *m_out, FS_T *shift_out, double *s_out)
{
    FS_T m = FS_LOCAL(row_max)(x, n, xs, cap, capped);
    FS_T shift = isfinite(m) ? m : (FS_T)0;
    fs_sum s = {0.0, 0.0};
    FS_BLOCKS(b0, b1, n) {
        double bs = 0.0;
        FS_SIMD(reduction(+ : bs))
        for (fs_index i = b0; i < b1; i++)
            bs += (double)FS_EXP(FS_SCORE(x[i * xs]) - shift);
        fs_sum_add(&s, bs);
    }
    *m_out = m;
    *shift_out = shift;
    *s_out = s.s;
}

/* sum over a block of w_c (shift - x_c), no softcap. */
FS_INLINE double FS_LOCAL(weighted_gap_block)(const FS_T *x, fs_index b0, fs_index b1, fs_index xs,
                                              const double *w, FS_T shift)
{
    double acc = 0.0;
    FS_SIMD(reduction(+ : acc))
    for (fs_index i = b0; i < b1; i++)
        acc += (w ? w[i] : 1.0) * (double)(shift - x[i * xs]);
    return acc;
}

/* sum_c w_c (shift - z_c): the smoothing term relative to the shift. */
FS_INLINE double FS_LOCAL(weighted_gap)(const FS_T *x, fs_index n, fs_index xs, const double *w,
                                        FS_T shift, FS_T cap, const int capped)
{
    fs_sum acc = {0.0, 0.0};
    FS_BLOCKS(b0, b1, n) {
        double bs = 0.0;
        FS_SIMD(reduction(+ : bs))
        for (fs_index i = b0; i < b1; i++)
            bs += (w ? w[i] : 1.0) * (double)(shift - FS_SCORE(x[i * xs]));
        fs_sum_add(&acc, bs);
    }
    return acc.s;
}

/* grad_c = (a p_c - b w_c) dz_c with p_c = exp(z_c - shift) r. */
FS_INLINE void FS_LOCAL(write_grad)(const FS_T *x, fs_index n, fs_index xs, const double *w,
                                    FS_T shift, FS_T r, FS_T a, FS_T b, FS_T cap, const int capped,
                                    FS_T *grad, fs_index gs)
{
    if (w) {
        FS_SIMD()
        for (fs_index i = 0; i < n; i++) {
            FS_T z = FS_SCORE(x[i * xs]);
            FS_T p = FS_EXP(z - shift) * r;
            grad[i * gs] = (a * p - b * (FS_T)w[i]) * FS_DSCORE(z);
        }
    } else {
        FS_SIMD()
        for (fs_index i = 0; i < n; i++) {
            FS_T z = FS_SCORE(x[i * xs]);
            FS_T p = FS_EXP(z - shift) * r;
            grad[i * gs] = (a * p - b) * FS_DSCORE(z);
        }
    }
}

/* The index-target gradient, once shift and s (or lse, with s = 1) are known. */
FS_INLINE void FS_LOCAL(index_grad)(const fs_xent_opts *o, const FS_T *x, fs_index xs, int64_t t,
                                    FS_T shift, double s, double lse, double g, FS_T *grad,
                                    fs_index gs, const int capped)
{
    const fs_index n = o->n_classes;
    const FS_T cap = (FS_T)o->softcap;
    const double eps = o->smoothing;
    const double wy = o->weight ? o->weight[t] : 1.0;
    const FS_T zy = FS_SCORE(x[t * xs]);
    const FS_T dzy = FS_DSCORE(zy); /* read before grad (maybe x itself) is written */
    const double a =
        g * ((1.0 - eps) * wy + eps / (double)n * o->weight_sum + 2.0 * o->z_loss * lse);
    FS_LOCAL(write_grad)(x, n, xs, o->weight, shift, (FS_T)(1.0 / s), (FS_T)a,
                         (FS_T)(g * eps / (double)n), cap, capped, grad, gs);
    grad[t * gs] -= (FS_T)(g * (1.0 - eps) * wy) * dzy;
}

FS_INLINE double FS_LOCAL(xent_index)(const fs_xent_opts *o, const FS_T *x, fs_index xs, int64_t t,
                                      double g, FS_T *grad, fs_index gs, double *lse_out,
                                      const int capped)
{
    const fs_index n = o->n_classes;
    const FS_T cap = (FS_T)o->softcap;
    const double eps = o->smoothing;
    FS_T m, shift;
    double s;
    FS_LOCAL(xent_stats)(x, n, xs, cap, capped, &m, &shift, &s);
    const double log_s = log(s);
    const double lse = (double)shift + log_s;
    *lse_out = lse;
    if (t < 0) { /* ignored target */
        if (grad)
            FS_LOCAL(fill)(grad, n, gs, 0);
        return 0.0;
    }
    const double wy = o->weight ? o->weight[t] : 1.0;
    const FS_T zy = FS_SCORE(x[t * xs]);
    double loss = (1.0 - eps) * wy * (((double)shift - (double)zy) + log_s);
    if (eps != 0.0) {
        double gap = FS_LOCAL(weighted_gap)(x, n, xs, o->weight, shift, cap, capped);
        loss += eps / (double)n * (o->weight_sum * log_s + gap);
    }
    if (o->z_loss != 0.0)
        loss += o->z_loss * lse * lse;
    if (m == (FS_T)INFINITY) /* log-softmax of a row holding +inf is NaN, as in torch */
        loss = NAN;
    if (grad) {
        if (m == (FS_T)INFINITY)
            FS_LOCAL(fill)(grad, n, gs, (FS_T)NAN);
        else
            FS_LOCAL(index_grad)(o, x, xs, t, shift, s, lse, g, grad, gs, capped);
    }
    return loss;
}

/*
 * Loss and gradient with one exp per element (no softcap): the first pass
 * after the maximum writes e = exp(x - shift) into grad while summing, the
 * second turns e into the gradient in place, with no exp:
 *     grad_c = (a / s) e_c - b w_c,   then grad_y -= g (1-eps) w_y.
 * grad may alias x: each element is read before it is overwritten, and z_y
 * is read first.
 */
FS_INLINE double FS_LOCAL(xent_index_fused)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                            int64_t t, double g, FS_T *grad, fs_index gs,
                                            double *lse_out, const int store)
{
    const fs_index n = o->n_classes;
    const double eps = o->smoothing;
    const double *w = o->weight;
    const FS_T m = FS_LOCAL(row_max)(x, n, xs, 0, 0);
    const FS_T shift = isfinite(m) ? m : (FS_T)0;
    const FS_T zy = t >= 0 ? x[t * xs] : (FS_T)0;
    fs_sum sum = {0.0, 0.0}, gap_sum = {0.0, 0.0};
    FS_BLOCKS(b0, b1, n) {
        FS_ACC bs;
        if (eps != 0.0) {
            double bgap = FS_LOCAL(weighted_gap_block)(x, b0, b1, xs, w, shift);
            fs_sum_add(&gap_sum, bgap);
        }
        if (FS_LOCAL(fast_range)(x, b0, b1, xs, shift))
            bs = store ? FS_LOCAL(softmax_block)(x, b0, b1, xs, shift, grad, gs, 1)
                       : FS_LOCAL(sum_exp_block)(x, b0, b1, xs, shift, 1);
        else
            bs = store ? FS_LOCAL(softmax_block)(x, b0, b1, xs, shift, grad, gs, 0)
                       : FS_LOCAL(sum_exp_block)(x, b0, b1, xs, shift, 0);
        fs_sum_add(&sum, (double)bs);
    }
    const double s = sum.s, gap = gap_sum.s;
    const double log_s = log(s);
    const double lse = (double)shift + log_s;
    *lse_out = lse;
    if (t < 0) {
        if (store)
            FS_LOCAL(fill)(grad, n, gs, 0);
        return 0.0;
    }
    if (m == (FS_T)INFINITY) {
        if (store)
            FS_LOCAL(fill)(grad, n, gs, (FS_T)NAN);
        return NAN;
    }
    const double wy = w ? w[t] : 1.0;
    double loss = (1.0 - eps) * wy * (((double)shift - (double)zy) + log_s);
    if (eps != 0.0)
        loss += eps / (double)n * (o->weight_sum * log_s + gap);
    if (o->z_loss != 0.0)
        loss += o->z_loss * lse * lse;
    if (!store)
        return loss;
    const FS_T a =
        (FS_T)(g * ((1.0 - eps) * wy + eps / (double)n * o->weight_sum + 2.0 * o->z_loss * lse)
               / s);
    const FS_T b = (FS_T)(g * eps / (double)n);
    if (w && eps != 0.0) {
        FS_SIMD()
        for (fs_index i = 0; i < n; i++)
            grad[i * gs] = a * grad[i * gs] - b * (FS_T)w[i];
    } else {
        FS_SIMD()
        for (fs_index i = 0; i < n; i++)
            grad[i * gs] = a * grad[i * gs] - b;
    }
    grad[t * gs] -= (FS_T)(g * (1.0 - eps) * wy);
    return loss;
}

FS_DISPATCH double FS_PUBLIC(xent_index)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                         int64_t target, double g, FS_T *grad, fs_index gs,
                                         double *lse_out)
{
    if (o->softcap != 0.0)
        return FS_LOCAL(xent_index)(o, x, xs, target, g, grad, gs, lse_out, 1);
    /* The forward alone runs the same sums, so its loss is bit-identical. */
    if (grad == NULL)
        return xs == 1 ? FS_LOCAL(xent_index_fused)(o, x, 1, target, g, NULL, 1, lse_out, 0)
                       : FS_LOCAL(xent_index_fused)(o, x, xs, target, g, NULL, 1, lse_out, 0);
    if (xs == 1 && gs == 1)
        return FS_LOCAL(xent_index_fused)(o, x, 1, target, g, grad, 1, lse_out, 1);
    return FS_LOCAL(xent_index_fused)(o, x, xs, target, g, grad, gs, lse_out, 1);
}

FS_INLINE void FS_LOCAL(xent_index_grad)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                         int64_t t, double lse, double g, FS_T *grad, fs_index gs,
                                         const int capped)
{
    if (t < 0)
        FS_LOCAL(fill)(grad, o->n_classes, gs, 0);
    else if (lse == INFINITY)
        FS_LOCAL(fill)(grad, o->n_classes, gs, (FS_T)NAN);
    else /* p = exp(z - lse): shift by lse, s = 1 */
        /* p = exp(z - lse): shift by lse rounded to FS_T, s = exp of the rest */
        FS_LOCAL(index_grad)(o, x, xs, t, (FS_T)lse, exp(lse - (double)(FS_T)lse), lse, g, grad, gs,
                             capped);
}

FS_DISPATCH void FS_PUBLIC(xent_index_grad)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                            int64_t target, double lse, double g, FS_T *grad,
                                            fs_index gs)
{
    if (o->softcap != 0.0)
        FS_LOCAL(xent_index_grad)(o, x, xs, target, lse, g, grad, gs, 1);
    else if (xs == 1 && gs == 1)
        FS_LOCAL(xent_index_grad)(o, x, 1, target, lse, g, grad, 1, 0);
    else
        FS_LOCAL(xent_index_grad)(o, x, xs, target, lse, g, grad, gs, 0);
}

/* Q = sum_c w_c q'_c and, when gap is not NULL, sum_c w_c q'_c (shift - z_c). */
FS_INLINE double FS_LOCAL(prob_mass)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                     const FS_T *q, fs_index qs, FS_T shift, double *gap,
                                     const int capped)
{
    const fs_index n = o->n_classes;
    const FS_T cap = (FS_T)o->softcap;
    const double *w = o->weight;
    const FS_T keep = (FS_T)(1.0 - o->smoothing), spread = (FS_T)(o->smoothing / (double)n);
    fs_sum mass = {0.0, 0.0}, acc = {0.0, 0.0};
    FS_BLOCKS(b0, b1, n) {
        double bmass = 0.0, bacc = 0.0;
        if (gap) {
            FS_SIMD(reduction(+ : bmass, bacc))
            for (fs_index i = b0; i < b1; i++) {
                double wq = (w ? w[i] : 1.0) * (double)(q[i * qs] * keep + spread);
                bmass += wq;
                bacc += wq * (double)(shift - FS_SCORE(x[i * xs]));
            }
            fs_sum_add(&acc, bacc);
        } else {
            FS_SIMD(reduction(+ : bmass))
            for (fs_index i = b0; i < b1; i++)
                bmass += (w ? w[i] : 1.0) * (double)(q[i * qs] * keep + spread);
        }
        fs_sum_add(&mass, bmass);
    }
    if (gap)
        *gap = acc.s;
    return mass.s;
}

/* grad_c = (a p_c - g w_c q'_c) dz_c with p_c = exp(z_c - shift) r. */
FS_INLINE void FS_LOCAL(prob_grad)(const fs_xent_opts *o, const FS_T *x, fs_index xs, const FS_T *q,
                                   fs_index qs, FS_T shift, FS_T r, FS_T a, double g, FS_T *grad,
                                   fs_index gs, const int capped)
{
    const fs_index n = o->n_classes;
    const FS_T cap = (FS_T)o->softcap;
    const double *w = o->weight;
    const FS_T keep = (FS_T)(g * (1.0 - o->smoothing));
    const FS_T spread = (FS_T)(g * o->smoothing / (double)n);
    FS_SIMD()
    for (fs_index i = 0; i < n; i++) {
        FS_T z = FS_SCORE(x[i * xs]);
        FS_T p = FS_EXP(z - shift) * r;
        FS_T target = (q[i * qs] * keep + spread) * (w ? (FS_T)w[i] : (FS_T)1);
        grad[i * gs] = (a * p - target) * FS_DSCORE(z);
    }
}

FS_INLINE double FS_LOCAL(xent_prob)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                     const FS_T *q, fs_index qs, double g, FS_T *grad, fs_index gs,
                                     double *lse_out, const int capped)
{
    const fs_index n = o->n_classes;
    FS_T m, shift;
    double s, gap;
    FS_LOCAL(xent_stats)(x, n, xs, (FS_T)o->softcap, capped, &m, &shift, &s);
    const double log_s = log(s);
    const double lse = (double)shift + log_s;
    *lse_out = lse;
    const double mass = FS_LOCAL(prob_mass)(o, x, xs, q, qs, shift, &gap, capped);
    double loss = mass * log_s + gap;
    if (o->z_loss != 0.0)
        loss += o->z_loss * lse * lse;
    if (m == (FS_T)INFINITY)
        loss = NAN;
    if (grad) {
        if (m == (FS_T)INFINITY)
            FS_LOCAL(fill)(grad, n, gs, (FS_T)NAN);
        else
            FS_LOCAL(prob_grad)(o, x, xs, q, qs, shift, (FS_T)(1.0 / s),
                                (FS_T)(g * (mass + 2.0 * o->z_loss * lse)), g, grad, gs, capped);
    }
    return loss;
}

/* The probability-target twin of xent_index_fused: exps stored in grad while
 * Q and the gap are summed, then grad_c = (a / s) e_c - g w_c q'_c. */
FS_INLINE double FS_LOCAL(xent_prob_fused)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                           const FS_T *q, fs_index qs, double g, FS_T *grad,
                                           fs_index gs, double *lse_out, const int store)
{
    const fs_index n = o->n_classes;
    const double *w = o->weight;
    const FS_T keep = (FS_T)(1.0 - o->smoothing), spread = (FS_T)(o->smoothing / (double)n);
    const FS_T m = FS_LOCAL(row_max)(x, n, xs, 0, 0);
    const FS_T shift = isfinite(m) ? m : (FS_T)0;
    fs_sum sum = {0.0, 0.0}, mass_sum = {0.0, 0.0}, gap_sum = {0.0, 0.0};
    FS_BLOCKS(b0, b1, n) {
        double bmass = 0.0, bgap = 0.0;
        FS_SIMD(reduction(+ : bmass, bgap))
        for (fs_index i = b0; i < b1; i++) {
            double wq = (w ? w[i] : 1.0) * (double)(q[i * qs] * keep + spread);
            bmass += wq;
            bgap += wq * (double)(shift - x[i * xs]);
        }
        FS_ACC bs;
        if (FS_LOCAL(fast_range)(x, b0, b1, xs, shift))
            bs = store ? FS_LOCAL(softmax_block)(x, b0, b1, xs, shift, grad, gs, 1)
                       : FS_LOCAL(sum_exp_block)(x, b0, b1, xs, shift, 1);
        else
            bs = store ? FS_LOCAL(softmax_block)(x, b0, b1, xs, shift, grad, gs, 0)
                       : FS_LOCAL(sum_exp_block)(x, b0, b1, xs, shift, 0);
        fs_sum_add(&sum, (double)bs);
        fs_sum_add(&mass_sum, bmass);
        fs_sum_add(&gap_sum, bgap);
    }
    const double s = sum.s, mass = mass_sum.s, gap = gap_sum.s;
    const double log_s = log(s);
    const double lse = (double)shift + log_s;
    *lse_out = lse;
    if (m == (FS_T)INFINITY) {
        if (store)
            FS_LOCAL(fill)(grad, n, gs, (FS_T)NAN);
        return NAN;
    }
    double loss = mass * log_s + gap;
    if (o->z_loss != 0.0)
        loss += o->z_loss * lse * lse;
    if (!store)
        return loss;
    const FS_T a = (FS_T)(g * (mass + 2.0 * o->z_loss * lse) / s);
    const FS_T gkeep = (FS_T)(g * (1.0 - o->smoothing));
    const FS_T gspread = (FS_T)(g * o->smoothing / (double)n);
    FS_SIMD()
    for (fs_index i = 0; i < n; i++)
        grad[i * gs] =
            a * grad[i * gs] - (q[i * qs] * gkeep + gspread) * (w ? (FS_T)w[i] : (FS_T)1);
    return loss;
}

FS_DISPATCH double FS_PUBLIC(xent_prob)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                        const FS_T *q, fs_index qs, double g, FS_T *grad,
                                        fs_index gs, double *lse_out)
{
    if (o->softcap != 0.0)
        return FS_LOCAL(xent_prob)(o, x, xs, q, qs, g, grad, gs, lse_out, 1);
    if (grad == NULL)
        return xs == 1 && qs == 1
                   ? FS_LOCAL(xent_prob_fused)(o, x, 1, q, 1, g, NULL, 1, lse_out, 0)
                   : FS_LOCAL(xent_prob_fused)(o, x, xs, q, qs, g, NULL, 1, lse_out, 0);
    if (xs == 1 && qs == 1 && gs == 1)
        return FS_LOCAL(xent_prob_fused)(o, x, 1, q, 1, g, grad, 1, lse_out, 1);
    return FS_LOCAL(xent_prob_fused)(o, x, xs, q, qs, g, grad, gs, lse_out, 1);
}

FS_INLINE void FS_LOCAL(xent_prob_grad)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                        const FS_T *q, fs_index qs, double lse, double g,
                                        FS_T *grad, fs_index gs, const int capped)
{
    if (lse == INFINITY) {
        FS_LOCAL(fill)(grad, o->n_classes, gs, (FS_T)NAN);
        return;
    }
    const double mass = FS_LOCAL(prob_mass)(o, x, xs, q, qs, 0, NULL, capped);
    FS_LOCAL(prob_grad)(o, x, xs, q, qs, (FS_T)lse, (FS_T)exp((double)(FS_T)lse - lse),
                        (FS_T)(g * (mass + 2.0 * o->z_loss * lse)), g, grad, gs, capped);
}

FS_DISPATCH void FS_PUBLIC(xent_prob_grad)(const fs_xent_opts *o, const FS_T *x, fs_index xs,
                                           const FS_T *q, fs_index qs, double lse, double g,
                                           FS_T *grad, fs_index gs)
{
    if (o->softcap != 0.0)
        FS_LOCAL(xent_prob_grad)(o, x, xs, q, qs, lse, g, grad, gs, 1);
    else if (xs == 1 && qs == 1 && gs == 1)
        FS_LOCAL(xent_prob_grad)(o, x, 1, q, 1, lse, g, grad, 1, 0);
    else
        FS_LOCAL(xent_prob_grad)(o, x, xs, q, qs, lse, g, grad, gs, 0);
}

/* ------------------------------------------------- blocks of many rows */

/* Transposes nr rows of n contiguous classes into xt[c * FS_TILE + r]. */
FS_INLINE void FS_LOCAL(tile_in)(const FS_T *x, fs_index xrs, fs_index nr, fs_index n, FS_T *xt)
{
    for (fs_index r = 0; r < nr; r++)
        for (fs_index c = 0; c < n; c++)
            xt[c * FS_TILE + r] = x[r * xrs + c];
}

FS_INLINE void FS_LOCAL(tile_out)(const FS_T *xt, fs_index nr, fs_index n, FS_T *y, fs_index yrs)
{
    for (fs_index r = 0; r < nr; r++)
        for (fs_index c = 0; c < n; c++)
            y[r * yrs + c] = xt[c * FS_TILE + r];
}

FS_INLINE void FS_LOCAL(tile_max)(const FS_T *xt, fs_index nr, fs_index n, FS_T *m)
{
    for (fs_index r = 0; r < nr; r++)
        m[r] = -(FS_T)INFINITY;
    for (fs_index c = 0; c < n; c++) {
        const FS_T *col = xt + c * FS_TILE;
        FS_SIMD()
        for (fs_index r = 0; r < nr; r++)
            m[r] = col[r] > m[r] ? col[r] : m[r];
    }
}

/*
 * softmax (op 0), log_softmax (op 1) or logsumexp (op 2, into y[j]) of w
 * columns at once: column j is x[c * cs + j], c < n, so each step is a
 * contiguous loop across columns. This serves class axes that are not the
 * last one (the columns are the inner axis) and, after a transpose, tiles of
 * rows with few classes. y may alias x (not for op 2). Sums over classes are
 * blocked and compensated as in the row kernels; special values are theirs.
 */
FS_INLINE void FS_LOCAL(softmax_strip_body)(const FS_T *x, fs_index cs, fs_index w, fs_index n,
                                            FS_T *y, fs_index ycs, int op)
{
    FS_T m[FS_TILE], shift[FS_TILE];
    double bs[FS_TILE], k[FS_TILE];
    fs_sum s[FS_TILE];
    for (fs_index j = 0; j < w; j++) {
        m[j] = -(FS_T)INFINITY;
        s[j].s = s[j].c = 0.0;
        k[j] = 0.0;
    }
    for (fs_index c = 0; c < n; c++) {
        const FS_T *col = x + c * cs;
        FS_SIMD()
        for (fs_index j = 0; j < w; j++)
            m[j] = col[j] > m[j] ? col[j] : m[j];
    }
    FS_SIMD()
    for (fs_index j = 0; j < w; j++) /* softmax shifts by the max itself */
        shift[j] = op == 0 || isfinite(m[j]) ? m[j] : (FS_T)0;
    FS_BLOCKS(c0, c1, n) {
        for (fs_index j = 0; j < w; j++)
            bs[j] = 0.0;
        for (fs_index c = c0; c < c1; c++) {
            const FS_T *col = x + c * cs;
            FS_T *out = y + c * ycs;
            if (op == 2) { /* scipy's split: the k maximal terms out of the sum */
                FS_SIMD()
                for (fs_index j = 0; j < w; j++) {
                    int is_max = col[j] == m[j];
                    FS_T e = FS_EXP(col[j] - shift[j]);
                    bs[j] += is_max ? 0.0 : (double)e;
                    k[j] += is_max ? 1.0 : 0.0;
                }
            } else if (op == 0) {
                FS_SIMD()
                for (fs_index j = 0; j < w; j++) {
                    FS_T e = FS_EXP(col[j] - shift[j]);
                    bs[j] += (double)e;
                    out[j] = e;
                }
            } else {
                FS_SIMD()
                for (fs_index j = 0; j < w; j++)
                    bs[j] += (double)FS_EXP(col[j] - shift[j]);
            }
        }
        FS_SIMD()
        for (fs_index j = 0; j < w; j++)
            fs_sum_add(&s[j], bs[j]);
    }
    if (op == 2) {
        for (fs_index j = 0; j < w; j++) {
            if (!isfinite(m[j])) { /* +-inf or NaN: log(sum(exp(x))) directly */
                y[j] = FS_PUBLIC(logsumexp)(x + j, n, cs);
                continue;
            }
            double q = s[j].s / k[j], u = 1.0 + q;
            /* log1p(q) from log(1 + q), corrected for the rounding of 1 + q */
            double l1p = u == 1.0 ? q : fs_log_f64(u) - ((u - 1.0) - q) / u;
            y[j] = (FS_T)(l1p + fs_log_f64(k[j]) + (double)m[j]);
        }
        return;
    }
    FS_T f[FS_TILE];
    FS_SIMD()
    for (fs_index j = 0; j < w; j++)
        f[j] = op == 0 ? (isfinite(m[j]) ? (FS_T)(1.0 / s[j].s) : (FS_T)NAN)
                       : (FS_T)fs_log_f64(s[j].s);
    for (fs_index c = 0; c < n; c++) {
        const FS_T *col = x + c * cs;
        FS_T *out = y + c * ycs;
        if (op == 0) {
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

FS_DISPATCH void FS_PUBLIC(softmax_strip)(const FS_T *x, fs_index cs, fs_index w, fs_index n,
                                          FS_T *y, fs_index ycs, int op)
{
    FS_LOCAL(softmax_strip_body)(x, cs, w, n, y, ycs, op);
}

/* Rows of few classes: transposed into a class-major stack tile, then strips. */
FS_INLINE void FS_LOCAL(softmax_tile)(const FS_T *x, fs_index xrs, fs_index nr, fs_index n, FS_T *y,
                                      fs_index yrs, int op)
{
    FS_T xt[FS_SMALL_C * FS_TILE];
    FS_LOCAL(tile_in)(x, xrs, nr, n, xt);
    if (op == 2) {
        FS_LOCAL(softmax_strip_body)(xt, FS_TILE, nr, n, y, 0, op);
        return;
    }
    FS_LOCAL(softmax_strip_body)(xt, FS_TILE, nr, n, xt, FS_TILE, op);
    FS_LOCAL(tile_out)(xt, nr, n, y, yrs);
}

FS_DISPATCH void FS_PUBLIC(softmax_rows)(const FS_T *x, fs_index xrs, fs_index xs, fs_index nr,
                                         fs_index n, FS_T *y, fs_index yrs, fs_index ys, int op)
{
    if (n <= FS_SMALL_C && xs == 1 && (op == 2 || ys == 1)) {
        for (fs_index r0 = 0; r0 < nr; r0 += FS_TILE) {
            fs_index k = nr - r0 < FS_TILE ? nr - r0 : FS_TILE;
            FS_LOCAL(softmax_tile)(x + r0 * xrs, xrs, k, n, op == 2 ? y + r0 : y + r0 * yrs, yrs,
                                   op);
        }
        return;
    }
    for (fs_index r = 0; r < nr; r++) {
        if (op == 0)
            FS_PUBLIC(softmax)(x + r * xrs, n, xs, y + r * yrs, ys);
        else if (op == 1)
            FS_PUBLIC(log_softmax)(x + r * xrs, n, xs, y + r * yrs, ys);
        else
            y[r] = FS_PUBLIC(logsumexp)(x + r * xrs, n, xs);
    }
}

/*
 * Cross-entropy of w columns at once (no softcap): column j holds the scores
 * x[c * cs + j], c < C, and its gradient goes to grad[c * gcs + j] (which may
 * be x itself). Each step is a contiguous loop across columns. This serves a
 * class axis that is not the last one ((N, C, d1, ...) inputs) and, after a
 * transpose, tiles of rows with few classes. Same formulas as
 * xent_index_fused, to within rounding.
 */
/* The exps of classes c0..c1 of w columns: sums into bs (and, with `gap`,
 * the weighted gaps shift - z into bgap), e stored in grad when `store`. */
FS_INLINE void FS_LOCAL(strip_exps)(const FS_T *x, fs_index cs, fs_index w, fs_index c0,
                                    fs_index c1, const FS_T *shift, const double *wt, FS_T *grad,
                                    fs_index gcs, double *bs, double *bgap, const int fast,
                                    const int gap, const int store)
{
    for (fs_index c = c0; c < c1; c++) {
        const FS_T *col = x + c * cs;
        const double wc = wt ? wt[c] : 1.0;
        FS_T *out = store ? grad + c * gcs : NULL;
        FS_SIMD()
        for (fs_index j = 0; j < w; j++) {
            FS_T v = col[j];
            FS_T e = FS_EXPQ(v - shift[j]);
            bs[j] += (double)e;
            if (gap)
                bgap[j] += wc * (double)(shift[j] - v);
            if (store)
                out[j] = e;
        }
    }
}

FS_INLINE void FS_LOCAL(xent_index_strip_body)(const fs_xent_opts *o, const FS_T *x, fs_index cs,
                                               fs_index w, const int64_t *t, const double *g,
                                               FS_T *grad, fs_index gcs, double *loss, double *lse)
{
    const fs_index n = o->n_classes;
    const double eps = o->smoothing, zl = o->z_loss;
    const double *wt = o->weight;
    FS_T shift[FS_TILE], zy[FS_TILE], fillv[FS_TILE];
    double bs[FS_TILE], bgap[FS_TILE], wy[FS_TILE], a[FS_TILE], gb[FS_TILE];
    fs_sum s[FS_TILE], gap[FS_TILE];
    int live[FS_TILE];

    for (fs_index j = 0; j < w; j++) {
        shift[j] = -(FS_T)INFINITY;
        s[j].s = s[j].c = gap[j].s = gap[j].c = 0.0;
        zy[j] = t[j] >= 0 ? x[t[j] * cs + j] : (FS_T)0; /* before grad overwrites x */
        wy[j] = t[j] >= 0 && wt ? wt[t[j]] : 1.0;
    }
    FS_T lo[FS_TILE];
    int bad = 0;
    for (fs_index j = 0; j < w; j++)
        lo[j] = (FS_T)INFINITY;
    for (fs_index c = 0; c < n; c++) {
        const FS_T *col = x + c * cs;
        FS_SIMD(reduction(| : bad))
        for (fs_index j = 0; j < w; j++) {
            shift[j] = col[j] > shift[j] ? col[j] : shift[j];
            lo[j] = col[j] < lo[j] ? col[j] : lo[j];
            bad |= col[j] != col[j];
        }
    }
    FS_SIMD(reduction(| : bad))
    for (fs_index j = 0; j < w; j++) {
        const FS_T m = shift[j], sh = isfinite(m) ? m : (FS_T)0;
        /* a column with a +inf score has a NaN log-softmax; an ignored one is 0 */
        live[j] = t[j] >= 0 && m != (FS_T)INFINITY;
        fillv[j] = t[j] < 0 ? (FS_T)0 : (FS_T)NAN;
        shift[j] = sh;
        /* The fast exp serves the strip only if every argument z - shift is in
         * its range: the smallest and largest scores bound them (rounding is
         * monotonic), and a NaN anywhere rules it out. */
        bad |= !(lo[j] - sh >= FS_EXP_LO) | !(m - sh <= (FS_T)0);
    }
    const int fast = !bad, with_gap = eps != 0.0;
    FS_BLOCKS(c0, c1, n) {
        for (fs_index j = 0; j < w; j++)
            bs[j] = bgap[j] = 0.0;
        /* The common case with constant flags: its loop has neither the gap
         * sums nor the accurate exp. */
        if (fast && !with_gap)
            FS_LOCAL(strip_exps)(x, cs, w, c0, c1, shift, wt, grad, gcs, bs, bgap, 1, 0,
                                 grad != NULL);
        else
            FS_LOCAL(strip_exps)(x, cs, w, c0, c1, shift, wt, grad, gcs, bs, bgap, fast, with_gap,
                                 grad != NULL);
        FS_SIMD()
        for (fs_index j = 0; j < w; j++) {
            fs_sum_add(&s[j], bs[j]);
            fs_sum_add(&gap[j], bgap[j]);
        }
    }
    FS_SIMD()
    for (fs_index j = 0; j < w; j++) {
        double log_s = fs_log_f64(s[j].s);
        double l = (double)shift[j] + log_s;
        double v = (1.0 - eps) * wy[j] * (((double)shift[j] - (double)zy[j]) + log_s);
        v += eps != 0.0 ? eps / (double)n * (o->weight_sum * log_s + gap[j].s) : 0.0;
        v += zl != 0.0 ? zl * l * l : 0.0;
        lse[j] = l;
        loss[j] = live[j] ? v : (double)fillv[j];
        a[j] =
            g[j] * ((1.0 - eps) * wy[j] + eps / (double)n * o->weight_sum + 2.0 * zl * l) / s[j].s;
        gb[j] = g[j] * eps / (double)n;
    }
    if (!grad)
        return;
    for (fs_index c = 0; c < n; c++) {
        FS_T *out = grad + c * gcs;
        const FS_T wc = wt ? (FS_T)wt[c] : (FS_T)1;
        FS_SIMD()
        for (fs_index j = 0; j < w; j++)
            out[j] = live[j] ? (FS_T)a[j] * out[j] - (FS_T)gb[j] * wc : fillv[j];
    }
    for (fs_index j = 0; j < w; j++)
        if (live[j])
            grad[t[j] * gcs + j] -= (FS_T)(g[j] * (1.0 - eps) * wy[j]);
}

FS_DISPATCH void FS_PUBLIC(xent_index_strip)(const fs_xent_opts *o, const FS_T *x, fs_index cs,
                                             fs_index w, const int64_t *t, const double *g,
                                             FS_T *grad, fs_index gcs, double *loss, double *lse)
{
    FS_LOCAL(xent_index_strip_body)(o, x, cs, w, t, g, grad, gcs, loss, lse);
}

/* Rows of few classes (C <= FS_SMALL_C, classes contiguous): per-row loops of
 * ten elements spend their time in set-up, so a tile of rows is transposed
 * into a class-major stack buffer and computed as a strip. */
FS_INLINE void FS_LOCAL(xent_index_tile)(const fs_xent_opts *o, const FS_T *x, fs_index xrs,
                                         fs_index nr, const int64_t *t, const double *g, FS_T *grad,
                                         fs_index grs, double *loss, double *lse)
{
    FS_T xt[FS_SMALL_C * FS_TILE];
    FS_LOCAL(tile_in)(x, xrs, nr, o->n_classes, xt);
    FS_LOCAL(xent_index_strip_body)(o, xt, FS_TILE, nr, t, g, grad ? xt : NULL, FS_TILE, loss, lse);
    if (grad)
        FS_LOCAL(tile_out)(xt, nr, o->n_classes, grad, grs);
}

FS_DISPATCH void FS_PUBLIC(xent_index_rows)(const fs_xent_opts *o, const FS_T *x, fs_index xrs,
                                            fs_index xs, fs_index nr, const int64_t *t,
                                            const double *g, FS_T *grad, fs_index grs, fs_index gs,
                                            double *loss, double *lse)
{
    if (o->n_classes <= FS_SMALL_C && o->softcap == 0.0 && xs == 1 && (!grad || gs == 1)) {
        for (fs_index r0 = 0; r0 < nr; r0 += FS_TILE) {
            fs_index k = nr - r0 < FS_TILE ? nr - r0 : FS_TILE;
            FS_LOCAL(xent_index_tile)(o, x + r0 * xrs, xrs, k, t + r0, g + r0,
                                      grad ? grad + r0 * grs : NULL, grs, loss + r0, lse + r0);
        }
        return;
    }
    for (fs_index r = 0; r < nr; r++)
        loss[r] = FS_PUBLIC(xent_index)(o, x + r * xrs, xs, t[r], g[r],
                                        grad ? grad + r * grs : NULL, gs, lse + r);
}

/*
 * One pass of minibatch training for a linear model with few classes. Each
 * row x of the batch (X[idx[r]], or X[r] when idx is NULL, d features) is
 * read once, while it sits in cache: scores z = W x + b, the row's loss and
 * dz = g_r d loss / dz as xent_index (no softcap), then gW += dz x^T and
 * gb += dz. gW and gb are zeroed first; z is scratch of FS_LINEAR_ROWS *
 * n_classes elements. The row's label and weight are labels[row] and
 * g_value * g[row] (g may be NULL). Returns the sum of the rows' losses
 * times g[row] (1 without g).
 *
 * Rows go FS_LINEAR_ROWS at a time and classes two at a time, so that each
 * load of W or of gW (which need not fit in L1) serves several rows, and
 * each load of x several classes.
 */
FS_DISPATCH double FS_PUBLIC(linear_xent)(const fs_xent_opts *o, const FS_T *X, fs_index xrs,
                                          fs_index d, const int64_t *idx, fs_index n,
                                          const int64_t *labels, const double *g, double g_value,
                                          const FS_T *W, const FS_T *b, FS_T *gW, FS_T *gb, FS_T *z)
{
    const fs_index nc = o->n_classes;
    double total = 0.0;
    for (fs_index j = 0; j < nc * d; j++)
        gW[j] = 0;
    if (gb)
        for (fs_index c = 0; c < nc; c++)
            gb[c] = 0;
    for (fs_index r = 0; r < n; r += FS_LINEAR_ROWS) {
        const fs_index nr = n - r < FS_LINEAR_ROWS ? n - r : FS_LINEAR_ROWS;
        fs_index rows[FS_LINEAR_ROWS];
        for (fs_index j = 0; j < FS_LINEAR_ROWS; j++) /* missing rows repeat the first */
            rows[j] = idx ? (fs_index)idx[r + (j < nr ? j : 0)] : r + (j < nr ? j : 0);
        const FS_T *x0 = X + rows[0] * xrs, *x1 = X + rows[1] * xrs;
        const FS_T *x2 = X + rows[2] * xrs, *x3 = X + rows[3] * xrs;
        FS_T *z0 = z, *z1 = z + nc, *z2 = z + 2 * nc, *z3 = z + 3 * nc;
        fs_index c = 0;
        for (; c + 2 <= nc; c += 2) {
            const FS_T *wa = W + c * d, *wb = wa + d;
            FS_T a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
            FS_SIMD(reduction(+ : a0, a1, a2, a3, b0, b1, b2, b3))
            for (fs_index k = 0; k < d; k++) {
                const FS_T u = wa[k], v = wb[k];
                a0 += u * x0[k], a1 += u * x1[k], a2 += u * x2[k], a3 += u * x3[k];
                b0 += v * x0[k], b1 += v * x1[k], b2 += v * x2[k], b3 += v * x3[k];
            }
            z0[c] = a0, z1[c] = a1, z2[c] = a2, z3[c] = a3;
            z0[c + 1] = b0, z1[c + 1] = b1, z2[c + 1] = b2, z3[c + 1] = b3;
        }
        if (c < nc) {
            const FS_T *wa = W + c * d;
            FS_T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            FS_SIMD(reduction(+ : a0, a1, a2, a3))
            for (fs_index k = 0; k < d; k++) {
                const FS_T u = wa[k];
                a0 += u * x0[k], a1 += u * x1[k], a2 += u * x2[k], a3 += u * x3[k];
            }
            z0[c] = a0, z1[c] = a1, z2[c] = a2, z3[c] = a3;
        }
        for (fs_index j = 0; j < FS_LINEAR_ROWS; j++) {
            FS_T *zj = z + j * nc;
            if (j >= nr) { /* a repeated row adds nothing */
                for (c = 0; c < nc; c++)
                    zj[c] = 0;
                continue;
            }
            if (b)
                for (c = 0; c < nc; c++)
                    zj[c] += b[c];
            const double weight = g ? g[rows[j]] : 1.0;
            double lse;
            total += weight
                     * FS_LOCAL(xent_index_fused)(o, zj, 1, labels[rows[j]], g_value * weight, zj,
                                                  1, &lse, 1);
            if (gb)
                for (c = 0; c < nc; c++)
                    gb[c] += zj[c];
        }
        for (c = 0; c + 2 <= nc; c += 2) {
            const FS_T p0 = z0[c], p1 = z1[c], p2 = z2[c], p3 = z3[c];
            const FS_T q0 = z0[c + 1], q1 = z1[c + 1], q2 = z2[c + 1], q3 = z3[c + 1];
            FS_T *ga = gW + c * d, *gb2 = ga + d;
            FS_SIMD()
            for (fs_index k = 0; k < d; k++) {
                ga[k] += p0 * x0[k] + p1 * x1[k] + p2 * x2[k] + p3 * x3[k];
                gb2[k] += q0 * x0[k] + q1 * x1[k] + q2 * x2[k] + q3 * x3[k];
            }
        }
        if (c < nc) {
            const FS_T p0 = z0[c], p1 = z1[c], p2 = z2[c], p3 = z3[c];
            FS_T *ga = gW + c * d;
            FS_SIMD()
            for (fs_index k = 0; k < d; k++)
                ga[k] += p0 * x0[k] + p1 * x1[k] + p2 * x2[k] + p3 * x3[k];
        }
    }
    return total;
}

#undef FS_CAT2
#undef FS_CAT
#undef FS_PUBLIC
#undef FS_LOCAL
#undef FS_SCORE
#undef FS_DSCORE
#undef FS_EXPQ
