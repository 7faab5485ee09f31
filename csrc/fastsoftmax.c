/* The plans, the per-dtype kernels (instantiated from fs_instance.h) and the
 * tables that dispatch on a batch's dtype. */
#include "fastsoftmax.h"

#include <math.h>

#include "fs_half.h"
#include "fs_math.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The calling thread's number in its OpenMP team (0 outside one): the index
 * of its part of a call's scratch. */
static int fs_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Runtime dispatch: on x86-64 with GCC and glibc (ifunc), each per-dtype task
 * is compiled three times, for AVX-512, for AVX2 + FMA and for the x86-64
 * baseline, and the loader picks the best one the CPU runs. One binary is
 * then fast on new CPUs and still runs on old ones. Elsewhere (musl, clang,
 * MSVC, arm64) the kernels are built for the target's baseline only. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) \
    && !defined(FS_NO_DISPATCH)
#define FS_DISPATCH __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define FS_HAVE_DISPATCH 1
#else
#define FS_DISPATCH
#define FS_HAVE_DISPATCH 0
#endif

/* Whether the kernels run with 32 vector registers (the AVX-512 clone, or a
 * build for AVX-512): blockings that need that many choose by it. */
static int fs_many_registers(void)
{
#if FS_HAVE_DISPATCH
    return __builtin_cpu_supports("x86-64-v4");
#elif defined(__AVX512F__)
    return 1;
#else
    return 0;
#endif
}

/* Whether the CPU runs AVX2 (the x86-64-v3 clone or better, or a build for
 * AVX2): fs_transpose.h's AVX2 tiles choose by it. */
static int fs_has_avx2(void)
{
#if FS_HAVE_DISPATCH
    return __builtin_cpu_supports("x86-64-v3");
#elif defined(__AVX2__)
    return 1;
#else
    return 0;
#endif
}

#include "fs_transpose.h"

/* Rows of a batch in order, as (i, j) = (r / inner, r % inner) without a
 * division per row: the offset of row (i, j) of an array is i s0 + j s2. */
typedef struct fs_row_walk {
    fs_index i, j, inner;
} fs_row_walk;

FS_INLINE fs_row_walk fs_walk_from(fs_index r, fs_index inner)
{
    fs_row_walk w = {r / inner, r % inner, inner};
    return w;
}

FS_INLINE void fs_walk_next(fs_row_walk *w)
{
    if (++w->j == w->inner) {
        w->j = 0;
        w->i++;
    }
}

FS_INLINE fs_index fs_walk_offset(const fs_row_walk *w, const fs_arr *a)
{
    return w->i * a->s0 + w->j * a->s2;
}

/* The strip of a task of an FS_STRIPS plan: sample i, columns j0 .. j0 + w. */
typedef struct fs_strip {
    fs_index i, j0, w;
} fs_strip;

FS_INLINE fs_strip fs_strip_at(const fs_plan *p, fs_index inner, fs_index task)
{
    const fs_index per = p->per_task, n_strips = (inner + per - 1) / per;
    fs_strip st;
    st.i = task / n_strips;
    st.j0 = (task - st.i * n_strips) * per;
    st.w = inner - st.j0 < per ? inner - st.j0 : per;
    return st;
}

/* Rows of an FS_COLUMNS chunk read as one row of lanes (columns.h): where
 * rows are contiguous, as many as make whole vectors of 16 lanes, up to FS_COLUMNS_LANES
 * lanes (fewer than 16 a row's masked tail would cost a vector each). */
FS_INLINE fs_index fs_columns_unit(const fs_softmax_batch *b)
{
    const fs_index inner = b->inner;
    const int contiguous = b->x.s1 == inner && (b->op == FS_LOGSUMEXP || b->y.s1 == inner);
    if (!contiguous || 2 * inner > FS_COLUMNS_LANES)
        return 1;
    fs_index g = 16, a = inner; /* gcd(16, inner) */
    while (a) {
        const fs_index t = g % a;
        g = a;
        a = t;
    }
    const fs_index whole = 16 / g; /* whole * inner = lcm(16, inner) */
    return whole * inner > FS_COLUMNS_LANES ? FS_COLUMNS_LANES / inner
                                            : whole * (FS_COLUMNS_LANES / (whole * inner));
}

/* Chunks of rows a sample, and blocks of columns a chunk. */
FS_INLINE fs_index fs_columns_chunks(const fs_softmax_batch *b)
{
    return (b->n + b->plan.per_task - 1) / b->plan.per_task;
}

/* Rows of a sub-chunk of a task: two sweeps over it in L2. */
FS_INLINE fs_index fs_columns_rows(const fs_softmax_batch *b)
{
    const fs_index cols = b->inner <= FS_COLUMNS_LANES ? b->inner : FS_COLUMNS_BLOCK;
    const fs_index per = FS_COLUMNS_CHUNK / cols, unit = fs_columns_unit(b);
    return (per < 64 ? 64 : per) / unit * unit;
}

FS_INLINE fs_index fs_columns_blocks(const fs_softmax_batch *b)
{
    return b->inner <= FS_COLUMNS_LANES ? 1 : (b->inner + FS_COLUMNS_BLOCK - 1) / FS_COLUMNS_BLOCK;
}

/* One instantiation per dtype of FS_FOR_EACH_DTYPE. */
#define FS_T float
#define FS_SUF f32
#include "fs_instance.h"

#define FS_T double
#define FS_SUF f64
#include "fs_instance.h"

/* n floats rounded up to whole 64-byte lines. */
static fs_index fs_scratch_row(fs_index n)
{
    return ((n + 15) / 16) * 16;
}

/* At least the number of FS_SUM_BLOCK blocks of a row of n. */
static fs_index fs_stream_blocks(fs_index n)
{
    return n / FS_SUM_BLOCK + 1;
}

/* Floats between two threads' scratch: the row, two floats per FS_SUM_BLOCK
 * block of it (the streaming rows of staged.h keep each block's maximum and
 * its range there), and one line more, so that no line is written by two
 * threads (with a shared line, 2 threads of a C = 100 softmax took as long
 * as 1). */
static fs_index fs_scratch_stride(fs_index n)
{
    return fs_scratch_row(n) + fs_scratch_row(2 * fs_stream_blocks(n)) + 16;
}

/* The 2-byte dtypes, computed by the float32 bodies above; runs of them
 * converted by the CPU's instructions where it has them. */
#include "fs_half_simd.h"

#define FS_H_SUF f16
#define FS_H_LOAD fs_f16_to_f32
#define FS_H_STORE fs_f32_to_f16
#define FS_H_WIDEN_SIMD FS_F16_WIDEN_SIMD
#define FS_H_WIDEN_RANGE_SIMD FS_F16_WIDEN_RANGE_SIMD
#define FS_H_NARROW_SIMD FS_F16_NARROW_SIMD
#include "staged.h"

#define FS_H_SUF bf16
#define FS_H_LOAD fs_bf16_to_f32
#define FS_H_STORE fs_f32_to_bf16
#define FS_H_WIDEN_SIMD(x, n, y) 0 /* a shift: the integer loop is as short */
#define FS_H_WIDEN_RANGE_SIMD FS_BF16_WIDEN_RANGE_SIMD
#define FS_H_NARROW_SIMD FS_BF16_NARROW_SIMD
#include "staged.h"

/* ----------------------------------------------------------------- plans */

static fs_plan fs_plan_of(fs_plan_kind kind, fs_index per, fs_index outer, fs_index inner)
{
    fs_plan p;
    p.kind = kind;
    p.per_task = per;
    p.n_tasks =
        kind == FS_STRIPS ? outer * ((inner + per - 1) / per) : (outer * inner + per - 1) / per;
    return p;
}

static int fs_is_half(fs_dtype d)
{
    return d == FS_F16 || d == FS_BF16;
}

/* Classes up to which rows go in tiles: FS_HALF_SMALL_C for 2-byte rows on
 * AVX-512 CPUs, FS_SMALL_C otherwise (the measurements in fastsoftmax.h). */
static fs_index fs_tile_classes(fs_dtype dtype)
{
    return fs_is_half(dtype) && fs_many_registers() ? FS_HALF_SMALL_C : FS_SMALL_C;
}

/* The batch's layout decides (the table in fastsoftmax.h): tiles for rows of
 * few contiguous classes, strips across a contiguous inner axis, rows
 * otherwise (FS_TILE of them per task when they are short). */
static fs_plan fs_plan_layout(fs_index n, fs_index inner, fs_index outer, int across, int unit_c,
                              int unit_inner, fs_index tile_classes)
{
    if (across && inner == 1 && n <= tile_classes && unit_c)
        return fs_plan_of(FS_TILES, FS_TILE, outer, inner);
    if (across && inner > 1 && unit_inner)
        return fs_plan_of(FS_STRIPS, FS_TILE, outer, inner);
    /* about FS_ROW_TASK elements a task: the per-task cost stays small */
    return fs_plan_of(FS_ROWS, n < FS_ROW_TASK ? (FS_ROW_TASK + n - 1) / n : 1, outer, inner);
}

/* 2-byte batches are never strips or columns (staged.h): unit_inner is 0
 * for them. */
void fs_softmax_plan(fs_softmax_batch *b)
{
    const int lse = b->op == FS_LOGSUMEXP;
    const int unit_inner = b->x.s2 == 1 && b->y.s2 == 1 && !fs_is_half(b->dtype);
    if (unit_inner && b->inner > 1 && b->n >= FS_COLUMNS_MIN_N
        && b->outer * b->n * b->inner >= FS_COLUMNS_MIN_SIZE) {
        /* whole sub-chunks a task, about FS_COLUMNS_TASKS tasks in all */
        const fs_index sub = fs_columns_rows(b), n_sub = (b->n + sub - 1) / sub;
        const fs_index across = b->outer * fs_columns_blocks(b);
        fs_index per_sample = (FS_COLUMNS_TASKS + across - 1) / across;
        per_sample = per_sample < n_sub ? per_sample : n_sub;
        b->plan.kind = FS_COLUMNS;
        b->plan.per_task = sub * ((n_sub + per_sample - 1) / per_sample);
        b->plan.n_tasks = b->outer * fs_columns_chunks(b) * fs_columns_blocks(b);
        return;
    }
    b->plan = fs_plan_layout(b->n, b->inner, b->outer, 1, b->x.s1 == 1 && (lse || b->y.s1 == 1),
                             unit_inner, fs_tile_classes(b->dtype));
}

void fs_xent_plan(fs_xent_batch *b)
{
    /* W, read only with smoothing (xent.h's uniform_mass): summed here, once a
     * call, compensated, rather than by a NumPy call that costs as much as a
     * small batch's whole loss */
    if (b->o.smoothing != 0.0 && b->o.weight) {
        fs_sum w = {0.0, 0.0};
        for (fs_index c = 0; c < b->o.n_classes; c++)
            fs_sum_add(&w, b->o.weight[c]);
        b->o.weight_sum = w.s;
    } else {
        b->o.weight_sum = (double)b->o.n_classes;
    }
    /* strips and tiles: class-index targets, the fused forward, no softcap */
    const int across = b->target.p != NULL && b->lse_in.p == NULL && b->o.softcap == 0.0;
    const int grad = b->grad.p != NULL;
    b->plan = fs_plan_layout(b->o.n_classes, b->inner, b->outer, across,
                             b->x.s1 == 1 && (!grad || b->grad.s1 == 1),
                             b->x.s2 == 1 && (!grad || b->grad.s2 == 1) && !fs_is_half(b->dtype),
                             fs_tile_classes(b->dtype));
}

fs_index fs_check_labels_i64(const int64_t *t, fs_index n, fs_index n_classes, int has_ignore,
                             int64_t ignore, fs_index *kept)
{
    /* blocks without an early exit vectorise; the first bad label is looked
     * for only in the block that has one */
    const fs_index block = 4096;
    const uint64_t c = (uint64_t)n_classes;
    fs_index k = 0;
    for (fs_index b0 = 0; b0 < n; b0 += block) {
        const fs_index b1 = n - b0 < block ? n : b0 + block;
        fs_index kb = 0;
        int bad = 0;
        FS_SIMD(reduction(+ : kb) reduction(| : bad))
        for (fs_index i = b0; i < b1; i++) {
            const int ig = has_ignore & (t[i] == ignore);
            kb += !ig;
            bad |= !ig & ((uint64_t)t[i] >= c);
        }
        if (bad) {
            for (fs_index i = b0; i < b1; i++) {
                if (has_ignore && t[i] == ignore)
                    continue;
                if ((uint64_t)t[i] >= c) {
                    *kept = k;
                    return i;
                }
                k++;
            }
        }
        k += kb;
    }
    *kept = k;
    return -1;
}

fs_index fs_softmax_scratch(const fs_softmax_batch *b)
{
    return fs_is_half(b->dtype) && b->plan.kind == FS_ROWS ? fs_scratch_stride(b->n) : 0;
}

fs_index fs_softmax_partials(const fs_softmax_batch *b)
{
    if (b->plan.kind != FS_COLUMNS)
        return 0;
    /* each chunk's 3 rows of inner, each sample's 2, the combine's 2 */
    return b->inner * (b->outer * (3 * fs_columns_chunks(b) + 2) + 2);
}

fs_index fs_xent_scratch(const fs_xent_batch *b)
{
    return fs_is_half(b->dtype) && b->plan.kind == FS_ROWS ? fs_scratch_stride(b->o.n_classes) : 0;
}

/* ------------------------------------------------------ dtype dispatch */

/* In fs_dtype's order: the computing dtypes, then the 2-byte ones. */
#define FS_ENTRY(SUF, T) fs_softmax_task_##SUF,
#define FS_HALF_ENTRY(SUF) fs_softmax_task_##SUF,
static void (*const fs_softmax_tasks[])(const fs_softmax_batch *, fs_index) = {
    FS_FOR_EACH_DTYPE(FS_ENTRY) FS_FOR_EACH_HALF(FS_HALF_ENTRY)};
#undef FS_ENTRY
#undef FS_HALF_ENTRY
#define FS_ENTRY(SUF, T) fs_xent_task_##SUF,
#define FS_HALF_ENTRY(SUF) fs_xent_task_##SUF,
static void (*const fs_xent_tasks[])(const fs_xent_batch *, fs_index) = {
    FS_FOR_EACH_DTYPE(FS_ENTRY) FS_FOR_EACH_HALF(FS_HALF_ENTRY)};
#undef FS_ENTRY
#undef FS_HALF_ENTRY
#define FS_ENTRY(SUF, T) fs_linear_xent_task_##SUF,
static void (*const fs_linear_tasks[])(const fs_linear_batch *,
                                       fs_index) = {FS_FOR_EACH_DTYPE(FS_ENTRY)};
#undef FS_ENTRY

void fs_softmax_task(const void *batch, fs_index task)
{
    const fs_softmax_batch *b = (const fs_softmax_batch *)batch;
    if (b->plan.kind == FS_COLUMNS) /* float32 and float64 only */
        (b->dtype == FS_F32 ? fs_columns_task_f32 : fs_columns_task_f64)(b, task);
    else
        fs_softmax_tasks[b->dtype](b, task);
}

void fs_softmax_combine(const fs_softmax_batch *b)
{
    if (b->dtype == FS_F32)
        fs_columns_combine_f32(b);
    else
        fs_columns_combine_f64(b);
}

void fs_xent_task(const void *batch, fs_index task)
{
    const fs_xent_batch *b = (const fs_xent_batch *)batch;
    fs_xent_tasks[b->dtype](b, task);
}

void fs_linear_xent_task(const void *batch, fs_index part)
{
    const fs_linear_batch *b = (const fs_linear_batch *)batch;
    if (b->dtype == FS_F32
        || b->dtype == FS_F64) /* no 2-byte bodies (see _linear_cross_entropy.py) */
        fs_linear_tasks[b->dtype](b, part);
}

void fs_math_eval(fs_dtype dtype, int fn, const void *x, void *y, fs_index n)
{
    if (dtype == FS_F32)
        fs_math_eval_f32(fn, (const float *)x, (float *)y, n);
    else
        fs_math_eval_f64(fn, (const double *)x, (double *)y, n);
}

void fs_half_eval(fs_dtype dtype, int widen, const void *x, void *y, fs_index n)
{
    if (dtype == FS_BF16)
        fs_half_eval_bf16(widen, x, y, n);
    else
        fs_half_eval_f16(widen, x, y, n);
}

double fs_exp_f32_ulp(uint32_t lo, uint32_t hi, int fast, int64_t *n_above_one)
{
    double worst = 0.0;
    int64_t above = 0;
    for (uint64_t bits = lo; bits <= hi; bits++) {
        const float x = fs_bits_to_f32((int32_t)(uint32_t)bits);
        const float y = fast == 2 ? fs_exp_half_f32(x) : fast ? fs_exp_fast_f32(x) : fs_exp_f32(x);
        const double ref = exp((double)x);
        /* the spacing of floats at the reference (subnormals: the smallest) */
        const float rf = (float)ref;
        const double ulp = (double)nextafterf(fabsf(rf), INFINITY) - (double)fabsf(rf);
        /* the correctly rounded result (an overflow to inf included) is exact */
        const double err = y == rf ? 0.0 : fabs((double)y - ref) / (ulp > 0 ? ulp : 1e-45);
        worst = err > worst ? err : worst;
        above += err > 1.0;
    }
    *n_above_one = above;
    return worst;
}

#define FS_STR2(x) #x
#define FS_STR(x) FS_STR2(x)

const char *fs_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#elif defined(_MSC_VER)
    return "msvc " FS_STR(_MSC_FULL_VER);
#else
    return "unknown";
#endif
}

/* The instruction set the kernels run with on this CPU. */
const char *fs_simd(void)
{
#if FS_HAVE_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        return "AVX512 (x86-64-v4, runtime dispatch)";
    if (__builtin_cpu_supports("x86-64-v3"))
        return "AVX2+FMA (x86-64-v3, runtime dispatch)";
    return "SSE2 (x86-64 baseline, runtime dispatch)";
#elif defined(__AVX512F__)
    return "AVX512F";
#elif defined(__AVX2__)
    return "AVX2";
#elif defined(__AVX__)
    return "AVX";
#elif defined(__SSE2__) || defined(_M_X64)
    return "SSE2";
#elif defined(__ARM_NEON) || defined(__aarch64__)
    return "NEON";
#else
    return "none";
#endif
}
