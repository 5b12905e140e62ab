// Planned float32 Gemm and MatMul (the SE / CBAM channel MLPs, SK's fuse layers, the
// classifier heads): sgemm straight on the arena. Each sgemm runs on one thread, so
// a large product is split into row (or column) blocks, one sgemm per thread.

extension PlannedKernels {
    static func registerLinear(_ table: inout [String: Builder]) {
        table["Gemm"] = { try gemm($0) }
        table["MatMul"] = { try matmul($0) }
    }

    /// Y `[M, N]` = alpha · op(A) · op(B) + beta · C, C broadcast to `[M, N]` into Y first.
    private static func gemm(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        let a = try context.input(0, "A"), b = try context.input(1, "B"), y = try context.output(0)
        let c = context.inputs.count > 2 ? context.inputs[2] : nil
        guard [a, b, y].allSatisfy({ $0.type.dataType == .float }), c.map({ $0.type.dataType == .float }) ?? true,
              a.shape.count == 2, b.shape.count == 2 else { return nil }
        let alpha = try node.float("alpha", default: 1), beta = try node.float("beta", default: 1)
        let transA = try node.int("transA", default: 0) != 0, transB = try node.int("transB", default: 0) != 0
        let (m, k) = transA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let (kb, n) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        guard k == kb, y.shape == [m, n] else { return nil }
        try BLAS.checkSize(m, n, k)
        if let streamed = try streamedGemm(context, a: a, y: y, m: m, n: n, k: k, alpha: alpha, beta: beta, transA: transA, transB: transB) {
            return streamed
        }
        // C goes into Y first (a broadcast copy); sgemm then adds beta · Y.
        var prefill: StridedCopy? = nil
        if let c, beta != 0 {
            guard let copy = StridedCopy(broadcasting: c.shape, to: [m, n], elementSize: MemoryLayout<Float>.stride) else { return nil }
            prefill = copy
        }
        let product = LinearProduct(m: m, n: n, k: k, transA: transA, transB: transB, lda: a.shape[1], ldb: b.shape[1],
                                    threads: context.threads)
        let scale = c == nil ? 0 : beta
        return PlannedKernel(detail: product.workers > 1 ? "sgemm split \(product.workers)" : "sgemm") { memory in
            let target = y.floats(memory)
            if let prefill, let c { prefill.run(UnsafeRawPointer(c.address.pointer(memory)), UnsafeMutableRawPointer(target), threads: 1) }
            product.run(alpha: alpha, UnsafePointer(a.floats(memory)), UnsafePointer(b.floats(memory)), beta: scale, target)
        }
    }

    /// A classifier head at batch 1–32 (ResNet-50's and ResNeXt-50's 2048 → 1000, 8 MB of weights;
    /// MatMul's with a constant `[k, n]` B too, with no C)
    /// on the streamed kernel, as the 1×1 convolution Y `[m, n]` = A `[m, k]` · W `[n, k]`ᵀ + beta·C
    /// over m pixels: such a product uses each weight for m multiply-adds, so reading the weights is
    /// its time, and the streamed kernel reads them ahead where sgemm waits on each line (ResNeXt-50's
    /// head at batch 1, one thread: 0.53 ms in sgemm). Where: B and C constants (C one value per
    /// column: `[n]` or `[1, n]`), alpha 1, A not transposed, at most ``ConvCandidate/streamedMaximumPixels``
    /// rows and more than ``ConvCandidate/streamedMinimumWeightBytes`` of weights, with the AVX-512
    /// variant (``ConvCandidate/prefersStreamed(isa:)``; the others unmeasured) or forced
    /// (`CBAM_CONV=streamed`). Nil elsewhere: sgemm.
    private static func streamedGemm(_ context: PlanContext, a: Operand, y: Operand, m: Int, n: Int, k: Int, alpha: Float, beta: Float,
                                     transA: Bool, transB: Bool) throws -> PlannedKernel? {
        let node = context.node
        guard context.convolution == .streamed || context.convolution.isTimed && ConvCandidate.prefersStreamed(),
              alpha == 1, !transA, m >= 1, m <= ConvCandidate.streamedMaximumPixels, let b = node.constant(1) else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: k * MemoryLayout<Float>.stride)
        guard context.convolution == .streamed || !overflow && bytes > ConvCandidate.streamedMinimumWeightBytes else { return nil }
        var bias: [Float]? = nil
        if context.inputs.count > 2, context.inputs[2] != nil {
            guard let c = node.constant(2), c.count == n, c.shape.last == n, c.shape.count <= 2 else { return nil }
            bias = beta == 0 ? nil : try c.floats("C").map { beta * $0 }
        }
        // W [n, k] as the 1×1 convolution's weights: B itself when transposed, else B [k, n] transposed.
        let stored = try b.floats("B")
        let weights = transB ? stored : (0..<(n * k)).map { index in stored[(index % k) * n + index / k] }
        let geometry = DNNLConvolution.Geometry(batch: m, channels: k, height: 1, width: 1, outputChannels: n, kernelHeight: 1, kernelWidth: 1)
        let kernel = try StreamedConvolution(geometry, weights: weights, bias: bias, relu: false, isa: .auto)
        let workers = Swift.max(1, Swift.min(context.threads, kernel.blocks))
        let scratch = context.scratch(bytes: kernel.columnFloats * MemoryLayout<Float>.stride)
        return PlannedKernel(detail: "streamed:\(VectorMath.InstructionSet.auto.kernelName)" + (workers > 1 ? "" : " 1T"), copiedConstantInputs: [1, 2]) { memory in
            kernel.run(UnsafePointer(a.floats(memory)), y.floats(memory), residual: nil,
                       columns: scratch.pointer(memory).assumingMemoryBound(to: Float.self), threads: workers)
        }
    }

    /// numpy.matmul: A `[…, M, K]` · B `[…, K, N]` → `[…, M, N]`, 1-D operands promoted and
    /// leading axes broadcast. A stack of A against one B is one `[batch·M, K]` product.
    private static func matmul(_ context: PlanContext) throws -> PlannedKernel? {
        let a = try context.input(0, "A"), b = try context.input(1, "B"), y = try context.output(0)
        guard [a, b, y].allSatisfy({ $0.type.dataType == .float }), a.shape.count >= 1, b.shape.count >= 1 else { return nil }
        let aShape = a.shape.count == 1 ? [1, a.shape[0]] : a.shape
        let bShape = b.shape.count == 1 ? [b.shape[0], 1] : b.shape
        let (m, k) = (aShape[aShape.count - 2], aShape[aShape.count - 1])
        let (kb, n) = (bShape[bShape.count - 2], bShape[bShape.count - 1])
        guard k == kb else { return nil }
        let aBatch = Array(aShape.dropLast(2)), bBatch = Array(bShape.dropLast(2))
        let batch = try Shape.broadcast(aBatch, bBatch)
        var outShape = batch + [m, n]
        if a.shape.count == 1 { outShape.remove(at: outShape.count - 2) }
        if b.shape.count == 1 { outShape.removeLast() }
        guard y.shape == outShape else { return nil }
        try BLAS.checkSize(m, n, k)
        let batches = batch.reduce(1, *)
        let bShared = bBatch.reduce(1, *) == 1
        if bShared && aBatch == batch || batches == 1 {
            // One product: the A stack's rows one after another against the one B. A constant B of
            // more than 2 MB against a few rows (a classifier head written as MatMul: EfficientViT's
            // 1024 → 1280, 0.23 ms in sgemm at batch 2) is read ahead by the streamed kernel, as Gemm's.
            if a.shape.count >= 2, b.shape.count == 2,
               let streamed = try streamedGemm(context, a: a, y: y, m: batches * m, n: n, k: k, alpha: 1, beta: 0, transA: false, transB: false) {
                return streamed
            }
            let product = LinearProduct(m: batches * m, n: n, k: k, transA: false, transB: false, lda: k, ldb: n, threads: context.threads)
            return PlannedKernel(detail: product.workers > 1 ? "sgemm split \(product.workers)" : "sgemm") { memory in
                product.run(alpha: 1, UnsafePointer(a.floats(memory)), UnsafePointer(b.floats(memory)), beta: 0, y.floats(memory))
            }
        }
        // One product per batch item; each operand's item found through broadcast strides.
        func offsets(_ shape: [Int], matrix: Int) -> [Int] {
            let padded = [Int](repeating: 1, count: batch.count - shape.count) + shape
            let strides = Shape.strides(padded)
            return (0..<batches).map { item in
                var rest = item, offset = 0
                for axis in stride(from: batch.count - 1, through: 0, by: -1) {
                    let i = rest % batch[axis]
                    rest /= batch[axis]
                    if padded[axis] != 1 { offset += i * strides[axis] }
                }
                return offset * matrix
            }
        }
        let aOffsets = offsets(aBatch, matrix: m * k), bOffsets = offsets(bBatch, matrix: k * n)
        let workers = batches * m * n * k >= Parallel.minimumMACs ? Swift.max(1, Swift.min(context.threads, batches)) : 1
        return PlannedKernel(detail: "sgemm batch") { memory in
            let (pa, pb, pc) = (UnsafePointer(a.floats(memory)), UnsafePointer(b.floats(memory)), y.floats(memory))
            Parallel.forEach(workers) { worker in
                for item in Parallel.share(worker, of: workers, count: batches) {
                    BLAS.sgemm(m: m, n: n, k: k, a: pa + aOffsets[item], lda: k, b: pb + bOffsets[item], ldb: n,
                               c: pc + item * m * n, ldc: n)
                }
            }
        }
    }
}

/// `C[m×n] = alpha · op(A) · op(B) + beta · C` as one sgemm, or as blocks of rows (or of
/// columns, when there are fewer rows than threads) on several threads when it is big.
struct LinearProduct {
    let m: Int, n: Int, k: Int
    let transA: Bool, transB: Bool
    /// Row strides of A and B as stored.
    let lda: Int, ldb: Int
    let workers: Int
    let byRows: Bool

    init(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, lda: Int, ldb: Int, threads: Int) {
        (self.m, self.n, self.k, self.transA, self.transB, self.lda, self.ldb) = (m, n, k, transA, transB, lda, ldb)
        let macs = m.multipliedReportingOverflow(by: n).partialValue.multipliedReportingOverflow(by: k).partialValue
        byRows = m >= threads
        let units = byRows ? m : n
        workers = macs >= Parallel.minimumMACs ? Swift.max(1, Swift.min(threads, units)) : 1
    }

    func run(alpha: Float, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, beta: Float, _ c: UnsafeMutablePointer<Float>) {
        let workers = workers
        Parallel.forEach(workers) { worker in
            if byRows {
                let rows = Parallel.share(worker, of: workers, count: m)
                guard !rows.isEmpty else { return }
                // Row r of op(A) starts at r·lda, or at column r when A is stored transposed.
                let first = a + (transA ? rows.lowerBound : rows.lowerBound * lda)
                BLAS.sgemm(transA: transA, transB: transB, m: rows.count, n: n, k: k, alpha: alpha, a: first, lda: lda,
                           b: b, ldb: ldb, beta: beta, c: c + rows.lowerBound * n, ldc: n)
            } else {
                let columns = Parallel.share(worker, of: workers, count: n)
                guard !columns.isEmpty else { return }
                // Column j of op(B) starts at column j, or at row j when B is stored transposed.
                let first = b + (transB ? columns.lowerBound * ldb : columns.lowerBound)
                BLAS.sgemm(transA: transA, transB: transB, m: m, n: columns.count, k: k, alpha: alpha, a: a, lda: lda,
                           b: first, ldb: ldb, beta: beta, c: c + columns.lowerBound, ldc: n)
            }
        }
    }
}
