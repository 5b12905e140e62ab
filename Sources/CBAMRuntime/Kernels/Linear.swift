// Gemm and MatMul, float32 through sgemm (oneDNN's; BLAS.swift).

extension OpRegistry {
    mutating func registerLinear() {
        register("Gemm") { context in
            let alpha = try context.float("alpha", default: 1), beta = try context.float("beta", default: 1)
            let transA = try context.int("transA", default: 0) != 0, transB = try context.int("transB", default: 0) != 0
            return Kernel.single { inputs in
                try gemm(try required(inputs, 0, "A"), try required(inputs, 1, "B"), inputs.count > 2 ? inputs[2] : nil,
                         alpha: alpha, beta: beta, transA: transA, transB: transB)
            }
        }
        register("MatMul") { _ in binary(matmul) }
    }
}

/// Y `[M, N]` = alpha · op(A) · op(B) + beta · C, with A `[M, K]` (`[K, M]` if transA),
/// B `[K, N]` (`[N, K]` if transB) and C broadcastable to `[M, N]`.
func gemm(_ a: Tensor, _ b: Tensor, _ c: Tensor?, alpha: Float, beta: Float, transA: Bool, transB: Bool) throws -> Tensor {
    guard a.rank == 2, b.rank == 2 else {
        throw CBAMError(.shapeMismatch, "A \(Shape.describe(a.shape)) and B \(Shape.describe(b.shape)) must both be matrices")
    }
    let (m, k) = transA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
    let (kb, n) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
    guard k == kb else {
        throw CBAMError(.shapeMismatch, "A \(Shape.describe(a.shape))\(transA ? "ᵀ" : "") and B \(Shape.describe(b.shape))\(transB ? "ᵀ" : "") have inner sizes \(k) and \(kb)")
    }
    try BLAS.checkSize(m, n, k)
    var output: [Float]
    if let c, beta != 0 {
        output = try expand(c, to: [m, n]).floats("C")
    } else {
        output = [Float](repeating: 0, count: try Shape.elementCount([m, n]))
    }
    let xa = try a.floats("A"), xb = try b.floats("B")
    xa.withUnsafeBufferPointer { pa in
        xb.withUnsafeBufferPointer { pb in
            output.withUnsafeMutableBufferPointer { pc in
                BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                           a: pa.baseAddress!, lda: a.shape[1], b: pb.baseAddress!, ldb: b.shape[1],
                           beta: c == nil ? 0 : beta, c: pc.baseAddress!, ldc: n)
            }
        }
    }
    return .float([m, n], output)
}

/// numpy.matmul: 1-D operands are promoted (and the added axis removed after), leading
/// axes broadcast. A `[…, M, K]` · B `[…, K, N]` → `[…, M, N]`.
func matmul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    guard a.rank >= 1, b.rank >= 1 else { throw CBAMError(.shapeMismatch, "MatMul operands must have rank ≥ 1") }
    let aShape = a.rank == 1 ? [1, a.shape[0]] : a.shape
    let bShape = b.rank == 1 ? [b.shape[0], 1] : b.shape
    let (m, k) = (aShape[aShape.count - 2], aShape[aShape.count - 1])
    let (kb, n) = (bShape[bShape.count - 2], bShape[bShape.count - 1])
    guard k == kb else {
        throw CBAMError(.shapeMismatch, "MatMul of \(Shape.describe(a.shape)) and \(Shape.describe(b.shape)): inner sizes \(k) and \(kb) differ")
    }
    let batch = try Shape.broadcast(Array(aShape.dropLast(2)), Array(bShape.dropLast(2)))
    let aFull = try expand(a.reshaped(aShape), to: batch + [m, k])
    let bFull = try expand(b.reshaped(bShape), to: batch + [k, n])
    let batches = try Shape.elementCount(batch)
    var outShape = batch + [m, n]
    let outCount = try Shape.elementCount(outShape)
    try BLAS.checkSize(m, n, k)
    let result: Tensor.Storage
    switch (aFull.storage, bFull.storage) {
    case (.float(let xa), .float(let xb)):
        var output = [Float](repeating: 0, count: outCount)
        xa.withUnsafeBufferPointer { pa in
            xb.withUnsafeBufferPointer { pb in
                output.withUnsafeMutableBufferPointer { pc in
                    for i in 0..<batches {
                        BLAS.sgemm(m: m, n: n, k: k, a: pa.baseAddress! + i * m * k, lda: k,
                                   b: pb.baseAddress! + i * k * n, ldb: n, c: pc.baseAddress! + i * m * n, ldc: n)
                    }
                }
            }
        }
        result = .float(output)
    case (.double(let xa), .double(let xb)):
        result = .double(naiveMatmul(xa, xb, batches, m, n, k))
    case (.int64(let xa), .int64(let xb)):
        result = .int64(naiveMatmul(xa, xb, batches, m, n, k))
    case (.int32(let xa), .int32(let xb)):
        result = .int32(naiveMatmul(xa, xb, batches, m, n, k))
    default:
        throw CBAMError(.typeMismatch, "MatMul takes two tensors of the same float or integer type, got \(a.dataType) and \(b.dataType)")
    }
    if a.rank == 1 { outShape.remove(at: outShape.count - 2) }
    if b.rank == 1 { outShape.removeLast() }
    return Tensor(unchecked: outShape, result)
}

private func naiveMatmul<T: Numeric>(_ a: [T], _ b: [T], _ batches: Int, _ m: Int, _ n: Int, _ k: Int) -> [T] {
    var c = [T](repeating: 0, count: batches * m * n)
    for i in 0..<batches {
        for row in 0..<m {
            for inner in 0..<k {
                let x = a[i * m * k + row * k + inner]
                for col in 0..<n { c[i * m * n + row * n + col] += x * b[i * k * n + inner * n + col] }
            }
        }
    }
    return c
}
