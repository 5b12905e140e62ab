import Foundation

// Planned float32 reductions: ReduceMean / ReduceMax / ReduceSum / ReduceMin / ReduceSumSquare
// / ReduceL2 (ConvNeXt V2's GRN: the L2 norm over H and W of [N, H, W, C]) over axes
// that are contiguous in memory (CBAM's spatial gate pools the channel axis
// [N, C, H, W] → [N, 1, H, W]; its channel gate pools the spatial axes), through the
// reference kernel's own loop (``ContiguousReduction``), and Softmax / LogSoftmax over
// any axis (SK and ResNeSt select their branches with a softmax over the radix axis).

extension PlannedKernels {
    static func registerReduction(_ table: inout [String: Builder]) {
        table["ReduceSum"] = { try reduce($0, .sum, axesInputSince: 13) }
        table["ReduceMean"] = { try reduce($0, .mean, axesInputSince: 18) }
        table["ReduceMax"] = { try reduce($0, .max, axesInputSince: 18) }
        table["ReduceMin"] = { try reduce($0, .min, axesInputSince: 18) }
        table["ReduceSumSquare"] = { try reduce($0, .sumSquare, axesInputSince: 18) }
        table["ReduceL2"] = { try reduce($0, .l2, axesInputSince: 18) }
        table["Softmax"] = { try softmax($0, log: false) }
        table["LogSoftmax"] = { try softmax($0, log: true) }
    }

    /// Reduce* over `axes` (attribute before `axesInputSince`, a constant input from it on).
    /// Axes of extent 1 are ignored, so the reduced ones need only be adjacent among the
    /// others: X is viewed as `[outer, reduced, inner]`.
    private static func reduce(_ context: PlanContext, _ op: ReduceKernel.Fast, axesInputSince: Int) throws -> PlannedKernel? {
        let node = context.node
        let x = try context.input(0, "data"), y = try context.output(0)
        guard x.type.dataType == .float, y.type.dataType == .float, x.count > 0,
              var axes = try reductionAxes(node, axesInputSince: axesInputSince) else { return nil }
        if x.layout != .plain {
            // A carried X (LayoutPass lets only a mean or max over H and W of a 4-D map be): as the global pools.
            guard try isSpatialReduction(node, rank: x.shape.count, axesInputSince: axesInputSince), op == .mean || op == .max,
                  y.layout == .plain, y.count == x.shape[0] * x.shape[1] else { return nil }
            return carriedGlobalPool(context, x: x, y: y, average: op == .mean)
        }
        if axes.isEmpty {
            if try node.int("noop_with_empty_axes", default: 0) != 0 { return copy(x, y) }
            axes = Array(x.shape.indices)
        }
        let rank = x.shape.count
        let reduced = Set(try axes.map { try Shape.normalizeAxis($0, rank: rank, what: "axis") })
        guard reduced.count == axes.count else { return nil }
        // The non-unit axes, in order, and whether each is reduced: the reduced ones must be one run.
        let kept = x.shape.indices.filter { x.shape[$0] != 1 }
        let flags = kept.map { reduced.contains($0) }
        let loop: ContiguousReduction
        if let first = flags.firstIndex(of: true), let last = flags.lastIndex(of: true) {
            guard flags[first...last].allSatisfy({ $0 }) else { return nil }
            let extents = kept.map { x.shape[$0] }
            loop = ContiguousReduction(outer: extents[..<first].reduce(1, *), reduced: extents[first...last].reduce(1, *),
                                       inner: extents[(last + 1)...].reduce(1, *), op)
        } else if op == .sumSquare || op == .l2 {
            // Over axes of extent 1 only: each element alone, squared (and its root taken).
            loop = ContiguousReduction(outer: x.count, reduced: 1, inner: 1, op)
        } else {
            return copy(x, y)
        }
        guard y.count == loop.count else { return nil }
        // Threads take whole rows (a global pool, or many outer items) or column blocks.
        let workers = x.count >= Parallel.minimumElements ? context.threads : 1
        let byRows = loop.inner == 1 || loop.outer >= workers
        let units = byRows ? loop.outer : loop.inner
        let threads = Swift.max(1, Swift.min(workers, units))
        return PlannedKernel(detail: loop.inner == 1 ? "simd rows" : "simd columns") { memory in
            let (source, target) = (UnsafePointer(x.floats(memory)), y.floats(memory))
            Parallel.forEach(threads) { worker in
                let share = Parallel.share(worker, of: threads, count: units)
                if byRows {
                    loop.run(source, target, outer: share, columns: 0..<loop.inner)
                } else {
                    loop.run(source, target, outer: 0..<loop.outer, columns: share)
                }
            }
        }
    }

    /// The axes a Reduce* node names (attribute before `axesInputSince`, a constant input from
    /// it on), as written: empty when none are given; nil when they are computed at run time.
    static func reductionAxes(_ node: NodeContext, axesInputSince: Int) throws -> [Int]? {
        guard node.opset >= axesInputSince else { return try node.ints("axes") ?? [] }
        guard node.node.inputs.count > 1, !node.node.inputs[1].isEmpty else { return [] }
        return try node.constant(1)?.integers("axes")
    }

    /// Whether a Reduce* node over a rank-`rank` input reduces exactly its two spatial axes
    /// (2 and 3 of `[N, C, H, W]`): a global pool, which may read the carried layouts.
    static func isSpatialReduction(_ node: NodeContext, rank: Int, axesInputSince: Int) throws -> Bool {
        guard rank == 4, let axes = try reductionAxes(node, axesInputSince: axesInputSince), axes.count == 2 else { return false }
        return Set(try axes.map { try Shape.normalizeAxis($0, rank: rank, what: "axis") }) == [2, 3]
    }

    /// Y = X, for a reduction over nothing (or over axes of extent 1).
    private static func copy(_ x: Operand, _ y: Operand) -> PlannedKernel? {
        guard x.type.byteCount == y.type.byteCount else { return nil }
        let bytes = x.type.byteCount
        return PlannedKernel(detail: "copy") { memory in
            let (source, target) = (x.address.pointer(memory), y.address.pointer(memory))
            if source != target { target.copyMemory(from: source, byteCount: bytes) }
        }
    }

    /// Softmax / LogSoftmax of X viewed as `[outer, extent, inner]`: before opset 13 the
    /// axes from `axis` on are one row (inner 1); from 13 on, one axis. Rows of `inner`
    /// columns are computed eight columns at a time, the column maxima and sums in scratch.
    private static func softmax(_ context: PlanContext, log: Bool) throws -> PlannedKernel? {
        let node = context.node
        let x = try context.input(0, "input"), y = try context.output(0)
        guard x.type.dataType == .float, y.type == x.type, x.shape.count >= 1 else { return nil }
        let legacy = node.opset < 13
        let axis = try Shape.normalizeAxis(try node.int("axis", default: legacy ? 1 : -1), rank: x.shape.count)
        let outer = x.shape[..<axis].reduce(1, *)
        let extent = legacy ? x.shape[axis...].reduce(1, *) : x.shape[axis]
        let inner = legacy ? 1 : x.shape[(axis + 1)...].reduce(1, *)
        guard x.count > 0 else { return PlannedKernel(detail: "empty") { _ in } }
        let workers = x.count >= Parallel.minimumElements ? context.threads : 1
        let byRows = inner == 1 || outer >= workers
        let units = byRows ? outer : inner
        let threads = Swift.max(1, Swift.min(workers, units))
        // Per thread: the running maximum and the sum of one block of columns.
        let scratch = inner > 1 ? context.scratch(bytes: threads * 2 * inner * MemoryLayout<Float>.stride) : nil
        return PlannedKernel(detail: inner == 1 ? "simd rows" : "simd columns") { memory in
            let (source, target) = (UnsafePointer(x.floats(memory)), y.floats(memory))
            let space = scratch?.pointer(memory).assumingMemoryBound(to: Float.self)
            Parallel.forEach(threads) { worker in
                let share = Parallel.share(worker, of: threads, count: units)
                let (items, columns) = byRows ? (share, 0..<inner) : (0..<outer, share)
                let buffers = space.map { ($0 + worker * 2 * inner, $0 + worker * 2 * inner + inner) }
                for o in items {
                    softmaxBlock(source + o * extent * inner + columns.lowerBound, target + o * extent * inner + columns.lowerBound,
                                 extent: extent, stride: inner, columns: columns.count, buffers: buffers, log: log)
                }
            }
        }
    }

    /// Softmax over `extent` rows `stride` apart of `columns` columns each, starting at `x`.
    /// One column (stride 1) is a contiguous row; wider blocks keep their column maxima and
    /// sums in `buffers`.
    @inline(__always)
    private static func softmaxBlock(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, extent: Int, stride: Int, columns: Int,
                                     buffers: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)?, log: Bool) {
        if stride == 1 {
            // One contiguous row: e = exp(x − max), then e / Σe.
            var maximum = VectorMath.max(x, extent)
            VectorMath.expShifted(x, shift: &maximum, shiftStep: 0, y, extent)
            var total = VectorMath.sum(y, extent)
            DivideOperator.fill(y, extent, y, 1, &total, 0)
        } else if let (maximum, total) = buffers {
            maximum.update(from: x, count: columns)
            for k in 1..<Swift.max(extent, 1) { KeepMaxOperator.fill(maximum, columns, maximum, 1, x + k * stride, 1) }
            total.update(repeating: 0, count: columns)
            for k in 0..<extent {
                VectorMath.expShifted(x + k * stride, shift: maximum, shiftStep: 1, y + k * stride, columns)
                AddOperator.fill(total, columns, total, 1, y + k * stride, 1)
            }
            for k in 0..<extent { DivideOperator.fill(y + k * stride, columns, y + k * stride, 1, total, 1) }
        }
        if log {
            for k in 0..<extent {
                let row = y + k * stride
                for i in 0..<columns { row[i] = Foundation.log(row[i]) }
            }
        }
    }
}
