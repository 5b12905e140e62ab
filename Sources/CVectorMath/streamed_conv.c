// A convolution over few output pixels with many weights, as one pass over its weights.
//
// At batch 1 the last layers of VGG (512 → 512 channels, 3×3, on 4×4 and 2×2 maps) and of
// ResNeXt-50 (1×1 convolutions of 1024–2048 channels on 4×4 maps) use each weight only for the
// 4–16 output pixels: the work is reading the weights (8–9.4 MB a layer), and oneDNN's direct
// kernels read them at about half of what one core can stream here, because they do not look
// far enough ahead. This kernel keeps a tile of up to 16 pixels × one block of output channels in
// registers, runs through that block's weights once, in the order they lie in memory, and asks
// for the lines 4 KB ahead. (More pixels run as several tiles, the later ones reading the block's
// weights from L2; the plan uses it up to 32 pixels, 128 for 1×1 layers, see
// PlannedConvolution+Streamed.swift.)
//
// Layouts (all float32):
//   cols    the unfolded inputs, `pixels` × `k`, in cbam_vm_streamed_tile_count tiles of at most
//           cbam_vm_streamed_tile(isa) pixels, as even as they come (cbam_vm_streamed_tile_range):
//           tile t (pixels start ..< start + width) starts at start·k and holds element (j, q) at
//           j·width + q, so one k step reads `width` neighbouring floats.
//   packed  the weights in blocks of L = cbam_vm_streamed_lanes(isa) output channels:
//           packed[(b·k + j)·L + l] is the weight of output channel b·L + l for unfolded index j
//           (zero past the last channel).
//   y       output pixel p, channel o at y[p·ldy + o] (channels last); residual lies like y.
#include "CVectorMath.h"

#include <immintrin.h>

/// How far ahead of the weight row in use the kernels ask for lines (bytes): 64 k steps of the
/// AVX-512 loop. Timed alone on VGG's 4×4 layer (16 pixels, 9.4 MB of weights, eight copies
/// taking turns so that they come from memory): 1.18–1.24 ms without asking ahead, 0.95–0.98 at
/// 1 KB, 0.62–0.67 at 4 KB, 0.67–0.82 at 8 KB.
#ifndef STREAM_AHEAD
#define STREAM_AHEAD 4096
#endif

/// And how far ahead they ask for lines into L2 (bytes), so that more lines are on their way than
/// the L1 requests alone keep: timed alone on an AMD EPYC (Zen 4), eight copies of the weights
/// taking turns, 16 pixels: ResNeXt-50's last 1×1 layers (8 MB) 0.68–0.76 ms → 0.61–0.68, VGG's
/// 4×4 layer (9.4 MB) 0.87 → 0.70, and with 4 pixels 0.46 → 0.26–0.31; weights in cache unchanged
/// (0.57). 8–32 KB gave the same; 64 KB less.
#ifndef STREAM_FAR_AHEAD
#define STREAM_FAR_AHEAD 16384
#endif

/// Tile t of `pixels` cut into tiles of at most `tile`, as even as they come: the first
/// pixels % tiles tiles one pixel wider. Each tile reads the block's weights once more (from L2
/// after the first), so 49 pixels run as 13, 12, 12, 12 rather than 16, 16, 16 and a tile of 1.
static inline size_t tile_count(size_t pixels, size_t tile) { return (pixels + tile - 1) / tile; }
static inline void tile_range(size_t pixels, size_t tile, size_t t, size_t *start, size_t *width) {
    const size_t tiles = tile_count(pixels, tile), base = pixels / tiles, wider = pixels % tiles;
    *start = t * base + (t < wider ? t : wider);
    *width = base + (t < wider ? 1 : 0);
}

// ---- plain C: 8 lanes, tiles of 4 -------------------------------------------------------------

static void streamed_portable(const float *cols, size_t pixels, size_t k, const float *packed, size_t m, size_t first_block,
                             size_t end_block, const float *bias, const float *residual, float *y, size_t ldy, int relu) {
    const size_t lanes = 8, tile = 4;
    for (size_t b = first_block; b < end_block; b++) {
        const float *w = packed + b * k * lanes;
        for (size_t t = 0; t < tile_count(pixels, tile); t++) {
            size_t start, width;
            tile_range(pixels, tile, t, &start, &width);
            const float *c = cols + start * k;
            float acc[4][8] = {{0}};
            for (size_t j = 0; j < k; j++)
                for (size_t q = 0; q < width; q++)
                    for (size_t l = 0; l < lanes; l++) acc[q][l] += c[j * width + q] * w[j * lanes + l];
            for (size_t q = 0; q < width; q++)
                for (size_t l = 0; l < lanes && b * lanes + l < m; l++) {
                    const size_t o = b * lanes + l, at = (start + q) * ldy + o;
                    float v = acc[q][l] + (bias ? bias[o] : 0.0f);
                    if (residual) v += residual[at];
                    y[at] = relu && !(v > 0.0f) && v == v ? 0.0f : v;
                }
        }
    }
}

// ---- AVX2 + FMA: 8 lanes, tiles of 12 ---------------------------------------------------------

#define AVX2 __attribute__((target("avx2,fma")))

#define EACH12(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11)
#define ZERO256(q) __m256 a##q = _mm256_setzero_ps();
#define FMA256(q) if (q < width) a##q = _mm256_fmadd_ps(_mm256_broadcast_ss(cj + q), wv, a##q);
#define OUT256(q) if (q < width) out[q] = a##q;

AVX2 static inline __attribute__((always_inline)) void streamed_tile_avx2(const float *c, size_t k, const float *w, const int width,
                                                                          __m256 *out) {
    EACH12(ZERO256)
    for (size_t j = 0; j < k; j++) {
        _mm_prefetch((const char *)(w + j * 8) + STREAM_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)(w + j * 8) + STREAM_FAR_AHEAD, _MM_HINT_T1);
        const __m256 wv = _mm256_load_ps(w + j * 8);
        const float *cj = c + j * width;
        EACH12(FMA256)
    }
    EACH12(OUT256)
}

#define TILE_CASE_AVX2(n) case n: streamed_tile_avx2(c, k, w, n, acc); break;

AVX2 static void streamed_avx2(const float *cols, size_t pixels, size_t k, const float *packed, size_t m, size_t first_block,
                               size_t end_block, const float *bias, const float *residual, float *y, size_t ldy, int relu) {
    const size_t lanes = 8, tile = 12;
    for (size_t b = first_block; b < end_block; b++) {
        const float *w = packed + b * k * lanes;
        const size_t o0 = b * lanes, valid = m - o0 < lanes ? m - o0 : lanes;
        // The last block's channels past m through a mask.
        const __m256i store = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 b0 = bias ? _mm256_maskload_ps(bias + o0, store) : _mm256_setzero_ps();
        for (size_t t = 0; t < tile_count(pixels, tile); t++) {
            size_t start, width;
            tile_range(pixels, tile, t, &start, &width);
            const float *c = cols + start * k;
            __m256 acc[12];
            switch (width) {
                TILE_CASE_AVX2(1) TILE_CASE_AVX2(2) TILE_CASE_AVX2(3) TILE_CASE_AVX2(4) TILE_CASE_AVX2(5) TILE_CASE_AVX2(6)
                TILE_CASE_AVX2(7) TILE_CASE_AVX2(8) TILE_CASE_AVX2(9) TILE_CASE_AVX2(10) TILE_CASE_AVX2(11) default: streamed_tile_avx2(c, k, w, 12, acc); break;
            }
            for (size_t q = 0; q < width; q++) {
                const size_t at = (start + q) * ldy + o0;
                __m256 v = _mm256_add_ps(acc[q], b0);
                if (residual) v = _mm256_add_ps(v, _mm256_maskload_ps(residual + at, store));
                if (relu) v = _mm256_blendv_ps(_mm256_max_ps(v, _mm256_setzero_ps()), v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
                _mm256_maskstore_ps(y + at, store, v);
            }
        }
    }
}

// ---- AVX-512F: 16 lanes, tiles of 16 ----------------------------------------------------------

#define AVX512 __attribute__((target("avx512f")))

// The accumulators as named variables, each step under `q < width`: with `width` a constant
// after inlining, the compiler keeps exactly `width` of them in registers (an array indexed in a
// loop stayed in memory at -O2).
#define EACH16(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)
#define ZERO512(q) __m512 a##q = _mm512_setzero_ps();
#define FMA512(q) if (q < width) a##q = _mm512_fmadd_ps(_mm512_set1_ps(cj[q]), wv, a##q);
#define OUT512(q) if (q < width) out[q] = a##q;

AVX512 static inline __attribute__((always_inline)) void streamed_tile_avx512(const float *c, size_t k, const float *w, const int width,
                                                                              __m512 *out) {
    EACH16(ZERO512)
    for (size_t j = 0; j < k; j++) {
        _mm_prefetch((const char *)(w + j * 16) + STREAM_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)(w + j * 16) + STREAM_FAR_AHEAD, _MM_HINT_T1);
        const __m512 wv = _mm512_load_ps(w + j * 16);
        const float *cj = c + j * width;
        EACH16(FMA512)
    }
    EACH16(OUT512)
}

#define TILE_CASE_AVX512(n) case n: streamed_tile_avx512(c, k, w, n, acc); break;

AVX512 static void streamed_avx512(const float *cols, size_t pixels, size_t k, const float *packed, size_t m, size_t first_block,
                                   size_t end_block, const float *bias, const float *residual, float *y, size_t ldy, int relu) {
    const size_t lanes = 16, tile = 16;
    for (size_t b = first_block; b < end_block; b++) {
        const float *w = packed + b * k * lanes;
        const size_t o0 = b * lanes, valid = m - o0 < lanes ? m - o0 : lanes;
        const __mmask16 store = (__mmask16)((1u << valid) - 1u);
        const __m512 b0 = bias ? _mm512_maskz_loadu_ps(store, bias + o0) : _mm512_setzero_ps();
        for (size_t t = 0; t < tile_count(pixels, tile); t++) {
            size_t start, width;
            tile_range(pixels, tile, t, &start, &width);
            const float *c = cols + start * k;
            __m512 acc[16];
            switch (width) {
                TILE_CASE_AVX512(1) TILE_CASE_AVX512(2) TILE_CASE_AVX512(3) TILE_CASE_AVX512(4) TILE_CASE_AVX512(5)
                TILE_CASE_AVX512(6) TILE_CASE_AVX512(7) TILE_CASE_AVX512(8) TILE_CASE_AVX512(9) TILE_CASE_AVX512(10)
                TILE_CASE_AVX512(11) TILE_CASE_AVX512(12) TILE_CASE_AVX512(13) TILE_CASE_AVX512(14) TILE_CASE_AVX512(15)
                default: streamed_tile_avx512(c, k, w, 16, acc); break;
            }
            for (size_t q = 0; q < width; q++) {
                const size_t at = (start + q) * ldy + o0;
                __m512 v = _mm512_add_ps(acc[q], b0);
                if (residual) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(store, residual + at));
                // max(v, 0) keeping a NaN, as Relu does elsewhere.
                if (relu) v = _mm512_mask_max_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v, _mm512_setzero_ps());
                _mm512_mask_storeu_ps(y + at, store, v);
            }
        }
    }
}

// ---- unfolding a tile's inputs ------------------------------------------------------------------

static void unfold_tap_portable(const float *const *rows, size_t width, size_t c, float *target, size_t first) {
    for (size_t q = 0; q < width; q++) {
        const float *row = rows[q];
        for (size_t ci = first; ci < c; ci++) target[ci * width + q] = row ? row[ci] : 0.0f;
    }
}

/// rows[0..15] (16 channels each) into columns: after it, r[j] holds channel j of the 16 rows.
/// Two rounds within 128-bit lanes (unpack, then shuffle) and two across them.
AVX512 static inline void transpose16_avx512(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // r[4i + j]: in lane L, rows 4i ..< 4i + 4 at channel 4L + j.
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD);
    }
}

AVX512 static void unfold_tap_avx512(const float *const *rows, size_t width, size_t c, float *target) {
    size_t ci = 0;
    if (width == 16) {
        for (; ci + 16 <= c; ci += 16) {
            __m512 r[16];
            for (int q = 0; q < 16; q++) r[q] = rows[q] ? _mm512_loadu_ps(rows[q] + ci) : _mm512_setzero_ps();
            transpose16_avx512(r);
            for (int j = 0; j < 16; j++) _mm512_storeu_ps(target + (ci + j) * 16, r[j]);
        }
    }
    unfold_tap_portable(rows, width, c, target, ci);
}

// ---- dispatch -----------------------------------------------------------------------------------

size_t cbam_vm_streamed_lanes(cbam_vm_isa isa) { return cbam_vm_resolve(isa) == CBAM_VM_AVX512 ? 16 : 8; }

size_t cbam_vm_streamed_tile(cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: return 16;
    case CBAM_VM_AVX2: return 12;
    default: return 4;
    }
}

size_t cbam_vm_streamed_tile_count(size_t pixels, cbam_vm_isa isa) { return tile_count(pixels, cbam_vm_streamed_tile(isa)); }

void cbam_vm_streamed_tile_range(size_t pixels, size_t t, cbam_vm_isa isa, size_t *start, size_t *width) {
    tile_range(pixels, cbam_vm_streamed_tile(isa), t, start, width);
}

void cbam_vm_streamed_conv(const float *cols, size_t pixels, size_t k, const float *packed, size_t m, size_t first_block,
                           size_t end_block, const float *bias, const float *residual, float *y, size_t ldy, int relu, cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: streamed_avx512(cols, pixels, k, packed, m, first_block, end_block, bias, residual, y, ldy, relu); break;
    case CBAM_VM_AVX2: streamed_avx2(cols, pixels, k, packed, m, first_block, end_block, bias, residual, y, ldy, relu); break;
    default: streamed_portable(cols, pixels, k, packed, m, first_block, end_block, bias, residual, y, ldy, relu); break;
    }
}

void cbam_vm_streamed_unfold_tap(const float *const *rows, size_t width, size_t c, float *target, cbam_vm_isa isa) {
    if (cbam_vm_resolve(isa) == CBAM_VM_AVX512) unfold_tap_avx512(rows, width, c, target);
    else unfold_tap_portable(rows, width, c, target, 0);
}
