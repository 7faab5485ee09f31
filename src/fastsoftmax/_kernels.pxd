from libc.stdint cimport int64_t, uint32_t

cdef extern from "fastsoftmax.h" nogil:
    ctypedef Py_ssize_t fs_index
    enum: FS_SMALL_C
    enum: FS_TILE
    enum: FS_GRAIN
    enum: FS_LINEAR_MAX_CLASSES
    enum: FS_LINEAR_ROWS

    ctypedef enum fs_dtype:
        FS_F32
        FS_F64
        FS_F16
        FS_BF16
        FS_N_DTYPES

    ctypedef struct fs_arr:
        void *p
        fs_index s0, s1, s2

    ctypedef enum fs_plan_kind:
        FS_ROWS
        FS_STRIPS
        FS_TILES
        FS_COLUMNS

    ctypedef struct fs_plan:
        fs_plan_kind kind
        fs_index per_task
        fs_index n_tasks

    ctypedef enum fs_softmax_op:
        FS_SOFTMAX
        FS_LOG_SOFTMAX
        FS_LOGSUMEXP

    ctypedef struct fs_softmax_batch:
        fs_dtype dtype
        fs_softmax_op op
        fs_index outer, n, inner
        fs_arr x, y
        float *scratch
        double *partials
        int phase
        fs_plan plan

    ctypedef struct fs_xent_opts:
        fs_index n_classes
        double smoothing
        double z_loss
        double softcap
        const double *weight
        double weight_sum

    ctypedef struct fs_xent_batch:
        fs_dtype dtype
        fs_index outer, inner
        fs_arr x, grad, target, q, g, lse_in
        double g_value
        double *loss
        double *lse
        int64_t ignore_index
        fs_xent_opts o
        float *scratch
        fs_plan plan

    ctypedef struct fs_linear_batch:
        fs_dtype dtype
        const void *X
        fs_index xrs, d, n
        const int64_t *idx
        const int64_t *labels
        const double *g
        double g_value
        const void *W
        const void *b
        void *gW_parts
        void *gb_parts
        void *z_parts
        double *totals
        fs_index n_parts
        int class_block
        fs_xent_opts o

    ctypedef void (*fs_task_fn)(const void *batch, fs_index task) noexcept nogil
    void fs_softmax_plan(fs_softmax_batch *b) noexcept
    void fs_softmax_task(const void *batch, fs_index task) noexcept
    void fs_softmax_combine(const fs_softmax_batch *b) noexcept
    void fs_xent_plan(fs_xent_batch *b) noexcept
    fs_index fs_check_labels_i64(const int64_t *t, fs_index n, fs_index n_classes, int has_ignore,
                                 int64_t ignore, fs_index *kept) noexcept
    void fs_xent_task(const void *batch, fs_index task) noexcept
    void fs_linear_xent_task(const void *batch, fs_index part) noexcept

    void fs_math_eval(fs_dtype dtype, int fn, const void *x, void *y, fs_index n) noexcept
    double fs_exp_f32_ulp(uint32_t lo, uint32_t hi, int fast, int64_t *n_above_one) noexcept
    void fs_half_eval(fs_dtype dtype, int widen, const void *x, void *y, fs_index n) noexcept
    int fs_half_simd_disable(int off) noexcept
    fs_index fs_softmax_scratch(const fs_softmax_batch *b) noexcept
    fs_index fs_softmax_partials(const fs_softmax_batch *b) noexcept
    fs_index fs_xent_scratch(const fs_xent_batch *b) noexcept

    const char *fs_compiler() noexcept
    const char *fs_simd() noexcept
    const char *fs_half_simd() noexcept


cdef extern from "fs_threads.h" nogil:
    int fs_current_cpu()
    void fs_leave_cpu(int cpu)
