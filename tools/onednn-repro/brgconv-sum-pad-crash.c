// oneDNN 2.6.3 (Debian 12's libdnnl), brgconv:avx512_core (f32): when a pad reaches the
// kernel's extent (here the top pad equals the kernel height, so the first output row sees
// only padding), the post-ops sum then ReLU crash with SIGSEGV inside the JIT code. With sum
// alone the run completes but the values are wrong (found by the Swift differential sweep,
// OneDNNTests; this program shows the crash only). DNNLConvolution keeps such geometries
// off brgconv (Geometry.hasPaddingOnlyOutputs).
//
//   gcc -O2 brgconv-sum-pad-crash.c -o crash -ldnnl
//   ./crash PAD_TOP STRIDE_W SUM RELU     e.g. ./crash 2 2 1 1 → SIGSEGV on AVX-512; ./crash 1 2 1 1 → ok
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call) do { dnnl_status_t s_ = (call); if (s_) { printf("%s: status %d\n", #call, s_); return 1; } } while (0)

int main(int argc, char **argv) {
    if (argc < 5) { printf("usage: %s PAD_TOP STRIDE_W SUM RELU\n", argv[0]); return 2; }
    int pad_top = atoi(argv[1]), stride_w = atoi(argv[2]), sum = atoi(argv[3]), relu = atoi(argv[4]);
    const int n = 1, c = 2, h = 5, w = 9, m = 10, kh = 2, kw = 2;
    const int oh = (h + pad_top + 1 - kh) + 1, ow = (w + 2 - kw) / stride_w + 1;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    dnnl_memory_desc_t src, wei, dst;
    dnnl_dims_t src_dims = {n, c, h, w}, wei_dims = {m, c, kh, kw}, dst_dims = {n, m, oh, ow};
    CHECK(dnnl_memory_desc_init_by_tag(&src, 4, src_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&wei, 4, wei_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&dst, 4, dst_dims, dnnl_f32, dnnl_format_tag_any));
    dnnl_convolution_desc_t conv;
    dnnl_dims_t strides = {1, stride_w}, dilates = {0, 0}, pad_l = {pad_top, 1}, pad_r = {1, 1};
    CHECK(dnnl_dilated_convolution_forward_desc_init(&conv, dnnl_forward_inference, dnnl_convolution_direct,
                                                     &src, &wei, NULL, &dst, strides, dilates, pad_l, pad_r));
    dnnl_post_ops_t ops;
    CHECK(dnnl_post_ops_create(&ops));
    if (sum) CHECK(dnnl_post_ops_append_sum(ops, 1.f));
    if (relu) CHECK(dnnl_post_ops_append_eltwise(ops, 1.f, dnnl_eltwise_relu, 0.f, 0.f));
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_post_ops(attr, ops));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &conv, attr, engine, NULL));
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    dnnl_primitive_t prim;
    CHECK(dnnl_primitive_create(&prim, pd));
    dnnl_memory_t src_mem, wei_mem, dst_mem;
    CHECK(dnnl_memory_create(&src_mem, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&wei_mem, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&dst_mem, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), engine, DNNL_MEMORY_ALLOCATE));
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, wei_mem}, {DNNL_ARG_DST, dst_mem}};
    printf("pad_top %d stride_w %d sum %d relu %d on %s: ", pad_top, stride_w, sum, relu, impl);
    fflush(stdout);
    CHECK(dnnl_primitive_execute(prim, stream, 3, args));
    CHECK(dnnl_stream_wait(stream));
    printf("ok\n");
    return 0;
}
