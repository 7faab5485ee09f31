from libc.stdint cimport int64_t

cdef extern from "fastsoftmax.h" nogil:
    ctypedef Py_ssize_t fs_index
    enum: FS_LINEAR_ROWS

    ctypedef struct fs_xent_opts:
        fs_index n_classes
        double smoothing
        double z_loss
        double softcap
        const double *weight
        double weight_sum

    void fs_softmax_f32(const float *x, fs_index n, fs_index xs, float *y, fs_index ys) noexcept
    void fs_softmax_f64(const double *x, fs_index n, fs_index xs, double *y, fs_index ys) noexcept
    void fs_log_softmax_f32(const float *x, fs_index n, fs_index xs, float *y, fs_index ys) noexcept
    void fs_log_softmax_f64(const double *x, fs_index n, fs_index xs, double *y, fs_index ys) noexcept
    float fs_logsumexp_f32(const float *x, fs_index n, fs_index xs) noexcept
    double fs_logsumexp_f64(const double *x, fs_index n, fs_index xs) noexcept

    double fs_xent_index_f32(const fs_xent_opts *o, const float *x, fs_index xs, int64_t target,
                             double g, float *grad, fs_index gs, double *lse_out) noexcept
    double fs_xent_index_f64(const fs_xent_opts *o, const double *x, fs_index xs, int64_t target,
                             double g, double *grad, fs_index gs, double *lse_out) noexcept
    double fs_xent_prob_f32(const fs_xent_opts *o, const float *x, fs_index xs, const float *q,
                            fs_index qs, double g, float *grad, fs_index gs,
                            double *lse_out) noexcept
    double fs_xent_prob_f64(const fs_xent_opts *o, const double *x, fs_index xs, const double *q,
                            fs_index qs, double g, double *grad, fs_index gs,
                            double *lse_out) noexcept
    void fs_xent_index_grad_f32(const fs_xent_opts *o, const float *x, fs_index xs,
                                int64_t target, double lse, double g, float *grad,
                                fs_index gs) noexcept
    void fs_xent_index_grad_f64(const fs_xent_opts *o, const double *x, fs_index xs,
                                int64_t target, double lse, double g, double *grad,
                                fs_index gs) noexcept
    void fs_xent_prob_grad_f32(const fs_xent_opts *o, const float *x, fs_index xs,
                               const float *q, fs_index qs, double lse, double g, float *grad,
                               fs_index gs) noexcept
    void fs_xent_prob_grad_f64(const fs_xent_opts *o, const double *x, fs_index xs,
                               const double *q, fs_index qs, double lse, double g,
                               double *grad, fs_index gs) noexcept

    void fs_xent_index_rows_f32(const fs_xent_opts *o, const float *x, fs_index xrs, fs_index xs,
                                fs_index nr, const int64_t *t, const double *g, float *grad,
                                fs_index grs, fs_index gs, double *loss, double *lse) noexcept
    void fs_xent_index_rows_f64(const fs_xent_opts *o, const double *x, fs_index xrs,
                                fs_index xs, fs_index nr, const int64_t *t, const double *g,
                                double *grad, fs_index grs, fs_index gs, double *loss,
                                double *lse) noexcept
    void fs_xent_index_strip_f32(const fs_xent_opts *o, const float *x, fs_index cs, fs_index w,
                                 const int64_t *t, const double *g, float *grad, fs_index gcs,
                                 double *loss, double *lse) noexcept
    void fs_xent_index_strip_f64(const fs_xent_opts *o, const double *x, fs_index cs,
                                 fs_index w, const int64_t *t, const double *g, double *grad,
                                 fs_index gcs, double *loss, double *lse) noexcept
    void fs_softmax_strip_f32(const float *x, fs_index cs, fs_index w, fs_index n, float *y,
                              fs_index ycs, int op) noexcept
    void fs_softmax_strip_f64(const double *x, fs_index cs, fs_index w, fs_index n, double *y,
                              fs_index ycs, int op) noexcept
    void fs_softmax_rows_f32(const float *x, fs_index xrs, fs_index xs, fs_index nr, fs_index n,
                             float *y, fs_index yrs, fs_index ys, int op) noexcept
    void fs_softmax_rows_f64(const double *x, fs_index xrs, fs_index xs, fs_index nr,
                             fs_index n, double *y, fs_index yrs, fs_index ys, int op) noexcept
    enum: FS_TILE
    enum: FS_SMALL_C

    double fs_linear_xent_f32(const fs_xent_opts *o, const float *X, fs_index xrs, fs_index d,
                              const int64_t *idx, fs_index n, const int64_t *labels,
                              const double *g, double g_value, const float *W, const float *b,
                              float *gW, float *gb, float *z) noexcept
    double fs_linear_xent_f64(const fs_xent_opts *o, const double *X, fs_index xrs, fs_index d,
                              const int64_t *idx, fs_index n, const int64_t *labels,
                              const double *g, double g_value, const double *W,
                              const double *b, double *gW, double *gb, double *z) noexcept

    const char *fs_compiler() noexcept
    const char *fs_simd() noexcept
