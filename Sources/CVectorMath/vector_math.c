// One body per instruction set for the loops of CVectorMath.h; see the header for the contract.
#include "CVectorMath.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// The constants of VectorMath.exp (Sources/CBAMRuntime/Kernels/VectorMath.swift).
#define EXP_HIGH 88.72283f
#define EXP_LOW (-87.33654f)
#define LOG2E 1.44269504088896341f
#define SHIFTER 12582912.0f  // 1.5·2²³: adding it leaves round(v·log2 e) in the low mantissa bits
#define LN2_HIGH 0.693359375f
#define LN2_LOW (-2.12194440e-4f)
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

// ---- plain C: the same steps one value at a time ---------------------------------------------

static inline float bits_to_float(int32_t bits) { float f; memcpy(&f, &bits, 4); return f; }
static inline int32_t float_to_bits(float f) { int32_t b; memcpy(&b, &f, 4); return b; }

static inline float exp_portable_one(float x) {
    if (x != x) return x;
    if (x > EXP_HIGH) return __builtin_inff();
    if (x < EXP_LOW) return 0.0f;
    float shifted = x * LOG2E + SHIFTER;
    float n = shifted - SHIFTER;
    float r = x - n * LN2_HIGH - n * LN2_LOW;
    float z = r * r;
    float p = P0;
    p = p * r + P1; p = p * r + P2; p = p * r + P3; p = p * r + P4; p = p * r + P5;
    p = p * z + r + 1.0f;
    // 2ⁿ as two factors: n reaches 128 and −126 at the ends of the range.
    int32_t whole = float_to_bits(shifted) - 0x4B400000;
    int32_t half = whole >> 1, rest = whole - half;
    return p * bits_to_float((half + 127) << 23) * bits_to_float((rest + 127) << 23);
}

static void exp_portable(const float *x, float *y, size_t count) {
    for (size_t i = 0; i < count; i++) y[i] = exp_portable_one(x[i]);
}
static void sigmoid_portable(const float *x, float *y, size_t count) {
    for (size_t i = 0; i < count; i++) y[i] = 1.0f / (1.0f + exp_portable_one(-x[i]));
}
static void exp_shifted_portable(const float *x, const float *shift, size_t step, float *y, size_t count) {
    for (size_t i = 0; i < count; i++) y[i] = exp_portable_one(x[i] - shift[i * step]);
}

// Gelu's constants: 1/√2, √(2/π), and Abramowitz–Stegun 7.1.26's p and a₁…a₅ for erf.
#define GELU_SQRT_HALF 0.7071067811865476f
#define GELU_SQRT_2_PI 0.7978845608028654f
#define GELU_CUBIC 0.044715f
#define ERF_P 0.3275911f
#define ERF_A1 0.254829592f
#define ERF_A2 -0.284496736f
#define ERF_A3 1.421413741f
#define ERF_A4 -1.453152027f
#define ERF_A5 1.061405429f

static inline float gelu_portable_one(float x, int tanh) {
    if (tanh) {
        const float u = GELU_SQRT_2_PI * (x + GELU_CUBIC * x * x * x);
        return 0.5f * x * (1.0f + (1.0f - 2.0f / (exp_portable_one(2.0f * u) + 1.0f)));
    }
    const float z = x * GELU_SQRT_HALF, a = z < 0 ? -z : z;
    const float t = 1.0f / (1.0f + ERF_P * a);
    const float poly = t * (ERF_A1 + t * (ERF_A2 + t * (ERF_A3 + t * (ERF_A4 + t * ERF_A5))));
    const float e = 1.0f - poly * exp_portable_one(-a * a);
    return 0.5f * x * (1.0f + (z < 0 ? -e : e));
}

static void gelu_portable(const float *x, const float *bias, float *y, size_t count, int tanh) {
    for (size_t i = 0; i < count; i++) y[i] = gelu_portable_one(x[i] + (bias ? bias[i] : 0.0f), tanh);
}

// ---- AVX2 + FMA: 8 lanes ----------------------------------------------------------------------

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __m256 exp8(__m256 x) {
    const __m256 high = _mm256_set1_ps(EXP_HIGH), low = _mm256_set1_ps(EXP_LOW), shifter = _mm256_set1_ps(SHIFTER);
    __m256 v = _mm256_min_ps(_mm256_max_ps(x, low), high);
    __m256 shifted = _mm256_fmadd_ps(v, _mm256_set1_ps(LOG2E), shifter);
    __m256 n = _mm256_sub_ps(shifted, shifter);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HIGH), v);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LOW), r);
    __m256 z = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
    p = _mm256_fmadd_ps(p, z, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i whole = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(0x4B400000));
    __m256i half = _mm256_srai_epi32(whole, 1), rest = _mm256_sub_epi32(whole, half);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 scale1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
    __m256 scale2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, bias), 23));
    __m256 result = _mm256_mul_ps(_mm256_mul_ps(p, scale1), scale2);
    result = _mm256_blendv_ps(result, _mm256_set1_ps(__builtin_inff()), _mm256_cmp_ps(x, high, _CMP_GT_OQ));
    result = _mm256_blendv_ps(result, _mm256_setzero_ps(), _mm256_cmp_ps(x, low, _CMP_LT_OQ));
    return _mm256_blendv_ps(result, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

AVX2 static inline __m256 sigmoid8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// The tail goes through a zero-padded vector so every element takes the vector path.
#define AVX2_LOOP(BODY)                                                                 \
    size_t i = 0;                                                                       \
    for (; i + 8 <= count; i += 8) { __m256 v = _mm256_loadu_ps(x + i); BODY; _mm256_storeu_ps(y + i, v); } \
    if (i < count) {                                                                    \
        float tail[8] = {0};                                                            \
        memcpy(tail, x + i, (count - i) * sizeof(float));                               \
        __m256 v = _mm256_loadu_ps(tail); BODY; _mm256_storeu_ps(tail, v);              \
        memcpy(y + i, tail, (count - i) * sizeof(float));                               \
    }

AVX2 static inline __m256 gelu8(__m256 x, int tanh) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    if (tanh) {
        const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
        const __m256 u = _mm256_mul_ps(_mm256_set1_ps(GELU_SQRT_2_PI), _mm256_fmadd_ps(_mm256_set1_ps(GELU_CUBIC), x3, x));
        const __m256 e = exp8(_mm256_add_ps(u, u));
        const __m256 t = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
        return _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, t));
    }
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(GELU_SQRT_HALF)), a = _mm256_andnot_ps(sign, z);
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(ERF_P), a, one));
    __m256 poly = _mm256_fmadd_ps(t, _mm256_set1_ps(ERF_A5), _mm256_set1_ps(ERF_A4));
    poly = _mm256_fmadd_ps(t, poly, _mm256_set1_ps(ERF_A3));
    poly = _mm256_fmadd_ps(t, poly, _mm256_set1_ps(ERF_A2));
    poly = _mm256_fmadd_ps(t, poly, _mm256_set1_ps(ERF_A1));
    poly = _mm256_mul_ps(t, poly);
    const __m256 e = _mm256_fnmadd_ps(poly, exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a))), one);
    const __m256 erf = _mm256_or_ps(e, _mm256_and_ps(sign, z));  // e ≥ 0: z's sign onto it
    return _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, erf));
}

AVX2 static void gelu_avx2(const float *x, const float *bias, float *y, size_t count, int tanh) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + i));
        _mm256_storeu_ps(y + i, gelu8(v, tanh));
    }
    for (; i < count; i++) y[i] = gelu_portable_one(x[i] + (bias ? bias[i] : 0.0f), tanh);
}

AVX2 static void exp_avx2(const float *x, float *y, size_t count) { AVX2_LOOP(v = exp8(v)) }
AVX2 static void sigmoid_avx2(const float *x, float *y, size_t count) { AVX2_LOOP(v = sigmoid8(v)) }
AVX2 static void exp_shifted_avx2(const float *x, const float *shift, size_t step, float *y, size_t count) {
    if (step == 0) {
        const __m256 s = _mm256_set1_ps(shift[0]);
        AVX2_LOOP(v = exp8(_mm256_sub_ps(v, s)))
    } else {
        for (size_t i = 0; i < count; i++) y[i] = x[i] - shift[i];
        exp_avx2(y, y, count);
    }
}

// ---- AVX-512F: 16 lanes, the tail by a mask ---------------------------------------------------

#define AVX512 __attribute__((target("avx512f")))

AVX512 static inline __m512 exp16(__m512 x) {
    const __m512 high = _mm512_set1_ps(EXP_HIGH), low = _mm512_set1_ps(EXP_LOW), shifter = _mm512_set1_ps(SHIFTER);
    __m512 v = _mm512_min_ps(_mm512_max_ps(x, low), high);
    __m512 shifted = _mm512_fmadd_ps(v, _mm512_set1_ps(LOG2E), shifter);
    __m512 n = _mm512_sub_ps(shifted, shifter);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HIGH), v);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LOW), r);
    __m512 z = _mm512_mul_ps(r, r);
    __m512 p = _mm512_set1_ps(P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
    p = _mm512_fmadd_ps(p, z, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i whole = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(0x4B400000));
    __m512i half = _mm512_srai_epi32(whole, 1), rest = _mm512_sub_epi32(whole, half);
    const __m512i bias = _mm512_set1_epi32(127);
    __m512 scale1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(half, bias), 23));
    __m512 scale2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(rest, bias), 23));
    __m512 result = _mm512_mul_ps(_mm512_mul_ps(p, scale1), scale2);
    result = _mm512_mask_mov_ps(result, _mm512_cmp_ps_mask(x, high, _CMP_GT_OQ), _mm512_set1_ps(__builtin_inff()));
    result = _mm512_mask_mov_ps(result, _mm512_cmp_ps_mask(x, low, _CMP_LT_OQ), _mm512_setzero_ps());
    return _mm512_mask_mov_ps(result, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

AVX512 static inline __m512 sigmoid16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

#define AVX512_LOOP(BODY)                                                                    \
    size_t i = 0;                                                                            \
    for (; i + 16 <= count; i += 16) { __m512 v = _mm512_loadu_ps(x + i); BODY; _mm512_storeu_ps(y + i, v); } \
    if (i < count) {                                                                         \
        __mmask16 m = (__mmask16)((1u << (count - i)) - 1);                                  \
        __m512 v = _mm512_maskz_loadu_ps(m, x + i); BODY; _mm512_mask_storeu_ps(y + i, m, v); \
    }

AVX512 static inline __m512 gelu16(__m512 x, int tanh) {
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    if (tanh) {
        const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
        const __m512 u = _mm512_mul_ps(_mm512_set1_ps(GELU_SQRT_2_PI), _mm512_fmadd_ps(_mm512_set1_ps(GELU_CUBIC), x3, x));
        const __m512 e = exp16(_mm512_add_ps(u, u));
        const __m512 t = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
        return _mm512_mul_ps(_mm512_mul_ps(half, x), _mm512_add_ps(one, t));
    }
    const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(GELU_SQRT_HALF)), a = _mm512_abs_ps(z);
    const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(ERF_P), a, one));
    __m512 poly = _mm512_fmadd_ps(t, _mm512_set1_ps(ERF_A5), _mm512_set1_ps(ERF_A4));
    poly = _mm512_fmadd_ps(t, poly, _mm512_set1_ps(ERF_A3));
    poly = _mm512_fmadd_ps(t, poly, _mm512_set1_ps(ERF_A2));
    poly = _mm512_fmadd_ps(t, poly, _mm512_set1_ps(ERF_A1));
    poly = _mm512_mul_ps(t, poly);
    const __m512 e = _mm512_fnmadd_ps(poly, exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a))), one);
    // e ≥ 0: z's sign bit onto it.
    const __m512i signBit = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32((int)0x80000000u));
    const __m512 erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(e), signBit));
    return _mm512_mul_ps(_mm512_mul_ps(half, x), _mm512_add_ps(one, erf));
}

AVX512 static void gelu_avx512(const float *x, const float *bias, float *y, size_t count, int tanh) {
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        if (bias) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + i));
        _mm512_storeu_ps(y + i, gelu16(v, tanh));
    }
    if (i < count) {
        const __mmask16 m = (__mmask16)((1u << (count - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + i));
        _mm512_mask_storeu_ps(y + i, m, gelu16(v, tanh));
    }
}

AVX512 static void exp_avx512(const float *x, float *y, size_t count) { AVX512_LOOP(v = exp16(v)) }
AVX512 static void sigmoid_avx512(const float *x, float *y, size_t count) { AVX512_LOOP(v = sigmoid16(v)) }
AVX512 static void exp_shifted_avx512(const float *x, const float *shift, size_t step, float *y, size_t count) {
    if (step == 0) {
        const __m512 s = _mm512_set1_ps(shift[0]);
        AVX512_LOOP(v = exp16(_mm512_sub_ps(v, s)))
    } else {
        size_t i = 0;
        for (; i + 16 <= count; i += 16)
            _mm512_storeu_ps(y + i, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(shift + i))));
        if (i < count) {
            __mmask16 m = (__mmask16)((1u << (count - i)) - 1);
            _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, shift + i))));
        }
    }
}

// ---- window pools over channels-last rows ----------------------------------------------------

// The taps and the divisor of output pixel (oy, ox), shared by every variant.
#define POOL_WINDOW                                                                              \
    const int rf = g->row_first[oy], rc = g->row_count[oy], cf = g->column_first[ox], cc = g->column_count[ox]; \
    const int divisor = g->divisor_rows ? g->divisor_rows[oy] * g->divisor_columns[ox] : rc * cc;            \
    const float *origin = x + ((size_t)(oy * g->sh - g->pad_top) * g->w + (size_t)(ox * g->sw - g->pad_left)) * block; \
    float *out = y + ((size_t)oy * g->ow + ox) * block;

#define TAP(i, j) (origin + ((size_t)(i) * g->dh * g->w + (size_t)(j) * g->dw) * block)

// Channels `first_lane ..< block` of one output pixel, one at a time.
#define POOL_LANES(first_lane)                                                                   \
    for (size_t lane = (first_lane); lane < block; lane++) {                                     \
        float acc = average ? 0.0f : -__builtin_inff();                                          \
        int nan = 0;                                                                             \
        for (int i = rf; i < rf + rc; i++)                                                       \
            for (int j = cf; j < cf + cc; j++) {                                                 \
                float v = TAP(i, j)[lane];                                                       \
                if (average) acc += v; else { nan |= v != v; acc = v > acc ? v : acc; }          \
            }                                                                                    \
        out[lane] = average ? (divisor > 0 ? acc / (float)divisor : 0.0f) : (nan ? __builtin_nanf("") : acc); \
    }

static void pool_portable(const float *x, float *y, size_t block, const cbam_vm_pool2d_geometry *g, int first_row, int end_row, int average) {
    for (int oy = first_row; oy < end_row; oy++) {
        for (int ox = 0; ox < g->ow; ox++) {
            POOL_WINDOW
            POOL_LANES(0)
        }
    }
}

// Four vectors of lanes per pass over the window (64 channels on AVX-512, 32 on AVX2), so a
// tap's address is computed once for them; NaN is tracked apart because max_ps drops it.
AVX512 static void pool_avx512(const float *x, float *y, size_t block, const cbam_vm_pool2d_geometry *g, int first_row, int end_row, int average) {
    for (int oy = first_row; oy < end_row; oy++) {
        for (int ox = 0; ox < g->ow; ox++) {
            POOL_WINDOW
            for (size_t lane = 0; lane < block; lane += 64) {
                __mmask16 m[4];
                for (int k = 0; k < 4; k++) {
                    size_t start = lane + 16 * (size_t)k;
                    size_t left = start < block ? block - start : 0;
                    m[k] = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
                }
                __m512 acc[4];
                __mmask16 nan[4] = {0, 0, 0, 0};
                for (int k = 0; k < 4; k++) acc[k] = _mm512_set1_ps(average ? 0.0f : -__builtin_inff());
                for (int i = rf; i < rf + rc; i++)
                    for (int j = cf; j < cf + cc; j++) {
                        const float *tap = TAP(i, j) + lane;
                        for (int k = 0; k < 4; k++) {
                            if (!m[k]) break;
                            __m512 v = _mm512_maskz_loadu_ps(m[k], tap + 16 * k);
                            if (average) acc[k] = _mm512_add_ps(acc[k], v);
                            else { nan[k] |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q); acc[k] = _mm512_max_ps(acc[k], v); }
                        }
                    }
                for (int k = 0; k < 4; k++) {
                    if (!m[k]) break;
                    __m512 r = acc[k];
                    if (average) r = divisor > 0 ? _mm512_div_ps(r, _mm512_set1_ps((float)divisor)) : _mm512_setzero_ps();
                    else r = _mm512_mask_mov_ps(r, nan[k], _mm512_set1_ps(__builtin_nanf("")));
                    _mm512_mask_storeu_ps(out + lane + 16 * k, m[k], r);
                }
            }
        }
    }
}

AVX2 static void pool_avx2(const float *x, float *y, size_t block, const cbam_vm_pool2d_geometry *g, int first_row, int end_row, int average) {
    const size_t whole = block / 8 * 8;
    for (int oy = first_row; oy < end_row; oy++) {
        for (int ox = 0; ox < g->ow; ox++) {
            POOL_WINDOW
            for (size_t lane = 0; lane < whole; lane += 32) {
                const int vectors = (int)((whole - lane) / 8 < 4 ? (whole - lane) / 8 : 4);
                __m256 acc[4], nan[4];
                for (int k = 0; k < 4; k++) { acc[k] = _mm256_set1_ps(average ? 0.0f : -__builtin_inff()); nan[k] = _mm256_setzero_ps(); }
                for (int i = rf; i < rf + rc; i++)
                    for (int j = cf; j < cf + cc; j++) {
                        const float *tap = TAP(i, j) + lane;
                        for (int k = 0; k < vectors; k++) {
                            __m256 v = _mm256_loadu_ps(tap + 8 * k);
                            if (average) acc[k] = _mm256_add_ps(acc[k], v);
                            else { nan[k] = _mm256_or_ps(nan[k], _mm256_cmp_ps(v, v, _CMP_UNORD_Q)); acc[k] = _mm256_max_ps(acc[k], v); }
                        }
                    }
                for (int k = 0; k < vectors; k++) {
                    __m256 r = acc[k];
                    if (average) r = divisor > 0 ? _mm256_div_ps(r, _mm256_set1_ps((float)divisor)) : _mm256_setzero_ps();
                    else r = _mm256_blendv_ps(r, _mm256_set1_ps(__builtin_nanf("")), nan[k]);
                    _mm256_storeu_ps(out + lane + 8 * k, r);
                }
            }
            // Channels past the last multiple of 8, one at a time as the portable loop does.
            POOL_LANES(whole)
        }
    }
}

// ---- linear rows (a gate's fully connected layers) ---------------------------------------------

static void linear_portable(const float *w, size_t m, size_t inner, const float *x, size_t rows, float *y, size_t first, size_t end) {
    for (size_t o = first; o < end; o++) {
        const float *wo = w + o * inner;
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * inner;
            float sum = 0.0f;
            for (size_t k = 0; k < inner; k++) sum += wo[k] * xr[k];
            y[r * m + o] = sum;
        }
    }
}

AVX2 static inline float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static void linear_avx2(const float *w, size_t m, size_t inner, const float *x, size_t rows, float *y, size_t first, size_t end) {
    size_t o = first;
    for (; o + 4 <= end; o += 4) {
        const float *w0 = w + o * inner, *w1 = w0 + inner, *w2 = w1 + inner, *w3 = w2 + inner;
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * inner;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            size_t k = 0;
            for (; k + 8 <= inner; k += 8) {
                __m256 v = _mm256_loadu_ps(xr + k);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + k), v, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + k), v, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + k), v, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + k), v, a3);
            }
            float s0 = sum8(a0), s1 = sum8(a1), s2 = sum8(a2), s3 = sum8(a3);
            for (; k < inner; k++) { s0 += w0[k] * xr[k]; s1 += w1[k] * xr[k]; s2 += w2[k] * xr[k]; s3 += w3[k] * xr[k]; }
            float *yr = y + r * m + o;
            yr[0] = s0; yr[1] = s1; yr[2] = s2; yr[3] = s3;
        }
    }
    for (; o < end; o++) {
        const float *wo = w + o * inner;
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * inner;
            __m256 a = _mm256_setzero_ps();
            size_t k = 0;
            for (; k + 8 <= inner; k += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(wo + k), _mm256_loadu_ps(xr + k), a);
            float sum = sum8(a);
            for (; k < inner; k++) sum += wo[k] * xr[k];
            y[r * m + o] = sum;
        }
    }
}

AVX512 static void linear_avx512(const float *w, size_t m, size_t inner, const float *x, size_t rows, float *y, size_t first, size_t end) {
    // The last partial vector of each row through a mask, so no scalar tail.
    const __mmask16 tail = (__mmask16)((1u << (inner % 16)) - 1u);
    const size_t whole = inner / 16 * 16;
    size_t o = first;
    for (; o + 4 <= end; o += 4) {
        const float *w0 = w + o * inner, *w1 = w0 + inner, *w2 = w1 + inner, *w3 = w2 + inner;
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * inner;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (size_t k = 0; k < whole; k += 16) {
                __m512 v = _mm512_loadu_ps(xr + k);
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + k), v, a0);
                a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w1 + k), v, a1);
                a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w2 + k), v, a2);
                a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w3 + k), v, a3);
            }
            if (tail) {
                __m512 v = _mm512_maskz_loadu_ps(tail, xr + whole);
                a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w0 + whole), v, a0);
                a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w1 + whole), v, a1);
                a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w2 + whole), v, a2);
                a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w3 + whole), v, a3);
            }
            float *yr = y + r * m + o;
            yr[0] = _mm512_reduce_add_ps(a0); yr[1] = _mm512_reduce_add_ps(a1);
            yr[2] = _mm512_reduce_add_ps(a2); yr[3] = _mm512_reduce_add_ps(a3);
        }
    }
    for (; o < end; o++) {
        const float *wo = w + o * inner;
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * inner;
            __m512 a = _mm512_setzero_ps();
            for (size_t k = 0; k < whole; k += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(wo + k), _mm512_loadu_ps(xr + k), a);
            if (tail) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, wo + whole), _mm512_maskz_loadu_ps(tail, xr + whole), a);
            y[r * m + o] = _mm512_reduce_add_ps(a);
        }
    }
}

// ---- the gates' passes over a carried tensor --------------------------------------------------

static void channel_stats_portable(const float *x, size_t pixels, size_t block, size_t lanes, float *means, float *maxima) {
    for (size_t j = 0; j < lanes; j++) {
        float sum = 0.0f, max = -__builtin_inff();
        int nan = 0;
        for (size_t p = 0; p < pixels; p++) {
            float v = x[p * block + j];
            sum += v;
            if (v > max) max = v;
            nan |= v != v;
        }
        if (means) means[j] = sum / (float)pixels;
        if (maxima) maxima[j] = nan ? __builtin_nanf("") : max;
    }
}

static void pixel_stats_portable(const float *x, size_t pixels, size_t block, size_t blocks, size_t first, size_t end,
                                 const float *scales, float *maxima, float *means) {
    const float channels = (float)(block * blocks);
    for (size_t p = first; p < end; p++) {
        float sum = 0.0f, max = -__builtin_inff();
        int nan = 0;
        for (size_t b = 0; b < blocks; b++) {
            const float *row = x + (b * pixels + p) * block;
            for (size_t j = 0; j < block; j++) {
                float v = scales ? row[j] * scales[b * block + j] : row[j];
                sum += v;
                if (v > max) max = v;
                nan |= v != v;
            }
        }
        maxima[p] = nan ? __builtin_nanf("") : max;
        means[p] = sum / channels;
    }
}

static void scale_pixels_portable(const float *x, float *y, const float *r, size_t pixels, size_t block, size_t blocks,
                                  size_t first, size_t end, const float *gate, const float *scales, int relu) {
    for (size_t b = 0; b < blocks; b++) {
        for (size_t p = first; p < end; p++) {
            size_t at = (b * pixels + p) * block;
            for (size_t j = 0; j < block; j++) {
                float v = x[at + j];
                if (scales) v = v * scales[b * block + j];
                v = v * gate[p];
                if (r) v = v + r[at + j];
                if (relu && !(v >= 0.0f) && v == v) v = 0.0f;  // max(v, 0), NaN kept as SIMD's replace keeps it
                y[at + j] = v;
            }
        }
    }
}

// A NaN-sticky running max. max_ps(a, b) gives b when either is NaN: with the running max
// second a NaN there stays, and a NaN in the new value is put in by the mask.
#define AVX512_MAX_STICKY(m, v) _mm512_mask_mov_ps(_mm512_max_ps(v, m), _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v)

// `vectors` (1 to 4) is a constant at each call below, so the loops unroll and the sums and maxima
// stay in registers.
AVX512 static inline __attribute__((always_inline)) void channel_stats_avx512_n(
    const float *x, size_t pixels, size_t block, const size_t vectors, __mmask16 last, float *means, float *maxima) {
    const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
    __m512 s[4], m[4];
    for (size_t v = 0; v < vectors; v++) { s[v] = _mm512_setzero_ps(); m[v] = ninf; }
    for (size_t p = 0; p < pixels; p++) {
        const float *row = x + p * block;
        for (size_t v = 0; v < vectors; v++) {
            __mmask16 mask = v + 1 == vectors ? last : (__mmask16)0xFFFF;
            __m512 a = _mm512_mask_loadu_ps(ninf, mask, row + 16 * v);
            s[v] = _mm512_mask_add_ps(s[v], mask, s[v], a);
            m[v] = AVX512_MAX_STICKY(m[v], a);
        }
    }
    const __m512 count = _mm512_set1_ps((float)pixels);
    for (size_t v = 0; v < vectors; v++) {
        __mmask16 mask = v + 1 == vectors ? last : (__mmask16)0xFFFF;
        if (means) _mm512_mask_storeu_ps(means + 16 * v, mask, _mm512_div_ps(s[v], count));
        if (maxima) _mm512_mask_storeu_ps(maxima + 16 * v, mask, m[v]);
    }
}

AVX512 static void channel_stats_avx512(const float *x, size_t pixels, size_t block, size_t lanes, float *means, float *maxima) {
    // Each lane summed pixel by pixel in order, as the Swift loop: the same sums, bit for bit.
    const __mmask16 last = (lanes % 16) ? (__mmask16)0x00FF : (__mmask16)0xFFFF;
    switch ((lanes + 15) / 16) {
    case 1: channel_stats_avx512_n(x, pixels, block, 1, last, means, maxima); break;
    case 2: channel_stats_avx512_n(x, pixels, block, 2, last, means, maxima); break;
    case 3: channel_stats_avx512_n(x, pixels, block, 3, last, means, maxima); break;
    default: channel_stats_avx512_n(x, pixels, block, 4, last, means, maxima); break;
    }
}

AVX512 static void pixel_stats_avx512(const float *x, size_t pixels, size_t block, size_t blocks, size_t first, size_t end,
                                      const float *scales, float *maxima, float *means) {
    const float channels = (float)(block * blocks);
    const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
    const size_t vectors = (block + 15) / 16;
    const __mmask16 last = (block % 16) ? (__mmask16)0x00FF : (__mmask16)0xFFFF;
    for (size_t p = first; p < end; p++) {
        // Two chains of sums and maxima, so consecutive vectors do not wait on each other.
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, m0 = ninf, m1 = ninf;
        size_t k = 0;
        for (size_t b = 0; b < blocks; b++) {
            const float *row = x + (b * pixels + p) * block;
            const float *sc = scales ? scales + b * block : 0;
            for (size_t v = 0; v < vectors; v++, k++) {
                __mmask16 mask = v + 1 == vectors ? last : (__mmask16)0xFFFF;
                __m512 a = _mm512_maskz_loadu_ps(mask, row + 16 * v);
                if (sc) a = _mm512_mul_ps(a, _mm512_maskz_loadu_ps(mask, sc + 16 * v));
                __m512 forMax = _mm512_mask_mov_ps(ninf, mask, a);
                if (k & 1) { s1 = _mm512_add_ps(s1, a); m1 = AVX512_MAX_STICKY(m1, forMax); }
                else { s0 = _mm512_add_ps(s0, a); m0 = AVX512_MAX_STICKY(m0, forMax); }
            }
        }
        __m512 m = AVX512_MAX_STICKY(m0, m1);
        __mmask16 nan = _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q);
        maxima[p] = nan ? __builtin_nanf("") : _mm512_reduce_max_ps(m);
        means[p] = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / channels;
    }
}

AVX512 static void scale_pixels_avx512(const float *x, float *y, const float *r, size_t pixels, size_t block, size_t blocks,
                                       size_t first, size_t end, const float *gate, const float *scales, int relu) {
    const size_t vectors = (block + 15) / 16;
    const __mmask16 last = (block % 16) ? (__mmask16)0x00FF : (__mmask16)0xFFFF;
    const __m512 zero = _mm512_setzero_ps();
    for (size_t b = 0; b < blocks; b++) {
        const float *sc = scales ? scales + b * block : 0;
        for (size_t p = first; p < end; p++) {
            size_t at = (b * pixels + p) * block;
            const __m512 g = _mm512_set1_ps(gate[p]);
            for (size_t v = 0; v < vectors; v++) {
                __mmask16 mask = v + 1 == vectors ? last : (__mmask16)0xFFFF;
                __m512 a = _mm512_maskz_loadu_ps(mask, x + at + 16 * v);
                if (sc) a = _mm512_mul_ps(a, _mm512_maskz_loadu_ps(mask, sc + 16 * v));
                a = _mm512_mul_ps(a, g);
                if (r) a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(mask, r + at + 16 * v));
                if (relu) a = _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(a, zero, _CMP_LT_OQ), zero);
                _mm512_mask_storeu_ps(y + at + 16 * v, mask, a);
            }
        }
    }
}

static void scale_channels_portable(const float *x, float *y, const float *r, size_t pixels, size_t block, size_t lanes,
                                    const float *scales, int relu) {
    for (size_t p = 0; p < pixels; p++) {
        for (size_t j = 0; j < lanes; j++) {
            size_t at = p * block + j;
            float v = x[at] * scales[j];
            if (r) v = v + r[at];
            if (relu && !(v >= 0.0f) && v == v) v = 0.0f;
            y[at] = v;
        }
    }
}

AVX512 static void scale_channels_avx512(const float *x, float *y, const float *r, size_t pixels, size_t block, size_t lanes,
                                         const float *scales, int relu) {
    const __m512 zero = _mm512_setzero_ps();
    for (size_t j = 0; j < lanes; j += 16) {
        const __mmask16 mask = lanes - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (lanes - j)) - 1u);
        const __m512 s = _mm512_maskz_loadu_ps(mask, scales + j);
        for (size_t p = 0; p < pixels; p++) {
            size_t at = p * block + j;
            __m512 a = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + at), s);
            if (r) a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(mask, r + at));
            if (relu) a = _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(a, zero, _CMP_LT_OQ), zero);
            _mm512_mask_storeu_ps(y + at, mask, a);
        }
    }
}

AVX2 static void scale_channels_avx2(const float *x, float *y, const float *r, size_t pixels, size_t block, size_t lanes,
                                     const float *scales, int relu) {
    const __m256 zero = _mm256_setzero_ps();
    for (size_t j = 0; j < lanes; j += 8) {
        const __m256 s = _mm256_loadu_ps(scales + j);
        for (size_t p = 0; p < pixels; p++) {
            size_t at = p * block + j;
            __m256 a = _mm256_mul_ps(_mm256_loadu_ps(x + at), s);
            if (r) a = _mm256_add_ps(a, _mm256_loadu_ps(r + at));
            if (relu) a = _mm256_blendv_ps(a, zero, _mm256_cmp_ps(a, zero, _CMP_LT_OQ));
            _mm256_storeu_ps(y + at, a);
        }
    }
}

#define AVX2_MAX_STICKY(m, v) _mm256_blendv_ps(_mm256_max_ps(v, m), v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q))

AVX2 static void channel_stats_avx2(const float *x, size_t pixels, size_t block, size_t lanes, float *means, float *maxima) {
    const size_t vectors = lanes / 8;  // lanes is a multiple of 8, at most 64
    __m256 s[8], m[8];
    for (size_t v = 0; v < 8; v++) { s[v] = _mm256_setzero_ps(); m[v] = _mm256_set1_ps(-__builtin_inff()); }
    for (size_t p = 0; p < pixels; p++) {
        const float *row = x + p * block;
        for (size_t v = 0; v < vectors; v++) {
            __m256 a = _mm256_loadu_ps(row + 8 * v);
            s[v] = _mm256_add_ps(s[v], a);
            m[v] = AVX2_MAX_STICKY(m[v], a);
        }
    }
    const __m256 count = _mm256_set1_ps((float)pixels);
    for (size_t v = 0; v < vectors; v++) {
        if (means) _mm256_storeu_ps(means + 8 * v, _mm256_div_ps(s[v], count));
        if (maxima) _mm256_storeu_ps(maxima + 8 * v, m[v]);
    }
}

AVX2 static void pixel_stats_avx2(const float *x, size_t pixels, size_t block, size_t blocks, size_t first, size_t end,
                                  const float *scales, float *maxima, float *means) {
    const float channels = (float)(block * blocks);
    const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
    for (size_t p = first; p < end; p++) {
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, m0 = ninf, m1 = ninf;
        size_t k = 0;
        for (size_t b = 0; b < blocks; b++) {
            const float *row = x + (b * pixels + p) * block;
            const float *sc = scales ? scales + b * block : 0;
            for (size_t j = 0; j < block; j += 8, k++) {
                __m256 a = _mm256_loadu_ps(row + j);
                if (sc) a = _mm256_mul_ps(a, _mm256_loadu_ps(sc + j));
                if (k & 1) { s1 = _mm256_add_ps(s1, a); m1 = AVX2_MAX_STICKY(m1, a); }
                else { s0 = _mm256_add_ps(s0, a); m0 = AVX2_MAX_STICKY(m0, a); }
            }
        }
        __m256 m = AVX2_MAX_STICKY(m0, m1);
        float lanes[8];
        _mm256_storeu_ps(lanes, m);
        float max = lanes[0];
        int nan = lanes[0] != lanes[0];
        for (int i = 1; i < 8; i++) { nan |= lanes[i] != lanes[i]; if (lanes[i] > max) max = lanes[i]; }
        maxima[p] = nan ? __builtin_nanf("") : max;
        means[p] = sum8(_mm256_add_ps(s0, s1)) / channels;
    }
}

AVX2 static void scale_pixels_avx2(const float *x, float *y, const float *r, size_t pixels, size_t block, size_t blocks,
                                   size_t first, size_t end, const float *gate, const float *scales, int relu) {
    const __m256 zero = _mm256_setzero_ps();
    for (size_t b = 0; b < blocks; b++) {
        const float *sc = scales ? scales + b * block : 0;
        for (size_t p = first; p < end; p++) {
            size_t at = (b * pixels + p) * block;
            const __m256 g = _mm256_set1_ps(gate[p]);
            for (size_t j = 0; j < block; j += 8) {
                __m256 a = _mm256_loadu_ps(x + at + j);
                if (sc) a = _mm256_mul_ps(a, _mm256_loadu_ps(sc + j));
                a = _mm256_mul_ps(a, g);
                if (r) a = _mm256_add_ps(a, _mm256_loadu_ps(r + at + j));
                if (relu) a = _mm256_blendv_ps(a, zero, _mm256_cmp_ps(a, zero, _CMP_LT_OQ));
                _mm256_storeu_ps(y + at + j, a);
            }
        }
    }
}

// ---- dispatch ---------------------------------------------------------------------------------

cbam_vm_isa cbam_vm_cpu_isa(void) {
    static int cpu = -1;  // a benign race: every thread computes the same value
    if (cpu < 0) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) cpu = CBAM_VM_AVX512;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) cpu = CBAM_VM_AVX2;
        else cpu = CBAM_VM_PORTABLE;
    }
    return (cbam_vm_isa)cpu;
}

cbam_vm_isa cbam_vm_best_isa(void) {
    static int best = -1;  // a benign race, as above
    if (best < 0) {
        int capped = cbam_vm_cpu_isa();
        const char *cap = getenv("CBAM_MAX_ISA");
        if (cap && !strcasecmp(cap, "avx2") && capped > CBAM_VM_AVX2) capped = CBAM_VM_AVX2;
        if (cap && !strcasecmp(cap, "portable")) capped = CBAM_VM_PORTABLE;
        best = capped;
    }
    return (cbam_vm_isa)best;
}

cbam_vm_isa cbam_vm_resolve(cbam_vm_isa wanted) {
    cbam_vm_isa best = cbam_vm_best_isa();
    return (wanted == CBAM_VM_AUTO || wanted > best) ? best : wanted;
}

void cbam_vm_exp(const float *x, float *y, size_t count, cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: exp_avx512(x, y, count); break;
    case CBAM_VM_AVX2: exp_avx2(x, y, count); break;
    default: exp_portable(x, y, count); break;
    }
}

void cbam_vm_sigmoid(const float *x, float *y, size_t count, cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: sigmoid_avx512(x, y, count); break;
    case CBAM_VM_AVX2: sigmoid_avx2(x, y, count); break;
    default: sigmoid_portable(x, y, count); break;
    }
}

void cbam_vm_exp_shifted(const float *x, const float *shift, size_t shift_step, float *y, size_t count, cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: exp_shifted_avx512(x, shift, shift_step, y, count); break;
    case CBAM_VM_AVX2: exp_shifted_avx2(x, shift, shift_step, y, count); break;
    default: exp_shifted_portable(x, shift, shift_step, y, count); break;
    }
}

void cbam_vm_pool2d(const float *x, float *y, size_t block, const cbam_vm_pool2d_geometry *geometry,
                    int first_row, int end_row, int average, cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: pool_avx512(x, y, block, geometry, first_row, end_row, average); break;
    case CBAM_VM_AVX2: pool_avx2(x, y, block, geometry, first_row, end_row, average); break;
    default: pool_portable(x, y, block, geometry, first_row, end_row, average); break;
    }
}

void cbam_vm_linear_rows(const float *w, size_t m, size_t inner, const float *x, size_t rows, float *y,
                         size_t first_output, size_t end_output, cbam_vm_isa isa) {
    if (end_output > m) end_output = m;
    if (first_output >= end_output) return;
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: linear_avx512(w, m, inner, x, rows, y, first_output, end_output); break;
    case CBAM_VM_AVX2: linear_avx2(w, m, inner, x, rows, y, first_output, end_output); break;
    default: linear_portable(w, m, inner, x, rows, y, first_output, end_output); break;
    }
}

void cbam_vm_channel_stats(const float *x, size_t pixels, size_t block, size_t lanes, float *means, float *maxima, cbam_vm_isa isa) {
    cbam_vm_isa chosen = cbam_vm_resolve(isa);
    for (size_t start = 0; start < lanes; start += 64) {  // the header's 64 at most, kept if a caller asks for more
        size_t count = lanes - start < 64 ? lanes - start : 64;
        float *m = means ? means + start : 0, *mx = maxima ? maxima + start : 0;
        switch (chosen) {
        case CBAM_VM_AVX512: channel_stats_avx512(x + start, pixels, block, count, m, mx); break;
        case CBAM_VM_AVX2: channel_stats_avx2(x + start, pixels, block, count, m, mx); break;
        default: channel_stats_portable(x + start, pixels, block, count, m, mx); break;
        }
    }
}

void cbam_vm_pixel_stats(const float *x, size_t pixels, size_t block, size_t blocks, size_t first_pixel, size_t end_pixel,
                         const float *channel_scales, float *maxima, float *means, cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: pixel_stats_avx512(x, pixels, block, blocks, first_pixel, end_pixel, channel_scales, maxima, means); break;
    case CBAM_VM_AVX2: pixel_stats_avx2(x, pixels, block, blocks, first_pixel, end_pixel, channel_scales, maxima, means); break;
    default: pixel_stats_portable(x, pixels, block, blocks, first_pixel, end_pixel, channel_scales, maxima, means); break;
    }
}

void cbam_vm_scale_pixels(const float *x, float *y, const float *residual, size_t pixels, size_t block, size_t blocks,
                          size_t first_pixel, size_t end_pixel, const float *gate, const float *channel_scales, int relu, cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: scale_pixels_avx512(x, y, residual, pixels, block, blocks, first_pixel, end_pixel, gate, channel_scales, relu); break;
    case CBAM_VM_AVX2: scale_pixels_avx2(x, y, residual, pixels, block, blocks, first_pixel, end_pixel, gate, channel_scales, relu); break;
    default: scale_pixels_portable(x, y, residual, pixels, block, blocks, first_pixel, end_pixel, gate, channel_scales, relu); break;
    }
}

void cbam_vm_scale_channels(const float *x, float *y, const float *residual, size_t pixels, size_t block, size_t lanes,
                            const float *scales, int relu, cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: scale_channels_avx512(x, y, residual, pixels, block, lanes, scales, relu); break;
    case CBAM_VM_AVX2: scale_channels_avx2(x, y, residual, pixels, block, lanes, scales, relu); break;
    default: scale_channels_portable(x, y, residual, pixels, block, lanes, scales, relu); break;
    }
}

void cbam_vm_gelu(const float *x, const float *bias, float *y, size_t count, int tanh, cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: gelu_avx512(x, bias, y, count, tanh); break;
    case CBAM_VM_AVX2: gelu_avx2(x, bias, y, count, tanh); break;
    default: gelu_portable(x, bias, y, count, tanh); break;
    }
}
