import Foundation

// Reductions over any set of axes (ReduceMean, ReduceMax, … and ArgMax/ArgMin).
// Values are accumulated in Double and the result keeps the input's element type.

extension OpRegistry {
    mutating func registerReduction() {
        // (name, start value, accumulate, finish(accumulated, count)). Axes moved from an
        // attribute to an input in opset 13 for ReduceSum and in opset 18 for the others.
        register("ReduceSum") { try ReduceKernel($0, axesInputSince: 13, start: 0, { $0 + $1 }, { s, _ in s }, fast: .sum).kernel() }
        register("ReduceMean") { try ReduceKernel($0, axesInputSince: 18, start: 0, { $0 + $1 }, { s, n in s / Double(n) }, fast: .mean).kernel() }
        register("ReduceMax") { try ReduceKernel($0, axesInputSince: 18, start: -.infinity, { $1.isNaN || $0.isNaN ? .nan : Swift.max($0, $1) }, { s, _ in s }, fast: .max).kernel() }
        register("ReduceMin") { try ReduceKernel($0, axesInputSince: 18, start: .infinity, { $1.isNaN || $0.isNaN ? .nan : Swift.min($0, $1) }, { s, _ in s }).kernel() }
        register("ReduceProd") { try ReduceKernel($0, axesInputSince: 18, start: 1, { $0 * $1 }, { s, _ in s }).kernel() }
        register("ReduceL1") { try ReduceKernel($0, axesInputSince: 18, start: 0, { $0 + Swift.abs($1) }, { s, _ in s }).kernel() }
        register("ReduceL2") { try ReduceKernel($0, axesInputSince: 18, start: 0, { $0 + $1 * $1 }, { s, _ in s.squareRoot() }).kernel() }
        register("ReduceSumSquare") { try ReduceKernel($0, axesInputSince: 18, start: 0, { $0 + $1 * $1 }, { s, _ in s }).kernel() }
        register("ReduceLogSum") { try ReduceKernel($0, axesInputSince: 18, start: 0, { $0 + $1 }, { s, _ in Foundation.log(s) }).kernel() }
        // exp can overflow Float range but not Double's for float32 inputs below ~709.
        register("ReduceLogSumExp") { try ReduceKernel($0, axesInputSince: 18, start: 0, { $0 + Foundation.exp($1) }, { s, _ in Foundation.log(s) }).kernel() }
        register("ArgMax") { try ArgReduceKernel($0, greater: true).kernel() }
        register("ArgMin") { try ArgReduceKernel($0, greater: false).kernel() }
        register("CumSum") { context in
            let exclusive = try context.int("exclusive", default: 0) != 0
            let reverse = try context.int("reverse", default: 0) != 0
            return Kernel.single { inputs in
                let x = try required(inputs, 0, "x")
                let axis = try cumulativeAxis(try required(inputs, 1, "axis"), rank: x.rank)
                return try cumulativeSum(x, axis: axis, exclusive: exclusive, reverse: reverse)
            }
        }
    }
}

/// CumSum's axis input: one integer (a scalar or a one-element vector) within X's rank
/// (negative counts from the end); X must have an axis.
func cumulativeAxis(_ axis: Tensor, rank: Int) throws -> Int {
    guard axis.dataType == .int64 || axis.dataType == .int32 else {
        throw CBAMError(.typeMismatch, "axis must be int64 or int32, not \(axis.dataType)", field: "axis")
    }
    guard axis.count == 1, axis.rank <= 1 else {
        throw CBAMError(.shapeMismatch, "axis must hold one value, got shape \(Shape.describe(axis.shape))", field: "axis")
    }
    guard rank >= 1 else { throw CBAMError(.shapeMismatch, "x must have rank ≥ 1 to sum along an axis", field: "x") }
    let value = try axis.integers("axis")[0]
    let resolved = value < 0 ? value + rank : value
    guard resolved >= 0, resolved < rank else {
        throw CBAMError(.shapeMismatch, "axis \(value) is out of range for x of rank \(rank)", field: "axis")
    }
    return resolved
}

/// CumSum along `axis`: X viewed as `[outer, extent, inner]`; each output is the sum of the
/// elements before it (`exclusive`: strictly before), counting from the end with `reverse`.
/// float32 and float64 add in their own type, as ONNX's reference does; integers wrap.
func cumulativeSum(_ x: Tensor, axis: Int, exclusive: Bool, reverse: Bool) throws -> Tensor {
    let extent = x.shape[axis], outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
    func scan<T>(_ values: [T], zero: T, _ add: (T, T) -> T) -> [T] {
        var result = values
        for o in 0..<outer {
            for i in 0..<inner {
                var total = zero
                for step in 0..<extent {
                    let k = reverse ? extent - 1 - step : step
                    let index = (o * extent + k) * inner + i
                    let value = values[index]
                    if exclusive { result[index] = total; total = add(total, value) } else { total = add(total, value); result[index] = total }
                }
            }
        }
        return result
    }
    switch x.storage {
    case .float(let v): return .float(x.shape, scan(v, zero: 0, +))
    case .double(let v): return Tensor(unchecked: x.shape, .double(scan(v, zero: 0, +)))
    case .int64(let v): return .int64(x.shape, scan(v, zero: 0, &+))
    case .int32(let v): return Tensor(unchecked: x.shape, .int32(scan(v, zero: 0, &+)))
    default: throw CBAMError(.typeMismatch, "CumSum takes float32, float64, int64 or int32, not \(x.dataType)", field: "x")
    }
}

/// Where each input element lands in the reduced output: the output shape, and a
/// walk over the input in row-major order yielding output offsets.
struct ReductionLayout {
    let outputShape: [Int]      // with keepdims applied
    let keptShape: [Int]        // reduced axes as 1 (keepdims form)
    let outputCount: Int
    let reducedCount: Int
    /// Stride of each input axis in the output (0 on reduced axes).
    let outputStrides: [Int]

    init(inputShape: [Int], axes: [Int], keepDims: Bool) throws {
        let reduced = Set(axes)
        keptShape = inputShape.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
        outputShape = keepDims ? keptShape : inputShape.enumerated().filter { !reduced.contains($0.offset) }.map(\.element)
        outputCount = try Shape.elementCount(keptShape)
        reducedCount = axes.reduce(1) { $0 * inputShape[$1] }
        let strides = Shape.strides(keptShape)
        outputStrides = inputShape.indices.map { reduced.contains($0) ? 0 : strides[$0] }
    }

    /// Calls `body(inputOffset, outputOffset)` for every input element, in input order.
    @inline(__always)
    func forEach(inputShape: [Int], _ body: (Int, Int) -> Void) {
        let total = inputShape.reduce(1, *)
        guard total > 0 else { return }
        let rank = inputShape.count
        if rank == 0 { body(0, 0); return }
        var index = [Int](repeating: 0, count: rank)
        var outOffset = 0
        let last = rank - 1, lastExtent = inputShape[last], lastStride = outputStrides[last]
        var inOffset = 0
        while inOffset < total {
            for i in 0..<lastExtent { body(inOffset + i, outOffset + i * lastStride) }
            inOffset += lastExtent
            var axis = last - 1
            while axis >= 0 {
                index[axis] += 1
                outOffset += outputStrides[axis]
                if index[axis] < inputShape[axis] { break }
                outOffset -= outputStrides[axis] * inputShape[axis]
                index[axis] = 0
                axis -= 1
            }
        }
    }
}

struct ReduceKernel {
    let attributeAxes: [Int]?
    let axesFromInput: Bool
    let keepDims: Bool
    let noopWithEmptyAxes: Bool
    let start: Double
    let accumulate: (Double, Double) -> Double
    let finish: (Double, Int) -> Double
    /// The reductions CBAM's pools use get a float32 loop over contiguous axes (`min`, the
    /// sum of squares and L2 — ConvNeXt V2's GRN — only in planned kernels: the reference
    /// reduces them in Double).
    enum Fast { case sum, mean, max, min, sumSquare, l2 }
    let fast: Fast?

    init(_ context: NodeContext, axesInputSince: Int, start: Double,
         _ accumulate: @escaping (Double, Double) -> Double, _ finish: @escaping (Double, Int) -> Double, fast: Fast? = nil) throws {
        self.fast = fast
        axesFromInput = context.opset >= axesInputSince
        attributeAxes = axesFromInput ? nil : try context.ints("axes")
        keepDims = try context.int("keepdims", default: 1) != 0
        noopWithEmptyAxes = try context.int("noop_with_empty_axes", default: 0) != 0
        self.start = start
        self.accumulate = accumulate
        self.finish = finish
    }

    func kernel() -> Kernel {
        Kernel.single { inputs in
            let x = try required(inputs, 0, "data")
            var axes = attributeAxes ?? []
            if axesFromInput, inputs.count > 1, let axesTensor = inputs[1] {
                axes = try axesTensor.integers("axes")
            }
            if axes.isEmpty {
                if noopWithEmptyAxes { return x }
                axes = Array(0..<x.rank)
            }
            axes = try axes.map { try Shape.normalizeAxis($0, rank: x.rank, what: "axis") }
            guard Set(axes).count == axes.count else { throw CBAMError(.invalidAttribute, "axes \(axes) repeat an axis", field: "axes") }
            return try reduce(x, axes: axes)
        }
    }

    func reduce(_ x: Tensor, axes: [Int]) throws -> Tensor {
        let layout = try ReductionLayout(inputShape: x.shape, axes: axes, keepDims: keepDims)
        let sorted = axes.sorted()
        if let fast, case .float(let values) = x.storage, let first = sorted.first, sorted.last! - first + 1 == sorted.count {
            let reduction = ContiguousReduction(shape: x.shape, from: first, to: sorted.last!, fast)
            let result = [Float](unsafeUninitializedCapacity: reduction.count) { out, initialized in
                values.withUnsafeBufferPointer { xp in
                    if let source = xp.baseAddress, let target = out.baseAddress {
                        reduction.run(source, target, outer: 0..<reduction.outer, columns: 0..<reduction.inner)
                    }
                }
                initialized = reduction.count
            }
            return .float(layout.outputShape, result)
        }
        var accumulators = [Double](repeating: start, count: layout.outputCount)
        func walk<T>(_ values: [T], _ toDouble: (T) -> Double) {
            values.withUnsafeBufferPointer { xp in
                accumulators.withUnsafeMutableBufferPointer { acc in
                    layout.forEach(inputShape: x.shape) { i, o in acc[o] = accumulate(acc[o], toDouble(xp[i])) }
                }
            }
        }
        switch x.storage {
        case .float(let v): walk(v) { Double($0) }
        case .double(let v): walk(v) { $0 }
        case .int64(let v): walk(v) { Double($0) }
        case .int32(let v): walk(v) { Double($0) }
        case .int8(let v): walk(v) { Double($0) }
        case .uint8(let v): walk(v) { Double($0) }
        case .float16(let v): walk(v) { Double($0) }
        case .bool: throw CBAMError(.typeMismatch, "cannot reduce a bool tensor")
        }
        let results = accumulators.map { finish($0, layout.reducedCount) }
        let storage: Tensor.Storage
        switch x.storage {
        case .float: storage = .float(results.map { Float($0) })
        case .double: storage = .double(results)
        case .int64: storage = .int64(try results.map { try exactInteger($0) })
        case .int32: storage = .int32(try results.map { Int32(clamping: try exactInteger($0)) })
        case .int8: storage = .int8(try results.map { Int8(clamping: try exactInteger($0)) })
        case .uint8: storage = .uint8(try results.map { UInt8(clamping: try exactInteger($0)) })
        case .float16: storage = .float16(results.map { Float16(Float($0)) })
        case .bool: fatalError("unreachable: rejected above")
        }
        return Tensor(unchecked: layout.outputShape, storage)
    }
}

/// float32 reduction of axes `from...to` of `shape`, viewed as `[outer, reduced, inner]`:
/// a row of `reduced` values per output when `inner` is 1 (a global pool), otherwise
/// `inner`-long rows accumulated into the output, so the inner loop runs over contiguous
/// memory and vectorises. The reference kernel and the planned one both run it.
struct ContiguousReduction {
    let outer: Int, reduced: Int, inner: Int
    let op: ReduceKernel.Fast

    init(shape: [Int], from: Int, to: Int, _ op: ReduceKernel.Fast) {
        self.init(outer: shape[..<from].reduce(1, *), reduced: shape[from...to].reduce(1, *),
                  inner: shape[(to + 1)...].reduce(1, *), op)
    }

    init(outer: Int, reduced: Int, inner: Int, _ op: ReduceKernel.Fast) {
        (self.outer, self.reduced, self.inner, self.op) = (outer, reduced, inner, op)
    }

    /// Output elements.
    var count: Int { outer * inner }

    /// Writes outputs `[o, i]` for `o` in `outer` and `i` in `columns` (the output is
    /// `[outer, inner]`); disjoint ranges may run on different threads.
    func run(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, outer range: Range<Int>, columns: Range<Int>) {
        // Mean scales by 1/n (NaN for an empty axis, as the general path gives).
        let scale: Float = reduced > 0 ? 1 / Float(reduced) : .nan
        for o in range {
            if inner == 1 {
                // Reducing trailing axes (a global pool): one contiguous row per output.
                let row = x + o * reduced
                let value: Float
                switch op {
                case .sum: value = VectorMath.sum(row, reduced)
                case .mean: value = VectorMath.sum(row, reduced) * scale
                case .max: value = VectorMath.max(row, reduced)
                case .min: value = VectorMath.min(row, reduced)
                case .sumSquare: value = VectorMath.sumOfSquares(row, reduced)
                case .l2: value = VectorMath.sumOfSquares(row, reduced).squareRoot()
                }
                y[o] = value
                continue
            }
            let target = y + o * inner + columns.lowerBound, length = columns.count
            target.update(repeating: op == .max ? -.infinity : op == .min ? .infinity : 0, count: length)
            for k in 0..<reduced {
                let source = UnsafePointer(x + (o * reduced + k) * inner + columns.lowerBound)
                switch op {
                case .sum, .mean: AddOperator.fill(target, length, target, 1, source, 1)
                // NaN wins, as in the general path.
                case .max: KeepMaxOperator.fill(target, length, target, 1, source, 1)
                case .min: KeepMinOperator.fill(target, length, target, 1, source, 1)
                case .sumSquare, .l2: VectorMath.addSquares(target, source, length)
                }
            }
            if op == .mean {
                let factor = SIMD8<Float>(repeating: scale)
                VectorMath.map(target, target, length) { $0 * factor }
            } else if op == .l2 {
                VectorMath.map(target, target, length) { $0.squareRoot() }
            }
        }
    }
}

/// The running maximum `a` updated with `b`: `b` when larger or NaN (so NaN sticks).
enum KeepMaxOperator: FloatBinaryOperator {
    static func apply(_ a: Float, _ b: Float) -> Float { b > a || b.isNaN ? b : a }
    static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a.replacing(with: b, where: (b .> a) .| (b .!= b)) }
}

/// The running minimum `a` updated with `b`: `b` when smaller or NaN (so NaN sticks).
enum KeepMinOperator: FloatBinaryOperator {
    static func apply(_ a: Float, _ b: Float) -> Float { b < a || b.isNaN ? b : a }
    static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a.replacing(with: b, where: (b .< a) .| (b .!= b)) }
}

/// Truncates toward zero; an infinite or NaN result (an empty integer ReduceMax) is an error, not a trap.
private func exactInteger(_ value: Double) throws -> Int64 {
    guard let result = Int64(exactly: value.rounded(.towardZero)) else {
        throw CBAMError(.invalidShape, "integer reduction result \(value) is not representable")
    }
    return result
}

/// ArgMax / ArgMin along one axis → int64 indices.
struct ArgReduceKernel {
    let axis: Int
    let keepDims: Bool
    let selectLast: Bool
    let greater: Bool

    init(_ context: NodeContext, greater: Bool) throws {
        axis = try context.int("axis", default: 0)
        keepDims = try context.int("keepdims", default: 1) != 0
        selectLast = try context.int("select_last_index", default: 0) != 0
        self.greater = greater
    }

    func kernel() -> Kernel {
        Kernel.single { inputs in
            let x = try required(inputs, 0, "data")
            let axis = try Shape.normalizeAxis(self.axis, rank: x.rank)
            guard x.shape[axis] > 0 else { throw CBAMError(.shapeMismatch, "cannot take Arg\(greater ? "Max" : "Min") over an empty axis") }
            let layout = try ReductionLayout(inputShape: x.shape, axes: [axis], keepDims: keepDims)
            let values = x.doubles()
            var best = [Double](repeating: .nan, count: layout.outputCount)
            var index = [Int64](repeating: -1, count: layout.outputCount)
            let axisStride = Shape.strides(x.shape)[axis], extent = x.shape[axis]
            layout.forEach(inputShape: x.shape) { i, o in
                let position = Int64((i / axisStride) % extent)
                let value = values[i]
                let better: Bool
                if index[o] < 0 { better = true }
                else if value == best[o] { better = selectLast }
                else { better = greater ? value > best[o] : value < best[o] }
                if better { best[o] = value; index[o] = position }
            }
            return .int64(layout.outputShape, index)
        }
    }
}
