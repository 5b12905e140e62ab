import COpenBLAS

/// Single-precision matrix multiply through OpenBLAS: the one place cbam-run calls BLAS.
enum BLAS {
    /// `C[m×n] = alpha · op(A) · op(B) + beta · C`, row-major; `op` transposes when asked.
    /// `lda`, `ldb`, `ldc` are the row strides of A, B and C as stored.
    @inline(__always)
    static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                      alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {
            // BLAS leaves C untouched when k = 0 only if beta = 1; do the scaling ourselves.
            // beta 0 means C is not read (it may be uninitialised): assign, don't scale.
            for row in 0..<m { for col in 0..<n { c[row * ldc + col] = beta == 0 ? 0 : c[row * ldc + col] * beta } }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// Makes every OpenBLAS call run on the calling thread alone, once per process.
    /// OpenBLAS's thread count is process-wide; kernels split work across threads
    /// themselves (``Parallel``), so each session's `threads` is honoured and no run
    /// changes a setting another session depends on.
    static func useOneThreadPerCall() { _ = oneThread }
    private static let oneThread: Void = { openblas_set_num_threads(1) }()

    /// BLAS takes 32-bit sizes; larger matrices are refused rather than truncated.
    static func checkSize(_ values: Int...) throws {
        guard values.allSatisfy({ $0 < Int(Int32.max) }) else {
            throw CBAMError(.invalidShape, "a matrix dimension exceeds 2^31, which BLAS cannot take")
        }
    }
}
