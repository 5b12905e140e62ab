/*
 * cbamrun.h — the C API of cbam-run (libcbamrun.so).
 *
 * Run ONNX attention CNNs on the CPU from C (or anything with a C FFI: Python's
 * ctypes, Rust, Go…) and get the attention maps back as arrays.
 *
 *   cbamrun_session *session = NULL;
 *   cbamrun_status *status = cbamrun_session_create("model.onnx", NULL, &session);
 *   if (status) { fprintf(stderr, "%s\n", cbamrun_status_message(status)); cbamrun_status_free(status); return 1; }
 *   int64_t shape[4] = {2, 32, 16, 16};
 *   cbamrun_tensor x = {"x", CBAMRUN_FLOAT, 4, shape, data};
 *   cbamrun_result *result = NULL;
 *   status = cbamrun_session_run(session, &x, 1, CBAMRUN_RUN_ATTENTION, &result);
 *   ...read cbamrun_result_output(result, 0, &y) and cbamrun_result_attention(result, i, &map)...
 *   cbamrun_result_free(result);
 *   cbamrun_session_free(session);
 *
 * Conventions
 *   - Errors: every function that can fail returns a cbamrun_status pointer: NULL on
 *     success, otherwise a status the caller owns and releases with cbamrun_status_free.
 *     It carries a code (cbamrun_code) and a message, the same text the cbam-run command
 *     line prints after "cbam-run: error: " for the same failure. Out-parameters are
 *     left untouched (or set to NULL) on failure. No function aborts the process on bad
 *     arguments: NULL pointers, out-of-range indices, unknown element types and
 *     inconsistent shapes are reported as CBAMRUN_INVALID_ARGUMENT.
 *   - Ownership: the caller owns every object a function hands out through a `**out`
 *     parameter and releases it with the matching *_free function (each accepts NULL).
 *     Pointers inside the structs filled by the accessors (names, shapes, data) are owned
 *     by the object they were read from and stay valid until that object is freed; the
 *     caller never frees them.
 *   - Input buffers: read only during cbamrun_session_run, copied once, straight into the
 *     run's own memory; the library keeps no pointer to them after it returns. Data is
 *     C-contiguous (row-major), native byte order.
 *   - Threads: a session may be run from several threads at once (each run gets its own
 *     memory). Freeing a session while a run on it is in progress is not allowed. Results
 *     and statuses are independent objects and may be read from any thread.
 *   - Element types are ONNX TensorProto.DataType codes (cbamrun_element_type).
 */
#ifndef CBAMRUN_H
#define CBAMRUN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a declaration here changes incompatibly. */
#define CBAMRUN_API_VERSION 1

/* Failure kinds. 1–15 are the kinds of the runtime's CBAMError. */
typedef enum cbamrun_code {
    CBAMRUN_OK = 0,
    CBAMRUN_NOT_ONNX = 1,            /* the bytes are not an ONNX ModelProto */
    CBAMRUN_MALFORMED_MODEL = 2,     /* decodes, but breaks an ONNX rule */
    CBAMRUN_UNSUPPORTED_OP = 3,      /* one or more nodes have no kernel (all are named) */
    CBAMRUN_UNSUPPORTED_TYPE = 4,    /* an element type cbam-run does not hold */
    CBAMRUN_INVALID_ATTRIBUTE = 5,
    CBAMRUN_INVALID_SHAPE = 6,       /* a negative dimension, a shape past 2^30 elements */
    CBAMRUN_SHAPE_MISMATCH = 7,      /* e.g. an input whose shape the model does not take */
    CBAMRUN_TYPE_MISMATCH = 8,       /* e.g. an input of the wrong element type */
    CBAMRUN_MISSING_INPUT = 9,       /* an input not supplied, or an unknown input name */
    CBAMRUN_IO = 10,                 /* a file that cannot be read */
    CBAMRUN_BAD_NPY = 11,
    CBAMRUN_USAGE = 12,
    CBAMRUN_RESOURCE_LIMIT = 13,     /* the plan needs more memory or MACs than the options allow */
    CBAMRUN_BAD_IMAGE = 14,          /* a PNG or JPEG file that cannot be decoded (or is refused) */
    CBAMRUN_CANCELLED = 15,          /* the run passed its timeout or was cancelled */
    CBAMRUN_INVALID_ARGUMENT = 100   /* a NULL pointer, an index out of range, bad options… */
} cbamrun_code;

/* ONNX TensorProto.DataType codes of the element types cbam-run holds. */
typedef enum cbamrun_element_type {
    CBAMRUN_UNDEFINED = 0,           /* in value info: the file does not say, or a type cbam-run cannot hold */
    CBAMRUN_FLOAT = 1,
    CBAMRUN_UINT8 = 2,
    CBAMRUN_INT8 = 3,
    CBAMRUN_INT32 = 6,
    CBAMRUN_INT64 = 7,
    CBAMRUN_BOOL = 9,                /* one byte per element; nonzero is true */
    CBAMRUN_FLOAT16 = 10,
    CBAMRUN_DOUBLE = 11
} cbamrun_element_type;

typedef enum cbamrun_attention_kind {
    CBAMRUN_ATTENTION_CHANNEL = 0,   /* one weight per (item, channel) */
    CBAMRUN_ATTENTION_SPATIAL = 1,   /* one weight per (item, pixel) */
    CBAMRUN_ATTENTION_OTHER = 2,     /* branch selection (SK, split attention) and anything else */
    CBAMRUN_ATTENTION_SELF = 3       /* a Softmax over key positions weighting values (ViT, BoTNet, …), as computed */
} cbamrun_attention_kind;

/* Flags for cbamrun_session_run. */
#define CBAMRUN_RUN_ATTENTION 1u     /* also capture every attention map */

typedef struct cbamrun_status cbamrun_status;    /* an error: code + message */
typedef struct cbamrun_session cbamrun_session;  /* a loaded model with its compiled plans */
typedef struct cbamrun_result cbamrun_result;    /* the outputs (and maps) of one run */

/* Session options. All-zero (or passing NULL) gives the defaults. */
typedef struct cbamrun_options {
    int32_t threads;      /* threads for kernels that split their work; 0 = all cores (the CLI's default) */
    int64_t max_memory;   /* bytes of intermediates + folded constants a plan may need; 0 = the machine's memory
                             (or the `ulimit -v` limit); as the CLI's --max-memory */
    int64_t max_macs;     /* multiply-accumulates one run may perform; 0 = unlimited; as --max-macs */
} cbamrun_options;

/* A tensor passed in (cbamrun_session_run) or read out (cbamrun_result_output). */
typedef struct cbamrun_tensor {
    const char *name;     /* input name; NULL in an input = the input at this position of the input list */
    int32_t element_type; /* cbamrun_element_type */
    int32_t rank;         /* 0 for a scalar; at most 32 */
    const int64_t *shape; /* rank dimensions (may be NULL when rank is 0) */
    const void *data;     /* product(shape) elements, C order; may be NULL when there are none */
} cbamrun_tensor;

/* A graph input or output as the model declares it. */
typedef struct cbamrun_value_info {
    const char *name;
    int32_t element_type;        /* CBAMRUN_UNDEFINED when not declared or not held by cbam-run */
    int32_t rank;                /* -1 when the file records no shape */
    const int64_t *shape;        /* rank entries; -1 for a symbolic or unknown dimension */
    const char *const *dim_names;/* rank entries: the symbol ("batch") of a symbolic dimension, else NULL */
} cbamrun_value_info;

/* One attention map captured during a run. */
typedef struct cbamrun_attention_map {
    int32_t index;        /* position in execution order, from 0 (the CLI's NN_<kind>.npy) */
    int32_t block;        /* a channel map opens a block; the spatial map right after it joins it */
    int32_t kind;         /* cbamrun_attention_kind */
    const char *node;     /* the gate node (Sigmoid/Softmax) */
    cbamrun_tensor tensor;/* name = the gate's output value; the map as computed (not resized) */
} cbamrun_attention_map;

/* ---- Version ---------------------------------------------------------------------- */

/* The library version ("0.3.0"); a static string. */
const char *cbamrun_version(void);
/* CBAMRUN_API_VERSION of the library, to compare with the header's. */
int32_t cbamrun_api_version(void);

/* ---- Status ----------------------------------------------------------------------- */

cbamrun_code cbamrun_status_code(const cbamrun_status *status);   /* CBAMRUN_OK for NULL */
/* The message, valid until cbamrun_status_free; "" for NULL. */
const char *cbamrun_status_message(const cbamrun_status *status);
void cbamrun_status_free(cbamrun_status *status);

/* ---- Sessions --------------------------------------------------------------------- */

/* Loads an .onnx file (external data beside it is read) and checks the whole graph. */
cbamrun_status *cbamrun_session_create(const char *path, const cbamrun_options *options, cbamrun_session **out);
/* The same from a model already in memory (copied; `data` may be freed on return). Models
 * with external data are refused. Messages name the model "<memory>". */
cbamrun_status *cbamrun_session_create_from_bytes(const void *data, size_t size, const cbamrun_options *options,
                                                  cbamrun_session **out);
void cbamrun_session_free(cbamrun_session *session);

/* The inputs a caller supplies (graph inputs without an initializer), and the outputs. */
size_t cbamrun_session_input_count(const cbamrun_session *session);    /* 0 for NULL */
size_t cbamrun_session_output_count(const cbamrun_session *session);
cbamrun_status *cbamrun_session_input(const cbamrun_session *session, size_t index, cbamrun_value_info *out);
cbamrun_status *cbamrun_session_output(const cbamrun_session *session, size_t index, cbamrun_value_info *out);

/* Runs the model. Inputs are matched by name (or position when name is NULL); each must
 * have the declared element type, rank and fixed dimensions (symbolic ones take any size).
 * flags: 0, or CBAMRUN_RUN_ATTENTION to also capture the attention maps.
 * On success *out is a result the caller releases with cbamrun_result_free. */
cbamrun_status *cbamrun_session_run(cbamrun_session *session, const cbamrun_tensor *inputs, size_t input_count,
                                    uint32_t flags, cbamrun_result **out);

/* ---- Results ---------------------------------------------------------------------- */

/* Outputs in the order of cbamrun_session_output. Every pointer in *out is owned by the
 * result and valid until cbamrun_result_free. */
size_t cbamrun_result_output_count(const cbamrun_result *result);
cbamrun_status *cbamrun_result_output(const cbamrun_result *result, size_t index, cbamrun_tensor *out);
/* Attention maps in execution order; 0 unless the run had CBAMRUN_RUN_ATTENTION. */
size_t cbamrun_result_attention_count(const cbamrun_result *result);
cbamrun_status *cbamrun_result_attention(const cbamrun_result *result, size_t index, cbamrun_attention_map *out);
void cbamrun_result_free(cbamrun_result *result);
/* What produced the result, when it says: cbamrun_load_image's one line on the decoding and
 * preprocessing; "" otherwise. Owned by the result. */
const char *cbamrun_result_note(const cbamrun_result *result);

/* ---- Images ----------------------------------------------------------------------- */

/* Decodes a PNG or JPEG file and preprocesses it for a model input declared with `shape`
 * (`rank` entries, -1 for a symbolic dimension; rank -1 when the model records no shape),
 * exactly as `cbam-run model.onnx photo.jpg` does: for a [N, 3, H, W] input with fixed H and
 * W, torchvision's ImageNet evaluation transform (shorter side resized to H·256/224 with
 * antialiasing, center crop H×W, [0, 1], ImageNet mean/std, RGB); for other shapes the
 * pixels scaled to [0, 1] (gray for 1 channel). On success *out is a result with one output,
 * "image", float32 [1, C, H, W], and cbamrun_result_note says what was done. Bad, truncated,
 * CMYK or oversized images are refused (CBAMRUN_BAD_IMAGE). */
cbamrun_status *cbamrun_load_image(const char *path, const int64_t *shape, int32_t rank, cbamrun_result **out);

#ifdef __cplusplus
}
#endif

#endif /* CBAMRUN_H */
