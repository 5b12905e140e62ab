// `cbam::LinearGelu` (NormalizationFusion.swift): ConvNeXt's pointwise MLP in its
// channels-last form, `Gelu(MatMul(A, B) + bias)`, as one sgemm straight into Y and one
// epilogue pass per row (+ bias and Gelu in C, `cbam_vm_gelu`) instead of three passes over Y.

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
        return PlannedKernel(detail: "sgemm + bias + gelu\(tanh ? " tanh" : "") \(VectorMath.InstructionSet.best)") { memory in
            let target = y.floats(memory)
            product.run(alpha: 1, UnsafePointer(a.floats(memory)), UnsafePointer(weights.floats(memory)), beta: 0, target)
            shift.withUnsafeBufferPointer { shift in
                let bias = shift.baseAddress!
                Parallel.forEach(workers) { worker in
                    for row in Parallel.share(worker, of: workers, count: rows) {
                        let line = target + row * n
                        VectorMath.gelu(UnsafePointer(line), bias: bias, line, n, tanh: tanh)
                    }
                }
            }
        }
    }
}
