/*
 * fastsoftmax C kernels: one call computes one row.
 *
 * Design
 * ------
 * Three layers, each touching only the one below it:
 *   1. C (this directory): the maths of a single row. Pure C99 plus OpenMP
 *      SIMD pragmas: no Python objects, no GIL, no allocation, never fails.
 *      Every argument has been checked before a kernel is called.
 *   2. Cython (fastsoftmax/_kernels.pyx): loops over rows with OpenMP prange
 *      (static schedule) with the GIL released, and hands each row's pointers
 *      to the C kernel.
 *   3. Python (fastsoftmax/_*.py): argument checks, dtype and shape policy,
 *      output allocation and the choice of thread count.
 *
 * Conventions
 * -----------
 * - Names carry op and dtype: fs_<op>_<f32|f64>.
 * - A row is n elements `stride` elements apart (strides are in elements, not
 *   bytes, and may be any value, so a class axis that is not the last one is
 *   handled without a copy). Output rows have strides of their own; an
 *   output may alias its input element for element (in-place).
 * - Sums are accumulated in double for both dtypes; exp is fs_math.h's
 *   vectorisable one.
 * - Special values follow scipy.special for the softmax family and
 *   torch.nn.functional.cross_entropy for the loss (see the Python docs).
 */
#ifndef FASTSOFTMAX_H
#define FASTSOFTMAX_H

#include <stddef.h>
#include <stdint.h>

typedef ptrdiff_t fs_index;

/* Options of the cross-entropy kernels, shared by every row of a call. */
typedef struct fs_xent_opts {
    fs_index n_classes;
    double smoothing;     /* label smoothing eps in [0, 1] */
    double z_loss;        /* coefficient of lse^2 added to each loss */
    double softcap;       /* scores become s * tanh(x / s); 0 turns it off */
    const double *weight; /* n_classes class weights, or NULL for all ones */
    double weight_sum;    /* sum of the class weights (n_classes if NULL) */
} fs_xent_opts;

#define FS_DECLARE(T, SUF)                                                                        \
    void fs_softmax_##SUF(const T *x, fs_index n, fs_index xs, T *y, fs_index ys);                \
    void fs_log_softmax_##SUF(const T *x, fs_index n, fs_index xs, T *y, fs_index ys);            \
    T fs_logsumexp_##SUF(const T *x, fs_index n, fs_index xs);                                    \
    double fs_xent_index_##SUF(const fs_xent_opts *o, const T *x, fs_index xs, int64_t target,    \
                               double g, T *grad, fs_index gs, double *lse_out);                  \
    double fs_xent_prob_##SUF(const fs_xent_opts *o, const T *x, fs_index xs, const T *q,         \
                              fs_index qs, double g, T *grad, fs_index gs, double *lse_out);      \
    void fs_xent_index_grad_##SUF(const fs_xent_opts *o, const T *x, fs_index xs, int64_t target, \
                                  double lse, double g, T *grad, fs_index gs);                    \
    void fs_xent_prob_grad_##SUF(const fs_xent_opts *o, const T *x, fs_index xs, const T *q,      \
                                 fs_index qs, double lse, double g, T *grad, fs_index gs);        \
    void fs_softmax_strip_##SUF(const T *x, fs_index cs, fs_index w, fs_index n, T *y,            \
                                fs_index ycs, int op);                                            \
    void fs_softmax_rows_##SUF(const T *x, fs_index xrs, fs_index xs, fs_index nr, fs_index n,    \
                               T *y, fs_index yrs, fs_index ys, int op);                          \
    void fs_xent_index_strip_##SUF(const fs_xent_opts *o, const T *x, fs_index cs, fs_index w,    \
                                   const int64_t *t, const double *g, T *grad, fs_index gcs,      \
                                   double *loss, double *lse);                                    \
    void fs_xent_index_rows_##SUF(const fs_xent_opts *o, const T *x, fs_index xrs, fs_index xs,   \
                                  fs_index nr, const int64_t *t, const double *g, T *grad,        \
                                  fs_index grs, fs_index gs, double *loss, double *lse);          \
    double fs_linear_xent_##SUF(const fs_xent_opts *o, const T *X, fs_index xrs, fs_index d,      \
                                const int64_t *idx, fs_index n, const int64_t *labels,            \
                                const double *g, double g_value, const T *W, const T *b, T *gW,   \
                                T *gb, T *z);

/*
 * fs_softmax:      y = exp(x - max) / sum(exp(x - max)); NaN row if max is not finite.
 * fs_log_softmax:  y = (x - shift) - log(sum(exp(x - shift))), shift = max or 0 if not finite.
 * fs_logsumexp:    log(sum(exp(x))), max term split out as scipy does; n >= 1.
 * fs_xent_index:   loss of one row against class `target` (< 0: ignored, loss 0, grad 0).
 *                  Writes g * d loss / d x to grad when grad is not NULL (grad may be x).
 * fs_xent_prob:    the same against a probability row q.
 * fs_xent_*_grad:  the gradient alone, from the row's log-sum-exp.
 * fs_softmax_strip: the same over w <= FS_TILE contiguous columns x[c * cs + j]
 *                  (a class axis that is not the last one; logsumexp into y[j]).
 * fs_softmax_rows: softmax (op 0), log_softmax (1) or logsumexp (2, y[r]) of
 *                  nr rows xrs elements apart.
 * fs_xent_index_strip: fs_xent_index over w <= FS_TILE columns x[c * cs + j]
 *                  (no softcap), gradient to grad[c * gcs + j].
 * fs_xent_index_rows: fs_xent_index over nr rows xrs elements apart, with
 *                  labels t[r] (< 0: ignored) and scales g[r]; rows of few
 *                  classes are computed FS_TILE at a time across rows.
 * fs_linear_xent:  a minibatch of a linear model: scores, loss and gradient of
 *                  the weights in one read of each row (rows.h says more).
 */
#define FS_TILE 64
#define FS_LINEAR_ROWS 4 /* rows fs_linear_xent computes together; z holds as many */
#define FS_SMALL_C 32
FS_DECLARE(float, f32)
FS_DECLARE(double, f64)

/* What the build compiled in, for show_config(). */
const char *fs_compiler(void);
const char *fs_simd(void);

#endif /* FASTSOFTMAX_H */
