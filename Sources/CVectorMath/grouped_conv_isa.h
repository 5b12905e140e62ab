// The grouped kernel's vector body (grouped_conv.c), written once and included once per
// instruction set, with these macros defined by the includer:
//   ISA_TARGET      the function attribute (target("avx512f"), target("avx2,fma"))
//   ISA_NAME(f)     f with the set's suffix (f##_avx512)
//   LANES           lanes per vector; VEC / IVEC the float / int vector types
//   VZERO() VLOAD(p) VLOADU(p) VSTOREU(p, v) VADD(a, b) VFMA(a, b, c) = a·b + c
//   VPERM(x, index) lane l of the result is x[index[l]];  VBROADCAST(p) all lanes *p
//   VRELU(v)        max(v, 0) keeping NaN;  ILOADU(p) an index vector from LANES ints
// Each function is compiled for its pixel block width P and group width G as constants
// (always_inline), so the accumulators and the G weight vectors stay in registers. A block is P
// output pixels of one work item's row and vector of channels; G = 0 stands for a wide group.

#define VZERO_ACC(q) VEC a##q = VZERO();
#define VOUT(q) if (q < P) out[q] = a##q;
#define VTAP(q)                                                                                                   \
    if (q < P) {                                                                                                  \
        const VEC xv = VLOADU(tap_source(row, ix + (long)(q * s->sw), c0, s, zero));                              \
        a##q = VFMA(wr[0], xv, a##q);                                                                             \
        _Pragma("GCC unroll 16") for (int r = 1; r < G; r++) a##q = VFMA(wr[r], VPERM(xv, rot[r]), a##q);        \
    }

/// A block: for a narrow group (G > 0) Σ_r W_r ⊙ rot_r(x) per tap, the input vector from channel
/// c0; for a wide one (G = 0, s->g a multiple of LANES) the group's s->g inputs from channel
/// `first`, each broadcast from memory against one weight vector.
#define VSOURCE(q) const float *p##q = tap_source(row, ix + (long)(q * s->sw), first, s, zero);
#define VWIDE(q) if (q < P) a##q = VFMA(wi, VBROADCAST(p##q + i), a##q);
ISA_TARGET ALWAYS void ISA_NAME(block)(const float *image, const geometry *s, const float *wv, const float *zero, size_t c0, size_t first,
                                       long iy0, long ix0, const int P, const int G, const IVEC *rot, VEC *out) {
    EACH8(VZERO_ACC)
    for (size_t ky = 0; ky < s->kh; ky++) {
        const long iy = iy0 + (long)(ky * s->dh);
        if (iy < 0 || iy >= (long)s->h) continue;
        const float *row = image + (size_t)iy * s->w * s->c;
        for (size_t kx = 0; kx < s->kw; kx++) {
            const float *wt = wv + (ky * s->kw + kx) * s->g * LANES;
            const long ix = ix0 + (long)(kx * s->dw);
            if (G) {
                VEC wr[LANES];
                _Pragma("GCC unroll 16") for (int r = 0; r < G; r++) wr[r] = VLOAD(wt + r * LANES);
                EACH8(VTAP)
            } else {
                EACH8(VSOURCE)
                // The same weight of the next vector of channels, so that its weights are in cache by
                // the time it starts (one vector's weights ahead: 9–18 KB for ResNeXt's wide groups).
                const size_t ahead = s->kh * s->kw * s->g * LANES;
                for (size_t i = 0; i < s->g; i++) {
                    _mm_prefetch((const char *)(wt + i * LANES + ahead), _MM_HINT_T0);
                    const VEC wi = VLOAD(wt + i * LANES);
                    EACH8(VWIDE)
                }
            }
        }
    }
    EACH8(VOUT)
}

#define VBLOCK_CASE(p) case p: ISA_NAME(block)(image, s, wv, zero, c0, c0 - c0 % s->g, iy0, ix0, p, G, rot, acc); break;

/// Work items first_item ..< end_item for group width G (0: wide).
ISA_TARGET ALWAYS void ISA_NAME(items)(const float *x, const geometry *s, const float *packed, const float *zero, size_t first_item,
                                       size_t end_item, const float *bias, const float *residual, float *y, int relu, const int G) {
    const size_t taps = s->kh * s->kw;
    IVEC rot[LANES];
    for (int r = 0; r < G; r++) {
        int lanes[LANES];
        for (int l = 0; l < LANES; l++) lanes[l] = l - l % G + (l % G + r) % G;
        rot[r] = ILOADU(lanes);
    }
    for (size_t item = first_item; item < end_item; item++) {
        size_t row, v;
        work_item(s, LANES, item, &row, &v);
        const size_t n = row / s->oh, oy = row % s->oh, c0 = v * LANES;
        const float *image = x + n * s->h * s->w * s->c, *wv = packed + v * taps * s->g * LANES;
        const long iy0 = (long)(oy * s->sh) - s->pad_top;
        const VEC b0 = bias ? VLOADU(bias + c0) : VZERO();
        for (size_t ox = 0; ox < s->ow; ox += 8) {
            const size_t width = s->ow - ox < 8 ? s->ow - ox : 8;
            const long ix0 = (long)(ox * s->sw) - s->pad_left;
            VEC acc[8];
            switch (width) {
                VBLOCK_CASE(1) VBLOCK_CASE(2) VBLOCK_CASE(3) VBLOCK_CASE(4) VBLOCK_CASE(5) VBLOCK_CASE(6) VBLOCK_CASE(7) VBLOCK_CASE(8)
            }
            for (size_t q = 0; q < width; q++) {
                const size_t at = (row * s->ow + ox + q) * s->c + c0;
                VEC value = VADD(acc[q], b0);
                if (residual) value = VADD(value, VLOADU(residual + at));
                if (relu) value = VRELU(value);
                VSTOREU(y + at, value);
            }
        }
    }
}

/// The set's variant: G as a constant for the narrow widths it takes, 0 for a wide group.
ISA_TARGET static void ISA_NAME(grouped)(const float *x, const geometry *s, const float *packed, const float *zero, size_t first_item,
                                         size_t end_item, const float *bias, const float *residual, float *y, int relu) {
    switch (s->g % LANES == 0 ? 0 : s->g) {
    case 1: ISA_NAME(items)(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 1); break;
    case 2: ISA_NAME(items)(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 2); break;
    case 4: ISA_NAME(items)(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 4); break;
#if LANES > 8
    case 8: ISA_NAME(items)(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 8); break;
#endif
    default: ISA_NAME(items)(x, s, packed, zero, first_item, end_item, bias, residual, y, relu, 0); break;
    }
}

#undef VZERO_ACC
#undef VOUT
#undef VTAP
#undef VSOURCE
#undef VWIDE
#undef VBLOCK_CASE
