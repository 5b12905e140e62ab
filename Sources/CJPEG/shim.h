// libjpeg-turbo (Debian's libjpeg62-turbo-dev) behind calls that never let a libjpeg error
// unwind Swift or exit the process.
//
// libjpeg's default error handler calls exit(); ours copies the message and longjmps to the
// jmp_buf armed (setjmp) at the top of the same C function, which returns a non-zero status.
// No Swift frame is ever between the setjmp and the longjmp.
#include <stdio.h>
#include <jpeglib.h>
#include <jerror.h>
#include <setjmp.h>
#include <string.h>

typedef struct {
    struct jpeg_decompress_struct decoder;
    struct jpeg_error_mgr errors;
    jmp_buf jump;
    int started;
    char message[JMSG_LENGTH_MAX + 64];
    // Filled by cbam_jpeg_read_header.
    unsigned width, height;
    int components;
    J_COLOR_SPACE color_space;  // of the file (JCS_GRAYSCALE, JCS_YCbCr, JCS_CMYK, JCS_YCCK, ...)
} cbam_jpeg;

static inline void cbam_jpeg_on_error(j_common_ptr info) {
    cbam_jpeg *state = (cbam_jpeg *)info->client_data;
    (*info->err->format_message)(info, state->message);
    longjmp(state->jump, 1);
}

// Warnings: a file that ends before its last scan is an error (libjpeg would pad it with
// gray and carry on); other warnings (stray bytes between markers) do not stop decoding.
static inline void cbam_jpeg_on_message(j_common_ptr info, int level) {
    if (level < 0 && info->err->msg_code == JWRN_JPEG_EOF) {
        cbam_jpeg *state = (cbam_jpeg *)info->client_data;
        strcpy(state->message, "the file ends early (truncated)");
        longjmp(state->jump, 1);
    }
}

/// Reads the header of the JPEG in `data` and asks for 8-bit RGB output (the library's
/// default accurate integer IDCT and fancy upsampling, as PIL uses). Returns 0, or 1 with `message`.
static inline int cbam_jpeg_read_header(cbam_jpeg *state, const unsigned char *data, unsigned long size) {
    state->decoder.err = jpeg_std_error(&state->errors);
    state->errors.error_exit = cbam_jpeg_on_error;
    state->errors.emit_message = cbam_jpeg_on_message;
    state->decoder.client_data = state;
    if (setjmp(state->jump)) return 1;
    jpeg_create_decompress(&state->decoder);
    state->started = 1;
    jpeg_mem_src(&state->decoder, data, size);
    jpeg_read_header(&state->decoder, TRUE);
    state->width = state->decoder.image_width;
    state->height = state->decoder.image_height;
    state->components = state->decoder.num_components;
    state->color_space = state->decoder.jpeg_color_space;
    return 0;
}

/// Decodes into `pixels` (`height` rows of `width * 3` bytes), after cbam_jpeg_read_header.
/// Returns 0, or 1 with `message`.
static inline int cbam_jpeg_read_pixels(cbam_jpeg *state, unsigned char *pixels) {
    if (setjmp(state->jump)) return 1;
    state->decoder.out_color_space = JCS_RGB;
    jpeg_start_decompress(&state->decoder);
    if (state->decoder.output_components != 3) {
        strcpy(state->message, "the decoder did not give RGB");
        return 1;
    }
    size_t row_bytes = (size_t)state->decoder.output_width * 3;
    while (state->decoder.output_scanline < state->decoder.output_height) {
        JSAMPROW row = pixels + (size_t)state->decoder.output_scanline * row_bytes;
        jpeg_read_scanlines(&state->decoder, &row, 1);
    }
    jpeg_finish_decompress(&state->decoder);
    return 0;
}

static inline void cbam_jpeg_release(cbam_jpeg *state) {
    if (state->started) jpeg_destroy_decompress(&state->decoder);
    state->started = 0;
}
