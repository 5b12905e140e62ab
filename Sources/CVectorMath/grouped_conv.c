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

// ---- the vector variants: grouped_conv_isa.h once per instruction set ----------------------------

// The accumulators as named variables (a0 … a7), each step under `q < P`: with P a constant after
// inlining, the compiler keeps exactly P of them in registers.
#define EACH8(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7)

// AVX-512F: 16 lanes.
#define ISA_TARGET __attribute__((target("avx512f")))
#define ISA_NAME(f) f##_avx512
#define LANES 16
#define VEC __m512
#define IVEC __m512i
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_load_ps(p)
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTOREU(p, v) _mm512_storeu_ps(p, v)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VPERM(x, index) _mm512_permutexvar_ps(index, x)
#define VBROADCAST(p) _mm512_set1_ps(*(p))
#define VRELU(v) _mm512_mask_max_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v, _mm512_setzero_ps())
#define ILOADU(p) _mm512_loadu_si512(p)
#include "grouped_conv_isa.h"
#undef ISA_TARGET
#undef ISA_NAME
#undef LANES
#undef VEC
#undef IVEC
#undef VZERO
#undef VLOAD
#undef VLOADU
#undef VSTOREU
#undef VADD
#undef VFMA
#undef VPERM
#undef VBROADCAST
#undef VRELU
#undef ILOADU

// AVX2 + FMA: 8 lanes.
#define ISA_TARGET __attribute__((target("avx2,fma")))
#define ISA_NAME(f) f##_avx2
#define LANES 8
#define VEC __m256
#define IVEC __m256i
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_load_ps(p)
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps(p, v)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VPERM(x, index) _mm256_permutevar8x32_ps(x, index)
#define VBROADCAST(p) _mm256_broadcast_ss(p)
#define VRELU(v) _mm256_blendv_ps(_mm256_max_ps(v, _mm256_setzero_ps()), v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q))
#define ILOADU(p) _mm256_loadu_si256((const __m256i *)(p))
#include "grouped_conv_isa.h"

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
