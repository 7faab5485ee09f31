/*
 * The 2-byte dtypes, float16 (IEEE binary16) and bfloat16, as uint16_t bits,
 * converted to and from float by integer arithmetic that GCC and Clang
 * vectorise inside `#pragma omp simd` loops (on any x86-64 level, and on
 * arm64, without F16C or AVX-512 BF16 instructions or compiler support for
 * _Float16). Widening is exact; narrowing rounds to nearest, ties to even,
 * as IEEE 754 and torch do: a value beyond the largest finite one (or
 * rounding past it) becomes +-inf, a tiny one a subnormal or +-0, and a NaN
 * stays a (quiet) NaN of the same sign. Where the CPU has F16C or AVX-512
 * BF16, runs of values go through those instructions instead
 * (fs_half_simd.h), with the same results.
 */
#ifndef FS_HALF_H
#define FS_HALF_H

#include <stdint.h>

#include "fs_math.h"

/* bfloat16 is the upper half of a float. */
FS_INLINE float fs_bf16_to_f32(uint16_t h)
{
    return fs_bits_to_f32((int32_t)((uint32_t)h << 16));
}

FS_INLINE uint16_t fs_f32_to_bf16(float f)
{
    const uint32_t u = (uint32_t)fs_f32_to_bits(f);
    /* add just under half the dropped part, plus its last kept bit: ties to even */
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

/* float16: 5 exponent bits (bias 15), 10 mantissa bits. */
FS_INLINE float fs_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t em = h & 0x7fffu;
    /* The exponent and mantissa moved into a float's fields read as a number
     * 2^(127 - 15) times too small, subnormals included (exact). */
    const float scaled = fs_bits_to_f32((int32_t)(em << 13)) * 0x1p112f;
    const uint32_t finite = (uint32_t)fs_f32_to_bits(scaled);
    const uint32_t special = (em << 13) | 0x7f800000u; /* inf, NaN with its payload */
    return fs_bits_to_f32((int32_t)(sign | (em >= 0x7c00u ? special : finite)));
}

FS_INLINE uint16_t fs_f32_to_f16(float f)
{
    const uint32_t u = (uint32_t)fs_f32_to_bits(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;
    /* Normal results: rebias the exponent, round the 13 dropped bits. */
    const uint32_t normal = (a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13;
    /* Below 2^-14 (subnormal or zero): adding 0.5 leaves the rounded value in
     * the float's low mantissa bits (the addition rounds to nearest even). */
    const uint32_t tiny = (uint32_t)fs_f32_to_bits(fs_bits_to_f32((int32_t)a) + 0.5f) - 0x3f000000u;
    /* 65520 and up round to inf; a NaN becomes the quiet NaN */
    const uint32_t big = a > 0x7f800000u ? 0x7e00u : 0x7c00u;
    const uint32_t r = a >= 0x477ff000u ? big : (a < 0x38800000u ? tiny : normal);
    return (uint16_t)(sign | r);
}

#endif /* FS_HALF_H */
