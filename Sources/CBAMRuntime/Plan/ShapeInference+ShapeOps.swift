// Shape rules for the ops that move or describe elements (ShapeOps.swift): Reshape,
// Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice, Gather, Expand, Tile,
// Pad, Shape, Size, Identity, Dropout, Constant, ConstantOfShape. Any element type.

extension ShapeInference {
    static func shapeRules() -> [String: Rule] {
        var rules: [String: Rule] = [:]
        rules["Identity"] = { o in [try o.required(0, "input")] }
        rules["Dropout"] = dropout
        rules["Shape"] = { o in
            let start = try o.context.int("start", default: 0)
            let end = try o.context.intIfPresent("end")
            let rank = try o.required(0, "data").rank
            // Bounds clamp into 0...rank (negative ones count from the end).
            func clamp(_ axis: Int) -> Int { min(max(axis < 0 ? axis + rank : axis, 0), rank) }
            let (from, to) = (clamp(start), clamp(end ?? rank))
            return [ValueType(.int64, [max(to - from, 0)])]
        }
        rules["Size"] = { o in
            _ = try o.required(0, "data")
            return [ValueType(.int64, [])]
        }
        rules["Constant"] = constant
        rules["ConstantOfShape"] = constantOfShape
        rules["Reshape"] = reshape
        rules["Flatten"] = { o in
            let axisAttribute = try o.context.int("axis", default: 1)
            let x = try o.required(0, "input")
            let axis = axisAttribute < 0 ? axisAttribute + x.rank : axisAttribute
            guard axis >= 0, axis <= x.rank else {
                throw CBAMError(.invalidAttribute, "axis \(axisAttribute) is out of range for rank \(x.rank)", field: attribute("axis"))
            }
            let outer = try count(Array(x.shape[..<axis]), field: "input"), inner = try count(Array(x.shape[axis...]), field: "input")
            return [ValueType(x.dataType, [outer, inner])]
        }
        rules["Squeeze"] = squeeze
        rules["Unsqueeze"] = unsqueeze
        rules["Transpose"] = { o in
            let perm = try o.context.ints("perm")
            let x = try o.required(0, "data")
            let order = perm ?? Array((0..<x.rank).reversed())
            guard order.count == x.rank, Set(order) == Set(0..<x.rank) else {
                throw CBAMError(.invalidAttribute, "perm \(order) is not a permutation of 0..<\(x.rank)", field: attribute("perm"))
            }
            return [ValueType(x.dataType, order.map { x.shape[$0] })]
        }
        rules["Concat"] = concat
        rules["Split"] = split
        rules["Slice"] = slice
        rules["Gather"] = gather
        rules["GatherND"] = { o in
            let batchDims = try o.context.int("batch_dims", default: 0)
            let data = try o.required(0, "data"), indices = try o.required(1, "indices")
            guard indices.dataType == .int64 || indices.dataType == .int32 else {
                throw CBAMError(.typeMismatch, "indices must be int64 or int32, not \(indices.dataType)", field: "indices")
            }
            return [ValueType(data.dataType, try GatherNDGeometry(data: data.shape, indices: indices.shape, batchDims: batchDims).outputShape)]
        }
        rules["Expand"] = { o in
            let x = try o.required(0, "input")
            _ = try o.required(1, "shape")
            let shape = try o.integers(1, "shape") ?? []
            let output = try broadcast(x.shape, shape, field: "shape")
            try count(output, field: "shape")
            return [ValueType(x.dataType, output)]
        }
        rules["Tile"] = { o in
            let x = try o.required(0, "input")
            _ = try o.required(1, "repeats")
            let repeats = try o.integers(1, "repeats") ?? []
            guard repeats.count == x.rank, repeats.allSatisfy({ $0 >= 0 }) else {
                throw CBAMError(.shapeMismatch, "repeats \(repeats) must have \(x.rank) non-negative values", field: "repeats")
            }
            let output = try withField("repeats") { try zip(x.shape, repeats).map { try Shape.multiply($0, $1) } }
            try count(output, field: "repeats")
            return [ValueType(x.dataType, output)]
        }
        rules["Pad"] = pad
        return rules
    }

    /// Dropout (inference): the data, and an all-true bool mask. Training mode with a
    /// non-zero ratio is refused when both are known (constants).
    static func dropout(_ o: Operands) throws -> [ValueType] {
        let data = try o.required(0, "data")
        if let training = o.optional(2) {
            try requireIntegers(training, "training_mode")
            if let mode = try o.context.constant(2)?.integers("training_mode").first, mode != 0 {
                let ratio: Double? = o.optional(1) == nil ? 0.5 : o.context.constant(1).map { $0.doubles().first ?? 0.5 }
                if let ratio, ratio != 0 {
                    throw CBAMError(.invalidAttribute, "training-mode Dropout (random) is not supported; export the model in eval mode", field: "training_mode")
                }
            }
        }
        return [data, ValueType(.bool, data.shape)]
    }

    /// Constant: the value of whichever `value*` attribute the node carries.
    static func constant(_ o: Operands) throws -> [ValueType] {
        let context = o.context
        if let tensor = try context.tensor("value") { return [ValueType(of: tensor)] }
        if case .float? = context.node.attributes["value_float"] { return [ValueType(.float, [])] }
        if case .int? = context.node.attributes["value_int"] { return [ValueType(.int64, [])] }
        if let values = try context.floats("value_floats") { return [ValueType(.float, [values.count])] }
        if case .ints(let values)? = context.node.attributes["value_ints"] { return [ValueType(.int64, [values.count])] }
        throw context.invalid("value", "a Constant needs a value, value_float(s) or value_int(s) attribute (strings and sparse tensors are not supported)")
    }

    /// ConstantOfShape: the `value` attribute's type (float32 0 by default), shaped by input 0's values.
    static func constantOfShape(_ o: Operands) throws -> [ValueType] {
        let value = try o.context.tensor("value")
        if let value, value.count != 1 { throw o.context.invalid("value", "must hold one element") }
        _ = try o.required(0, "input")
        let shape = try o.integers(0, "input") ?? []
        try count(shape, field: "input")
        return [ValueType(value?.dataType ?? .float, shape)]
    }

    /// Reshape: 0 copies the input's dimension (unless allowzero), one -1 is inferred.
    /// The shape is an attribute before opset 5 (the kernel reads input 1 when it is absent).
    static func reshape(_ o: Operands) throws -> [ValueType] {
        let allowZero = try o.context.int("allowzero", default: 0) != 0
        let attributeShape = o.opset < 5 ? try o.context.ints("shape") : nil
        let data = try o.required(0, "data")
        let requested: [Int]
        let field: String
        if let attributeShape {
            (requested, field) = (attributeShape, attribute("shape"))
        } else {
            _ = try o.required(1, "shape")
            (requested, field) = (try o.integers(1, "shape") ?? [], "shape")
        }
        var shape = requested
        var inferred: Int? = nil
        for (i, dim) in requested.enumerated() {
            if dim == 0 && !allowZero {
                guard i < data.rank else {
                    throw CBAMError(.shapeMismatch, "shape \(requested) copies axis \(i), which the input \(Shape.describe(data.shape)) lacks", field: field)
                }
                shape[i] = data.shape[i]
            } else if dim == -1 {
                guard inferred == nil else {
                    throw CBAMError(.shapeMismatch, "shape \(requested) has more than one -1", field: field)
                }
                inferred = i
            } else if dim < 0 {
                throw CBAMError(.shapeMismatch, "shape \(requested) has a negative dimension", field: field)
            }
        }
        let total = try count(data.shape, field: "data")
        if let inferred {
            let known = try count(shape.enumerated().map { $0.offset == inferred ? 1 : $0.element }, field: field)
            guard known > 0, total % known == 0 else {
                throw CBAMError(.shapeMismatch, "cannot reshape \(Shape.describe(data.shape)) to \(requested)", field: field)
            }
            shape[inferred] = total / known
        }
        guard try count(shape, field: field) == total else {
            throw CBAMError(.shapeMismatch, "cannot reshape \(Shape.describe(data.shape)) (\(total) elements) to \(Shape.describe(shape))", field: field)
        }
        return [ValueType(data.dataType, shape)]
    }

    /// Squeeze: the given axes (attribute before opset 13, optional input from 13), each of
    /// size 1, or every axis of size 1.
    static func squeeze(_ o: Operands) throws -> [ValueType] {
        let attributeAxes = o.opset < 13 ? try o.context.ints("axes") : nil
        let x = try o.required(0, "data")
        let field = attributeAxes != nil ? attribute("axes") : "axes"
        let given = try attributeAxes ?? o.integers(1, "axes")
        let axes = try given.map { try Set($0.map { try axis($0, rank: x.rank, field: field) }) }
            ?? Set(x.shape.indices.filter { x.shape[$0] == 1 })
        for axis in axes.sorted() where x.shape[axis] != 1 {
            throw CBAMError(.shapeMismatch, "cannot squeeze axis \(axis) of size \(x.shape[axis])", field: field)
        }
        return [ValueType(x.dataType, x.shape.indices.filter { !axes.contains($0) }.map { x.shape[$0] })]
    }

    /// Unsqueeze: size-1 axes inserted at `axes` (positions in the output), attribute before
    /// opset 13 (the kernel reads input 1 when it is absent), required input from 13.
    static func unsqueeze(_ o: Operands) throws -> [ValueType] {
        let attributeAxes = o.opset < 13 ? try o.context.ints("axes") : nil
        let x = try o.required(0, "data")
        let given: [Int]
        let field: String
        if let attributeAxes {
            (given, field) = (attributeAxes, attribute("axes"))
        } else {
            _ = try o.required(1, "axes")
            (given, field) = (try o.integers(1, "axes") ?? [], "axes")
        }
        let rank = x.rank + given.count
        let axes = try Set(given.map { try axis($0, rank: rank, field: field) })
        guard axes.count == given.count else {
            throw CBAMError(.invalidAttribute, "axes \(given) repeat an axis", field: field)
        }
        var dims = x.shape.makeIterator()
        return [ValueType(x.dataType, (0..<rank).map { axes.contains($0) ? 1 : dims.next()! })]
    }

    /// Concat: the present inputs, of one rank and type, equal except along `axis`.
    static func concat(_ o: Operands) throws -> [ValueType] {
        guard let axisAttribute = try o.context.intIfPresent("axis") else { throw o.context.invalid("axis", "is required") }
        let parts = (0..<max(o.types.count, o.node.inputs.count)).compactMap { o.optional($0) }
        guard let first = parts.first else {
            throw CBAMError(.missingInput, "Concat needs at least one input", field: "inputs")
        }
        let axis = try axis(axisAttribute, rank: first.rank, field: attribute("axis"))
        for (index, part) in parts.enumerated()
        where part.rank != first.rank || part.shape.indices.contains(where: { $0 != axis && part.shape[$0] != first.shape[$0] }) {
            throw CBAMError(.shapeMismatch, "cannot concatenate \(Shape.describe(first.shape)) and \(Shape.describe(part.shape)) on axis \(axis)", field: "inputs[\(index)]")
        }
        var output = first.shape
        output[axis] = try withField("inputs") { try Shape.sum(parts.map { $0.shape[axis] }) }
        try count(output, field: "inputs")
        if let (index, other) = parts.enumerated().first(where: { $0.element.dataType != first.dataType }) {
            throw CBAMError(.typeMismatch, "inputs mix element types (\(first.dataType) and \(other.dataType))", field: "inputs[\(index)]")
        }
        return [ValueType(first.dataType, output)]
    }

    /// Split along `axis`: by `split` sizes (attribute before opset 13, input from 13), or
    /// into num_outputs (opset 18) or as many parts as the node has outputs: equal parts
    /// of ⌈extent / parts⌉, the last ones smaller (or empty).
    static func split(_ o: Operands) throws -> [ValueType] {
        let axisAttribute = try o.context.int("axis", default: 0)
        let attributeSplit = o.opset < 13 ? try o.context.ints("split") : nil
        let numOutputs = try o.context.intIfPresent("num_outputs")
        if let numOutputs, numOutputs != o.node.outputs.count {
            throw CBAMError(.invalidAttribute, "is \(numOutputs) but the node has \(o.node.outputs.count) output(s)", field: attribute("num_outputs"))
        }
        let x = try o.required(0, "input")
        let field = attributeSplit != nil ? attribute("split") : "split"
        let sizes = try attributeSplit ?? o.integers(1, "split")
        let axis = try axis(axisAttribute, rank: x.rank, field: attribute("axis"))
        let extent = x.shape[axis]
        let lengths: [Int]
        if let sizes, !sizes.isEmpty {
            guard sizes.allSatisfy({ $0 >= 0 }), try withField(field, { try Shape.sum(sizes) }) == extent else {
                throw CBAMError(.shapeMismatch, "split sizes \(sizes) do not add up to axis \(axis)'s size \(extent)", field: field)
            }
            lengths = sizes
        } else {
            let parts = numOutputs ?? o.node.outputs.count
            guard parts > 0 else {
                throw CBAMError(.invalidAttribute, "Split needs at least one output", field: attribute("num_outputs"))
            }
            // The kernel makes `parts` outputs; only the node's declared ones are typed here
            // (a hostile num_outputs does not make a huge list).
            let size = extent / parts + (extent % parts == 0 ? 0 : 1)
            lengths = (0..<min(parts, o.node.outputs.count)).map { max(0, min(size, extent - $0 * size)) }
        }
        return lengths.map { length in
            var shape = x.shape
            shape[axis] = length
            return ValueType(x.dataType, shape)
        }
    }

    /// Slice with numpy semantics (starts/ends/axes attributes before opset 10; starts,
    /// ends, axes, steps inputs from 10): bounds clamped, negative ones from the end.
    static func slice(_ o: Operands) throws -> [ValueType] {
        let legacy = o.opset < 10
        let attributes = legacy ? (try o.context.ints("starts"), try o.context.ints("ends"), try o.context.ints("axes")) : (nil, nil, nil)
        let x = try o.required(0, "data")
        let starts: [Int], ends: [Int], axesGiven: [Int]?, stepsGiven: [Int]?
        if legacy {
            (starts, ends, axesGiven, stepsGiven) = (attributes.0 ?? [], attributes.1 ?? [], attributes.2, nil)
        } else {
            _ = try o.required(1, "starts")
            _ = try o.required(2, "ends")
            starts = try o.integers(1, "starts") ?? []
            ends = try o.integers(2, "ends") ?? []
            axesGiven = try o.integers(3, "axes")
            stepsGiven = try o.integers(4, "steps")
        }
        let field = legacy ? attribute("axes") : "axes"
        let axes = try (axesGiven ?? Array(0..<starts.count)).map { try axis($0, rank: x.rank, field: field) }
        let steps = stepsGiven ?? Array(repeating: 1, count: starts.count)
        guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
            throw CBAMError(.shapeMismatch, "starts, ends, axes and steps must have the same length", field: legacy ? attribute("ends") : "ends")
        }
        var shape = x.shape
        for (i, axis) in axes.enumerated() {
            let extent = x.shape[axis]
            guard steps[i] != 0 else {
                throw CBAMError(.invalidAttribute, "slice step cannot be 0", field: "steps")
            }
            let step = steps[i] > 0 ? min(steps[i], extent + 1) : max(steps[i], -(extent + 1))
            // Negative bounds count from the end; then clamp into the axis (in wide
            // arithmetic: exporters write INT64_MAX / INT64_MIN for "to the end").
            func resolve(_ value: Int, low: Int, high: Int) -> Int {
                let v = value < 0 ? (value < -extent ? -extent : value) + extent : value
                return min(max(v, low), high)
            }
            let first: Int, last: Int
            if step > 0 {
                first = resolve(starts[i], low: 0, high: extent)
                last = resolve(ends[i], low: 0, high: extent)
                shape[axis] = last > first ? (last - first - 1) / step + 1 : 0
            } else {
                first = resolve(starts[i], low: -1, high: extent - 1)
                last = ends[i] < -extent ? -1 : resolve(ends[i], low: -1, high: extent - 1)
                shape[axis] = first > last ? (first - last - 1) / (-step) + 1 : 0
            }
        }
        return [ValueType(x.dataType, shape)]
    }

    /// Gather along `axis`: `data[..<axis] + indices.shape + data[axis+1...]`. Constant
    /// indices are range-checked; any index into an empty axis is out of range.
    static func gather(_ o: Operands) throws -> [ValueType] {
        let axisAttribute = try o.context.int("axis", default: 0)
        let data = try o.required(0, "data"), indices = try o.required(1, "indices")
        let axis = try axis(axisAttribute, rank: data.rank, field: attribute("axis"))
        try requireIntegers(indices, "indices")
        let extent = data.shape[axis]
        if let values = try o.context.constant(1)?.integers("indices") {
            for index in values where (index < 0 ? index + extent : index) < 0 || (index < 0 ? index + extent : index) >= extent {
                throw CBAMError(.shapeMismatch, "index \(index) is out of range for axis \(axis) of size \(extent)", field: "indices")
            }
        } else if extent == 0, indices.count > 0 {
            throw CBAMError(.shapeMismatch, "axis \(axis) is empty, so no index is in range", field: "indices")
        }
        let output = Array(data.shape[..<axis]) + indices.shape + Array(data.shape[(axis + 1)...])
        try count(output, field: "indices")
        return [ValueType(data.dataType, output)]
    }

    /// Pad: constant, reflect, edge and wrap. Pads are an attribute before opset 11 (the
    /// kernel reads input 1 when it is absent), the `pads` input from 11, optionally for
    /// the axes of input 3 only.
    static func pad(_ o: Operands) throws -> [ValueType] {
        let mode = try o.context.string("mode", default: "constant")
        guard ["constant", "reflect", "edge", "wrap"].contains(mode) else { throw o.context.invalid("mode", "\"\(mode)\" is not supported") }
        let legacy = o.opset < 11
        let attributePads = legacy ? try o.context.ints("pads") : nil
        let attributeValue = try o.context.float("value", default: 0)
        let x = try o.required(0, "data")
        var pads: [Int]
        var field = "pads"
        if let attributePads {
            pads = attributePads
            field = attribute("pads")
        } else {
            _ = try o.required(1, "pads")
            pads = try o.integers(1, "pads") ?? []
        }
        if !legacy, let axes = try o.integers(3, "axes") {
            let resolved = try axes.map { try axis($0, rank: x.rank, field: "axes") }
            pads = try padsOnEveryAxis(pads, axes: resolved, rank: x.rank)
        }
        guard pads.count == 2 * x.rank else {
            throw CBAMError(.shapeMismatch, "pads must have \(2 * x.rank) values, got \(pads.count)", field: field)
        }
        let output = try x.shape.indices.map { axis -> Int in
            let size = try withField(field) { try Shape.sum([x.shape[axis], pads[axis], pads[axis + x.rank]]) }
            guard size >= 0 else { throw CBAMError(.shapeMismatch, "pads remove more than axis \(axis) holds", field: field) }
            if mode != "constant", x.shape[axis] == 0, size > 0 {
                throw CBAMError(.shapeMismatch, "\(mode) padding needs a non-empty axis \(axis) to copy from", field: "data")
            }
            return size
        }
        let total = try count(output, field: field)
        // Constant padding that shows in the output reads the fill value: constant_value
        // (opset 11+) of the data's type with at least one element, or the value attribute
        // converted to the data's type.
        if mode == "constant", x.count > 0, total > 0, pads.contains(where: { $0 > 0 }) {
            if !legacy, let fill = o.optional(2) {
                guard fill.dataType == x.dataType else {
                    throw CBAMError(.typeMismatch, "inputs mix element types (\(x.dataType) and \(fill.dataType))", field: "constant_value")
                }
                guard fill.count > 0 else {
                    throw CBAMError(.shapeMismatch, "constant_value is empty", field: "constant_value")
                }
            } else {
                try checkCastable(Double(attributeValue), to: x.dataType, field: attribute("value"))
            }
        }
        return [ValueType(x.dataType, output)]
    }

    /// Whether `cast` converts the float `value` to `type` (integers take it truncated, if in range).
    private static func checkCastable(_ value: Double, to type: DataType, field: String) throws {
        let truncated = value.rounded(.towardZero)
        let fits: Bool
        switch type {
        case .int64: fits = Int64(exactly: truncated) != nil
        case .int32: fits = Int32(exactly: truncated) != nil
        case .int8: fits = Int8(exactly: truncated) != nil
        case .uint8: fits = UInt8(exactly: truncated) != nil
        case .float, .double, .float16, .bool: fits = true
        }
        guard fits else { throw CBAMError(.typeMismatch, "cannot cast \(value) to \(type)", field: field) }
    }
}
