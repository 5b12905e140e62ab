/*
 * The C API from C: loads a zoo model through cbamrun.h, runs it on the stored input and
 * compares the output and the attention maps with PyTorch's (stored beside the model by
 * tools/export_models.py), then checks that misuse comes back as statuses, not crashes.
 *
 *   capi_test MODELS_DIR      (run by `make capi-test`, part of `make test`)
 *
 * Prints one line per check and "N passed, N failed" at the end; exits 1 on any failure.
 */
#include "cbamrun.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *what) {
    printf("%s  %s\n", ok ? "ok  " : "FAIL", what);
    if (ok) passed++; else failed++;
}

/* A float32 .npy file (format 1.0, little-endian, C order), as numpy writes it. */
typedef struct {
    int rank;
    int64_t shape[8];
    size_t count;
    float *data;
} npy;

static int npy_load(const char *path, npy *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); return 0; }
    unsigned char magic[10];
    if (fread(magic, 1, 10, f) != 10 || memcmp(magic, "\x93NUMPY\x01\x00", 8) != 0) { fclose(f); return 0; }
    size_t header_len = magic[8] | (magic[9] << 8);
    char *header = calloc(header_len + 1, 1);
    if (fread(header, 1, header_len, f) != header_len || !strstr(header, "'<f4'") || !strstr(header, "'fortran_order': False")) {
        free(header); fclose(f); return 0;
    }
    const char *p = strstr(header, "'shape': (");
    if (!p) { free(header); fclose(f); return 0; }
    p += strlen("'shape': (");
    out->count = 1;
    while (*p && *p != ')' && out->rank < 8) {
        char *end;
        long long dim = strtoll(p, &end, 10);
        if (end == p) break;
        out->shape[out->rank++] = dim;
        out->count *= (size_t)dim;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    free(header);
    out->data = malloc(out->count * sizeof(float) + 1);
    size_t read = fread(out->data, sizeof(float), out->count, f);
    fclose(f);
    return read == out->count;
}

/* Largest |a - b| past atol + rtol·|b|; 0 when all are within. */
static double excess(const float *a, const float *b, size_t n, double atol, double rtol, double *largest) {
    double worst = 0;
    *largest = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > *largest) *largest = d;
        double over = d - (atol + rtol * fabs((double)b[i]));
        if (over > worst) worst = over;
        if (isnan(a[i]) != isnan(b[i])) worst = INFINITY;
    }
    return worst;
}

static size_t element_count(const cbamrun_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= (size_t)t->shape[i];
    return n;
}

/* Releases a status, reporting whether it had the expected code and a message naming `needle`. */
static int expect_status(cbamrun_status *status, cbamrun_code code, const char *needle) {
    int ok = status != NULL && cbamrun_status_code(status) == code && strstr(cbamrun_status_message(status), needle) != NULL;
    if (status && !ok) printf("      got code %d: %s\n", cbamrun_status_code(status), cbamrun_status_message(status));
    if (!status) printf("      got success\n");
    cbamrun_status_free(status);
    return ok;
}

static char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *bytes = malloc((size_t)n + 1);
    *size = fread(bytes, 1, (size_t)n, f);
    fclose(f);
    return bytes;
}

int main(int argc, char **argv) {
    const char *models = argc > 1 ? argv[1] : "Models";
    char path[4096];
    const char *name = "seed000_cbam_fc_k7";
    const double atol = 1e-4, rtol = 1e-4;  /* the manifest's tolerance for this model */

    check(strcmp(cbamrun_version(), "") != 0, "cbamrun_version() is a version string");
    check(cbamrun_api_version() == CBAMRUN_API_VERSION, "the library's API version is the header's");

    npy input, expected;
    snprintf(path, sizeof path, "%s/%s/input.npy", models, name);
    if (!npy_load(path, &input)) { printf("FAIL  cannot read %s\n", path); return 1; }
    snprintf(path, sizeof path, "%s/%s/output.npy", models, name);
    if (!npy_load(path, &expected)) { printf("FAIL  cannot read %s\n", path); return 1; }

    /* ---- a session from a path, its inputs and outputs ---- */
    cbamrun_options options = {1, 0, 0};
    cbamrun_session *session = NULL;
    snprintf(path, sizeof path, "%s/%s/torchscript_op17.onnx", models, name);
    cbamrun_status *status = cbamrun_session_create(path, &options, &session);
    if (status) {
        printf("FAIL  cbamrun_session_create: %s\n", cbamrun_status_message(status));
        return 1;
    }
    check(cbamrun_session_input_count(session) == 1 && cbamrun_session_output_count(session) == 1, "one input, one output");
    cbamrun_value_info info;
    status = cbamrun_session_input(session, 0, &info);
    check(status == NULL && strcmp(info.name, "input") == 0 && info.element_type == CBAMRUN_FLOAT && info.rank == 4,
          "input 0 is \"input\", float32, rank 4");
    if (status == NULL && info.rank == 4) {
        check(info.shape[0] == -1 && info.dim_names[0] != NULL && info.dim_names[1] == NULL && info.shape[1] == 32,
              "its batch dimension is symbolic (-1 and a name), the channel one fixed at 32");
        printf("      input: %s [%s, %lld, %lld, %lld]\n", info.name, info.dim_names[0] ? info.dim_names[0] : "?",
               (long long)info.shape[1], (long long)info.shape[2], (long long)info.shape[3]);
    }
    cbamrun_status_free(status);
    check(expect_status(cbamrun_session_input(session, 1, &info), CBAMRUN_INVALID_ARGUMENT, "out of range"),
          "input index 1 is out of range, reported as a status");
    status = cbamrun_session_output(session, 0, &info);
    check(status == NULL && strcmp(info.name, "output") == 0, "output 0 is \"output\"");
    cbamrun_status_free(status);

    /* ---- run with attention; compare with PyTorch ---- */
    cbamrun_tensor x = {NULL, CBAMRUN_FLOAT, input.rank, input.shape, input.data};
    cbamrun_result *result = NULL;
    status = cbamrun_session_run(session, &x, 1, CBAMRUN_RUN_ATTENTION, &result);
    check(status == NULL, "cbamrun_session_run (input by position, with attention)");
    if (status) printf("      %s\n", cbamrun_status_message(status));
    cbamrun_status_free(status);
    if (result) {
        cbamrun_tensor y;
        status = cbamrun_result_output(result, 0, &y);
        check(status == NULL && y.element_type == CBAMRUN_FLOAT && element_count(&y) == expected.count &&
              y.rank == expected.rank && memcmp(y.shape, expected.shape, sizeof(int64_t) * (size_t)y.rank) == 0,
              "the output has PyTorch's shape [2, 32, 16, 16]");
        cbamrun_status_free(status);
        if (element_count(&y) == expected.count) {
            double largest;
            double over = excess(y.data, expected.data, expected.count, atol, rtol, &largest);
            printf("      largest difference from PyTorch: %.3g\n", largest);
            check(over == 0, "the output matches PyTorch's within 1e-4 (absolute and relative)");
        }
        size_t maps = cbamrun_result_attention_count(result);
        check(maps == 2, "two attention maps (channel, spatial)");
        const char *kinds[] = {"channel", "spatial"};
        for (size_t i = 0; i < maps && i < 2; i++) {
            cbamrun_attention_map map;
            status = cbamrun_result_attention(result, i, &map);
            if (status) { check(0, cbamrun_status_message(status)); cbamrun_status_free(status); continue; }
            char what[256];
            snprintf(what, sizeof what, "map %zu: index %d, block 0, kind %s, gate %s (node %s)", i, map.index, kinds[i], map.tensor.name, map.node);
            check(map.index == (int)i && map.block == 0 && map.kind == (i == 0 ? CBAMRUN_ATTENTION_CHANNEL : CBAMRUN_ATTENTION_SPATIAL), what);
            npy reference;
            snprintf(path, sizeof path, "%s/%s/attention/%02zu_%s.npy", models, name, i, kinds[i]);
            if (npy_load(path, &reference) && element_count(&map.tensor) == reference.count && map.tensor.element_type == CBAMRUN_FLOAT) {
                double largest;
                double over = excess(map.tensor.data, reference.data, reference.count, 1e-5, 1e-4, &largest);
                snprintf(what, sizeof what, "map %zu matches PyTorch's forward hook (largest difference %.3g)", i, largest);
                check(over == 0, what);
            } else {
                check(0, "map size or type differs from PyTorch's");
            }
            free(reference.data);
        }
        check(expect_status(cbamrun_result_attention(result, 2, &(cbamrun_attention_map){0}), CBAMRUN_INVALID_ARGUMENT, "out of range"),
              "map index 2 is out of range");
        cbamrun_result_free(result);
    }

    /* ---- a plain run, input by name, batch 1 (the symbolic batch takes any size) ---- */
    int64_t one[4] = {1, input.shape[1], input.shape[2], input.shape[3]};
    cbamrun_tensor x1 = {"input", CBAMRUN_FLOAT, 4, one, input.data};
    result = NULL;
    status = cbamrun_session_run(session, &x1, 1, 0, &result);
    check(status == NULL && cbamrun_result_attention_count(result) == 0, "a plain run at batch 1 by name, no maps");
    cbamrun_status_free(status);
    if (result) {
        cbamrun_tensor y;
        status = cbamrun_result_output(result, 0, &y);
        double largest = 0;
        check(status == NULL && y.shape[0] == 1 && excess(y.data, expected.data, expected.count / 2, atol, rtol, &largest) == 0,
              "batch 1's output is the first item of PyTorch's batch-2 output");
        cbamrun_status_free(status);
        cbamrun_result_free(result);
    }

    /* ---- misuse comes back as statuses ---- */
    int64_t wrong[4] = {2, 16, 16, 16};
    cbamrun_tensor bad = {"input", CBAMRUN_FLOAT, 4, wrong, input.data};
    result = NULL;
    check(expect_status(cbamrun_session_run(session, &bad, 1, 0, &result), CBAMRUN_SHAPE_MISMATCH, "input \"input\" must have shape") && result == NULL,
          "a wrong shape: CBAMRUN_SHAPE_MISMATCH naming the input");
    int64_t *integers = calloc(input.count, sizeof(int64_t));
    cbamrun_tensor bad_type = {"input", CBAMRUN_INT64, 4, input.shape, integers};
    check(expect_status(cbamrun_session_run(session, &bad_type, 1, 0, &result), CBAMRUN_TYPE_MISMATCH, "input \"input\" must be float32"),
          "a wrong element type: CBAMRUN_TYPE_MISMATCH");
    free(integers);
    cbamrun_tensor bad_code = {"input", 5 /* INT16 */, 4, input.shape, input.data};
    check(expect_status(cbamrun_session_run(session, &bad_code, 1, 0, &result), CBAMRUN_UNSUPPORTED_TYPE, "INT16"),
          "an element type cbam-run does not hold: CBAMRUN_UNSUPPORTED_TYPE");
    cbamrun_tensor unknown = {"nope", CBAMRUN_FLOAT, 4, input.shape, input.data};
    check(expect_status(cbamrun_session_run(session, &unknown, 1, 0, &result), CBAMRUN_MISSING_INPUT, "no input named \"nope\""),
          "an unknown input name: CBAMRUN_MISSING_INPUT");
    check(expect_status(cbamrun_session_run(session, NULL, 0, 0, &result), CBAMRUN_MISSING_INPUT, "was not supplied"),
          "no inputs: CBAMRUN_MISSING_INPUT");
    int64_t negative[4] = {2, -32, 16, 16};
    cbamrun_tensor neg = {"input", CBAMRUN_FLOAT, 4, negative, input.data};
    check(expect_status(cbamrun_session_run(session, &neg, 1, 0, &result), CBAMRUN_INVALID_SHAPE, "dimension -32"),
          "a negative dimension: CBAMRUN_INVALID_SHAPE");
    cbamrun_tensor null_data = {"input", CBAMRUN_FLOAT, 4, input.shape, NULL};
    check(expect_status(cbamrun_session_run(session, &null_data, 1, 0, &result), CBAMRUN_INVALID_ARGUMENT, "data is NULL"),
          "NULL data: CBAMRUN_INVALID_ARGUMENT");
    check(expect_status(cbamrun_session_run(NULL, &x, 1, 0, &result), CBAMRUN_INVALID_ARGUMENT, "session is NULL"),
          "a NULL session: CBAMRUN_INVALID_ARGUMENT");
    check(expect_status(cbamrun_session_run(session, &x, 1, 0, NULL), CBAMRUN_INVALID_ARGUMENT, "out is NULL"),
          "a NULL out: CBAMRUN_INVALID_ARGUMENT");
    check(expect_status(cbamrun_session_run(session, &x, 1, 8, &result), CBAMRUN_INVALID_ARGUMENT, "unknown flags"),
          "unknown flags: CBAMRUN_INVALID_ARGUMENT");
    cbamrun_session_free(session);

    cbamrun_session *none = NULL;
    check(expect_status(cbamrun_session_create("/nonexistent/model.onnx", NULL, &none), CBAMRUN_IO, "/nonexistent/model.onnx") && none == NULL,
          "a missing file: CBAMRUN_IO naming the path");
    check(expect_status(cbamrun_session_create_from_bytes("not a model", 11, NULL, &none), CBAMRUN_NOT_ONNX, "<memory>"),
          "bytes that are not a model: CBAMRUN_NOT_ONNX");
    cbamrun_options bad_threads = {-1, 0, 0};
    check(expect_status(cbamrun_session_create(path, &bad_threads, &none), CBAMRUN_INVALID_ARGUMENT, "threads"),
          "threads -1: CBAMRUN_INVALID_ARGUMENT");
    check(expect_status(cbamrun_session_create(NULL, NULL, &none), CBAMRUN_INVALID_ARGUMENT, "path is NULL"), "a NULL path");
    check(cbamrun_status_code(NULL) == CBAMRUN_OK && strcmp(cbamrun_status_message(NULL), "") == 0 &&
          cbamrun_session_input_count(NULL) == 0 && cbamrun_result_output_count(NULL) == 0,
          "NULL handles read as empty; the *_free functions take NULL");
    cbamrun_status_free(NULL);
    cbamrun_session_free(NULL);
    cbamrun_result_free(NULL);

    /* ---- a session from bytes, with a MACs budget ---- */
    snprintf(path, sizeof path, "%s/%s/torchscript_op17.onnx", models, name);
    size_t size = 0;
    char *bytes = read_file(path, &size);
    cbamrun_options tight = {1, 0, 1000};
    status = cbamrun_session_create_from_bytes(bytes, size, &tight, &session);
    free(bytes);
    check(status == NULL, "a session from the model's bytes, max_macs 1000");
    cbamrun_status_free(status);
    if (session) {
        result = NULL;
        check(expect_status(cbamrun_session_run(session, &x, 1, 0, &result), CBAMRUN_RESOURCE_LIMIT, "--max-macs"),
              "a run past max_macs: CBAMRUN_RESOURCE_LIMIT with the CLI's message");
        cbamrun_session_free(session);
    }

    free(input.data);
    free(expected.data);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
