# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Task loops over the C kernels of csrc/, run with OpenMP and the GIL released.

Each entry point fills one batch struct of csrc/fastsoftmax.h from the
arrays, lets C plan the batch (rows, strips or tiles) and runs its tasks in
a guided prange. Nothing here chooses a kernel.

Every array reaching this module has been checked by the Python layer
(fastsoftmax/_special.py, fastsoftmax/_xent.py): dtypes match the ``dtype``
code, shapes agree, strides are whole elements, targets are int64 labels in
range, outputs are writable. Arrays over classes come as 3-D views (outer,
classes, inner), per-row arrays as 2-D (outer, inner). Nothing here raises
once the GIL is released.
"""

from cpython.buffer cimport PyBUF_STRIDES, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from libc.string cimport memcpy
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport INT64_MAX, int8_t, int16_t, int32_t, int64_t
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from fastsoftmax._kernels cimport *
from fastsoftmax._openmp cimport FS_OPENMP_ENABLED, omp_get_max_threads

# The thresholds of csrc/fastsoftmax.h, where the Python layer needs them.
GRAIN = FS_GRAIN
LINEAR_MAX_CLASSES = FS_LINEAR_MAX_CLASSES
# Plan kinds, as the entry points return them.
ROWS, STRIPS, TILES, COLUMNS = FS_ROWS, FS_STRIPS, FS_TILES, FS_COLUMNS
F32, F64, F16, BF16 = FS_F32, FS_F64, FS_F16, FS_BF16


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


def half_simd():
    """How runs of 2-byte values are converted on this CPU."""
    return fs_half_simd().decode()


cdef fs_arr _arr(object a, bint writable, fs_index *shape=NULL) except *:
    # Data pointer and element strides of a 1-, 2- or 3-D array (None: absent).
    # A 2-D array is (outer, inner): its strides go to s0 and s2. The caller
    # keeps the array alive for the call.
    cdef fs_arr v
    cdef Py_buffer buf
    cdef int k
    v.p = NULL
    v.s0 = v.s1 = v.s2 = 0
    if a is None:
        return v
    PyObject_GetBuffer(a, &buf, PyBUF_STRIDES | (PyBUF_WRITABLE if writable else 0))
    v.p = buf.buf
    v.s0 = buf.strides[0] // buf.itemsize
    if buf.ndim == 3:
        v.s1 = buf.strides[1] // buf.itemsize
        v.s2 = buf.strides[2] // buf.itemsize
    elif buf.ndim == 2:
        v.s2 = buf.strides[1] // buf.itemsize
    if shape != NULL:
        for k in range(buf.ndim):
            shape[k] = buf.shape[k]
    PyBuffer_Release(&buf)
    return v


cdef void _run(fs_task_fn task, const void *batch, fs_index n_tasks, int n_threads) noexcept nogil:
    # The one loop over a batch's tasks. One thread runs no parallel region at
    # all: a team of one (prange's use_threads_if=False, OpenMP's if(0)) still
    # costs 0.24 us, a sixth of a small call; and a child forked after the
    # parent used threads must not enter one (fastsoftmax/_threads.py).
    #
    # Guided, not static: a thread that starts late (woken from sleep, or
    # sharing its core with another process) takes a smaller share instead of
    # holding every other thread at the end. Tasks own fixed rows, so results
    # do not depend on which thread runs them.
    #
    # A worker woken on the caller's CPU moves off it first (csrc/fs_threads.h).
    cdef fs_index k
    cdef int caller_cpu
    if n_threads > 1:
        caller_cpu = fs_current_cpu()
        with parallel(num_threads=n_threads):
            if threadid() != 0:
                fs_leave_cpu(caller_cpu)
            for k in prange(n_tasks, schedule="guided"):
                task(batch, k)
    else:
        for k in range(n_tasks):
            task(batch, k)


cdef float *_scratch(fs_index per_thread, int n_threads) except? NULL:
    # A planned batch's scratch (2-byte rows widened to float32): per_thread
    # floats for each thread of the call, or NULL when it needs none.
    cdef float *p
    if per_thread == 0:
        return NULL
    p = <float *>PyMem_RawMalloc(<size_t>per_thread * max(n_threads, 1) * sizeof(float))
    if p == NULL:
        raise MemoryError(f"cannot allocate {per_thread * max(n_threads, 1) * 4} bytes of scratch")
    return p


def softmax(x, y, int op, int dtype, int n_threads):
    """op 0 softmax, 1 log_softmax of x (outer, C, inner) into y (its shape), or
    2 logsumexp of each row into y (outer, inner). IN: x. OUT: y. Returns the
    plan kind."""
    cdef fs_softmax_batch b
    cdef fs_index shape[3]
    b.dtype = <fs_dtype>dtype
    b.op = <fs_softmax_op>op
    b.x = _arr(x, False, shape)
    b.y = _arr(y, True)
    b.outer, b.n, b.inner = shape[0], shape[1], shape[2]
    fs_softmax_plan(&b)
    b.scratch = _scratch(fs_softmax_scratch(&b), n_threads)
    try:  # doubles, as twice as many floats
        b.partials = <double *>_scratch(2 * fs_softmax_partials(&b), 1)
    except MemoryError:
        PyMem_RawFree(b.scratch)
        raise
    b.phase = 0
    with nogil:
        _run(fs_softmax_task, &b, b.plan.n_tasks, n_threads)
        if b.plan.kind == FS_COLUMNS:
            # the chunks' partials merged, then the outputs (csrc/columns.h)
            fs_softmax_combine(&b)
            if b.op != FS_LOGSUMEXP:
                b.phase = 1
                _run(fs_softmax_task, &b, b.plan.n_tasks, n_threads)
    PyMem_RawFree(b.scratch)
    PyMem_RawFree(b.partials)
    return b.plan.kind


def xent(x, *, grad=None, target=None, q=None, g=None, double g_value=1.0, lse_in=None,
         loss=None, lse=None, weight=None, int64_t ignore_index=-1,
         double smoothing=0.0, double z_loss=0.0, double softcap=0.0, int dtype, int n_threads):
    """Cross-entropy of x (outer, C, inner) against int64 labels target (outer,
    inner; ignore_index and negative labels are ignored) or probabilities q
    (x's shape). Forward: per-row loss and lse (float64, outer * inner) and,
    unless grad is None, the gradient scaled by g (outer, inner) or g_value.
    Backward (lse_in given, (outer, inner) float64): the gradient alone.
    weight: (C,) float64 or None. Returns the plan kind."""
    cdef fs_xent_batch b
    cdef fs_index shape[3]
    b.dtype = <fs_dtype>dtype
    b.x = _arr(x, False, shape)
    b.outer, b.inner = shape[0], shape[2]
    b.grad = _arr(grad, True)
    b.target = _arr(target, False)
    b.q = _arr(q, False)
    b.g = _arr(g, False)
    b.lse_in = _arr(lse_in, False)
    _xent_options(&b, g_value, loss, lse, weight, ignore_index, shape[1], smoothing, z_loss,
                  softcap)
    return _xent_run(&b, n_threads)


def xent_rows(x, labels, grad, g, double g_value, loss, lse, weight, int64_t ignore_index,
              double smoothing, double z_loss, double softcap, int dtype, int n_threads):
    """xent on C-contiguous (m, C) rows x, m int64 labels (and g None or m
    float64 scales), grad (m, C) or None: the trainer's and plain calls'
    entry, its arguments positional, without a reshape to (m, C, 1) each
    (at 1 x 10 a third of the call went to those)."""
    cdef fs_xent_batch b
    cdef fs_index shape[3]
    b.dtype = <fs_dtype>dtype
    b.x = _rows(x, False, shape)
    b.outer, b.inner = shape[0], 1
    b.grad = _rows(grad, True, NULL)
    b.target = _rows(labels, False, NULL)
    b.q.p = b.lse_in.p = NULL
    b.q.s0 = b.q.s1 = b.q.s2 = b.lse_in.s0 = b.lse_in.s1 = b.lse_in.s2 = 0
    b.g = _rows(g, False, NULL)
    _xent_options(&b, g_value, loss, lse, weight, ignore_index, shape[1], smoothing, z_loss,
                  softcap)
    return _xent_run(&b, n_threads)


cdef fs_arr _rows(object a, bint writable, fs_index *shape) except *:
    # An (m, C) or (m,) array as the (m, C, 1) or (m, 1) one _arr would see.
    cdef fs_arr v = _arr(a, writable, shape)
    if v.p != NULL:
        v.s1, v.s2 = v.s2, 1
    return v


cdef inline int _xent_options(fs_xent_batch *b, double g_value, object loss, object lse,
                              object weight, int64_t ignore_index, fs_index n_classes,
                              double smoothing, double z_loss, double softcap) except -1:
    # The fields xent and xent_rows set alike.
    b.g_value = g_value
    b.loss = <double *>_arr(loss, True).p
    b.lse = <double *>_arr(lse, True).p
    b.ignore_index = ignore_index
    b.o.n_classes = n_classes
    b.o.smoothing = smoothing
    b.o.z_loss = z_loss
    b.o.softcap = softcap
    b.o.weight = <const double *>_arr(weight, False).p
    return 0


cdef int _xent_run(fs_xent_batch *b, int n_threads) except -1:
    fs_xent_plan(b)  # (sets b.o.weight_sum)
    b.scratch = _scratch(fs_xent_scratch(b), n_threads)
    with nogil:
        _run(fs_xent_task, b, b.plan.n_tasks, n_threads)
    PyMem_RawFree(b.scratch)
    return b.plan.kind


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
    cdef fs_index fast_kept = 0
    if weight is not None:
        w = &weight[0]
    elif index_t is int64_t and n0 * n1 > 0 and (n1 == 1 or target.strides[1] == 8) and \
            (n0 == 1 or target.strides[0] == 8 * n1):
        # contiguous int64 labels and no weights: one vectorised pass
        with nogil:
            bad = fs_check_labels_i64(&target[0, 0], n0 * n1, n_classes, has_ignore, ignore,
                                      &fast_kept)
        return bad, fast_kept, float(fast_kept)
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


def linear_xent(const floating[:, :] X, const int64_t[::1] idx, const int64_t[::1] labels,
                const double[::1] g, double g_value, const floating[:, ::1] W,
                const floating[::1] b, floating[:, :, ::1] gW_parts, floating[:, ::1] gb_parts,
                floating[:, ::1] z_parts, double[::1] totals, double smoothing, int n_threads,
                int class_block=0):
    """One minibatch of a linear softmax model, each row of X read once.

    The batch is the rows idx of X (all of X when idx is None), labels and
    weights g (or None) indexed like X's rows. The rows are split into
    K = gW_parts.shape[0] fixed parts (whatever the number of threads); part k
    writes its gradient sums to gW_parts[k], gb_parts[k] (when b is given)
    and its loss sum to totals[k], using z_parts[k] (linear_rows() * C
    elements) as scratch. Returns the sum of totals: sum over rows of
    g_row * loss_row (the gradient is scaled by g_value * g_row). Checks
    shapes, indices and labels first. class_block (2 or 4 classes scored
    together; 0, the default, chooses for the CPU) is for the tests.
    """
    cdef Py_ssize_t n_x = X.shape[0], d = X.shape[1], n_classes = W.shape[0]
    cdef Py_ssize_t n = n_x if idx is None else idx.shape[0]
    cdef Py_ssize_t parts = gW_parts.shape[0], k, r, row
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
    if class_block not in (0, 2, 4):
        raise ValueError(f"class_block must be 0, 2 or 4, got {class_block}")
    for r in range(n):
        row = r if idx is None else idx[r]
        if row < 0 or row >= n_x:
            raise IndexError(f"index {row} at position {r} is out of bounds for {n_x} rows")
        if labels[row] < 0 or labels[row] >= n_classes:
            raise IndexError(f"label {labels[row]} of row {row} is out of bounds for "
                             f"{n_classes} classes")
    cdef fs_linear_batch bt
    bt.dtype = FS_F32 if floating is float else FS_F64
    bt.X = &X[0, 0] if n_x > 0 and d > 0 else NULL
    bt.xrs = X.strides[0] // <Py_ssize_t>sizeof(floating)
    bt.d, bt.n = d, n
    bt.idx = &idx[0] if idx is not None and n > 0 else NULL
    bt.labels = &labels[0] if n_x > 0 else NULL
    bt.g = &g[0] if g is not None and n_x > 0 else NULL
    bt.g_value = g_value
    bt.W = &W[0, 0]
    bt.b = &b[0] if b is not None else NULL
    bt.gW_parts = &gW_parts[0, 0, 0]
    bt.gb_parts = &gb_parts[0, 0] if b is not None else NULL
    bt.z_parts = &z_parts[0, 0]
    bt.totals = &totals[0]
    bt.n_parts = parts
    bt.class_block = class_block
    bt.o.n_classes = n_classes
    bt.o.smoothing = smoothing
    bt.o.z_loss = bt.o.softcap = 0.0
    bt.o.weight = NULL
    bt.o.weight_sum = <double>n_classes
    with nogil:
        _run(fs_linear_xent_task, &bt, parts, max(1, min(n_threads, parts)))
    cdef double total = 0.0
    for k in range(parts):
        total += totals[k]
    return total


def take_rows(const floating[:, :] X, const int64_t[::1] idx, floating[:, :] out):
    """out[r] = X[idx[r]] for every r, a row at a time with the GIL released.

    The SGD trainer's shuffled batches: np.take into a strided out (the
    batch's rows beside their column of ones) buffers each row and took
    about twice as long. Checks shapes and indices first.
    """
    cdef Py_ssize_t n_x = X.shape[0], d = X.shape[1], n = idx.shape[0], r, j, row
    cdef size_t row_bytes = d * sizeof(floating)
    if out.shape[0] != n or out.shape[1] != d:
        raise ValueError(f"out must have shape ({n}, {d}), got ({out.shape[0]}, {out.shape[1]})")
    for r in range(n):
        if idx[r] < 0 or idx[r] >= n_x:
            raise IndexError(f"index {idx[r]} at position {r} is out of bounds for {n_x} rows")
    if n == 0 or d == 0:
        return
    cdef bint rows_contiguous = (d == 1 or (X.strides[1] == sizeof(floating)
                                           and out.strides[1] == sizeof(floating)))
    with nogil:
        for r in range(n):
            row = idx[r]
            if rows_contiguous:
                memcpy(&out[r, 0], &X[row, 0], row_bytes)
            else:
                for j in range(d):
                    out[r, j] = X[row, j]


# ------------------------------------------------ checks of csrc/fs_math.h

def math_eval(x, y, int fn, int dtype):
    """y = f(x) elementwise for contiguous 1-D x and y of one dtype: fn 0 the
    accurate exp, 1 the fast exp, 2 log, 3 log1p (the last two in double), 4
    tanh, 5 the 2-byte rows' exp (float32; the fast one for float64)."""
    cdef fs_index shape[3]
    cdef fs_arr xv = _arr(x, False, shape), yv = _arr(y, True)
    with nogil:
        fs_math_eval(<fs_dtype>dtype, fn, xv.p, yv.p, shape[0])


def half_eval(x, y, int dtype, bint widen):
    """The 2-byte conversions elementwise: uint16 bits x to float32 y (widen),
    or float32 x to uint16 bits y, contiguous 1-D arrays, for dtype F16 or BF16."""
    cdef fs_index shape[3]
    cdef fs_arr xv = _arr(x, False, shape), yv = _arr(y, True)
    with nogil:
        fs_half_eval(<fs_dtype>dtype, widen, xv.p, yv.p, shape[0])


def half_simd_disable(bint off):
    """Convert 2-byte values by integer arithmetic (off) or by the CPU's
    instructions where it has them; returns the previous setting. For the
    tests: call it with no kernel running."""
    return bool(fs_half_simd_disable(off))


def exp_f32_ulp(uint32_t lo, uint32_t hi, int fast, int n_threads):
    """(largest error in ulps, count above 1 ulp) of the float32 exp over every
    float whose bits lie in [lo, hi], against libm's double exp: fast 0 the
    accurate exp, 1 the fast one, 2 the 2-byte rows' shorter one."""
    cdef int64_t parts = 64, k, above = 0
    cdef int64_t counts[64]
    cdef double worst[64]
    cdef double w = 0.0
    cdef uint64_t span = <uint64_t>hi - lo + 1
    for k in prange(parts, nogil=True, schedule="dynamic", num_threads=n_threads,
                    use_threads_if=n_threads > 1):
        worst[k] = 0.0
        counts[k] = 0
        if span * k // parts < span * (k + 1) // parts:
            worst[k] = fs_exp_f32_ulp(<uint32_t>(lo + span * k // parts),
                                      <uint32_t>(lo + span * (k + 1) // parts - 1), fast,
                                      &counts[k])
    for k in range(parts):
        w = max(w, worst[k])
        above += counts[k]
    return w, above


# ------------------------------------------- checks of csrc/fs_threads.h

def current_cpu():
    """The CPU this thread runs on (-1 where the platform does not tell)."""
    return fs_current_cpu()


def leave_cpu(int cpu):
    """Move this thread off CPU ``cpu`` if it runs there (what a worker does
    when woken on its caller's CPU)."""
    fs_leave_cpu(cpu)
