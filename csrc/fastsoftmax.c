/* Instantiates the row kernels of rows.h for float and double. */
#include "fastsoftmax.h"

#include <math.h>

#include "fs_math.h"

#if defined(_MSC_VER)
#define FS_INLINE static __forceinline
#else
#define FS_INLINE static inline __attribute__((always_inline))
#endif

/* Runtime dispatch: on x86-64 with GCC and glibc (ifunc), each public kernel is
 * compiled three times, for AVX-512, for AVX2 + FMA and for the x86-64
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

#define FS_T float
#define FS_SUF f32
#define FS_EXP fs_exp_f32
#define FS_EXP_FAST fs_exp_fast_f32
#define FS_EXP_LO FS_EXP_FAST_LO_F32
/* In-block sums in double too: a float accumulator loses up to FS_SUM_BLOCK / lanes
 * ulp, and all of FS_SUM_BLOCK where the loop is not vectorised (an unoptimised
 * or non-GCC build). The conversion costs little beside the exp. */
#define FS_ACC double
#define FS_TANH tanhf
#include "rows.h"
#undef FS_T
#undef FS_SUF
#undef FS_EXP
#undef FS_EXP_FAST
#undef FS_EXP_LO
#undef FS_ACC
#undef FS_TANH

#define FS_T double
#define FS_SUF f64
#define FS_EXP fs_exp_f64
#define FS_EXP_FAST fs_exp_fast_f64
#define FS_EXP_LO FS_EXP_FAST_LO_F64
#define FS_ACC double
#define FS_TANH tanh
#include "rows.h"
#undef FS_T
#undef FS_SUF
#undef FS_EXP
#undef FS_EXP_FAST
#undef FS_EXP_LO
#undef FS_ACC
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
