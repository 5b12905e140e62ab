// A 3×3 stride-1 convolution as Winograd's F(2×2, 3×3): each 2×2 block of output pixels from a
// 4×4 block of inputs with 16 multiplications per input channel instead of 36.
//
// Written for the small maps at the end of a ResNet (7×7 and 14×14 at batch 1), where oneDNN's
// Winograd kernel loses to its direct one and the direct one reaches only about half of the
// core's peak (SE-ResNet-34's 512-channel 7×7 layers: 72–74 GFLOP/s, one thread). Per 4×4
// position ξ of the transformed tiles the products are one matrix product, T tiles × C inputs by
// C × M transformed weights, which is what the streamed kernel computes (streamed_conv.c): up to
// 16 tiles in registers, each block of output channels' weights read once in memory order. So
// this file only transforms: the weights once when the plan is built, the inputs before the 16
// products and the products into outputs after them (adding bias and residual, then Relu).
//
// With d the 4×4 inputs of a tile and g a 3×3 filter, the tile's 2×2 outputs are
// Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A (Lavin and Gray, 2015), with
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
//   Aᵀ = [1 1 1 0; 0 1 −1 −1].
//
// Layouts (all float32; T = N · ⌈oH/2⌉ · ⌈oW/2⌉ tiles, numbered image by image, row by row):
//   x       the input, channels last: [N, H, W, C]
//   packed  16 planes of cbam_vm_winograd_plane(m, c, isa) floats, plane ξ = the transformed
//           weights at position ξ packed as the streamed kernel reads them (blocks of
//           cbam_vm_streamed_lanes(isa) output channels, zero past the last channel)
//   v       16 planes of T · C floats, plane ξ = the transformed inputs at position ξ in the
//           streamed kernel's tiled column order (cbam_vm_streamed_tile_range cuts the T tiles)
//   prod    16 planes of T · M floats, tile t's output channel o at t · M + o
//   y       the output, channels last: [N, oH, oW, M]; residual lies like y
#include "CVectorMath.h"

#include <string.h>

#define ALWAYS static inline __attribute__((always_inline))

size_t cbam_vm_winograd_plane(size_t m, size_t c, cbam_vm_isa isa) {
    const size_t lanes = cbam_vm_streamed_lanes(isa);
    return (m + lanes - 1) / lanes * lanes * c;
}

void cbam_vm_winograd_pack_weights(const float *w, size_t m, size_t c, float *packed, cbam_vm_isa isa) {
    const size_t lanes = cbam_vm_streamed_lanes(isa), plane = cbam_vm_winograd_plane(m, c, isa);
    memset(packed, 0, 16 * plane * sizeof(float));
    for (size_t o = 0; o < m; o++)
        for (size_t ci = 0; ci < c; ci++) {
            const float *g = w + (o * c + ci) * 9;
            float t[4][3], u[16];
            for (int s = 0; s < 3; s++) {  // G g: rows
                t[0][s] = g[s];
                t[1][s] = 0.5f * (g[s] + g[3 + s] + g[6 + s]);
                t[2][s] = 0.5f * (g[s] - g[3 + s] + g[6 + s]);
                t[3][s] = g[6 + s];
            }
            for (int i = 0; i < 4; i++) {  // (G g) Gᵀ: columns
                u[i * 4 + 0] = t[i][0];
                u[i * 4 + 1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                u[i * 4 + 2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                u[i * 4 + 3] = t[i][2];
            }
            const size_t at = (o / lanes * c + ci) * lanes + o % lanes;
            for (int e = 0; e < 16; e++) packed[e * plane + at] = u[e];
        }
}

/// Bᵀ d B for channels c0 ..< c1 of every tile; `zeros` (C floats of 0) stands for the padding.
/// A column tile's 16 channels at a time: transformed pixel by pixel into `staged` (in L1), then
/// written channel by channel, each channel's `width` floats one run of memory. (Written straight
/// from the pixel loop, every store went to another cache line, and the transform of SE-ResNet-34's
/// 512-channel 7×7 layer took 0.4 ms beside its products' 2.3; staged, 0.07.)
ALWAYS void input_transform(const float *x, size_t h, size_t w, size_t c, size_t tiles_y, size_t tiles_x, size_t tiles, long pad_top,
                            long pad_left, size_t c0, size_t c1, const float *zeros, float *v, cbam_vm_isa isa) {
    enum { CHUNK = 16, MAX_TILE = 16 };
    const size_t plane = tiles * c;
    float staged[16][MAX_TILE][CHUNK] __attribute__((aligned(64)));
    const float *s[MAX_TILE][16];
    for (size_t g = 0; g < cbam_vm_streamed_tile_count(tiles, isa); g++) {
        size_t start, width;
        cbam_vm_streamed_tile_range(tiles, g, isa, &start, &width);
        for (size_t q = 0; q < width; q++) {  // each tile's 16 input pixels (zeros in the padding)
            const size_t t = start + q, image = t / (tiles_y * tiles_x), rest = t % (tiles_y * tiles_x);
            const long y0 = (long)(rest / tiles_x) * 2 - pad_top, x0 = (long)(rest % tiles_x) * 2 - pad_left;
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    const long iy = y0 + i, ix = x0 + j;
                    s[q][i * 4 + j] = iy >= 0 && iy < (long)h && ix >= 0 && ix < (long)w ? x + ((image * h + (size_t)iy) * w + (size_t)ix) * c : zeros;
                }
        }
        for (size_t first = c0; first < c1; first += CHUNK) {
            const size_t count = c1 - first < CHUNK ? c1 - first : CHUNK;
            for (size_t q = 0; q < width; q++) {
                for (size_t l = 0; l < count; l++) {
                    const size_t ch = first + l;
                    float r[4][4];
                    for (int j = 0; j < 4; j++) {  // Bᵀ d: rows
                        const float d0 = s[q][j][ch], d1 = s[q][4 + j][ch], d2 = s[q][8 + j][ch], d3 = s[q][12 + j][ch];
                        r[0][j] = d0 - d2;
                        r[1][j] = d1 + d2;
                        r[2][j] = d2 - d1;
                        r[3][j] = d1 - d3;
                    }
                    for (int i = 0; i < 4; i++) {  // (Bᵀ d) B: columns
                        staged[i * 4 + 0][q][l] = r[i][0] - r[i][2];
                        staged[i * 4 + 1][q][l] = r[i][1] + r[i][2];
                        staged[i * 4 + 2][q][l] = r[i][2] - r[i][1];
                        staged[i * 4 + 3][q][l] = r[i][1] - r[i][3];
                    }
                }
            }
            for (int e = 0; e < 16; e++)
                for (size_t l = 0; l < count; l++) {
                    float *dst = v + e * plane + start * c + (first + l) * width;
                    for (size_t q = 0; q < width; q++) dst[q] = staged[e][q][l];
                }
        }
    }
}

/// Aᵀ m A + bias + residual, then Relu (keeping NaN), for tiles t0 ..< t1. An output past the
/// map's edge goes to `sink` (M floats) and reads its residual from `zeros` (M floats of 0), so
/// the channel loop has no branch.
ALWAYS void output_transform(const float *prod, size_t tiles, size_t m, size_t tiles_y, size_t tiles_x, size_t oh, size_t ow, size_t t0,
                             size_t t1, const float *bias, const float *residual, const float *zeros, float *sink, float *y, int relu) {
    const size_t plane = tiles * m;
    for (size_t t = t0; t < t1; t++) {
        const size_t image = t / (tiles_y * tiles_x), rest = t % (tiles_y * tiles_x);
        const size_t y0 = rest / tiles_x * 2, x0 = rest % tiles_x * 2;
        float *out[4];
        const float *add[4];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                const int k = i * 2 + j;
                const int inside = y0 + i < oh && x0 + j < ow;
                const size_t at = ((image * oh + y0 + i) * ow + x0 + j) * m;
                out[k] = inside ? y + at : sink;
                add[k] = inside && residual ? residual + at : zeros;
            }
        const float *p = prod + t * m;
        for (size_t o = 0; o < m; o++) {
            float s[2][4];
            for (int j = 0; j < 4; j++) {  // Aᵀ m: rows
                const float m0 = p[j * plane + o], m1 = p[(4 + j) * plane + o], m2 = p[(8 + j) * plane + o], m3 = p[(12 + j) * plane + o];
                s[0][j] = m0 + m1 + m2;
                s[1][j] = m1 - m2 - m3;
            }
            const float b = bias ? bias[o] : 0.0f;
            for (int i = 0; i < 2; i++) {  // (Aᵀ m) A: columns
                float r0 = s[i][0] + s[i][1] + s[i][2] + b + add[i * 2][o];
                float r1 = s[i][1] - s[i][2] - s[i][3] + b + add[i * 2 + 1][o];
                if (relu) {
                    r0 = r0 > 0.0f || r0 != r0 ? r0 : 0.0f;
                    r1 = r1 > 0.0f || r1 != r1 ? r1 : 0.0f;
                }
                out[i * 2][o] = r0;
                out[i * 2 + 1][o] = r1;
            }
        }
    }
}

// The same loops compiled for each instruction set (the compiler vectorizes the channel loops).
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))
#define INPUT_ARGS x, h, w, c, tiles_y, tiles_x, tiles, pad_top, pad_left, c0, c1, zeros, v
#define OUTPUT_ARGS prod, tiles, m, tiles_y, tiles_x, oh, ow, t0, t1, bias, residual, zeros, sink, y, relu

AVX512 static void input_avx512(const float *x, size_t h, size_t w, size_t c, size_t tiles_y, size_t tiles_x, size_t tiles, long pad_top,
                                long pad_left, size_t c0, size_t c1, const float *zeros, float *v) {
    input_transform(INPUT_ARGS, CBAM_VM_AVX512);
}
AVX2 static void input_avx2(const float *x, size_t h, size_t w, size_t c, size_t tiles_y, size_t tiles_x, size_t tiles, long pad_top,
                            long pad_left, size_t c0, size_t c1, const float *zeros, float *v) {
    input_transform(INPUT_ARGS, CBAM_VM_AVX2);
}
static void input_portable(const float *x, size_t h, size_t w, size_t c, size_t tiles_y, size_t tiles_x, size_t tiles, long pad_top,
                           long pad_left, size_t c0, size_t c1, const float *zeros, float *v) {
    input_transform(INPUT_ARGS, CBAM_VM_PORTABLE);
}

void cbam_vm_winograd_input(const float *x, size_t h, size_t w, size_t c, size_t tiles_y, size_t tiles_x, size_t tiles, long pad_top,
                            long pad_left, size_t c0, size_t c1, const float *zeros, float *v, cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: input_avx512(INPUT_ARGS); break;
    case CBAM_VM_AVX2: input_avx2(INPUT_ARGS); break;
    default: input_portable(INPUT_ARGS); break;
    }
}

AVX512 static void output_avx512(const float *prod, size_t tiles, size_t m, size_t tiles_y, size_t tiles_x, size_t oh, size_t ow, size_t t0,
                                 size_t t1, const float *bias, const float *residual, const float *zeros, float *sink, float *y, int relu) {
    output_transform(OUTPUT_ARGS);
}
AVX2 static void output_avx2(const float *prod, size_t tiles, size_t m, size_t tiles_y, size_t tiles_x, size_t oh, size_t ow, size_t t0,
                             size_t t1, const float *bias, const float *residual, const float *zeros, float *sink, float *y, int relu) {
    output_transform(OUTPUT_ARGS);
}

void cbam_vm_winograd_output(const float *prod, size_t tiles, size_t m, size_t tiles_y, size_t tiles_x, size_t oh, size_t ow, size_t t0,
                             size_t t1, const float *bias, const float *residual, const float *zeros, float *sink, float *y, int relu,
                             cbam_vm_isa isa) {
    switch (cbam_vm_resolve(isa)) {
    case CBAM_VM_AVX512: output_avx512(OUTPUT_ARGS); break;
    case CBAM_VM_AVX2: output_avx2(OUTPUT_ARGS); break;
    default: output_transform(OUTPUT_ARGS); break;
    }
}
