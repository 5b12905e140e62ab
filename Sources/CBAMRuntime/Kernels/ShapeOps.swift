// Ops that move or describe elements without computing on them: Reshape, Flatten,
// Squeeze, Unsqueeze, Transpose, Concat, Split, Slice, Gather, Expand, Tile, Pad,
// Shape, Size, Identity, Constant, ConstantOfShape. Any element type.

extension OpRegistry {
    mutating func registerShapeOps() {
        register("Identity") { _ in Kernel.single { try required($0, 0, "input") } }
        register("Dropout") { _ in
            // Inference: the identity, with an all-true mask. Training mode (an input since
            // opset 12) drops at random, which no stored reference can check, so it is refused
            // unless the ratio is 0. Old files' is_test attribute is ignored, as inference runtimes do.
            Kernel { inputs in
                let data = try required(inputs, 0, "data")
                let training = inputs.count > 2 ? try inputs[2].map { try $0.integers("training_mode").first ?? 0 } ?? 0 : 0
                let ratio = inputs.count > 1 ? inputs[1]?.doubles().first ?? 0.5 : 0.5
                if training != 0 && ratio != 0 {
                    throw CBAMError(.invalidAttribute, "training-mode Dropout (random) is not supported; export the model in eval mode", field: "training_mode")
                }
                return [data, Tensor(unchecked: data.shape, .bool([Bool](repeating: true, count: data.count)))]
            }
        }
        register("Shape") { context in
            let start = try context.int("start", default: 0)
            let end = try context.intIfPresent("end")
            return Kernel.single { inputs in
                let shape = try required(inputs, 0, "data").shape
                let (from, to) = (clampAxis(start, shape.count), clampAxis(end ?? shape.count, shape.count))
                let dims = from < to ? Array(shape[from..<to]) : []
                return .int64([dims.count], dims.map { Int64($0) })
            }
        }
        register("Size") { _ in Kernel.single { .int64([], [Int64(try required($0, 0, "data").count)]) } }
        register("Constant") { context in
            let value = try constantValue(context)
            return Kernel.single { _ in value }
        }
        register("ConstantOfShape") { context in
            let value = try context.tensor("value") ?? Tensor.float([1], [0])
            guard value.count == 1 else { throw context.invalid("value", "must hold one element") }
            return Kernel.single { inputs in
                let shape = try required(inputs, 0, "input").integers("shape")
                return try Tensor(shape: shape, storage: value.storage.repeatingFirst(Shape.elementCount(shape)))
            }
        }
        register("Reshape") { context in
            let allowZero = try context.int("allowzero", default: 0) != 0
            let attributeShape = context.opset < 5 ? try context.ints("shape") : nil
            return Kernel.single { inputs in
                let data = try required(inputs, 0, "data")
                let requested = try attributeShape ?? required(inputs, 1, "shape").integers("shape")
                return try data.reshaped(resolveReshape(data.shape, requested, allowZero: allowZero))
            }
        }
        register("Flatten") { context in
            let axisAttribute = try context.int("axis", default: 1)
            return Kernel.single { inputs in
                let x = try required(inputs, 0, "input")
                let axis = axisAttribute < 0 ? axisAttribute + x.rank : axisAttribute
                guard axis >= 0, axis <= x.rank else { throw CBAMError(.invalidAttribute, "axis \(axisAttribute) is out of range for rank \(x.rank)") }
                return try x.reshaped([x.shape[..<axis].reduce(1, *), x.shape[axis...].reduce(1, *)])
            }
        }
        register("Squeeze") { context in
            let attributeAxes = context.opset < 13 ? try context.ints("axes") : nil
            return Kernel.single { inputs in
                let x = try required(inputs, 0, "data")
                let given = try attributeAxes ?? (inputs.count > 1 ? inputs[1]?.integers("axes") : nil)
                let axes = try given.map { try Set($0.map { try Shape.normalizeAxis($0, rank: x.rank) }) }
                    ?? Set(x.shape.indices.filter { x.shape[$0] == 1 })
                for axis in axes where x.shape[axis] != 1 {
                    throw CBAMError(.shapeMismatch, "cannot squeeze axis \(axis) of size \(x.shape[axis])")
                }
                return try x.reshaped(x.shape.indices.filter { !axes.contains($0) }.map { x.shape[$0] })
            }
        }
        register("Unsqueeze") { context in
            let attributeAxes = context.opset < 13 ? try context.ints("axes") : nil
            return Kernel.single { inputs in
                let x = try required(inputs, 0, "data")
                let given = try attributeAxes ?? required(inputs, 1, "axes").integers("axes")
                let rank = x.rank + given.count
                let axes = try Set(given.map { try Shape.normalizeAxis($0, rank: rank) })
                guard axes.count == given.count else { throw CBAMError(.invalidAttribute, "axes \(given) repeat an axis") }
                var dims = x.shape.makeIterator()
                return try x.reshaped((0..<rank).map { axes.contains($0) ? 1 : dims.next()! })
            }
        }
        register("Transpose") { context in
            let perm = try context.ints("perm")
            return Kernel.single { inputs in
                let x = try required(inputs, 0, "data")
                return try transpose(x, perm: perm ?? Array((0..<x.rank).reversed()))
            }
        }
        register("Concat") { context in
            guard let axis = try context.intIfPresent("axis") else { throw context.invalid("axis", "is required") }
            return Kernel.single { inputs in try concat(inputs.compactMap { $0 }, axis: axis) }
        }
        register("Split") { context in
            let axis = try context.int("axis", default: 0)
            let attributeSplit = context.opset < 13 ? try context.ints("split") : nil
            let outputs = context.node.outputs.count
            let numOutputs = try context.intIfPresent("num_outputs")
            // ONNX: num_outputs parts, one per declared output. A value that disagrees (say 2^40)
            // would otherwise make that many parts.
            if let numOutputs, numOutputs != outputs {
                throw context.invalid("num_outputs", "is \(numOutputs) but the node has \(outputs) output(s)")
            }
            return Kernel { inputs in
                let x = try required(inputs, 0, "input")
                let given = try attributeSplit ?? (inputs.count > 1 ? inputs[1]?.integers("split") : nil)
                return try split(x, axis: axis, sizes: given, parts: numOutputs ?? outputs)
            }
        }
        register("Slice") { context in
            // Before opset 10 starts/ends/axes are attributes; from 10 on they are inputs (plus steps).
            let legacy = context.opset < 10
            let attributes = legacy ? (try context.ints("starts"), try context.ints("ends"), try context.ints("axes")) : (nil, nil, nil)
            return Kernel.single { inputs in
                let x = try required(inputs, 0, "data")
                func input(_ i: Int, _ name: String) throws -> [Int]? { i < inputs.count ? try inputs[i]?.integers(name) : nil }
                let starts = try legacy ? attributes.0 ?? [] : required(inputs, 1, "starts").integers("starts")
                let ends = try legacy ? attributes.1 ?? [] : required(inputs, 2, "ends").integers("ends")
                let axes = try legacy ? attributes.2 : input(3, "axes")
                let steps = try legacy ? nil : input(4, "steps")
                return try slice(x, starts: starts, ends: ends, axes: axes, steps: steps)
            }
        }
        register("Gather") { context in
            let axis = try context.int("axis", default: 0)
            return Kernel.single { inputs in
                try gather(try required(inputs, 0, "data"), indices: try required(inputs, 1, "indices"), axis: axis)
            }
        }
        register("GatherND") { context in
            let batchDims = try context.int("batch_dims", default: 0)
            return Kernel.single { inputs in
                try gatherND(try required(inputs, 0, "data"), indices: try required(inputs, 1, "indices"), batchDims: batchDims)
            }
        }
        register("Expand") { _ in
            Kernel.single { inputs in
                let x = try required(inputs, 0, "input")
                let shape = try required(inputs, 1, "shape").integers("shape")
                return try expand(x, to: Shape.broadcast(x.shape, shape))
            }
        }
        register("Tile") { _ in
            Kernel.single { inputs in
                let x = try required(inputs, 0, "input")
                let repeats = try required(inputs, 1, "repeats").integers("repeats")
                guard repeats.count == x.rank, repeats.allSatisfy({ $0 >= 0 }) else {
                    throw CBAMError(.shapeMismatch, "repeats \(repeats) must have \(x.rank) non-negative values")
                }
                _ = try Shape.elementCount(try zip(x.shape, repeats).map { try Shape.multiply($0, $1) })
                // Tile one axis at a time, innermost first: each pass repeats contiguous blocks.
                var result = x
                for axis in stride(from: x.rank - 1, through: 0, by: -1) where repeats[axis] != 1 {
                    var shape = result.shape
                    let block = shape[axis...].reduce(1, *), outer = shape[..<axis].reduce(1, *)
                    shape[axis] *= repeats[axis]
                    var runs: [(array: Int, start: Int, length: Int)] = []
                    runs.reserveCapacity(outer * repeats[axis])
                    for o in 0..<outer { for _ in 0..<repeats[axis] { runs.append((0, o * block, block)) } }
                    let total = try Shape.elementCount(shape)
                    result = Tensor(unchecked: shape, try Tensor.Storage.transform([result.storage], CopyRuns(runs: runs, total: total)))
                }
                return result
            }
        }
        register("Pad") { context in try padKernel(context) }
    }
}

/// Clamps a Shape-op bound (negative counts from the end) into `0...rank`.
private func clampAxis(_ axis: Int, _ rank: Int) -> Int { Swift.min(Swift.max(axis < 0 ? axis + rank : axis, 0), rank) }

/// The value of a Constant node from whichever `value*` attribute it carries.
private func constantValue(_ context: NodeContext) throws -> Tensor {
    if let tensor = try context.tensor("value") { return tensor }
    switch context.node.attributes["value_float"] { case .float(let v)?: return .float([], [v]); default: break }
    switch context.node.attributes["value_int"] { case .int(let v)?: return .int64([], [Int64(v)]); default: break }
    if let values = try context.floats("value_floats") { return .float([values.count], values) }
    if case .ints(let values)? = context.node.attributes["value_ints"] { return .int64([values.count], values.map { Int64($0) }) }
    throw context.invalid("value", "a Constant needs a value, value_float(s) or value_int(s) attribute (strings and sparse tensors are not supported)")
}

/// Resolves Reshape's requested shape: 0 copies the input dimension (unless allowzero), -1 is inferred.
func resolveReshape(_ input: [Int], _ requested: [Int], allowZero: Bool) throws -> [Int] {
    var shape = requested
    var inferred: Int? = nil
    for (i, dim) in requested.enumerated() {
        if dim == 0 && !allowZero {
            guard i < input.count else { throw CBAMError(.shapeMismatch, "shape \(requested) copies axis \(i), which the input \(Shape.describe(input)) lacks") }
            shape[i] = input[i]
        } else if dim == -1 {
            guard inferred == nil else { throw CBAMError(.shapeMismatch, "shape \(requested) has more than one -1") }
            inferred = i
        } else if dim < 0 {
            throw CBAMError(.shapeMismatch, "shape \(requested) has a negative dimension")
        }
    }
    let total = try Shape.elementCount(input)
    if let inferred {
        let known = try Shape.elementCount(shape.enumerated().map { $0.offset == inferred ? 1 : $0.element })
        guard known > 0, total % known == 0 else {
            throw CBAMError(.shapeMismatch, "cannot reshape \(Shape.describe(input)) to \(requested)")
        }
        shape[inferred] = total / known
    }
    guard try Shape.elementCount(shape) == total else {
        throw CBAMError(.shapeMismatch, "cannot reshape \(Shape.describe(input)) (\(total) elements) to \(Shape.describe(shape))")
    }
    return shape
}

func transpose(_ x: Tensor, perm: [Int]) throws -> Tensor {
    guard perm.count == x.rank, Set(perm) == Set(0..<x.rank) else {
        throw CBAMError(.invalidAttribute, "perm \(perm) is not a permutation of 0..<\(x.rank)", field: "attribute \"perm\"")
    }
    let strides = Shape.strides(x.shape)
    let shape = perm.map { x.shape[$0] }
    let indices = try Tensor.viewIndices(shape: shape, offset: 0, strides: perm.map { strides[$0] })
    return Tensor(unchecked: shape, try x.storage.picking(indices))
}

func concat(_ parts: [Tensor], axis axisAttribute: Int) throws -> Tensor {
    guard let first = parts.first else { throw CBAMError(.missingInput, "Concat needs at least one input") }
    let axis = try Shape.normalizeAxis(axisAttribute, rank: first.rank)
    for part in parts where part.rank != first.rank || part.shape.indices.contains(where: { $0 != axis && part.shape[$0] != first.shape[$0] }) {
        throw CBAMError(.shapeMismatch, "cannot concatenate \(Shape.describe(first.shape)) and \(Shape.describe(part.shape)) on axis \(axis)")
    }
    var outShape = first.shape
    outShape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
    let outer = first.shape[..<axis].reduce(1, *), inner = first.shape[(axis + 1)...].reduce(1, *)
    var runs: [(array: Int, start: Int, length: Int)] = []
    for o in 0..<outer {
        for (p, part) in parts.enumerated() {
            let length = part.shape[axis] * inner
            runs.append((p, o * length, length))
        }
    }
    let total = try Shape.elementCount(outShape)
    return Tensor(unchecked: outShape, try Tensor.Storage.transform(parts.map(\.storage), CopyRuns(runs: runs, total: total)))
}

func split(_ x: Tensor, axis axisAttribute: Int, sizes: [Int]?, parts: Int) throws -> [Tensor] {
    let axis = try Shape.normalizeAxis(axisAttribute, rank: x.rank)
    let extent = x.shape[axis]
    let lengths = try splitLengths(extent: extent, axis: axis, sizes: sizes, parts: parts)
    let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
    var offset = 0
    return try lengths.map { length in
        var shape = x.shape
        shape[axis] = length
        let runs = (0..<outer).map { (array: 0, start: $0 * extent * inner + offset * inner, length: length * inner) }
        offset += length
        return Tensor(unchecked: shape, try Tensor.Storage.transform([x.storage], CopyRuns(runs: runs, total: outer * length * inner)))
    }
}

/// The length of each part when Split cuts `extent` into the given `sizes`, or else into
/// `parts` equal parts (when uneven, as opset 18's num_outputs allows, the last is smaller).
func splitLengths(extent: Int, axis: Int, sizes: [Int]?, parts: Int) throws -> [Int] {
    if let sizes, !sizes.isEmpty {
        guard sizes.allSatisfy({ $0 >= 0 }), try Shape.sum(sizes) == extent else {
            throw CBAMError(.shapeMismatch, "split sizes \(sizes) do not add up to axis \(axis)'s size \(extent)")
        }
        return sizes
    }
    guard parts > 0 else { throw CBAMError(.invalidAttribute, "Split needs at least one output") }
    let size = (extent + parts - 1) / parts
    return (0..<parts).map { Swift.max(0, Swift.min(size, extent - $0 * size)) }
}

/// Slice with numpy semantics: bounds clamped to the axis, negative values count from
/// the end, negative steps walk backwards.
func slice(_ x: Tensor, starts: [Int], ends: [Int], axes: [Int]?, steps: [Int]?) throws -> Tensor {
    let window = try SliceWindow(shape: x.shape, starts: starts, ends: ends, axes: axes, steps: steps)
    let indices = try Tensor.viewIndices(shape: window.size, offset: window.offset, strides: window.strides)
    return Tensor(unchecked: window.size, try x.storage.picking(indices))
}

/// What Slice takes from a tensor of `shape`: the output `size`, the flat `offset` of
/// its first element and the `strides` (in elements, negative for negative steps) that
/// walk it, bounds clamped as numpy does.
struct SliceWindow {
    let size: [Int]
    let offset: Int
    let strides: [Int]

    init(shape: [Int], starts: [Int], ends: [Int], axes: [Int]?, steps: [Int]?) throws {
        let rank = shape.count
        let axes = try (axes ?? Array(0..<starts.count)).map { try Shape.normalizeAxis($0, rank: rank) }
        let steps = steps ?? Array(repeating: 1, count: starts.count)
        guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
            throw CBAMError(.shapeMismatch, "starts, ends, axes and steps must have the same length")
        }
        var begin = [Int](repeating: 0, count: rank), size = shape, step = [Int](repeating: 1, count: rank)
        for (i, axis) in axes.enumerated() {
            let extent = shape[axis]
            guard steps[i] != 0 else { throw CBAMError(.invalidAttribute, "slice step cannot be 0") }
            // A step longer than the axis takes at most one element; clamping it keeps the
            // arithmetic below (and the strides built from it) far from overflow.
            let s = steps[i] > 0 ? Swift.min(steps[i], extent + 1) : Swift.max(steps[i], -(extent + 1))
            // Clamp in wide arithmetic: exporters write INT64_MAX / INT64_MIN for "to the end".
            func resolve(_ value: Int, low: Int, high: Int) -> Int {
                let v = value < 0 ? (value < -extent ? -extent : value) + extent : value
                return Swift.min(Swift.max(v, low), high)
            }
            let first: Int, last: Int
            if s > 0 {
                first = resolve(starts[i], low: 0, high: extent)
                last = resolve(ends[i], low: 0, high: extent)
            } else {
                first = resolve(starts[i], low: -1, high: extent - 1)
                last = ends[i] < -extent ? -1 : resolve(ends[i], low: -1, high: extent - 1)
            }
            let count = s > 0 ? (last > first ? (last - first - 1) / s + 1 : 0) : (first > last ? (first - last - 1) / (-s) + 1 : 0)
            begin[axis] = first
            size[axis] = count
            step[axis] = s
        }
        let strides = Shape.strides(shape)
        self.size = size
        offset = zip(begin, strides).reduce(0) { $0 + ($1.0 < 0 ? 0 : $1.0) * $1.1 }
        self.strides = zip(step, strides).map { $0 * $1 }
    }
}

/// Gather's indices resolved against an axis of `extent` (negative ones count from the end),
/// or an error naming the first out of range.
func gatherPositions(_ indices: Tensor, extent: Int, axis: Int) throws -> [Int] {
    try indices.integers("indices").map { index -> Int in
        let resolved = index < 0 ? index + extent : index
        guard resolved >= 0, resolved < extent else {
            throw CBAMError(.shapeMismatch, "index \(index) is out of range for axis \(axis) of size \(extent)")
        }
        return resolved
    }
}

/// Gather: data `[d0, …, dn]`, indices `I` along `axis` → `d[..<axis] + I.shape + d[axis+1...]`.
func gather(_ data: Tensor, indices: Tensor, axis axisAttribute: Int) throws -> Tensor {
    let axis = try Shape.normalizeAxis(axisAttribute, rank: data.rank)
    let extent = data.shape[axis]
    let positions = try gatherPositions(indices, extent: extent, axis: axis)
    let outer = data.shape[..<axis].reduce(1, *), inner = data.shape[(axis + 1)...].reduce(1, *)
    let outShape = Array(data.shape[..<axis]) + indices.shape + Array(data.shape[(axis + 1)...])
    var runs: [(array: Int, start: Int, length: Int)] = []
    runs.reserveCapacity(outer * positions.count)
    for o in 0..<outer {
        for p in positions { runs.append((0, (o * extent + p) * inner, inner)) }
    }
    let total = try Shape.elementCount(outShape)
    return Tensor(unchecked: outShape, try Tensor.Storage.transform([data.storage], CopyRuns(runs: runs, total: total)))
}

/// GatherND's shapes: data `[b…, d…]` and indices `[b…, i…, k]` with `b` leading batch axes
/// in common give `[b…, i…] + d[k…]`, one slice of `sliceCount` elements per index tuple.
/// Checked alike by the kernel and the shape rule.
struct GatherNDGeometry {
    let batchDims: Int
    /// The length of an index tuple (indices' last axis).
    let depth: Int
    let outputShape: [Int]
    /// Elements copied per index tuple.
    let sliceCount: Int

    init(data: [Int], indices: [Int], batchDims: Int) throws {
        guard batchDims >= 0, batchDims < indices.count, batchDims < data.count else {
            throw CBAMError(.invalidAttribute, "batch_dims \(batchDims) must be at least 0 and below the ranks of data (\(data.count)) and indices (\(indices.count))",
                            field: ShapeInference.attribute("batch_dims"))
        }
        guard Array(data[..<batchDims]) == Array(indices[..<batchDims]) else {
            throw CBAMError(.shapeMismatch, "the first \(batchDims) axes of data \(Shape.describe(data)) and indices \(Shape.describe(indices)) differ", field: "indices")
        }
        depth = indices[indices.count - 1]
        guard depth >= 1, batchDims + depth <= data.count else {
            throw CBAMError(.shapeMismatch, "index tuples of length \(depth) do not fit data \(Shape.describe(data)) after \(batchDims) batch axes", field: "indices")
        }
        self.batchDims = batchDims
        outputShape = Array(indices.dropLast()) + Array(data[(batchDims + depth)...])
        sliceCount = data[(batchDims + depth)...].reduce(1, *)
        _ = try withField("indices") { try Shape.elementCount(outputShape) }
    }
}

/// GatherND: each index tuple of `indices` picks a slice of `data` (within its batch item).
/// Negative indices count from the end; one out of range is an error naming it.
func gatherND(_ data: Tensor, indices: Tensor, batchDims: Int) throws -> Tensor {
    guard indices.dataType == .int64 || indices.dataType == .int32 else {
        throw CBAMError(.typeMismatch, "indices must be int64 or int32, not \(indices.dataType)", field: "indices")
    }
    let geometry = try GatherNDGeometry(data: data.shape, indices: indices.shape, batchDims: batchDims)
    let values = try indices.integers("indices")
    let batches = data.shape[..<batchDims].reduce(1, *)
    let batchSize = data.shape[batchDims...].reduce(1, *)
    let tuples = geometry.depth > 0 ? values.count / geometry.depth : 0
    let perBatch = batches > 0 ? tuples / batches : 0
    let strides = Shape.strides(Array(data.shape[batchDims...]))
    var runs: [(array: Int, start: Int, length: Int)] = []
    runs.reserveCapacity(tuples)
    for tuple in 0..<tuples {
        var start = perBatch > 0 ? (tuple / perBatch) * batchSize : 0
        for k in 0..<geometry.depth {
            let extent = data.shape[batchDims + k], index = values[tuple * geometry.depth + k]
            let resolved = index < 0 ? index + extent : index
            guard resolved >= 0, resolved < extent else {
                throw CBAMError(.shapeMismatch, "index \(index) is out of range for axis \(batchDims + k) of size \(extent)", field: "indices")
            }
            start += resolved * strides[k]
        }
        runs.append((0, start, geometry.sliceCount))
    }
    let total = try Shape.elementCount(geometry.outputShape)
    return Tensor(unchecked: geometry.outputShape, try Tensor.Storage.transform([data.storage], CopyRuns(runs: runs, total: total)))
}

/// Pad's `pads` given for `axes` only (opset 18; `[begins…, ends…]`, axes normalized)
/// spread over all `rank` axes, the others padded by 0. A later repeat of an axis wins.
func padsOnEveryAxis(_ pads: [Int], axes: [Int], rank: Int) throws -> [Int] {
    guard pads.count == 2 * axes.count else {
        throw CBAMError(.shapeMismatch, "pads must have 2 values per axis (\(axes.count) axes), got \(pads.count)", field: "pads")
    }
    var full = [Int](repeating: 0, count: 2 * rank)
    for (i, axis) in axes.enumerated() { full[axis] = pads[i]; full[axis + rank] = pads[i + axes.count] }
    return full
}

/// Pad: constant, reflect, edge and wrap modes. Pads come from the attribute (opset < 11)
/// or the `pads` input, optionally limited to `axes` (opset 18).
private func padKernel(_ context: NodeContext) throws -> Kernel {
    let mode = try context.string("mode", default: "constant")
    guard ["constant", "reflect", "edge", "wrap"].contains(mode) else { throw context.invalid("mode", "\"\(mode)\" is not supported") }
    let legacy = context.opset < 11
    let attributePads = legacy ? try context.ints("pads") : nil
    let attributeValue = try context.float("value", default: 0)
    return Kernel.single { inputs in
        let x = try required(inputs, 0, "data")
        var pads = try attributePads ?? required(inputs, 1, "pads").integers("pads")
        if !legacy, inputs.count > 3, let axesTensor = inputs[3] {
            let axes = try axesTensor.integers("axes").map { try Shape.normalizeAxis($0, rank: x.rank) }
            pads = try padsOnEveryAxis(pads, axes: axes, rank: x.rank)
        }
        guard pads.count == 2 * x.rank else { throw CBAMError(.shapeMismatch, "pads must have \(2 * x.rank) values, got \(pads.count)") }
        let outShape = try x.shape.indices.map { axis -> Int in
            let size = try Shape.sum([x.shape[axis], pads[axis], pads[axis + x.rank]])
            guard size >= 0 else { throw CBAMError(.shapeMismatch, "pads remove more than axis \(axis) holds") }
            if mode != "constant", x.shape[axis] == 0, size > 0 {
                throw CBAMError(.shapeMismatch, "\(mode) padding needs a non-empty axis \(axis) to copy from")
            }
            return size
        }
        let strides = Shape.strides(x.shape), outStrides = Shape.strides(outShape)
        let count = try Shape.elementCount(outShape)
        // Source index per output element; -1 marks the constant fill.
        var indices = [Int](repeating: 0, count: count)
        for flat in 0..<count {
            var source = 0
            for axis in 0..<x.rank {
                var i = (flat / outStrides[axis]) % outShape[axis] - pads[axis]
                let n = x.shape[axis]
                if i < 0 || i >= n {
                    switch mode {
                    case "edge": i = Swift.min(Swift.max(i, 0), n - 1)
                    case "wrap": i = ((i % n) + n) % n
                    case "reflect":
                        guard n > 1 else { i = 0; break }
                        let period = 2 * (n - 1)
                        i = ((i % period) + period) % period
                        if i >= n { i = period - i }
                    default: source = -1
                    }
                }
                if source < 0 { break }
                source += i * strides[axis]
            }
            indices[flat] = source
        }
        if x.count == 0 || indices.allSatisfy({ $0 >= 0 }) {
            return Tensor(unchecked: outShape, try x.storage.picking(indices.map { Swift.max($0, 0) }))
        }
        // Constant mode: append the fill value to the source and point pads at it.
        let fillValue: Tensor
        if !legacy, inputs.count > 2, let given = inputs[2] { fillValue = given } else {
            fillValue = try cast(.float([1], [attributeValue]), to: x.dataType)
        }
        let extended = try Tensor.Storage.transform([x.storage, fillValue.storage], CopyRuns(runs: [(0, 0, x.count), (1, 0, 1)], total: x.count + 1))
        return Tensor(unchecked: outShape, try extended.picking(indices.map { $0 < 0 ? x.count : $0 }))
    }
}
