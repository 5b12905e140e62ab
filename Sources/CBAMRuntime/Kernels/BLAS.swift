import CDNNL

/// Single-precision matrix multiply through oneDNN's `dnnl_sgemm`: the one place cbam-run
/// calls a GEMM outside convolution primitives.
///
/// oneDNN picks its GEMM kernels from the CPU's feature bits (AVX-512, AVX2, …), so the
/// im2col path, Gemm and MatMul run at the machine's speed whatever the CPU's model; the
/// OpenBLAS this replaced fell back to SSE3 kernels on CPUs newer than its table, and was
/// slower than `dnnl_sgemm` on every zoo shape even with its core forced right
/// (tools/onednn-repro/sgemm_vs_openblas.c; figures in docs/onednn.md).
enum BLAS {
    /// `C[m×n] = alpha · op(A) · op(B) + beta · C`, row-major; `op` transposes when asked.
    /// `lda`, `ldb`, `ldc` are the row strides of A, B and C as stored. Runs on the calling
    /// thread alone: kernels split their work across threads themselves (``Parallel``).
    @inline(__always)
    static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                      alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {
            // beta 0 means C is not read (it may be uninitialised): assign, don't scale.
            for row in 0..<m { for col in 0..<n { c[row * ldc + col] = beta == 0 ? 0 : c[row * ldc + col] * beta } }
            return
        }
        // oneDNN's GEMM starts as many OpenMP threads as the calling thread's count allows.
        let threads = omp_get_max_threads()
        if threads != 1 { omp_set_num_threads(1) }
        let status = dnnl_sgemm(transA ? 84 : 78, transB ? 84 : 78, dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), alpha,
                                a, dnnl_dim_t(lda), b, dnnl_dim_t(ldb), beta, c, dnnl_dim_t(ldc))  // 84 "T", 78 "N"
        if threads != 1 { omp_set_num_threads(threads) }
        if status != dnnl_success {
            reference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        }
    }

    /// The textbook triple loop: what `sgemm` falls back to if oneDNN refuses the call (it
    /// checks only the arguments validated here already) and what the tests hold it against.
    static func reference(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                          b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        for row in 0..<m {
            for col in 0..<n {
                var sum: Float = 0
                for i in 0..<k {
                    sum += (transA ? a[i * lda + row] : a[row * lda + i]) * (transB ? b[col * ldb + i] : b[i * ldb + col])
                }
                c[row * ldc + col] = alpha * sum + (beta == 0 ? 0 : beta * c[row * ldc + col])
            }
        }
    }

    /// Sizes past 2^31 are refused rather than risk a library's 32-bit index.
    static func checkSize(_ values: Int...) throws {
        guard values.allSatisfy({ $0 < Int(Int32.max) }) else {
            throw CBAMError(.invalidShape, "a matrix dimension exceeds 2^31, which BLAS cannot take")
        }
    }
}
