// A grouped convolution with as many outputs per group as inputs: each output channel reads only
// the G input channels of its group (G = 1 depthwise, 2, 4, 8, 16, or any multiple of the lanes).
//
// ResNeXt's 3×3 layers have 32 groups of 4 (layer1), 8 (layer2), 16 (layer3) channels, and
// SK / ResNeSt convolutions are grouped the same way. Such a layer does only G multiply-adds per
// output channel and tap, too few for a matrix kernel: oneDNN's jit kernel ran ResNeXt-50's
// 4-channel groups at 27–34 GFLOP/s on one core (of a 117 GFLOP/s peak). Here a vector of L
// output channels (L = 16 with AVX-512, 8 with AVX2; G divides L) is computed from the vector of
// the same L input channels: with x_r the input vector rotated by r within each group of G lanes
// (lane l reads the group's channel (l mod G + r) mod G), the output is Σ_r W_r ⊙ x_r over
// r < G, so a tap costs G multiply-adds and G − 1 in-register permutes per vector, and each
// input vector is loaded once per tap. A group as wide as the lanes or wider (G a multiple of L)
// is a small matrix product instead: Σ_i W[·, i] · x_i over its G inputs, x_i broadcast from memory.
//
// Layouts (all float32):
//   x       the input, channels last: [N, H, W, C], C = groups · G
//   packed  blocks of L channels: packed[((v · taps + t) · G + r) · L + l] is the weight of output
//           channel c = v · L + l at tap t = ky · kW + kx for the input channel (c mod G + r) mod G
//           of its group, or r itself when G is a multiple of L (W [C, G, kH, kW] as ONNX holds it)
//   y       the output, channels last: [N, oH, oW, C]; residual lies like y
#include "CVectorMath.h"

#include <immintrin.h>

#define ALWAYS static inline __attribute__((always_inline))

size_t cbam_vm_grouped_lanes(cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: return 16;
    default: return 8;
    }
}

int cbam_vm_grouped_fits(size_t c, size_t group_width, cbam_vm_isa isa) {
    const size_t lanes = cbam_vm_grouped_lanes(isa);
    return group_width >= 1 && (lanes % group_width == 0 || group_width % lanes == 0) && c > 0 && c % lanes == 0 && c % group_width == 0;
}

/// The input channel of its group that output channel o's r-th packed weight belongs to.
static inline size_t packed_input(size_t o, size_t r, size_t g, size_t lanes) { return g % lanes == 0 ? r : (o % g + r) % g; }

void cbam_vm_grouped_pack_weights(const float *w, size_t c, size_t group_width, size_t taps, float *packed, cbam_vm_isa isa) {
    const size_t lanes = cbam_vm_grouped_lanes(isa), g = group_width;
    for (size_t v = 0; v < c / lanes; v++)
        for (size_t t = 0; t < taps; t++)
            for (size_t r = 0; r < g; r++)
                for (size_t l = 0; l < lanes; l++) {
                    const size_t o = v * lanes + l;
                    packed[((v * taps + t) * g + r) * lanes + l] = w[(o * g + packed_input(o, r, g, lanes)) * taps + t];
                }
}

/// The geometry every variant reads.
typedef struct {
    size_t n, h, w, c, g, kh, kw, sh, sw, dh, dw, oh, ow;
    long pad_top, pad_left;
} geometry;

/// Channel c0 of the input pixel a tap reads in `row`, or `zero` (at least max(L, G) zeros) in the padding.
ALWAYS const float *tap_source(const float *row, long ix, size_t c0, const geometry *s, const float *zero) {
    return ix >= 0 && ix < (long)s->w ? row + (size_t)ix * s->c + c0 : zero;
}

/// Packed weight bytes past which the work items (one output row × one vector of channels) run
/// rows inside each vector rather than vectors inside each row: each vector's weights (taps · G · L
/// floats) are then read from memory once and from L1 for every row, where otherwise every row
/// would sweep them all from L3 (ResNeXt's last grouped layers: 0.3–1.2 MB of weights for 7 or 4
/// output rows), and workers splitting the items split the weights. Below it the rows' inputs are
/// the larger part, and rows outside keep them in cache while the vectors pass.
#define WEIGHTS_OUTER_BYTES (256u << 10)

/// Work item `item` of cbam_vm_grouped_items: its output row (over the batch) and vector of channels.
ALWAYS void work_item(const geometry *s, size_t lanes, size_t item, size_t *row, size_t *vector) {
    const size_t rows = s->n * s->oh, vectors = s->c / lanes;
    if (s->kh * s->kw * s->g * s->c * sizeof(float) > WEIGHTS_OUTER_BYTES) {
        *row = item % rows, *vector = item / rows;
    } else {
        *row = item / vectors, *vector = item % vectors;
    }
}

size_t cbam_vm_grouped_items(size_t n, size_t oh, size_t c, cbam_vm_isa isa) { return n * oh * (c / cbam_vm_grouped_lanes(isa)); }

// ---- plain C: the packed layout of 8 lanes, pixel by pixel ------------------------------------

static void grouped_portable(const float *x, const geometry *s, const float *packed, size_t first_item, size_t end_item,
                             const float *bias, const float *residual, float *y, int relu) {
    const size_t lanes = 8, taps = s->kh * s->kw, g = s->g;
    for (size_t item = first_item; item < end_item; item++) {
        size_t row, v;
        work_item(s, lanes, item, &row, &v);
        const size_t n = row / s->oh, oy = row % s->oh;
        const float *image = x + n * s->h * s->w * s->c;
        for (size_t ox = 0; ox < s->ow; ox++) {
            const size_t at = (row * s->ow + ox) * s->c;
            for (size_t o = v * lanes; o < (v + 1) * lanes; o++) {
                const size_t l = o % lanes, base = o - o % g;
                float acc = 0;
                for (size_t ky = 0; ky < s->kh; ky++) {
                    const long iy = (long)(oy * s->sh + ky * s->dh) - s->pad_top;
                    if (iy < 0 || iy >= (long)s->h) continue;
                    for (size_t kx = 0; kx < s->kw; kx++) {
                        const long ix = (long)(ox * s->sw + kx * s->dw) - s->pad_left;
                        if (ix < 0 || ix >= (long)s->w) continue;
                        const float *p = image + ((size_t)iy * s->w + (size_t)ix) * s->c + base;
                        const float *wt = packed + ((v * taps + ky * s->kw + kx) * g) * lanes + l;
                        for (size_t r = 0; r < g; r++) acc += wt[r * lanes] * p[packed_input(o, r, g, lanes)];
                    }
                }
                float value = acc + (bias ? bias[o] : 0.0f);
                if (residual) value += residual[at + o];
                y[at + o] = relu && !(value > 0.0f) && value == value ? 0.0f : value;
            }
        }
    }
}

// The vector variants: one body per instruction set, each compiled for its pixel block width P
// and group width G as constants (always_inline), so the accumulators and the G weight vectors
// stay in registers. A block is P output pixels of one work item's row and vector of channels.
#define EACH8(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7)

// ---- AVX-512F: 16 lanes ------------------------------------------------------------------------

#define AVX512 __attribute__((target("avx512f")))
#define ZERO512(q) __m512 a##q = _mm512_setzero_ps();
#define TAP512(q)                                                                                                  \
    if (q < P) {                                                                                                   \
        const __m512 xv = _mm512_loadu_ps(tap_source(row, ix + (long)(q * s->sw), c0, s, zero));                  \
        a##q = _mm512_fmadd_ps(wr[0], xv, a##q);                                                                   \
        _Pragma("GCC unroll 16") for (int r = 1; r < G; r++) a##q = _mm512_fmadd_ps(wr[r], _mm512_permutexvar_ps(rot[r], xv), a##q); \
    }
#define OUT512(q) if (q < P) out[q] = a##q;

AVX512 ALWAYS void block_avx512(const float *image, const geometry *s, const float *wv, const float *zero, size_t c0, long iy0, long ix0,
                                const int P, const int G, const __m512i *rot, __m512 *out) {
    EACH8(ZERO512)
    for (size_t ky = 0; ky < s->kh; ky++) {
        const long iy = iy0 + (long)(ky * s->dh);
        if (iy < 0 || iy >= (long)s->h) continue;
        const float *row = image + (size_t)iy * s->w * s->c;
        for (size_t kx = 0; kx < s->kw; kx++) {
            const float *wt = wv + (ky * s->kw + kx) * (size_t)G * 16;
            __m512 wr[16];
            _Pragma("GCC unroll 16") for (int r = 0; r < G; r++) wr[r] = _mm512_load_ps(wt + r * 16);
            const long ix = ix0 + (long)(kx * s->dw);
            EACH8(TAP512)
        }
    }
    EACH8(OUT512)
}

/// A wide group's block (G a multiple of 16): the vector of outputs from channel c0 reads the
/// group's G inputs from channel `first`, each broadcast from memory against one weight vector.
#define SOURCE512(q) const float *p##q = tap_source(row, ix + (long)(q * s->sw), first, s, zero);
#define WIDE512(q) if (q < P) a##q = _mm512_fmadd_ps(wi, _mm512_set1_ps(p##q[i]), a##q);
AVX512 ALWAYS void wide_block_avx512(const float *image, const geometry *s, const float *wv, const float *zero, size_t first, long iy0,
                                     long ix0, const int P, __m512 *out) {
    EACH8(ZERO512)
    for (size_t ky = 0; ky < s->kh; ky++) {
        const long iy = iy0 + (long)(ky * s->dh);
        if (iy < 0 || iy >= (long)s->h) continue;
        const float *row = image + (size_t)iy * s->w * s->c;
        for (size_t kx = 0; kx < s->kw; kx++) {
            const float *wt = wv + (ky * s->kw + kx) * s->g * 16;
            const long ix = ix0 + (long)(kx * s->dw);
            EACH8(SOURCE512)
            // The same weight of the next vector of channels, so that its weights are in cache by
            // the time it starts (one vector's weights ahead: 9–18 KB for ResNeXt's wide groups).
            const size_t ahead = s->kh * s->kw * s->g * 16;
            for (size_t i = 0; i < s->g; i++) {
                _mm_prefetch((const char *)(wt + i * 16 + ahead), _MM_HINT_T0);
                const __m512 wi = _mm512_load_ps(wt + i * 16);
                EACH8(WIDE512)
            }
        }
    }
    EACH8(OUT512)
}

// G = 0: a wide group.
#define BLOCK_CASE512(p) case p: if (G) block_avx512(image, s, wv, zero, c0, iy0, ix0, p, G, rot, acc); \
                                 else wide_block_avx512(image, s, wv, zero, c0 - c0 % s->g, iy0, ix0, p, acc); break;

AVX512 ALWAYS void items_avx512(const float *x, const geometry *s, const float *packed, const float *zero, size_t first_item, size_t end_item,
                               const float *bias, const float *residual, float *y, int relu, const int G) {
    const size_t taps = s->kh * s->kw;
    __m512i rot[16] = {0};
    for (int r = 0; r < G; r++) {
        int lanes[16];
        for (int l = 0; l < 16; l++) lanes[l] = l - l % G + (l % G + r) % G;
        rot[r] = _mm512_loadu_si512(lanes);
    }
    for (size_t item = first_item; item < end_item; item++) {
        {
            size_t row, v;
            work_item(s, 16, item, &row, &v);
            const size_t n = row / s->oh, oy = row % s->oh;
            const float *image = x + n * s->h * s->w * s->c;
            const long iy0 = (long)(oy * s->sh) - s->pad_top;
            const size_t c0 = v * 16;
            const float *wv = packed + v * taps * s->g * 16;
            const __m512 b0 = bias ? _mm512_loadu_ps(bias + c0) : _mm512_setzero_ps();
            for (size_t ox = 0; ox < s->ow; ox += 8) {
                const size_t width = s->ow - ox < 8 ? s->ow - ox : 8;
                const long ix0 = (long)(ox * s->sw) - s->pad_left;
                __m512 acc[8];
                switch (width) {
                    BLOCK_CASE512(1) BLOCK_CASE512(2) BLOCK_CASE512(3) BLOCK_CASE512(4) BLOCK_CASE512(5) BLOCK_CASE512(6)
                    BLOCK_CASE512(7) BLOCK_CASE512(8)
                }
                for (size_t q = 0; q < width; q++) {
                    const size_t at = (row * s->ow + ox + q) * s->c + c0;
                    __m512 value = _mm512_add_ps(acc[q], b0);
                    if (residual) value = _mm512_add_ps(value, _mm512_loadu_ps(residual + at));
                    // max(v, 0) keeping a NaN, as Relu does elsewhere.
                    if (relu) value = _mm512_mask_max_ps(value, _mm512_cmp_ps_mask(value, value, _CMP_ORD_Q), value, _mm512_setzero_ps());
                    _mm512_storeu_ps(y + at, value);
                }
            }
        }
    }
}

AVX512 static void grouped_avx512(const float *x, const geometry *s, const float *packed, const float *zero, size_t first_item, size_t end_item,
                                  const float *bias, const float *residual, float *y, int relu) {
    switch (s->g) {
    case 1: items_avx512(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 1); break;
    case 2: items_avx512(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 2); break;
    case 4: items_avx512(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 4); break;
    case 8: items_avx512(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 8); break;
    default: items_avx512(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 0); break;
    }
}

// ---- AVX2 + FMA: 8 lanes -----------------------------------------------------------------------

#define AVX2 __attribute__((target("avx2,fma")))
#define ZERO256(q) __m256 a##q = _mm256_setzero_ps();
#define TAP256(q)                                                                                                  \
    if (q < P) {                                                                                                   \
        const __m256 xv = _mm256_loadu_ps(tap_source(row, ix + (long)(q * s->sw), c0, s, zero));                  \
        a##q = _mm256_fmadd_ps(wr[0], xv, a##q);                                                                   \
        _Pragma("GCC unroll 8") for (int r = 1; r < G; r++) a##q = _mm256_fmadd_ps(wr[r], _mm256_permutevar8x32_ps(xv, rot[r]), a##q); \
    }
#define OUT256(q) if (q < P) out[q] = a##q;

AVX2 ALWAYS void block_avx2(const float *image, const geometry *s, const float *wv, const float *zero, size_t c0, long iy0, long ix0,
                            const int P, const int G, const __m256i *rot, __m256 *out) {
    EACH8(ZERO256)
    for (size_t ky = 0; ky < s->kh; ky++) {
        const long iy = iy0 + (long)(ky * s->dh);
        if (iy < 0 || iy >= (long)s->h) continue;
        const float *row = image + (size_t)iy * s->w * s->c;
        for (size_t kx = 0; kx < s->kw; kx++) {
            const float *wt = wv + (ky * s->kw + kx) * (size_t)G * 8;
            __m256 wr[8];
            _Pragma("GCC unroll 8") for (int r = 0; r < G; r++) wr[r] = _mm256_load_ps(wt + r * 8);
            const long ix = ix0 + (long)(kx * s->dw);
            EACH8(TAP256)
        }
    }
    EACH8(OUT256)
}

#define SOURCE256(q) const float *p##q = tap_source(row, ix + (long)(q * s->sw), first, s, zero);
#define WIDE256(q) if (q < P) a##q = _mm256_fmadd_ps(wi, _mm256_broadcast_ss(p##q + i), a##q);
AVX2 ALWAYS void wide_block_avx2(const float *image, const geometry *s, const float *wv, const float *zero, size_t first, long iy0,
                                 long ix0, const int P, __m256 *out) {
    EACH8(ZERO256)
    for (size_t ky = 0; ky < s->kh; ky++) {
        const long iy = iy0 + (long)(ky * s->dh);
        if (iy < 0 || iy >= (long)s->h) continue;
        const float *row = image + (size_t)iy * s->w * s->c;
        for (size_t kx = 0; kx < s->kw; kx++) {
            const float *wt = wv + (ky * s->kw + kx) * s->g * 8;
            const long ix = ix0 + (long)(kx * s->dw);
            EACH8(SOURCE256)
            const size_t ahead = s->kh * s->kw * s->g * 8;  // the next vector's weight, as with AVX-512
            for (size_t i = 0; i < s->g; i++) {
                _mm_prefetch((const char *)(wt + i * 8 + ahead), _MM_HINT_T0);
                const __m256 wi = _mm256_load_ps(wt + i * 8);
                EACH8(WIDE256)
            }
        }
    }
    EACH8(OUT256)
}

#define BLOCK_CASE256(p) case p: if (G) block_avx2(image, s, wv, zero, c0, iy0, ix0, p, G, rot, acc); \
                                 else wide_block_avx2(image, s, wv, zero, c0 - c0 % s->g, iy0, ix0, p, acc); break;

AVX2 ALWAYS void items_avx2(const float *x, const geometry *s, const float *packed, const float *zero, size_t first_item, size_t end_item,
                           const float *bias, const float *residual, float *y, int relu, const int G) {
    const size_t taps = s->kh * s->kw;
    __m256i rot[8] = {0};
    for (int r = 0; r < G; r++) {
        int lanes[8];
        for (int l = 0; l < 8; l++) lanes[l] = l - l % G + (l % G + r) % G;
        rot[r] = _mm256_loadu_si256((const __m256i *)lanes);
    }
    for (size_t item = first_item; item < end_item; item++) {
        {
            size_t row, v;
            work_item(s, 8, item, &row, &v);
            const size_t n = row / s->oh, oy = row % s->oh;
            const float *image = x + n * s->h * s->w * s->c;
            const long iy0 = (long)(oy * s->sh) - s->pad_top;
            const size_t c0 = v * 8;
            const float *wv = packed + v * taps * s->g * 8;
            const __m256 b0 = bias ? _mm256_loadu_ps(bias + c0) : _mm256_setzero_ps();
            for (size_t ox = 0; ox < s->ow; ox += 8) {
                const size_t width = s->ow - ox < 8 ? s->ow - ox : 8;
                const long ix0 = (long)(ox * s->sw) - s->pad_left;
                __m256 acc[8];
                switch (width) {
                    BLOCK_CASE256(1) BLOCK_CASE256(2) BLOCK_CASE256(3) BLOCK_CASE256(4) BLOCK_CASE256(5) BLOCK_CASE256(6)
                    BLOCK_CASE256(7) BLOCK_CASE256(8)
                }
                for (size_t q = 0; q < width; q++) {
                    const size_t at = (row * s->ow + ox + q) * s->c + c0;
                    __m256 value = _mm256_add_ps(acc[q], b0);
                    if (residual) value = _mm256_add_ps(value, _mm256_loadu_ps(residual + at));
                    if (relu) value = _mm256_blendv_ps(_mm256_max_ps(value, _mm256_setzero_ps()), value, _mm256_cmp_ps(value, value, _CMP_UNORD_Q));
                    _mm256_storeu_ps(y + at, value);
                }
            }
        }
    }
}

AVX2 static void grouped_avx2(const float *x, const geometry *s, const float *packed, const float *zero, size_t first_item, size_t end_item,
                              const float *bias, const float *residual, float *y, int relu) {
    switch (s->g) {
    case 1: items_avx2(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 1); break;
    case 2: items_avx2(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 2); break;
    case 4: items_avx2(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 4); break;
    default: items_avx2(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 0); break;
    }
}

// ---- dispatch -----------------------------------------------------------------------------------

void cbam_vm_grouped_conv(const float *x, size_t n, size_t h, size_t w, size_t c, size_t group_width, size_t kh, size_t kw, size_t sh, size_t sw,
                          size_t dh, size_t dw, long pad_top, long pad_left, size_t oh, size_t ow, const float *packed, const float *zero,
                          size_t first_item, size_t end_item, const float *bias, const float *residual, float *y, int relu, cbam_vm_isa isa) {
    const geometry s = {n, h, w, c, group_width, kh, kw, sh, sw, dh, dw, oh, ow, pad_top, pad_left};
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: grouped_avx512(x, &s, packed, zero, first_item, end_item, bias, residual, y, relu); break;
    case CBAM_VM_AVX2: grouped_avx2(x, &s, packed, zero, first_item, end_item, bias, residual, y, relu); break;
    default: grouped_portable(x, &s, packed, first_item, end_item, bias, residual, y, relu); break;
    }
}
