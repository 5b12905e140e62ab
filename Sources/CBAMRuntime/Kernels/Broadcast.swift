/// Numpy-style broadcasting for elementwise kernels.
///
/// Both operands are viewed in the output's shape with stride 0 along broadcast
/// axes; adjacent axes that are contiguous in both operands are merged, so the
/// common attention case `[N,C,H,W] * [N,C,1,1]` becomes an outer loop over
/// `N*C` and an inner loop over `H*W` with the gate value fixed.
struct BroadcastPlan {
    let outputShape: [Int]
    let count: Int
    /// Merged extents and per-operand strides, outermost first; the last axis is the inner loop.
    let extents: [Int]
    let aStrides: [Int]
    let bStrides: [Int]

    init(_ aShape: [Int], _ bShape: [Int]) throws {
        outputShape = try Shape.broadcast(aShape, bShape)
        count = try Shape.elementCount(outputShape)
        let rank = outputShape.count
        func paddedStrides(_ shape: [Int]) -> [Int] {
            let padded = [Int](repeating: 1, count: rank - shape.count) + shape
            let strides = Shape.strides(padded)
            return (0..<rank).map { padded[$0] == 1 ? 0 : strides[$0] }
        }
        let sa = paddedStrides(aShape), sb = paddedStrides(bShape)
        var extents: [Int] = [], aStrides: [Int] = [], bStrides: [Int] = []
        for axis in 0..<rank where outputShape[axis] != 1 {
            if let last = extents.indices.last,
               aStrides[last] == sa[axis] * outputShape[axis], bStrides[last] == sb[axis] * outputShape[axis] {
                extents[last] *= outputShape[axis]
                aStrides[last] = sa[axis]
                bStrides[last] = sb[axis]
            } else {
                extents.append(outputShape[axis]); aStrides.append(sa[axis]); bStrides.append(sb[axis])
            }
        }
        if extents.isEmpty { extents = [1]; aStrides = [0]; bStrides = [0] }
        self.extents = extents
        self.aStrides = aStrides
        self.bStrides = bStrides
    }

    /// Number of innermost-axis runs (the unit of work).
    var runCount: Int { count == 0 ? 0 : count / extents[extents.count - 1] }

    /// Calls `inner(outOffset, aOffset, bOffset, length, aStep, bStep)` once per run of the
    /// innermost axis, for the runs in `runs` (all by default).
    @inline(__always)
    func forEachRun(in runs: Range<Int>? = nil, _ inner: (Int, Int, Int, Int, Int, Int) throws -> Void) rethrows {
        let last = extents.count - 1
        let runs = runs ?? 0..<runCount
        if runs.isEmpty { return }
        // The outer odometer lives on the stack: a planned kernel's run allocates nothing.
        try withUnsafeTemporaryAllocation(of: Int.self, capacity: Swift.max(last, 1)) { buffer in
            try walk(runs, index: buffer.baseAddress!, inner)
        }
    }

    @inline(__always)
    private func walk(_ runs: Range<Int>, index: UnsafeMutablePointer<Int>, _ inner: (Int, Int, Int, Int, Int, Int) throws -> Void) rethrows {
        let last = extents.count - 1
        let length = extents[last], aStep = aStrides[last], bStep = bStrides[last]
        // Position the outer odometer at the first run.
        var aOffset = 0, bOffset = 0, rest = runs.lowerBound
        for axis in stride(from: last - 1, through: 0, by: -1) {
            index[axis] = rest % extents[axis]
            rest /= extents[axis]
            aOffset += index[axis] * aStrides[axis]
            bOffset += index[axis] * bStrides[axis]
        }
        for run in runs {
            try inner(run * length, aOffset, bOffset, length, aStep, bStep)
            // Advance the outer odometer.
            var axis = last - 1
            while axis >= 0 {
                index[axis] += 1
                aOffset += aStrides[axis]
                bOffset += bStrides[axis]
                if index[axis] < extents[axis] { break }
                aOffset -= aStrides[axis] * extents[axis]
                bOffset -= bStrides[axis] * extents[axis]
                index[axis] = 0
                axis -= 1
            }
        }
    }
}

/// `op` applied over the broadcast of `a` and `b`. Inlined into each caller so
/// the closure is specialised and the inner loop vectorises.
/// With `threads` > 1 and a large output, the runs are split across threads.
@inline(__always)
func broadcastMap<A, B, R>(_ a: [A], _ aShape: [Int], _ b: [B], _ bShape: [Int], threads: Int = 1,
                           _ op: (A, B) throws -> R) throws -> Tensor.Storage.Buffer<R> {
    let plan = try BroadcastPlan(aShape, bShape)
    let workers = plan.count >= Parallel.minimumElements ? Swift.min(threads, plan.runCount) : 1
    var errors = [Error?](repeating: nil, count: Swift.max(workers, 1))
    let values = a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            [R](unsafeUninitializedCapacity: plan.count) { out, initialized in
                let target = out.baseAddress
                /// Fills the runs in `share`; inlined so `op` is specialised into the loops.
                @inline(__always) func fill(_ share: Range<Int>) throws {
                    try plan.forEachRun(in: share) { o, ai, bi, length, aStep, bStep in
                        let y = target! + o
                        if aStep == 1 && bStep == 1 {
                            for k in 0..<length { (y + k).initialize(to: try op(pa[ai + k], pb[bi + k])) }
                        } else if aStep == 1 {
                            let right = pb[bi]
                            for k in 0..<length { (y + k).initialize(to: try op(pa[ai + k], right)) }
                        } else if bStep == 1 {
                            let left = pa[ai]
                            for k in 0..<length { (y + k).initialize(to: try op(left, pb[bi + k])) }
                        } else {
                            let value = try op(pa[ai], pb[bi])
                            for k in 0..<length { (y + k).initialize(to: value) }
                        }
                    }
                }
                if workers <= 1 {
                    do { try fill(0..<plan.runCount) } catch { errors[0] = error }
                } else {
                    errors.withUnsafeMutableBufferPointer { slots in
                        Parallel.forEach(workers) { worker in
                            do { try fill(Parallel.share(worker, of: workers, count: plan.runCount)) } catch { slots[worker] = error }
                        }
                    }
                }
                // Trivial element types only: on an error the buffer is dropped uninitialised, which is safe.
                initialized = errors.contains { $0 != nil } ? 0 : plan.count
            }
        }
    }
    if let error = errors.compactMap({ $0 }).first { throw error }
    return Tensor.Storage.Buffer(shape: plan.outputShape, values: values)
}

extension Tensor.Storage {
    /// A typed result buffer with its shape, before it is wrapped in a ``Tensor``.
    struct Buffer<Element> {
        let shape: [Int]
        let values: [Element]
    }
}

/// Materialises `tensor` broadcast to `shape` (Expand, and the rare n-ary broadcasts).
func expand(_ tensor: Tensor, to shape: [Int]) throws -> Tensor {
    if tensor.shape == shape { return tensor }
    func run<T>(_ values: [T]) throws -> Tensor.Storage.Buffer<T> {
        // Broadcasting against an all-ones template of the target shape picks each source element.
        let unit = [UInt8](repeating: 0, count: try Shape.elementCount(shape))
        return try broadcastMap(values, tensor.shape, unit, shape) { x, _ in x }
    }
    let result: Tensor
    switch tensor.storage {
    case .float(let v): result = try run(v).tensor(Tensor.Storage.float)
    case .double(let v): result = try run(v).tensor(Tensor.Storage.double)
    case .int64(let v): result = try run(v).tensor(Tensor.Storage.int64)
    case .int32(let v): result = try run(v).tensor(Tensor.Storage.int32)
    case .int8(let v): result = try run(v).tensor(Tensor.Storage.int8)
    case .uint8(let v): result = try run(v).tensor(Tensor.Storage.uint8)
    case .bool(let v): result = try run(v).tensor(Tensor.Storage.bool)
    case .float16(let v): result = try run(v).tensor(Tensor.Storage.float16)
    }
    guard result.shape == shape else {
        throw CBAMError(.shapeMismatch, "cannot expand shape \(Shape.describe(tensor.shape)) to \(Shape.describe(shape))")
    }
    return result
}

extension Tensor.Storage.Buffer {
    func tensor(_ wrap: ([Element]) -> Tensor.Storage) -> Tensor { Tensor(unchecked: shape, wrap(values)) }
}
