// Shape rules for reductions (Reduction.swift) and the ops that normalise along axes
// (Normalization.swift): Reduce*, ArgMax / ArgMin, Softmax / LogSoftmax, BatchNormalization.

extension ShapeInference {
    static func reductionRules() -> [String: Rule] {
        var rules: [String: Rule] = [:]
        // Axes moved from an attribute to an input in opset 13 for ReduceSum, 18 for the others.
        rules["ReduceSum"] = { try [reduce($0, axesInputSince: 13)] }
        for op in ["ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                   "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"] {
            rules[op] = { try [reduce($0, axesInputSince: 18)] }
        }
        rules["ArgMax"] = { try [argReduce($0)] }
        rules["ArgMin"] = { try [argReduce($0)] }
        rules["Softmax"] = { try [softmax($0)] }
        rules["LogSoftmax"] = { try [softmax($0)] }
        rules["BatchNormalization"] = batchNormalization
        rules["CumSum"] = cumulativeSum
        return rules
    }

    /// Reduce*: the input's type; reduced axes kept as 1 (keepdims) or removed. Empty
    /// axes reduce everything, or nothing with noop_with_empty_axes.
    static func reduce(_ o: Operands, axesInputSince: Int) throws -> ValueType {
        let fromInput = o.opset >= axesInputSince
        let attributeAxes = fromInput ? nil : try o.context.ints("axes")
        let keepDims = try o.context.int("keepdims", default: 1) != 0
        let noop = try o.context.int("noop_with_empty_axes", default: 0) != 0
        let x = try o.required(0, "data")
        var axes = attributeAxes ?? []
        let field = fromInput ? "axes" : attribute("axes")
        if fromInput, let given = try o.integers(1, "axes") { axes = given }
        if axes.isEmpty {
            if noop { return x }
            axes = Array(0..<x.rank)
        }
        let resolved = try axes.map { try axis($0, rank: x.rank, field: field) }
        guard Set(resolved).count == resolved.count else {
            throw CBAMError(.invalidAttribute, "axes \(resolved) repeat an axis", field: field)
        }
        guard x.dataType != .bool else {
            throw CBAMError(.typeMismatch, "cannot reduce a bool tensor", field: "data")
        }
        return ValueType(x.dataType, reduced(x.shape, axes: Set(resolved), keepDims: keepDims))
    }

    private static func reduced(_ shape: [Int], axes: Set<Int>, keepDims: Bool) -> [Int] {
        keepDims ? shape.indices.map { axes.contains($0) ? 1 : shape[$0] } : shape.indices.filter { !axes.contains($0) }.map { shape[$0] }
    }

    /// ArgMax / ArgMin: int64 indices along `axis`, which must not be empty.
    static func argReduce(_ o: Operands) throws -> ValueType {
        let axisAttribute = try o.context.int("axis", default: 0)
        let keepDims = try o.context.int("keepdims", default: 1) != 0
        _ = try o.context.int("select_last_index", default: 0)
        let x = try o.required(0, "data")
        let resolved = try axis(axisAttribute, rank: x.rank, field: attribute("axis"))
        guard x.shape[resolved] > 0 else {
            throw CBAMError(.shapeMismatch, "cannot take \(o.node.opType) over an empty axis", field: "data")
        }
        return ValueType(.int64, reduced(x.shape, axes: [resolved], keepDims: keepDims))
    }

    /// Softmax / LogSoftmax: float32, same shape; the axis must exist (default 1 before
    /// opset 13, -1 from 13).
    static func softmax(_ o: Operands) throws -> ValueType {
        let axisAttribute = try o.context.int("axis", default: o.opset < 13 ? 1 : -1)
        let x = try o.required(0, "input")
        _ = try axis(axisAttribute, rank: x.rank, field: attribute("axis"))
        try requireFloat(x, "input")
        return x
    }

    /// CumSum: X's type and shape (float32, float64, int64, int32); the axis input is one
    /// integer, range-checked when it is a constant.
    static func cumulativeSum(_ o: Operands) throws -> [ValueType] {
        _ = try o.context.int("exclusive", default: 0)
        _ = try o.context.int("reverse", default: 0)
        let x = try o.required(0, "x"), axis = try o.required(1, "axis")
        guard axis.dataType == .int64 || axis.dataType == .int32 else {
            throw CBAMError(.typeMismatch, "axis must be int64 or int32, not \(axis.dataType)", field: "axis")
        }
        guard axis.count == 1, axis.rank <= 1 else {
            throw CBAMError(.shapeMismatch, "axis must hold one value, got shape \(Shape.describe(axis.shape))", field: "axis")
        }
        guard x.rank >= 1 else { throw CBAMError(.shapeMismatch, "x must have rank ≥ 1 to sum along an axis", field: "x") }
        if let value = o.context.constant(1) { _ = try cumulativeAxis(value, rank: x.rank) }
        guard [.float, .double, .int64, .int32].contains(x.dataType) else {
            throw CBAMError(.typeMismatch, "CumSum takes float32, float64, int64 or int32, not \(x.dataType)", field: "x")
        }
        return [x]
    }

    /// BatchNormalization: float32 Y like X `[N, C, …]`; scale, B, mean and var hold C
    /// values each. In training mode the kernel also returns the running mean and var.
    static func batchNormalization(_ o: Operands) throws -> [ValueType] {
        _ = try o.context.float("epsilon", default: 1e-5)
        _ = try o.context.float("momentum", default: 0.9)
        let training = try o.context.int("training_mode", default: 0) != 0
        let x = try o.required(0, "X")
        let names = ["scale", "B", "input_mean", "input_var"]
        let parameters = try names.enumerated().map { try o.required($0.offset + 1, $0.element) }
        if training {
            // The batch statistics are taken over X (float32) before its rank is checked.
            try requireFloat(x, "X")
        }
        guard x.rank >= 2 else {
            throw CBAMError(.shapeMismatch, "X must be [N, C, …], got \(Shape.describe(x.shape))", field: "X")
        }
        let channels = x.shape[1]
        for (name, parameter) in zip(names, parameters) {
            try requireFloat(parameter, name)
        }
        for (name, parameter) in zip(names, parameters) where parameter.count != channels {
            throw CBAMError(.shapeMismatch, "\(name) has \(parameter.count) values but X has \(channels) channels", field: name)
        }
        try requireFloat(x, "X")
        let y = ValueType(.float, x.shape)
        return training ? [y, ValueType(.float, parameters[2].shape), ValueType(.float, parameters[3].shape)] : [y]
    }
}

// Gemm and MatMul (Linear.swift).
extension ShapeInference {
    static func linearRules() -> [String: Rule] {
        ["Gemm": gemm, "MatMul": matmul]
    }

    /// Gemm: float32 Y `[M, N]` from A `[M, K]` (`[K, M]` with transA), B `[K, N]`
    /// (`[N, K]` with transB) and C broadcastable to `[M, N]` (read only when beta ≠ 0).
    static func gemm(_ o: Operands) throws -> [ValueType] {
        _ = try o.context.float("alpha", default: 1)
        let beta = try o.context.float("beta", default: 1)
        let transA = try o.context.int("transA", default: 0) != 0, transB = try o.context.int("transB", default: 0) != 0
        let a = try o.required(0, "A"), b = try o.required(1, "B")
        guard a.rank == 2 else { throw CBAMError(.shapeMismatch, "A \(Shape.describe(a.shape)) must be a matrix", field: "A") }
        guard b.rank == 2 else { throw CBAMError(.shapeMismatch, "B \(Shape.describe(b.shape)) must be a matrix", field: "B") }
        let (m, k) = transA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let (kb, n) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        guard k == kb else {
            throw CBAMError(.shapeMismatch, "A \(Shape.describe(a.shape))\(transA ? "ᵀ" : "") and B \(Shape.describe(b.shape))\(transB ? "ᵀ" : "") have inner sizes \(k) and \(kb)", field: "B")
        }
        if let c = o.optional(2), beta != 0 {
            guard try broadcast(c.shape, [m, n], field: "C") == [m, n] else {
                throw CBAMError(.shapeMismatch, "cannot expand shape \(Shape.describe(c.shape)) to \(Shape.describe([m, n]))", field: "C")
            }
            try requireFloat(c, "C")
        }
        try count([m, n], field: "Y")
        try requireFloat(a, "A")
        try requireFloat(b, "B")
        return [ValueType(.float, [m, n])]
    }

    /// MatMul, as numpy.matmul: `[…, M, K]` · `[…, K, N]` → `[…, M, N]` with the leading
    /// axes broadcast; a 1-D operand gains an axis that is removed again.
    static func matmul(_ o: Operands) throws -> [ValueType] {
        let a = try o.required(0, "A"), b = try o.required(1, "B")
        guard a.rank >= 1 else { throw CBAMError(.shapeMismatch, "MatMul operands must have rank ≥ 1", field: "A") }
        guard b.rank >= 1 else { throw CBAMError(.shapeMismatch, "MatMul operands must have rank ≥ 1", field: "B") }
        let aShape = a.rank == 1 ? [1, a.shape[0]] : a.shape
        let bShape = b.rank == 1 ? [b.shape[0], 1] : b.shape
        let (m, k) = (aShape[aShape.count - 2], aShape[aShape.count - 1])
        let (kb, n) = (bShape[bShape.count - 2], bShape[bShape.count - 1])
        guard k == kb else {
            throw CBAMError(.shapeMismatch, "MatMul of \(Shape.describe(a.shape)) and \(Shape.describe(b.shape)): inner sizes \(k) and \(kb) differ", field: "B")
        }
        let batch = try broadcast(Array(aShape.dropLast(2)), Array(bShape.dropLast(2)), field: "B")
        // The kernel broadcasts both operands to the full batch before multiplying.
        try count(batch + [m, k], field: "A")
        try count(batch + [k, n], field: "B")
        var output = batch + [m, n]
        try count(output, field: "Y")
        guard a.dataType == b.dataType, [.float, .double, .int64, .int32].contains(a.dataType) else {
            throw CBAMError(.typeMismatch, "MatMul takes two tensors of the same float or integer type, got \(a.dataType) and \(b.dataType)", field: "B")
        }
        if a.rank == 1 { output.remove(at: output.count - 2) }
        if b.rank == 1 { output.removeLast() }
        return [ValueType(a.dataType, output)]
    }
}
