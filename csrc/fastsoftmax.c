/* Instantiates the row kernels of rows.h for float and double. */
#include "fastsoftmax.h"

#include <math.h>

#include "fs_math.h"

#if defined(_MSC_VER)
#define FS_INLINE static __forceinline
#else
#define FS_INLINE static inline __attribute__((always_inline))
#endif

#define FS_T float
#define FS_SUF f32
#define FS_EXP fs_exp_f32
#define FS_TANH tanhf
#include "rows.h"
#undef FS_T
#undef FS_SUF
#undef FS_EXP
#undef FS_TANH

#define FS_T double
#define FS_SUF f64
#define FS_EXP fs_exp_f64
#define FS_TANH tanh
#include "rows.h"
#undef FS_T
#undef FS_SUF
#undef FS_EXP
#undef FS_TANH

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

/* The instruction sets the kernels were compiled for (the baseline of the target). */
const char *fs_simd(void)
{
#if defined(__AVX512F__)
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
