// libpng (Debian's libpng-dev) behind four calls that never let a libpng error unwind Swift.
//
// libpng reports errors by longjmp to the jmp_buf of the png struct. Each function below
// arms that jmp_buf itself (setjmp) before calling libpng, so an error only ever jumps back
// into the same C frame, which returns a non-zero status with the message in `message`.
// No Swift frame is ever between the setjmp and the longjmp.
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    png_structp png;
    png_infop info;
    const unsigned char *data;  // the whole file
    size_t size;
    size_t position;
    char message[256];
    // Filled by cbam_png_read_header: the file's own description, before any transform.
    unsigned width, height;
    int bit_depth, color_type, interlaced;
    // Filled by cbam_png_read_header: after the transforms to 8-bit RGB.
    size_t row_bytes;
    int passes;
    // For writing: the encoded bytes grow here (malloc'd; free with cbam_png_release).
    unsigned char *output;
    size_t output_size, output_capacity;
    int writing;
} cbam_png;

static inline void cbam_png_on_error(png_structp png, png_const_charp text) {
    cbam_png *state = (cbam_png *)png_get_error_ptr(png);
    strncpy(state->message, text ? text : "libpng error", sizeof state->message - 1);
    state->message[sizeof state->message - 1] = 0;
    png_longjmp(png, 1);
}

static inline void cbam_png_on_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;  // warnings (a bad ancillary chunk, a CRC in a text chunk) do not stop decoding
}

static inline void cbam_png_read_bytes(png_structp png, png_bytep out, size_t count) {
    cbam_png *state = (cbam_png *)png_get_io_ptr(png);
    if (count > state->size - state->position) png_error(png, "the file ends early (truncated)");
    memcpy(out, state->data + state->position, count);
    state->position += count;
}

/// Reads the signature and header of the PNG in `state->data`, and sets up the transforms
/// to 8-bit RGB: palette → RGB, 1/2/4-bit gray → 8-bit, 16-bit → 8-bit (the high byte),
/// alpha dropped (not composited), gray → RGB, Adam7 deinterlaced. Returns 0, or 1 with `message`.
static inline int cbam_png_read_header(cbam_png *state) {
    state->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, state, cbam_png_on_error, cbam_png_on_warning);
    if (!state->png) { strcpy(state->message, "libpng could not start"); return 1; }
    state->info = png_create_info_struct(state->png);
    if (!state->info) { strcpy(state->message, "libpng could not start"); return 1; }
    if (setjmp(png_jmpbuf(state->png))) return 1;
    if (state->size < 8 || png_sig_cmp(state->data, 0, 8) != 0) png_error(state->png, "not a PNG file (bad signature)");
    png_set_read_fn(state->png, state, cbam_png_read_bytes);
    png_read_info(state->png, state->info);
    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(state->png, state->info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    state->width = width;
    state->height = height;
    state->bit_depth = bit_depth;
    state->color_type = color_type;
    state->interlaced = interlace != PNG_INTERLACE_NONE;
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(state->png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(state->png);
    if (bit_depth == 16) png_set_strip_16(state->png);
    // Expanding a palette or low-depth gray also turns a tRNS chunk into an alpha channel, so
    // alpha is stripped whenever there is one to strip.
    if ((color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(state->png, state->info, PNG_INFO_tRNS)) {
        png_set_strip_alpha(state->png);
    }
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(state->png);
    state->passes = png_set_interlace_handling(state->png);
    png_read_update_info(state->png, state->info);
    state->row_bytes = png_get_rowbytes(state->png, state->info);
    return 0;
}

/// Decodes the pixels into `pixels` (`height` rows of `row_bytes`), after cbam_png_read_header.
/// Returns 0, or 1 with `message` (a truncated or corrupt image stream).
static inline int cbam_png_read_pixels(cbam_png *state, unsigned char *pixels) {
    if (setjmp(png_jmpbuf(state->png))) return 1;
    for (int pass = 0; pass < state->passes; pass++) {
        for (unsigned y = 0; y < state->height; y++) {
            png_read_row(state->png, pixels + (size_t)y * state->row_bytes, NULL);
        }
    }
    return 0;
}

static inline void cbam_png_write_bytes(png_structp png, png_bytep bytes, size_t count) {
    cbam_png *state = (cbam_png *)png_get_io_ptr(png);
    if (count > state->output_capacity - state->output_size) {
        size_t capacity = state->output_capacity ? state->output_capacity : 4096;
        while (count > capacity - state->output_size) {
            if (capacity > ((size_t)-1) / 2) png_error(png, "the encoded image is too large");
            capacity *= 2;
        }
        unsigned char *grown = (unsigned char *)realloc(state->output, capacity);
        if (!grown) png_error(png, "out of memory");
        state->output = grown;
        state->output_capacity = capacity;
    }
    memcpy(state->output + state->output_size, bytes, count);
    state->output_size += count;
}

static inline void cbam_png_flush(png_structp png) { (void)png; }

/// Encodes 8-bit RGB rows (`width * 3` bytes each, top row first) into `state->output`.
/// Returns 0, or 1 with `message`.
static inline int cbam_png_encode_rgb(cbam_png *state, const unsigned char *pixels, unsigned width, unsigned height) {
    state->writing = 1;
    state->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, state, cbam_png_on_error, cbam_png_on_warning);
    if (!state->png) { strcpy(state->message, "libpng could not start"); return 1; }
    state->info = png_create_info_struct(state->png);
    if (!state->info) { strcpy(state->message, "libpng could not start"); return 1; }
    if (setjmp(png_jmpbuf(state->png))) return 1;
    png_set_write_fn(state->png, state, cbam_png_write_bytes, cbam_png_flush);
    png_set_IHDR(state->png, state->info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(state->png, state->info);
    for (unsigned y = 0; y < height; y++) png_write_row(state->png, pixels + (size_t)y * width * 3);
    png_write_end(state->png, NULL);
    return 0;
}

/// Frees libpng's structs and any encoded output. Safe after any failure.
static inline void cbam_png_release(cbam_png *state) {
    if (state->png) {
        if (state->writing) {
            png_destroy_write_struct(&state->png, state->info ? &state->info : NULL);
        } else {
            png_destroy_read_struct(&state->png, state->info ? &state->info : NULL, NULL);
        }
    }
    free(state->output);
    state->output = NULL;
    state->png = NULL;
    state->info = NULL;
}
