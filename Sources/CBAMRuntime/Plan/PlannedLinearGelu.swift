// `cbam::LinearGelu` (NormalizationFusion.swift): ConvNeXt's pointwise MLP in its
// channels-last form, `Gelu(MatMul(A, B) + bias)`, as one sgemm straight into Y and one
// epilogue pass per row (+ bias, Gelu on eight lanes) instead of three passes over Y.

extension PlannedKernels {
    static func registerLinearGelu(_ table: inout [String: Builder]) {
        table[Passes.domain + "::LinearGelu"] = { try linearGelu($0) }
    }

    /// A `[…, K]` · B `[K, N]` (a constant) + bias `[N]` (a constant) → Gelu → Y `[…, N]`.
    private static func linearGelu(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        let a = try context.input(0, "A"), y = try context.output(0)
        guard let b = node.constant(1), let bias = node.constant(2), a.type.dataType == .float, b.dataType == .float,
              b.rank == 2, let k = a.shape.last, b.shape[0] == k, bias.count == b.shape[1], y.type.dataType == .float,
              y.shape == Array(a.shape.dropLast()) + [b.shape[1]] else { return nil }
        let n = b.shape[1], rows = a.count / Swift.max(k, 1)
        try BLAS.checkSize(rows, n, k)
        let tanh = try geluApproximation(node)
        let product = LinearProduct(m: rows, n: n, k: k, transA: false, transB: false, lda: k, ldb: n, threads: context.threads)
        let weights = try context.input(1, "B")
        let shift = try bias.floats("bias")
        let workers = y.count >= Parallel.minimumElements ? Swift.max(1, Swift.min(context.threads, rows)) : 1
        return PlannedKernel(detail: "sgemm + bias + gelu\(tanh ? " tanh" : "")") { memory in
            let target = y.floats(memory)
            product.run(alpha: 1, UnsafePointer(a.floats(memory)), UnsafePointer(weights.floats(memory)), beta: 0, target)
            shift.withUnsafeBufferPointer { shift in
                let bias = shift.baseAddress!
                Parallel.forEach(workers) { worker in
                    for row in Parallel.share(worker, of: workers, count: rows) {
                        let line = UnsafeMutableRawPointer(target + row * n)
                        var j = 0
                        while j + 8 <= n {
                            let v = line.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
                                + UnsafeRawPointer(bias).loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
                            line.storeBytes(of: fastGelu(v, tanh: tanh), toByteOffset: j * 4, as: SIMD8<Float>.self)
                            j += 8
                        }
                        let rest = line.assumingMemoryBound(to: Float.self)
                        for i in j..<n { rest[i] = fastGelu(SIMD8(repeating: rest[i] + bias[i]), tanh: tanh)[0] }
                    }
                }
            }
        }
    }
}

/// Gelu on eight lanes, within 1e-6 · max(1, |x|) of ``gelu(_:tanh:)`` (which takes it in
/// Double, one element at a time). tanh form: `x/2 · (1 + tanh(u))`, tanh(u) = 1 − 2/(e^{2u} + 1);
/// erf form: `x/2 · (1 + erf(x/√2))`, erf by Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7).
@inline(__always)
func fastGelu(_ x: SIMD8<Float>, tanh: Bool) -> SIMD8<Float> {
    let half = SIMD8<Float>(repeating: 0.5), one = SIMD8<Float>(repeating: 1)
    if tanh {
        let u = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        let t = one - 2 / (VectorMath.exp(2 * u) + one)
        return half * x * (one + t)
    }
    let z = x * 0.7071067811865476
    let magnitude = z.replacing(with: -z, where: z .< 0)
    let t = one / (one + 0.3275911 * magnitude)
    let polynomial = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    let e = one - polynomial * VectorMath.exp(-magnitude * magnitude)
    let erf = e.replacing(with: -e, where: z .< 0)
    return half * x * (one + erf)
}
