# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Row loops over the C kernels of csrc/, run with OpenMP and the GIL released.

Every array reaching this module has been checked by the Python layer
(fastsoftmax/_special.py, fastsoftmax/_xent.py): dtypes match, shapes agree,
there is at least one row and one class, strides are whole elements, targets
are in range, outputs are writable. Nothing here raises once the GIL is
released.

Arrays come as 3-D views (outer, classes, inner): the class axis of a (N, C)
input is (N, C, 1), that of a (N, C, d1, ..., dK) input is (N, C, d1*...*dK).
Row r is (r // inner, :, r % inner); rows are independent, so the loop is
split statically across threads and the result never depends on their number.
"""

from cython.parallel cimport prange
from libc.stdint cimport INT64_MAX, int8_t, int16_t, int32_t, int64_t
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from fastsoftmax._kernels cimport *
from fastsoftmax._openmp cimport FS_OPENMP_ENABLED, omp_get_max_threads

ctypedef fused floating:
    float
    double

ctypedef fused index_t:
    int8_t
    int16_t
    int32_t
    int64_t
    uint8_t
    uint16_t
    uint32_t
    uint64_t


def openmp_enabled():
    """True when the extension was compiled with OpenMP."""
    return bool(FS_OPENMP_ENABLED)


def max_threads():
    """OpenMP's default team size (OMP_NUM_THREADS, threadpoolctl), 1 without OpenMP."""
    return omp_get_max_threads()


def linear_rows():
    """Rows linear_xent computes together (its scratch holds that many rows of scores)."""
    return FS_LINEAR_ROWS


def compiler():
    return fs_compiler().decode()


def simd():
    return fs_simd().decode()


cdef struct Rows:
    # Element strides of a 3-D (outer, classes, inner) view.
    Py_ssize_t inner
    Py_ssize_t s0, s1, s2


cdef inline Rows _rows(Py_ssize_t inner, const Py_ssize_t *strides,
                       Py_ssize_t itemsize) noexcept:
    # Byte strides to element strides (the Python layer made them whole elements).
    cdef Rows v
    v.inner = inner
    v.s0 = strides[0] // itemsize
    v.s1 = strides[1] // itemsize
    v.s2 = strides[2] // itemsize
    return v


cdef inline Py_ssize_t _offset(const Rows *v, Py_ssize_t r) noexcept nogil:
    cdef Py_ssize_t i = r // v.inner
    return i * v.s0 + (r - i * v.inner) * v.s2


cdef struct Scale:
    # Per-row gradient scale: an (outer, inner) float64 array, or one value.
    const double *p
    Py_ssize_t s0, s1
    double value


cdef Scale _scale_of(const double[:, :] g, double value):
    cdef Scale v
    v.p = NULL
    v.s0 = v.s1 = 0
    v.value = value
    if g is not None:
        v.p = &g[0, 0]
        v.s0 = g.strides[0] // sizeof(double)
        v.s1 = g.strides[1] // sizeof(double)
    return v


cdef inline double _scale(const Scale *g, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    return g.value if g.p == NULL else g.p[i * g.s0 + j * g.s1]


# ------------------------------------------------------------- softmax family

cdef inline void _softmax_row(const floating *x, const Rows *xv, floating *y, const Rows *yv,
                              Py_ssize_t n, Py_ssize_t r, bint log) noexcept nogil:
    cdef const floating *xr = x + _offset(xv, r)
    cdef floating *yr = y + _offset(yv, r)
    if floating is float:
        if log:
            fs_log_softmax_f32(xr, n, xv.s1, yr, yv.s1)
        else:
            fs_softmax_f32(xr, n, xv.s1, yr, yv.s1)
    else:
        if log:
            fs_log_softmax_f64(xr, n, xv.s1, yr, yv.s1)
        else:
            fs_softmax_f64(xr, n, xv.s1, yr, yv.s1)


cdef inline Py_ssize_t _block(Py_ssize_t n_classes) noexcept nogil:
    # Rows per task of a 2-D input: a tile when the kernels work across rows.
    return FS_TILE if n_classes <= FS_SMALL_C else 1


cdef inline void _softmax_block(const floating *x, const Rows *xv, floating *y,
                                Py_ssize_t ys0, Py_ssize_t ys1, Py_ssize_t n,
                                Py_ssize_t r0, Py_ssize_t nr, int op) noexcept nogil:
    if floating is float:
        fs_softmax_rows_f32(x + r0 * xv.s0, xv.s0, xv.s1, nr, n, y + r0 * ys0, ys0, ys1, op)
    else:
        fs_softmax_rows_f64(x + r0 * xv.s0, xv.s0, xv.s1, nr, n, y + r0 * ys0, ys0, ys1, op)


cdef void _softmax_blocks(const floating *x, const Rows *xv, floating *y, Py_ssize_t ys0,
                          Py_ssize_t ys1, Py_ssize_t n, Py_ssize_t rows, int op,
                          int n_threads) noexcept nogil:
    # A 2-D input (inner == 1): blocks of rows go to C whole.
    cdef Py_ssize_t per = _block(n), n_blocks = (rows + per - 1) // per, b
    if n_threads > 1:
        for b in prange(n_blocks, schedule="static", num_threads=n_threads):
            _softmax_block(x, xv, y, ys0, ys1, n, b * per, min(per, rows - b * per), op)
    else:
        for b in range(n_blocks):
            _softmax_block(x, xv, y, ys0, ys1, n, b * per, min(per, rows - b * per), op)


cdef inline void _softmax_strip(const floating *x, const Rows *xv, floating *y,
                                Py_ssize_t ys0, Py_ssize_t ys1, Py_ssize_t n, Py_ssize_t task,
                                Py_ssize_t n_strips, int op) noexcept nogil:
    cdef Py_ssize_t i = task // n_strips
    cdef Py_ssize_t j0 = (task - i * n_strips) * FS_TILE
    cdef Py_ssize_t w = min(FS_TILE, xv.inner - j0)
    if floating is float:
        fs_softmax_strip_f32(x + i * xv.s0 + j0, xv.s1, w, n, y + i * ys0 + j0, ys1, op)
    else:
        fs_softmax_strip_f64(x + i * xv.s0 + j0, xv.s1, w, n, y + i * ys0 + j0, ys1, op)


cdef void _softmax_strips(const floating *x, const Rows *xv, floating *y, Py_ssize_t ys0,
                          Py_ssize_t ys1, Py_ssize_t n, Py_ssize_t outer, int op,
                          int n_threads) noexcept nogil:
    # A class axis that is not the last one, over a contiguous inner axis:
    # strips of FS_TILE inner positions, computed across the strip.
    cdef Py_ssize_t n_strips = (xv.inner + FS_TILE - 1) // FS_TILE
    cdef Py_ssize_t tasks = outer * n_strips, b
    if n_threads > 1:
        for b in prange(tasks, schedule="static", num_threads=n_threads):
            _softmax_strip(x, xv, y, ys0, ys1, n, b, n_strips, op)
    else:
        for b in range(tasks):
            _softmax_strip(x, xv, y, ys0, ys1, n, b, n_strips, op)


def softmax(const floating[:, :, :] x, floating[:, :, :] y, bint log, int n_threads):
    """y = softmax (or log_softmax) of x over axis 1. IN: x. OUT: y."""
    cdef Py_ssize_t n = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t rows = x.shape[0] * inner, r
    cdef Rows xv = _rows(inner, &x.strides[0], sizeof(floating))
    cdef Rows yv = _rows(inner, &y.strides[0], sizeof(floating))
    cdef const floating *xp = &x[0, 0, 0]
    cdef floating *yp = &y[0, 0, 0]
    if inner == 1:
        with nogil:
            _softmax_blocks(xp, &xv, yp, yv.s0, yv.s1, n, rows, 1 if log else 0, n_threads)
    elif xv.s2 == 1 and yv.s2 == 1:
        with nogil:
            _softmax_strips(xp, &xv, yp, yv.s0, yv.s1, n, x.shape[0], 1 if log else 0,
                            n_threads)
    elif n_threads > 1:
        for r in prange(rows, nogil=True, schedule="static", num_threads=n_threads):
            _softmax_row(xp, &xv, yp, &yv, n, r, log)
    else:
        with nogil:
            for r in range(rows):
                _softmax_row(xp, &xv, yp, &yv, n, r, log)
    return y


cdef inline void _logsumexp_row(const floating *x, const Rows *xv, floating *out,
                                Py_ssize_t n, Py_ssize_t r) noexcept nogil:
    if floating is float:
        out[r] = fs_logsumexp_f32(x + _offset(xv, r), n, xv.s1)
    else:
        out[r] = fs_logsumexp_f64(x + _offset(xv, r), n, xv.s1)


def logsumexp(const floating[:, :, :] x, floating[::1] out, int n_threads):
    """out[i * inner + j] = logsumexp(x[i, :, j]). IN: x. OUT: out."""
    cdef Py_ssize_t n = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t rows = x.shape[0] * inner, r
    cdef Rows xv = _rows(inner, &x.strides[0], sizeof(floating))
    cdef const floating *xp = &x[0, 0, 0]
    cdef floating *op = &out[0]
    if inner == 1:
        with nogil:
            _softmax_blocks(xp, &xv, op, 1, 0, n, rows, 2, n_threads)
    elif xv.s2 == 1:
        with nogil:
            _softmax_strips(xp, &xv, op, inner, 0, n, x.shape[0], 2, n_threads)
    elif n_threads > 1:
        for r in prange(rows, nogil=True, schedule="static", num_threads=n_threads):
            _logsumexp_row(xp, &xv, op, n, r)
    else:
        with nogil:
            for r in range(rows):
                _logsumexp_row(xp, &xv, op, n, r)
    return out


# -------------------------------------------------------------- cross-entropy

cdef fs_xent_opts _opts(Py_ssize_t n_classes, const double[::1] weight, double weight_sum,
                        double smoothing, double z_loss, double softcap):
    cdef fs_xent_opts o
    o.n_classes = n_classes
    o.smoothing = smoothing
    o.z_loss = z_loss
    o.softcap = softcap
    o.weight = NULL
    if weight is not None:
        o.weight = &weight[0]
    o.weight_sum = weight_sum
    return o


def check_labels(const index_t[:, :] target, Py_ssize_t n_classes, object ignore_index,
                 const double[::1] weight):
    """One pass over class-index targets, before any kernel runs.

    Returns (bad, kept, kept_weight): the flat position of the first label that
    is neither in [0, n_classes) nor ignore_index (-1 if none), the number of
    labels not ignored, and the sum of their class weights (their number when
    weight is None).
    """
    cdef Py_ssize_t n0 = target.shape[0], n1 = target.shape[1], i, j
    cdef Py_ssize_t kept = 0, bad = -1
    cdef double kept_weight = 0.0
    cdef int64_t t
    cdef bint has_ignore = -2**63 <= ignore_index < 2**63
    cdef int64_t ignore = ignore_index if has_ignore else 0
    cdef bint has_big_ignore = 2**63 <= ignore_index < 2**64
    cdef uint64_t big_ignore = ignore_index if has_big_ignore else 0
    cdef bint signed_labels = index_t is int8_t or index_t is int16_t or \
        index_t is int32_t or index_t is int64_t
    cdef const double *w = NULL
    if weight is not None:
        w = &weight[0]
    with nogil:
        for i in range(n0):
            for j in range(n1):
                # Compare in the label's own type first: a uint64 label above
                # 2**63 must not wrap onto a negative ignore_index.
                if not signed_labels and <uint64_t>target[i, j] > <uint64_t>INT64_MAX:
                    if has_big_ignore and <uint64_t>target[i, j] == big_ignore:
                        continue  # the kernels see it as negative: ignored
                    bad = i * n1 + j
                    break
                t = <int64_t>target[i, j]
                if has_ignore and t == ignore:
                    continue
                if t < 0 or t >= n_classes:
                    bad = i * n1 + j
                    break
                kept += 1
                kept_weight += 1.0 if w == NULL else w[t]
            if bad >= 0:
                break
    return bad, kept, kept_weight


cdef inline int64_t _label(index_t value, int64_t ignore_index) noexcept nogil:
    # Checked in Python: every label is in [0, C) or equals ignore_index.
    cdef int64_t t = <int64_t>value
    return -1 if t == ignore_index else t


cdef inline void _xent_index_row(const fs_xent_opts *o, const floating *x, const Rows *xv,
                                 int64_t t, double g, floating *grad, const Rows *gv,
                                 double *loss, double *lse, Py_ssize_t r) noexcept nogil:
    cdef const floating *xr = x + _offset(xv, r)
    cdef floating *gr = NULL if grad == NULL else grad + _offset(gv, r)
    if floating is float:
        loss[r] = fs_xent_index_f32(o, xr, xv.s1, t, g, gr, gv.s1, &lse[r])
    else:
        loss[r] = fs_xent_index_f64(o, xr, xv.s1, t, g, gr, gv.s1, &lse[r])


cdef void _xent_index_tile(const fs_xent_opts *o, const floating *x, const Rows *xv,
                           const index_t[:, :] target, int64_t ignore_index,
                           const Scale *g, floating *grad, const Rows *gv, double *loss,
                           double *lse, Py_ssize_t r0, Py_ssize_t nr) noexcept nogil:
    # Rows r0 .. r0 + nr of a 2-D (inner == 1) input: labels and scales are
    # gathered into buffers on this thread's stack, then C computes the tile.
    cdef int64_t tbuf[FS_TILE]
    cdef double gbuf[FS_TILE]
    cdef Py_ssize_t k
    cdef floating *gr = NULL if grad == NULL else grad + r0 * gv.s0
    for k in range(nr):
        tbuf[k] = _label(target[r0 + k, 0], ignore_index)
        gbuf[k] = _scale(g, r0 + k, 0)
    if floating is float:
        fs_xent_index_rows_f32(o, x + r0 * xv.s0, xv.s0, xv.s1, nr, tbuf, gbuf, gr, gv.s0,
                               gv.s1, loss + r0, lse + r0)
    else:
        fs_xent_index_rows_f64(o, x + r0 * xv.s0, xv.s0, xv.s1, nr, tbuf, gbuf, gr, gv.s0,
                               gv.s1, loss + r0, lse + r0)


cdef void _xent_index_strip(const fs_xent_opts *o, const floating *x, const Rows *xv,
                            const index_t[:, :] target, int64_t ignore_index,
                            const Scale *g, floating *grad, const Rows *gv, double *loss,
                            double *lse, Py_ssize_t task, Py_ssize_t n_strips) noexcept nogil:
    # Inner positions j0 .. j0 + w of sample i of an (N, C, D) input with a
    # contiguous inner axis: C computes them across the strip.
    cdef int64_t tbuf[FS_TILE]
    cdef double gbuf[FS_TILE]
    cdef Py_ssize_t i = task // n_strips
    cdef Py_ssize_t j0 = (task - i * n_strips) * FS_TILE
    cdef Py_ssize_t w = min(FS_TILE, xv.inner - j0), k
    cdef floating *gr = NULL if grad == NULL else grad + i * gv.s0 + j0
    for k in range(w):
        tbuf[k] = _label(target[i, j0 + k], ignore_index)
        gbuf[k] = _scale(g, i, j0 + k)
    cdef Py_ssize_t r0 = i * xv.inner + j0
    if floating is float:
        fs_xent_index_strip_f32(o, x + i * xv.s0 + j0, xv.s1, w, tbuf, gbuf, gr, gv.s1,
                                loss + r0, lse + r0)
    else:
        fs_xent_index_strip_f64(o, x + i * xv.s0 + j0, xv.s1, w, tbuf, gbuf, gr, gv.s1,
                                loss + r0, lse + r0)


def xent_index(const floating[:, :, :] x, const index_t[:, :] target, floating[:, :, :] grad,
               double[::1] loss, double[::1] lse, const double[:, :] g, double g_value,
               const double[::1] weight, double weight_sum, int64_t ignore_index,
               double smoothing, double z_loss, double softcap, int n_threads):
    """Fused loss (and gradient, unless grad is None) against class indices.

    IN: x (N, C, D), target (N, D), g (N, D) gradient scale per row (or None
    and g_value for all rows),
    weight (C,) or None. OUT: loss (N*D,), lse (N*D,), grad (N, C, D) or None.
    """
    cdef fs_xent_opts o = _opts(x.shape[1], weight, weight_sum, smoothing, z_loss, softcap)
    cdef Scale gs = _scale_of(g, g_value)
    cdef Py_ssize_t inner = x.shape[2], rows = x.shape[0] * inner, r
    cdef Rows xv = _rows(inner, &x.strides[0], sizeof(floating))
    cdef Rows gv = xv
    cdef const floating *xp = &x[0, 0, 0]
    cdef floating *gp = NULL
    cdef double *lp = &loss[0]
    cdef double *ep = &lse[0]
    if grad is not None:
        gv = _rows(inner, &grad.strides[0], sizeof(floating))
        gp = &grad[0, 0, 0]
    cdef Py_ssize_t per = _block(x.shape[1]), n_blocks = (rows + per - 1) // per, b, n_strips
    if inner == 1 and n_threads > 1:
        for b in prange(n_blocks, nogil=True, schedule="static", num_threads=n_threads):
            _xent_index_tile(&o, xp, &xv, target, ignore_index, &gs, gp, &gv, lp, ep,
                             b * per, min(per, rows - b * per))
    elif inner == 1:
        with nogil:
            for b in range(n_blocks):
                _xent_index_tile(&o, xp, &xv, target, ignore_index, &gs, gp, &gv, lp, ep,
                                 b * per, min(per, rows - b * per))
    elif softcap == 0.0 and xv.s2 == 1 and (grad is None or gv.s2 == 1):
        # (N, C, d1, ...) with a contiguous inner axis: strips across it.
        n_strips = (inner + FS_TILE - 1) // FS_TILE
        n_blocks = x.shape[0] * n_strips
        if n_threads > 1:
            for b in prange(n_blocks, nogil=True, schedule="static", num_threads=n_threads):
                _xent_index_strip(&o, xp, &xv, target, ignore_index, &gs, gp, &gv, lp, ep,
                                  b, n_strips)
        else:
            with nogil:
                for b in range(n_blocks):
                    _xent_index_strip(&o, xp, &xv, target, ignore_index, &gs, gp, &gv, lp,
                                      ep, b, n_strips)
    elif n_threads > 1:
        for r in prange(rows, nogil=True, schedule="static", num_threads=n_threads):
            _xent_index_row(&o, xp, &xv,
                            _label(target[r // inner, r % inner], ignore_index),
                            _scale(&gs, r // inner, r % inner), gp, &gv, lp, ep, r)
    else:
        with nogil:
            for r in range(rows):
                _xent_index_row(&o, xp, &xv,
                                _label(target[r // inner, r % inner], ignore_index),
                                _scale(&gs, r // inner, r % inner), gp, &gv, lp, ep, r)


cdef inline void _xent_prob_row(const fs_xent_opts *o, const floating *x, const Rows *xv,
                                const floating *q, const Rows *qv, double g, floating *grad,
                                const Rows *gv, double *loss, double *lse,
                                Py_ssize_t r) noexcept nogil:
    cdef const floating *xr = x + _offset(xv, r)
    cdef const floating *qr = q + _offset(qv, r)
    cdef floating *gr = NULL if grad == NULL else grad + _offset(gv, r)
    if floating is float:
        loss[r] = fs_xent_prob_f32(o, xr, xv.s1, qr, qv.s1, g, gr, gv.s1, &lse[r])
    else:
        loss[r] = fs_xent_prob_f64(o, xr, xv.s1, qr, qv.s1, g, gr, gv.s1, &lse[r])


def xent_prob(const floating[:, :, :] x, const floating[:, :, :] q, floating[:, :, :] grad,
              double[::1] loss, double[::1] lse, const double[:, :] g, double g_value,
              const double[::1] weight, double weight_sum,
              double smoothing, double z_loss, double softcap, int n_threads):
    """Fused loss (and gradient, unless grad is None) against class probabilities.

    IN: x (N, C, D), q (N, C, D), g (N, D), weight (C,) or None.
    OUT: loss (N*D,), lse (N*D,), grad (N, C, D) or None.
    """
    cdef fs_xent_opts o = _opts(x.shape[1], weight, weight_sum, smoothing, z_loss, softcap)
    cdef Scale gs = _scale_of(g, g_value)
    cdef Py_ssize_t inner = x.shape[2], rows = x.shape[0] * inner, r
    cdef Rows xv = _rows(inner, &x.strides[0], sizeof(floating))
    cdef Rows qv = _rows(inner, &q.strides[0], sizeof(floating))
    cdef Rows gv = xv
    cdef const floating *xp = &x[0, 0, 0]
    cdef const floating *qp = &q[0, 0, 0]
    cdef floating *gp = NULL
    cdef double *lp = &loss[0]
    cdef double *ep = &lse[0]
    if grad is not None:
        gv = _rows(inner, &grad.strides[0], sizeof(floating))
        gp = &grad[0, 0, 0]
    if n_threads > 1:
        for r in prange(rows, nogil=True, schedule="static", num_threads=n_threads):
            _xent_prob_row(&o, xp, &xv, qp, &qv, _scale(&gs, r // inner, r % inner), gp, &gv, lp, ep, r)
    else:
        with nogil:
            for r in range(rows):
                _xent_prob_row(&o, xp, &xv, qp, &qv, _scale(&gs, r // inner, r % inner), gp, &gv,
                               lp, ep, r)


cdef inline void _xent_index_grad_row(const fs_xent_opts *o, const floating *x, const Rows *xv,
                                      int64_t t, double lse, double g, floating *grad,
                                      const Rows *gv, Py_ssize_t r) noexcept nogil:
    if floating is float:
        fs_xent_index_grad_f32(o, x + _offset(xv, r), xv.s1, t, lse, g,
                               grad + _offset(gv, r), gv.s1)
    else:
        fs_xent_index_grad_f64(o, x + _offset(xv, r), xv.s1, t, lse, g,
                               grad + _offset(gv, r), gv.s1)


def xent_index_grad(const floating[:, :, :] x, const index_t[:, :] target,
                    const double[:, :] lse, floating[:, :, :] grad, const double[:, :] g, double g_value,
                    const double[::1] weight, double weight_sum, int64_t ignore_index,
                    double smoothing, double z_loss, double softcap, int n_threads):
    """Gradient alone against class indices, from the rows' log-sum-exp.

    IN: x (N, C, D), target (N, D), lse (N, D), g (N, D), weight. OUT: grad (N, C, D).
    """
    cdef fs_xent_opts o = _opts(x.shape[1], weight, weight_sum, smoothing, z_loss, softcap)
    cdef Scale gs = _scale_of(g, g_value)
    cdef Py_ssize_t inner = x.shape[2], rows = x.shape[0] * inner, r
    cdef Rows xv = _rows(inner, &x.strides[0], sizeof(floating))
    cdef Rows gv = _rows(inner, &grad.strides[0], sizeof(floating))
    cdef const floating *xp = &x[0, 0, 0]
    cdef floating *gp = &grad[0, 0, 0]
    if n_threads > 1:
        for r in prange(rows, nogil=True, schedule="static", num_threads=n_threads):
            _xent_index_grad_row(&o, xp, &xv,
                                 _label(target[r // inner, r % inner], ignore_index),
                                 lse[r // inner, r % inner], _scale(&gs, r // inner, r % inner),
                                 gp, &gv, r)
    else:
        with nogil:
            for r in range(rows):
                _xent_index_grad_row(&o, xp, &xv,
                                     _label(target[r // inner, r % inner], ignore_index),
                                     lse[r // inner, r % inner], _scale(&gs, r // inner, r % inner),
                                     gp, &gv, r)


cdef inline void _xent_prob_grad_row(const fs_xent_opts *o, const floating *x, const Rows *xv,
                                     const floating *q, const Rows *qv, double lse, double g,
                                     floating *grad, const Rows *gv,
                                     Py_ssize_t r) noexcept nogil:
    if floating is float:
        fs_xent_prob_grad_f32(o, x + _offset(xv, r), xv.s1, q + _offset(qv, r), qv.s1, lse,
                              g, grad + _offset(gv, r), gv.s1)
    else:
        fs_xent_prob_grad_f64(o, x + _offset(xv, r), xv.s1, q + _offset(qv, r), qv.s1, lse,
                              g, grad + _offset(gv, r), gv.s1)


def xent_prob_grad(const floating[:, :, :] x, const floating[:, :, :] q,
                   const double[:, :] lse, floating[:, :, :] grad, const double[:, :] g, double g_value,
                   const double[::1] weight, double weight_sum,
                   double smoothing, double z_loss, double softcap, int n_threads):
    """Gradient alone against class probabilities, from the rows' log-sum-exp.

    IN: x (N, C, D), q (N, C, D), lse (N, D), g (N, D), weight. OUT: grad (N, C, D).
    """
    cdef fs_xent_opts o = _opts(x.shape[1], weight, weight_sum, smoothing, z_loss, softcap)
    cdef Scale gs = _scale_of(g, g_value)
    cdef Py_ssize_t inner = x.shape[2], rows = x.shape[0] * inner, r
    cdef Rows xv = _rows(inner, &x.strides[0], sizeof(floating))
    cdef Rows qv = _rows(inner, &q.strides[0], sizeof(floating))
    cdef Rows gv = _rows(inner, &grad.strides[0], sizeof(floating))
    cdef const floating *xp = &x[0, 0, 0]
    cdef const floating *qp = &q[0, 0, 0]
    cdef floating *gp = &grad[0, 0, 0]
    if n_threads > 1:
        for r in prange(rows, nogil=True, schedule="static", num_threads=n_threads):
            _xent_prob_grad_row(&o, xp, &xv, qp, &qv, lse[r // inner, r % inner],
                                _scale(&gs, r // inner, r % inner), gp, &gv, r)
    else:
        with nogil:
            for r in range(rows):
                _xent_prob_grad_row(&o, xp, &xv, qp, &qv, lse[r // inner, r % inner],
                                    _scale(&gs, r // inner, r % inner), gp, &gv, r)



cdef inline double _linear_xent(const fs_xent_opts *o, const floating *X, Py_ssize_t xrs,
                                Py_ssize_t d, const int64_t *idx, Py_ssize_t n,
                                const int64_t *labels, const double *g, double g_value,
                                const floating *W, const floating *b, floating *gW,
                                floating *gb, floating *z) noexcept nogil:
    if floating is float:
        return fs_linear_xent_f32(o, X, xrs, d, idx, n, labels, g, g_value, W, b, gW, gb, z)
    else:
        return fs_linear_xent_f64(o, X, xrs, d, idx, n, labels, g, g_value, W, b, gW, gb, z)


def linear_xent(const floating[:, :] X, const int64_t[::1] idx, const int64_t[::1] labels,
                const double[::1] g, double g_value, const floating[:, ::1] W,
                const floating[::1] b, floating[:, :, ::1] gW_parts, floating[:, ::1] gb_parts,
                floating[:, ::1] z_parts, double[::1] totals, double smoothing, int n_threads):
    """One minibatch of a linear softmax model, each row of X read once.

    The batch is the rows idx of X (all of X when idx is None), labels and
    weights g (or None) indexed like X's rows. The rows are split into
    K = gW_parts.shape[0] fixed parts (whatever the number of threads); part k
    writes its gradient sums to gW_parts[k], gb_parts[k] (when b is given)
    and its loss sum to totals[k], using z_parts[k] (linear_rows() * C
    elements) as scratch. Returns the
    sum of totals: sum over rows of g_row * loss_row (the gradient is scaled
    by g_value * g_row). Checks shapes, indices and labels first.
    """
    cdef Py_ssize_t n_x = X.shape[0], d = X.shape[1], n_classes = W.shape[0]
    cdef Py_ssize_t n = n_x if idx is None else idx.shape[0]
    cdef Py_ssize_t parts = gW_parts.shape[0], k, r, row, a, e
    if W.shape[1] != d or gW_parts.shape[1] != n_classes or gW_parts.shape[2] != d:
        raise ValueError("W and gW_parts must have shapes (C, d) and (K, C, d)")
    if (z_parts.shape[0] != parts or z_parts.shape[1] != FS_LINEAR_ROWS * n_classes
            or totals.shape[0] != parts):
        raise ValueError(f"z_parts and totals must have shapes (K, {FS_LINEAR_ROWS} * C) and (K,)")
    if b is not None and (b.shape[0] != n_classes or gb_parts is None or
                          gb_parts.shape[0] != parts or gb_parts.shape[1] != n_classes):
        raise ValueError("b and gb_parts must have shapes (C,) and (K, C)")
    if labels.shape[0] != n_x or (g is not None and g.shape[0] != n_x):
        raise ValueError("labels and g must have one value per row of X")
    if d > 1 and X.strides[1] != sizeof(floating):
        raise ValueError("X's rows must be contiguous")
    if n_x > 0 and d > 0 and (<size_t>&X[0, 0] % sizeof(floating) != 0
                              or X.strides[0] % <Py_ssize_t>sizeof(floating) != 0):
        raise ValueError("X must be aligned, its rows a whole number of elements apart")
    if parts < 1 or n_classes < 1:
        raise ValueError("need at least one part and one class")
    for r in range(n):
        row = r if idx is None else idx[r]
        if row < 0 or row >= n_x:
            raise IndexError(f"index {row} at position {r} is out of bounds for {n_x} rows")
        if labels[row] < 0 or labels[row] >= n_classes:
            raise IndexError(f"label {labels[row]} of row {row} is out of bounds for "
                             f"{n_classes} classes")
    cdef fs_xent_opts o = _opts(n_classes, None, <double>n_classes, smoothing, 0.0, 0.0)
    cdef Py_ssize_t xrs = X.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef const floating *xp = &X[0, 0] if n_x > 0 and d > 0 else NULL
    cdef const int64_t *ip = &idx[0] if idx is not None and n > 0 else NULL
    cdef const int64_t *lp = &labels[0] if n_x > 0 else NULL
    cdef const double *gp = &g[0] if g is not None and n_x > 0 else NULL
    cdef const floating *bp = &b[0] if b is not None else NULL
    cdef floating *gbp
    n_threads = max(1, min(n_threads, parts))
    with nogil:
        for k in prange(parts, num_threads=n_threads, schedule="static"):
            a = n * k // parts
            e = n * (k + 1) // parts
            gbp = &gb_parts[k, 0] if bp != NULL else NULL
            if ip != NULL:
                totals[k] = _linear_xent(&o, xp, xrs, d, ip + a, e - a, lp, gp, g_value,
                                         &W[0, 0], bp, &gW_parts[k, 0, 0], gbp, &z_parts[k, 0])
            else:
                totals[k] = _linear_xent(&o, xp + a * xrs if xp != NULL else NULL, xrs, d, NULL,
                                         e - a, lp + a if lp != NULL else NULL,
                                         gp + a if gp != NULL else NULL, g_value, &W[0, 0], bp,
                                         &gW_parts[k, 0, 0], gbp, &z_parts[k, 0])
    cdef double total = 0.0
    for k in range(parts):
        total += totals[k]
    return total

