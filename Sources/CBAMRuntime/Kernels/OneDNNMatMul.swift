import CDNNL

/// Row-major float32 matrix multiply on oneDNN's matmul primitive (the plan's Gemm and
/// MatMul use `dnnl_sgemm` through BLAS.swift, which measured as fast on the zoo's small
/// products without a primitive per shape; this stays for the benchmarks and tests):
/// `C[b] = op(A[b]) · op(B[b]) (+ bias) (post-ops)`, with A `[M, K]` (stored `[K, M]` when
/// transposed), B `[K, N]` (stored `[N, K]` when transposed), C `[M, N]`, each batch item
/// contiguous after the previous one. A broadcast operand is one matrix shared by all items.
/// A constant B (Gemm's weights) is copied and reordered at build into the layout the
/// primitive prefers. Gemm's alpha and beta are not taken: a caller with alpha ≠ 1 or
/// beta ∉ {0, 1} stays on BLAS (beta = 1 with C in the output is the `.sum` post-op).
///
/// Same thread-safety as `DNNLConvolution`: concurrent executes are safe.
public final class DNNLMatMul: @unchecked Sendable {
    public let m: Int, n: Int, k: Int, batch: Int
    /// True when B was given at build and `execute` takes no B.
    public let hasConstantB: Bool
    public let implementation: String
    /// True when oneDNN fell back to its reference kernel ("ref:any"), which is slow.
    public var usesReferenceKernel: Bool { implementation.hasPrefix("ref") }
    private let executable: DNNLExecutable

    public init(m: Int, n: Int, k: Int, batch: Int = 1, transposeA: Bool = false, transposeB: Bool = false,
                broadcastA: Bool = false, broadcastB: Bool = false, constantB: UnsafePointer<Float>? = nil,
                bias: [Float]? = nil, postOps: [DNNLPostOp] = [], threads: Int = 1) throws {
        try OneDNN.checkSizes([("M", m), ("N", n), ("K", k), ("batch", batch)], minimum: 1)
        if let bias, bias.count != n { throw CBAMError(.shapeMismatch, "bias has \(bias.count) values for N = \(n)") }
        if constantB != nil, batch > 1, !broadcastB {
            throw CBAMError(.shapeMismatch, "a constant B is one matrix: with batch \(batch) it must be broadcast")
        }
        for shape in [[batch, m, k], [batch, k, n], [batch, m, n]] { _ = try Shape.elementCount(shape) }
        (self.m, self.n, self.k, self.batch) = (m, n, k, batch)
        hasConstantB = constantB != nil
        let engine = try OneDNN.engine()
        let batched = batch > 1
        // Batched problems are 3-D with the batch first; a broadcast operand has batch 1.
        func dims(_ rows: Int, _ cols: Int, batch items: Int) -> [Int] { batched ? [items, rows, cols] : [rows, cols] }
        func strides(_ rows: Int, _ cols: Int, transposed: Bool) -> [Int] {
            let matrix = transposed ? [1, rows] : [cols, 1]
            return batched ? [rows * cols] + matrix : matrix
        }
        let aLayout = DNNLLayout(try OneDNN.descriptor(dims(m, k, batch: broadcastA ? 1 : batch), strides: strides(m, k, transposed: transposeA)))
        let bLayout = DNNLLayout(try OneDNN.descriptor(dims(k, n, batch: broadcastB ? 1 : batch), strides: strides(k, n, transposed: transposeB)))
        let cLayout = DNNLLayout(try OneDNN.descriptor(dims(m, n, batch: batch), strides: strides(m, n, transposed: false)))
        let biasLayout = DNNLLayout(try OneDNN.descriptor(dims(1, n, batch: 1), OneDNN.plainTag(rank: batched ? 3 : 2)))
        let bDesc = constantB == nil ? bLayout.desc : try OneDNN.descriptor(dims(k, n, batch: 1), dnnl_format_tag_any)

        let calls: [(Int32, DNNLLayout)] = constantB == nil
            ? [(DNNLArgument.source, aLayout), (DNNLArgument.weights, bLayout), (DNNLArgument.destination, cLayout)]
            : [(DNNLArgument.source, aLayout), (DNNLArgument.destination, cLayout)]
        let hasBias = bias != nil
        func build(_: Int) throws -> dnnl_primitive_desc_t {
            var (a, b, c) = (aLayout.desc, bDesc, cLayout.desc)
            var biasDesc = hasBias ? biasLayout.desc : dnnl_memory_desc_t()
            var desc = dnnl_matmul_desc_t()
            try OneDNN.check(dnnl_matmul_desc_init(&desc, &a, &b, &biasDesc, &c), "dnnl_matmul_desc_init")
            let attr = try OneDNN.attributes(postOps)
            defer { dnnl_primitive_attr_destroy(attr) }
            return try OneDNN.primitiveDesc(&desc, attributes: attr, engine: engine, "matmul")
        }
        // B and the bias are copied once, into the layouts the primitive for `threads` wants.
        executable = try (bias ?? []).withUnsafeBufferPointer { biasValues in
            let constants = (constantB.map { [(DNNLArgument.weights, bLayout, UnsafeRawPointer($0))] } ?? [])
                + (bias == nil ? [] : [(DNNLArgument.bias, biasLayout, UnsafeRawPointer(biasValues.baseAddress!))])
            return try DNNLExecutable(callLayouts: calls, constants: constants, threads: Swift.max(1, threads), build: build)
        }
        implementation = try executable.variant(threads: Swift.max(1, threads)).implementation
    }

    /// C = A·B on `threads` OpenMP threads. Pass `b: nil` when B was given at build.
    public func execute(a: UnsafePointer<Float>, b: UnsafePointer<Float>?, c: UnsafeMutablePointer<Float>, threads: Int = 1) throws {
        let aRaw = UnsafeMutableRawPointer(mutating: a), cRaw = UnsafeMutableRawPointer(c)
        if hasConstantB {
            guard b == nil else { throw CBAMError(.shapeMismatch, "B was given at build; execute takes no B") }
            try executable.execute(threads: threads, aRaw, cRaw)
        } else {
            guard let b else { throw CBAMError(.missingInput, "B is missing") }
            try executable.execute(threads: threads, aRaw, UnsafeMutableRawPointer(mutating: b), cRaw)
        }
    }
}
