/*
 * fastsoftmax C kernels.
 *
 * Design
 * ------
 * Three layers, each touching only the one below it:
 *   1. C (this directory) owns every decision about how a batch is computed.
 *      A call is described by a batch struct (fs_softmax_batch, fs_xent_batch,
 *      fs_linear_batch): its shape as (outer, classes, inner), each array's
 *      element strides, the options. fs_*_plan() chooses how to compute it
 *      (rows, strips, tiles or columns, below) and cuts it into independent
 *      tasks; fs_*_task() computes one task. Pure C99 plus OpenMP SIMD pragmas: no
 *      Python objects, no GIL, no allocation, never fails.
 *   2. Cython (fastsoftmax/_kernels.pyx) fills the struct from NumPy arrays,
 *      releases the GIL and runs the tasks with OpenMP prange (guided
 *      schedule), twice for FS_COLUMNS with fs_softmax_combine between. It
 *      makes no choice of kernel.
 *   3. Python (fastsoftmax/_*.py) checks every argument (dtypes, shapes,
 *      labels in range, writable outputs, strides that are whole elements),
 *      allocates missing outputs and chooses the thread count.
 *
 * Why:
 * - Tasks are fixed by the batch alone, and every sum inside a row runs in
 *   fixed blocks (fs_math.h), so results never depend on the thread count.
 * - One exp per element: the fused cross-entropy stores exp(z - max) in the
 *   gradient while it sums them, then turns them into the gradient without
 *   another exp (softcap stores the capped score instead, see xent.h).
 * - The fast exp serves a block only when every argument is in its range
 *   (fs_fast_range), checked on the values the exps take; a row whose
 *   smallest and largest scores are in range (all_fast, from the max pass)
 *   skips the checks, a pass fewer (12% of a 32000-class fused row, 17% of
 *   its softmax, on one thread).
 * - Rows of few classes spend their time in per-row set-up, so they are
 *   computed 64 rows at a time across rows (tiles); a class axis that is
 *   not the last one is computed across its contiguous inner axis (strips),
 *   and when it is long, in chunks of rows merged after (columns), so that
 *   a (65536, 10) array reduced over axis 0 has whole vectors and threads.
 *
 * Layouts and the bodies that serve them
 * --------------------------------------
 * | batch                                   | plan      | body                  |
 * |-----------------------------------------|-----------|-----------------------|
 * | inner = 1, C <= FS_SMALL_C (2-byte: see | FS_TILES  | transpose, then strip |
 * |   FS_HALF_SMALL_C), unit class stride   |           | (softmax.h, xent.h)   |
 * |   (input, output), no softcap, class-   |           |                       |
 * |   index targets, forward                |           |                       |
 * | softmax family, inner > 1, unit inner   | FS_COLUMNS| chunks, combine,      |
 * |   stride, C and size large (below), not |           | chunks (columns.h)    |
 * |   2-byte                                |           |                       |
 * | inner > 1, unit inner stride, same      | FS_STRIPS | strip                 |
 * |   conditions otherwise                  |           |                       |
 * | everything else (any strides, softcap,  | FS_ROWS   | row (unit or general  |
 * |   probabilities, backward from lse)     |           | class stride)         |
 *
 * Conventions
 * -----------
 * - Names carry op and dtype: fs_<op>_<f32|f64>; plain names dispatch on
 *   the batch's dtype through a table built from FS_FOR_EACH_DTYPE.
 * - Strides are in elements, not bytes, and may be any value; an output may
 *   alias its input element for element (in place).
 * - Sums are accumulated in double for every dtype.
 * - Special values follow scipy.special for the softmax family and
 *   torch.nn.functional.cross_entropy for the loss (see the Python docs).
 */
#ifndef FASTSOFTMAX_H
#define FASTSOFTMAX_H

#include <stddef.h>
#include <stdint.h>

typedef ptrdiff_t fs_index;

/* The dtypes the kernels compute in: X(suffix, element type). Adding one is
 * a line here and its instantiation in fastsoftmax.c. */
#define FS_FOR_EACH_DTYPE(X) X(f32, float) X(f64, double)
/* The 2-byte dtypes, stored as uint16_t bits and computed in float32
 * (staged.h): X(suffix). */
#define FS_FOR_EACH_HALF(X) X(f16) X(bf16)

typedef enum fs_dtype { FS_F32 = 0, FS_F64 = 1, FS_F16 = 2, FS_BF16 = 3, FS_N_DTYPES } fs_dtype;

/*
 * Thresholds, each with the measurement that chose it (AMD EPYC Zen 4,
 * gcc 12, float32, one thread, hot; the fused forward + backward):
 * FS_SMALL_C  rows of at most this many classes go in tiles, which beat
 *             the row kernel up to 64 classes and lose from 96 (ns a row,
 *             tile against row, float32 / float64): C = 32 28 / 45, 38 / 56;
 *             C = 48 39 / 48, 54 / 64; C = 64 51 / 55, 72 / 79; C = 96 75 /
 *             63, 140 / 98. A tile of 64 classes is 16 KiB of float32.
 * FS_HALF_SMALL_C  the same for 2-byte rows on AVX-512 CPUs (fs_tile_classes
 *             in fastsoftmax.c chooses; elsewhere FS_SMALL_C, where wider
 *             tiles were not measured). On an AMD EPYC Zen 5 (cold inputs,
 *             fused out=, ms, 1 thread, tiles / rows) 2-byte rows win in
 *             tiles up to 128 classes (float16 16384 x 100 1.18 / 2.42, 12800
 *             x 128 1.12 / 1.56; bfloat16 12800 x 128 1.07 / 1.26), float32
 *             rows do not (20480 x 80 1.73 / 1.35, 14628 x 112 1.59 / 1.07),
 *             although hot they do (16384 x 100 1.01 / 1.64): a 2-byte row
 *             costs its row kernel a widening and a rounding pass more.
 * FS_TILE     rows (columns of a strip) computed together: 32 costs the
 *             same as 64 at C = 10 and 6% more at C = 32; 128 gains 10% at
 *             C = 10 and 2% at C = 32 for a stack tile twice the size.
 * FS_ROW_TASK elements per task of the FS_ROWS plan (whole rows, at least
 *             one): against a task per row, 3.5% less at C = 100, the same
 *             at C = 1000.
 * FS_GRAIN    elements per thread below which a call runs on one thread: a
 *             row of 32k exps takes about as long as waking a second thread.
 * FS_LINEAR_MAX_CLASSES  classes up to which SGD runs fs_linear_xent instead
 *             of two matrix products (OpenBLAS 0.3.31) around the
 *             cross-entropy. One epoch of 60000 x 784 float32, batch 256, ms
 *             fused / BLAS, 2 threads: C = 10 36 / 50, 16 43 / 51, 20 59 / 60,
 *             24 103 / 60, 32 66 / 59, 64 139 / 75; 1 thread: C = 10 54 / 58,
 *             16 67 / 60, 20 74 / 59.
 * FS_COLUMNS_MIN_N, FS_COLUMNS_MIN_SIZE  classes and elements from which a
 *             class axis that is not the last one is cut into chunks of rows
 *             (FS_COLUMNS) instead of strips (Intel Xeon, AVX-512, 2 threads,
 *             cold, float32, softmax axis 0, x copy, strips / columns):
 *             65536 x 10 4.3 / 1.2, 16384 x 100 2.7 / 1.4, 4096 x 1000 2.2 /
 *             1.4, 1024 x 32000 2.1 / 1.4, 1024 x 100 3.2 / 1.6; below, about
 *             the same (300 x 300 2.5 / 1.9, but 1 thread 2.1 / 2.4; 512 x 64
 *             2.0 / 2.2).
 * FS_COLUMNS_CHUNK  elements a sub-chunk of an FS_COLUMNS task (and at
 *             least 64 rows), in L2 between its two sweeps: 65536 x 10
 *             logsumexp, 1 thread, hot, 8192 0.35 ms, 16384 0.29, 32768 0.27.
 * FS_COLUMNS_TASKS  tasks an FS_COLUMNS call is cut into, about (each a
 *             row of partials to merge after).
 * FS_LINEAR_ROWS  rows fs_linear_xent computes together. Not a tuning knob:
 *             the body is written out for four rows (linear_xent.h), so that
 *             W and its gradient are loaded once per four rows.
 * Each may be set at compile time (-DFS_TILE=32) to measure it again.
 */
#ifndef FS_SMALL_C
#define FS_SMALL_C 64
#endif
#ifndef FS_HALF_SMALL_C
#define FS_HALF_SMALL_C 128
#endif
#ifndef FS_TILE
#define FS_TILE 64
#endif
#ifndef FS_ROW_TASK
#define FS_ROW_TASK 4096
#endif
#ifndef FS_GRAIN
#define FS_GRAIN 32768
#endif
#ifndef FS_LINEAR_MAX_CLASSES
#define FS_LINEAR_MAX_CLASSES 16
#endif
#define FS_LINEAR_ROWS 4
#ifndef FS_COLUMNS_MIN_N
#define FS_COLUMNS_MIN_N 256
#endif
#ifndef FS_COLUMNS_MIN_SIZE
#define FS_COLUMNS_MIN_SIZE 65536
#endif
#ifndef FS_COLUMNS_CHUNK
#define FS_COLUMNS_CHUNK 32768
#endif
#ifndef FS_COLUMNS_TASKS
#define FS_COLUMNS_TASKS 32
#endif
/* Lanes of an FS_COLUMNS task's per-column arrays: the columns of a task at
 * most; wider inner axes are cut into blocks of FS_COLUMNS_BLOCK columns. */
#define FS_COLUMNS_LANES 512
#define FS_COLUMNS_BLOCK 256

/* An array of a batch: its data and element strides over (outer, class,
 * inner); for per-row arrays (targets, scales, lse) s0 and s2 index
 * (outer, inner) and s1 is unused. p is NULL for an absent array. */
typedef struct fs_arr {
    void *p;
    fs_index s0, s1, s2;
} fs_arr;

typedef enum fs_plan_kind { FS_ROWS = 0, FS_STRIPS = 1, FS_TILES = 2, FS_COLUMNS = 3 } fs_plan_kind;

/* How a batch is cut into tasks (set by the fs_*_plan functions). */
typedef struct fs_plan {
    fs_plan_kind kind;
    fs_index per_task; /* rows (FS_ROWS, FS_TILES, FS_COLUMNS) or columns (FS_STRIPS) per task */
    fs_index n_tasks;
} fs_plan;

typedef enum fs_softmax_op { FS_SOFTMAX = 0, FS_LOG_SOFTMAX = 1, FS_LOGSUMEXP = 2 } fs_softmax_op;

/* softmax or log_softmax of x into y (same shape), or logsumexp of each row
 * into y (an (outer, inner) array; float32 for a 2-byte x) over the class
 * axis. n >= 1. scratch: for a 2-byte dtype planned as FS_ROWS, a row of
 * floats for each thread of the call (fs_softmax_scratch). An FS_COLUMNS
 * plan runs its tasks twice, with phase 0 then 1, and fs_softmax_combine
 * between; partials holds fs_softmax_partials(b) doubles (columns.h). */
typedef struct fs_softmax_batch {
    fs_dtype dtype;
    fs_softmax_op op;
    fs_index outer, n, inner;
    fs_arr x, y;
    float *scratch;
    double *partials;
    int phase;
    fs_plan plan;
} fs_softmax_batch;

/* Options of the cross-entropy kernels, shared by every row of a call. */
typedef struct fs_xent_opts {
    fs_index n_classes;
    double smoothing;     /* label smoothing eps in [0, 1] */
    double z_loss;        /* coefficient of lse^2 added to each loss */
    double softcap;       /* scores become s * tanh(x / s); 0 turns it off */
    const double *weight; /* n_classes class weights, or NULL for all ones */
    double weight_sum;    /* sum of the class weights (n_classes if NULL); fs_xent_plan sets it */
} fs_xent_opts;

/*
 * Cross-entropy of each row of x (outer, C, inner) against class indices
 * (target: int64, (outer, inner); a label equal to ignore_index, or negative,
 * is ignored) or class probabilities (q, x's shape, when target.p is NULL).
 * Forward: loss and lse of row r = i * inner + j into loss[r], lse[r] (lse
 * may be NULL: not kept), and
 * the gradient scaled by the row's g (or g_value when g.p is NULL) into grad
 * unless grad.p is NULL. Backward (lse_in.p set): the gradient alone, from
 * each row's lse (double, (outer, inner)). grad may alias x element for
 * element.
 */
typedef struct fs_xent_batch {
    fs_dtype dtype;
    fs_index outer, inner;
    fs_arr x, grad, target, q, g, lse_in;
    double g_value;
    double *loss, *lse;
    int64_t ignore_index;
    fs_xent_opts o;
    float *scratch; /* as fs_softmax_batch's, a row of n_classes floats a thread; q is float32 */
    fs_plan plan;
} fs_xent_batch;

/*
 * One minibatch of a linear softmax model with few classes: the rows idx of
 * X (n x d; all rows in order when idx is NULL), scores z = W x + b, the
 * cross-entropy against labels[row] (no weights, z_loss or softcap) with
 * gradient scale g_value * g[row] (g may be NULL), and the gradients of W
 * and b. The batch is cut into n_parts fixed parts; part k writes its sums
 * to gW_parts + k * C * d, gb_parts + k * C (when b is not NULL) and
 * totals[k] (the sum of g[row] * loss), with z_parts + k * FS_LINEAR_ROWS * C
 * as scratch. class_block is the number of classes scored together, 2 or 4,
 * or 0 to let the kernel choose for the CPU (the others are for the tests).
 */
typedef struct fs_linear_batch {
    fs_dtype dtype;
    const void *X;
    fs_index xrs, d, n;
    const int64_t *idx, *labels;
    const double *g;
    double g_value;
    const void *W, *b;
    void *gW_parts, *gb_parts, *z_parts;
    double *totals;
    fs_index n_parts;
    int class_block;
    fs_xent_opts o;
} fs_linear_batch;

/* Plans a batch (fills b->plan); then fs_*_task for task in [0, n_tasks).
 * The tasks take the batch as `const void *` (its op's struct), so that one
 * loop runs the tasks of every op. */
typedef void (*fs_task_fn)(const void *batch, fs_index task);
void fs_softmax_plan(fs_softmax_batch *b);
void fs_softmax_task(const void *batch, fs_index task);
/* FS_COLUMNS, after phase 0: merges the chunks (and writes logsumexp). */
void fs_softmax_combine(const fs_softmax_batch *b);
void fs_xent_plan(fs_xent_batch *b);

/* The common case of the labels' check before a cross-entropy: n contiguous
 * int64 labels, each in [0, n_classes) or (has_ignore) equal to ignore.
 * Returns the position of the first that is neither (-1 if none) and
 * counts into *kept those not ignored (up to that position). */
fs_index fs_check_labels_i64(const int64_t *t, fs_index n, fs_index n_classes, int has_ignore,
                             int64_t ignore, fs_index *kept);
void fs_xent_task(const void *batch, fs_index task);
void fs_linear_xent_task(const void *batch, fs_index part);
/* Floats of scratch a planned batch needs for each thread (0: none): the
 * caller gives that many times the call's thread count. */
fs_index fs_softmax_scratch(const fs_softmax_batch *b);
fs_index fs_xent_scratch(const fs_xent_batch *b);
/* Doubles of partials an FS_COLUMNS batch needs for the call (0: none). */
fs_index fs_softmax_partials(const fs_softmax_batch *b);

/* The per-dtype bodies behind the dispatching entry points above. */
#define FS_DECLARE(SUF, T)                                                                  \
    void fs_softmax_task_##SUF(const fs_softmax_batch *b, fs_index task);                   \
    void fs_columns_task_##SUF(const fs_softmax_batch *b, fs_index task);                   \
    void fs_columns_combine_##SUF(const fs_softmax_batch *b);                               \
    T fs_softmax_row_##SUF(const T *x, fs_index n, fs_index xs, T *y, fs_index ys, int op); \
    void fs_xent_task_##SUF(const fs_xent_batch *b, fs_index task);                         \
    void fs_linear_xent_task_##SUF(const fs_linear_batch *b, fs_index part);                \
    void fs_math_eval_##SUF(int fn, const T *x, T *y, fs_index n);
FS_FOR_EACH_DTYPE(FS_DECLARE)
#undef FS_DECLARE
#define FS_DECLARE(SUF)                                                                            \
    void fs_softmax_task_##SUF(const fs_softmax_batch *b, fs_index task);                          \
    int fs_softmax_stream_row_##SUF(const uint16_t *x, fs_index n, float *e, uint16_t *y, int op); \
    int fs_xent_stream_row_##SUF(const fs_xent_opts *o, const uint16_t *x, int64_t t, double g,    \
                                 float *e, uint16_t *grad, double *loss, double *lse);             \
    void fs_xent_task_##SUF(const fs_xent_batch *b, fs_index task);                                \
    void fs_half_eval_##SUF(int widen, const void *x, void *y, fs_index n);
FS_FOR_EACH_HALF(FS_DECLARE)
#undef FS_DECLARE

/* The 2-byte conversions over arrays, for the test suite: dtype FS_F16 or
 * FS_BF16; widen (bits -> float) or not (float -> bits). */
void fs_half_eval(fs_dtype dtype, int widen, const void *x, void *y, fs_index n);
/* off = 1: 2-byte values are converted by integer arithmetic even where the
 * CPU has conversion instructions (for the tests); returns the previous
 * setting. */
int fs_half_simd_disable(int off);

/* fs_math.h's functions over arrays, for the test suite: fn 0 exp, 1 the fast
 * exp, 2 log, 3 log1p (these two in double whatever T), 4 tanh. */
void fs_math_eval(fs_dtype dtype, int fn, const void *x, void *y, fs_index n);
/* Largest error in float ulps of fs_exp_f32 (fast = 0) or fs_exp_fast_f32 over
 * every float whose bits are in [lo, hi], against libm's double exp; the
 * number of floats above 1 ulp goes to *n_above_one. */
double fs_exp_f32_ulp(uint32_t lo, uint32_t hi, int fast, int64_t *n_above_one);

/* What the build compiled in, for show_config(). */
const char *fs_compiler(void);
const char *fs_simd(void);
const char *fs_half_simd(void);

#endif /* FASTSOFTMAX_H */
