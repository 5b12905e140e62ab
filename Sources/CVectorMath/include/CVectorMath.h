// Elementwise float32 math chosen at run time by the CPU's features.
//
// Swift compiles for baseline x86-64 (SSE2), and the project never builds for the host's own CPU,
// so the hot transcendental loops live here: one body per instruction set (AVX-512F, AVX2+FMA,
// and plain C for anything else), picked once per process from cpuid. Every variant computes
// the same polynomial as VectorMath.exp in Swift (Cody–Waite reduction, Cephes' degree-5 expf
// coefficients, 2ⁿ built in the exponent bits), so they agree to a few ulp; VectorMathTests
// holds each variant against the Swift reference.
#ifndef CBAM_VECTOR_MATH_H
#define CBAM_VECTOR_MATH_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The instruction sets a variant can be forced to (for the differential tests).
typedef enum {
    CBAM_VM_AUTO = 0,      ///< the best the CPU has
    CBAM_VM_PORTABLE = 1,  ///< plain C, whatever the compiler makes of it for baseline x86-64
    CBAM_VM_AVX2 = 2,      ///< AVX2 + FMA, 8 lanes
    CBAM_VM_AVX512 = 3,    ///< AVX-512F, 16 lanes
} cbam_vm_isa;

/// The variant `CBAM_VM_AUTO` resolves to: the best this CPU has, or less where the environment
/// variable CBAM_MAX_ISA (read once) caps it: `avx2` or `portable` (any case; other values, and
/// `avx512`, leave it at the CPU's best). The cap holds for every variant asked for, as
/// DNNL_MAX_CPU_ISA does for oneDNN, so AVX2 paths can run on an AVX-512 machine.
cbam_vm_isa cbam_vm_best_isa(void);

/// The best variant this CPU has, whatever CBAM_MAX_ISA says.
cbam_vm_isa cbam_vm_cpu_isa(void);

/// The variant `wanted` runs as: `CBAM_VM_AUTO`, or a set the CPU lacks, as the best it has.
cbam_vm_isa cbam_vm_resolve(cbam_vm_isa wanted);

/// y[i] = eˣ⁽ⁱ⁾ for i < count. Past float32's range: +∞ above 88.72, 0 below −87.34; NaN stays NaN.
/// `y` may equal `x`. An `isa` the CPU lacks falls back to the best it has.
void cbam_vm_exp(const float *x, float *y, size_t count, cbam_vm_isa isa);

/// y[i] = 1 / (1 + e^−x⁽ⁱ⁾) for i < count, with the same exp. `y` may equal `x`.
void cbam_vm_sigmoid(const float *x, float *y, size_t count, cbam_vm_isa isa);

/// y[i] = e^(x[i] − shift[i]) when shift_step is 1, e^(x[i] − shift[0]) when it is 0 (softmax's
/// numerator). `y` may equal `x`.
void cbam_vm_exp_shifted(const float *x, const float *shift, size_t shift_step, float *y, size_t count, cbam_vm_isa isa);

/// y[i] = Gelu(x[i] + bias[i]) for i < count (bias NULL: none): `x/2 · (1 + erf(x/√2))`, erf by
/// Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7), or with `tanh` `x/2 · (1 + tanh(√(2/π)(x + 0.044715 x³)))`,
/// tanh(u) = 1 − 2/(e^{2u} + 1), both with cbam_vm_exp's exp. Within 1e-6 · max(1, |x|) of the
/// formula in double precision; NaN stays NaN, −∞ gives NaN as the formula does. `y` may equal `x`.
void cbam_vm_gelu(const float *x, const float *bias, float *y, size_t count, int tanh, cbam_vm_isa isa);

/// The geometry of a 2-D window pool over one channels-last block: X holds `h·w` rows of `block`
/// floats (pixel (y, x) at row y·w + x), Y `oh·ow` such rows. Per output row `oy`, the window's
/// taps inside the image are `row_first[oy] ..< row_first[oy] + row_count[oy]` (input row
/// oy·sh − pad_top + tap·dh); the same for columns. An average divides by `divisor_rows[oy] ·
/// divisor_columns[ox]` (count_include_pad) or, when those are NULL, by the taps inside.
typedef struct {
    int h, w, oh, ow, sh, sw, dh, dw, pad_top, pad_left;
    const int *row_first, *row_count, *column_first, *column_count;
    const int *divisor_rows, *divisor_columns;
} cbam_vm_pool2d_geometry;

/// MaxPool (`average` 0; a NaN anywhere in a window gives NaN) or AveragePool (`average` 1; a
/// window with no taps gives 0) of one channels-last block, output rows `first_row ..< end_row`
/// (so that workers can split one block).
void cbam_vm_pool2d(const float *x, float *y, size_t block, const cbam_vm_pool2d_geometry *geometry,
                    int first_row, int end_row, int average, cbam_vm_isa isa);

/// y[r·m + o] = Σ_k w[o·inner + k] · x[r·inner + k] for rows r < `rows` and outputs
/// `first_output ≤ o < end_output`: a small fully connected layer (a channel gate's MLP, W
/// `[m, inner]` as ONNX's Gemm with transB = 1 stores it) applied to a few pooled vectors at once.
/// Each weight row is read from memory once for all the rows (four rows of W at a time, held in
/// L1 while every x row passes), so a wide gate's weights are streamed once per run. The sum
/// runs in 16 (AVX-512), 8 (AVX2) or 1 (plain C) partial sums, then adds them up.
void cbam_vm_linear_rows(const float *w, size_t m, size_t inner, const float *x, size_t rows, float *y,
                         size_t first_output, size_t end_output, cbam_vm_isa isa);

// ---- the CBAM gates' passes over a carried 4-D tensor ------------------------------------------
// The layouts of Sources/CBAMRuntime/Plan/PlannedCarried.swift: one item of [N, C, H, W] is `blocks`
// blocks of `pixels` rows of `block` floats (NHWC: one block of all C; nChw16c / nChw8c: C/16 or C/8
// blocks), `block` a multiple of 8. Every variant computes what the Swift loops of CarriedLoops do.

/// The channel gate's first pass for `lanes` (a multiple of 8, at most 64) channels of one block:
/// `x` points at the first of them in pixel 0, rows `block` floats apart. means[j] = Σ_p x / pixels,
/// maxima[j] = max_p x (NaN if any is NaN), each summed pixel by pixel in order; either may be NULL.
void cbam_vm_channel_stats(const float *x, size_t pixels, size_t block, size_t lanes, float *means, float *maxima, cbam_vm_isa isa);

/// The spatial gate's first pass over the pixels `first_pixel ..< end_pixel` of one item (`x` its
/// first block): per pixel the max (NaN if any is NaN) and the mean over all `block · blocks`
/// channels of x, or of x · channel_scales[c] when that is not NULL.
void cbam_vm_pixel_stats(const float *x, size_t pixels, size_t block, size_t blocks, size_t first_pixel, size_t end_pixel,
                         const float *channel_scales, float *maxima, float *means, cbam_vm_isa isa);

/// The spatial gate's second pass over the pixels `first_pixel ..< end_pixel` of one item:
/// y = ((x · channel_scales[c]) · gate[p]) (+ residual), then max(·, 0) when `relu`, rounded as
/// those steps in that order (no fused multiply-add). channel_scales and residual may be NULL;
/// residual lies like x and y; y may be x.
void cbam_vm_scale_pixels(const float *x, float *y, const float *residual, size_t pixels, size_t block, size_t blocks,
                          size_t first_pixel, size_t end_pixel, const float *gate, const float *channel_scales, int relu, cbam_vm_isa isa);

/// The channel gate's second pass over `lanes` (a multiple of 8) channels of one block, laid out
/// as for cbam_vm_channel_stats: y = x · scales[j] (+ residual), then max(·, 0) when `relu`, rounded
/// in that order. residual may be NULL and lies like x and y; y may be x.
void cbam_vm_scale_channels(const float *x, float *y, const float *residual, size_t pixels, size_t block, size_t lanes,
                            const float *scales, int relu, cbam_vm_isa isa);

// ---- a convolution over few output pixels (streamed_conv.c) ------------------------------------

/// Output channels per packed weight block for `isa`'s variant: 16 (AVX-512) or 8.
size_t cbam_vm_streamed_lanes(cbam_vm_isa isa);

/// Pixels per tile of the unfolded inputs for `isa`'s variant at most: 16 (AVX-512), 12 (AVX2) or 4.
size_t cbam_vm_streamed_tile(cbam_vm_isa isa);

/// Tiles `pixels` are cut into for `isa`'s variant, and tile t's first pixel and width: tiles of
/// at most cbam_vm_streamed_tile(isa) pixels, as even as they come (the first pixels % tiles one wider).
size_t cbam_vm_streamed_tile_count(size_t pixels, cbam_vm_isa isa);
void cbam_vm_streamed_tile_range(size_t pixels, size_t t, cbam_vm_isa isa, size_t *start, size_t *width);

/// One tap of one tile of the unfolded inputs: target[ci·width + q] = rows[q][ci] for ci < c and
/// q < width, 0 where rows[q] is NULL (the tap lies in the padding). With AVX-512 and a tile of 16,
/// 16 channels at a time as a 16 × 16 transpose in registers.
void cbam_vm_streamed_unfold_tap(const float *const *rows, size_t width, size_t c, float *target, cbam_vm_isa isa);

/// y[p·ldy + o] = act(bias[o] + Σ_j cols(p, j) · W(o, j) + residual[p·ldy + o]) for every pixel
/// p < `pixels` and the output channels of packed blocks `first_block ..< end_block` (channels
/// below `m`), act = max(·, 0) keeping NaN when `relu`. `cols` and `packed` as streamed_conv.c
/// describes them (tiles as cbam_vm_streamed_tile_range cuts them; blocks of cbam_vm_streamed_lanes
/// channels, each block's weights read once, in memory order). bias and residual may be NULL.
void cbam_vm_streamed_conv(const float *cols, size_t pixels, size_t k, const float *packed, size_t m, size_t first_block,
                           size_t end_block, const float *bias, const float *residual, float *y, size_t ldy, int relu, cbam_vm_isa isa);

// ---- a 3×3 stride-1 convolution as Winograd F(2×2, 3×3) (winograd_conv.c) ---------------------

/// Floats of one position's plane of packed transformed weights: M rounded up to the streamed
/// kernel's lanes, times C.
size_t cbam_vm_winograd_plane(size_t m, size_t c, cbam_vm_isa isa);

/// W [M, C, 3, 3] into 16 planes of G g Gᵀ packed as the streamed kernel reads them
/// (16 · cbam_vm_winograd_plane floats; winograd_conv.c describes the layouts).
void cbam_vm_winograd_pack_weights(const float *w, size_t m, size_t c, float *packed, cbam_vm_isa isa);

/// Input channels c0 ..< c1 of all `tiles` tiles (N · tiles_y · tiles_x) of channels-last x
/// [N, H, W, C] as Bᵀ d B into v (16 planes of tiles · C floats, in the streamed kernel's column
/// order); inputs in the padding read from `zeros` (C floats of 0).
void cbam_vm_winograd_input(const float *x, size_t h, size_t w, size_t c, size_t tiles_y, size_t tiles_x, size_t tiles, long pad_top,
                            long pad_left, size_t c0, size_t c1, const float *zeros, float *v, cbam_vm_isa isa);

/// Tiles t0 ..< t1 of the products (16 planes of tiles · M floats) as Aᵀ m A + bias + residual,
/// then Relu keeping NaN when `relu`, into channels-last y [N, oH, oW, M] (residual alike; bias
/// and residual may be NULL). `zeros` and `sink`: M floats each, zeros left 0.
void cbam_vm_winograd_output(const float *prod, size_t tiles, size_t m, size_t tiles_y, size_t tiles_x, size_t oh, size_t ow, size_t t0,
                             size_t t1, const float *bias, const float *residual, const float *zeros, float *sink, float *y, int relu,
                             cbam_vm_isa isa);

// ---- a grouped convolution, as many outputs as inputs per group (grouped_conv.c) --------------------------------

/// Channels per vector of the grouped kernel: 16 with AVX-512, else 8.
size_t cbam_vm_grouped_lanes(cbam_vm_isa isa);

/// True when the kernel computes C channels in groups of `group_width` (as many outputs as inputs
/// per group): the width divides the lanes or is a multiple of them, and C is a whole number of vectors.
int cbam_vm_grouped_fits(size_t c, size_t group_width, cbam_vm_isa isa);

/// W [C, group_width, kH, kW] (taps = kH · kW) into the kernel's blocks of lanes (C · group_width
/// · taps floats; grouped_conv.c describes the layout).
void cbam_vm_grouped_pack_weights(const float *w, size_t c, size_t group_width, size_t taps, float *packed, cbam_vm_isa isa);

/// Work items of the grouped kernel over a batch: N · oH output rows times C / lanes vectors of channels.
size_t cbam_vm_grouped_items(size_t n, size_t oh, size_t c, cbam_vm_isa isa);

/// Work items first_item ..< end_item (of cbam_vm_grouped_items, in the kernel's order) of the
/// grouped convolution of channels-last x [N, H, W, C] into channels-last y [N, oH, oW, C]:
/// act(conv + bias + residual), act = max(·, 0) keeping NaN when `relu`; bias and residual may be
/// NULL. `zero`: at least max(cbam_vm_grouped_lanes, group_width) floats of 0, read for taps in the padding.
void cbam_vm_grouped_conv(const float *x, size_t n, size_t h, size_t w, size_t c, size_t group_width, size_t kh, size_t kw, size_t sh,
                          size_t sw, size_t dh, size_t dw, long pad_top, long pad_left, size_t oh, size_t ow, const float *packed,
                          const float *zero, size_t first_item, size_t end_item, const float *bias, const float *residual, float *y,
                          int relu, cbam_vm_isa isa);

#ifdef __cplusplus
}
#endif

#endif
