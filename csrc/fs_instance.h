/* The kernels of one dtype: fastsoftmax.c includes this file once per dtype
 * with FS_T (the element type) and FS_SUF (its suffix) defined. */
/* In this order: each file uses the ones before it. */
/* clang-format off */
#include "reduce.h"
#include "softmax.h"
#include "columns.h"
#include "xent.h"
#include "linear_xent.h"
/* clang-format on */

/* fs_math.h's functions over arrays, for the test suite. */
void FS_CAT(fs_math_eval_, FS_SUF)(int fn, const FS_T *x, FS_T *y, fs_index n)
{
    for (fs_index i = 0; i < n; i++) {
        const FS_T v = x[i];
        y[i] = fn == 0   ? FS_EXP(v)
               : fn == 1 ? FS_EXP_FAST(v)
               : fn == 2 ? (FS_T)fs_log_f64((double)v)
               : fn == 3 ? (FS_T)fs_log1p_f64((double)v)
               : fn == 4 ? FS_TANH(v)
                         : FS_EXP_HALF(v);
    }
}

#undef FS_CAT2
#undef FS_CAT
#undef FS_LOCAL
#undef FS_EXP
#undef FS_EXP_FAST
#undef FS_EXP_HALF
#undef FS_TANH
#undef FS_EXP_LO
#undef FS_EXPQ
#undef FS_SCORE
#undef FS_DSCORE
#undef FS_SPREAD
#undef FS_GRAD_BLOCK
#undef FS_XENT_ROW
#undef FS_XENT_ROW_GRAD
#undef FS_T
#undef FS_SUF
