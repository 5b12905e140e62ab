// Shape rules for windowed ops (Convolution.swift, Pooling.swift): Conv, ConvTranspose,
// MaxPool / AveragePool / LpPool and the global pools. Window attributes are read by
// the kernels' own `SpatialGeometry`, so both check them alike.

extension ShapeInference {
    static func convolutionRules() -> [String: Rule] {
        var rules: [String: Rule] = [:]
        rules["Conv"] = conv
        rules["ConvTranspose"] = convTranspose
        rules["MaxPool"] = { o in try windowPool(o, indices: true) }
        rules["AveragePool"] = { o in
            _ = try o.context.int("count_include_pad", default: 0)
            return try windowPool(o, indices: false)
        }
        rules["LpPool"] = { o in
            _ = try o.context.int("p", default: 2)
            return try windowPool(o, indices: false)
        }
        rules["GlobalAveragePool"] = { [try globalPool($0)] }
        rules["GlobalMaxPool"] = { [try globalPool($0)] }
        rules["GlobalLpPool"] = { o in
            _ = try o.context.int("p", default: 2)
            return [try globalPool(o)]
        }
        return rules
    }

    /// The window of a Conv or ConvTranspose, as the kernel finds it: from `kernel_shape`
    /// or a constant weight when the node is built, otherwise from the weight's shape.
    private static func convWindow(_ o: Operands, weight: ValueType) throws -> SpatialGeometry {
        let context = o.context
        if context.has("kernel_shape") || context.constant(1) != nil {
            let geometry = try SpatialGeometry(context, kernel: context.constant(1).map { Array($0.shape.dropFirst(2)) })
            try checkConvRank(geometry, context)
            return geometry
        }
        guard weight.rank >= 3 else {
            throw CBAMError(.shapeMismatch, "W has rank \(weight.rank); a convolution weight has rank 3 or 4", field: "W")
        }
        let geometry = try SpatialGeometry(context, kernel: Array(weight.shape.dropFirst(2)))
        try checkConvRank(geometry, context)
        return geometry
    }

    /// Conv and ConvTranspose run any number (≥ 1) of spatial axes.
    private static func checkConvRank(_ geometry: SpatialGeometry, _ context: NodeContext) throws {
        guard geometry.rank >= 1 else {
            throw context.invalid("kernel_shape", "a \(context.node.opType) needs at least one spatial axis")
        }
    }

    private static func group(_ o: Operands) throws -> Int {
        let group = try o.context.int("group", default: 1)
        guard group >= 1 else { throw o.context.invalid("group", "must be at least 1, got \(group)") }
        return group
    }

    /// Conv: X `[N, C, spatial…]`, W `[M, C/group, kernel…]`, B `[M]` → float32 `[N, M, out…]`.
    static func conv(_ o: Operands) throws -> [ValueType] {
        let w = try o.required(1, "W")
        let x = try o.required(0, "X")
        let geometry = try convWindow(o, weight: w)
        let group = try group(o)
        try ConvKernel.checkOperands(x: x.shape, w: w.shape, rank: geometry.rank, group: group)
        let (n, c, m) = (x.shape[0], x.shape[1], w.shape[0])
        let kernel = Array(w.shape.dropFirst(2))
        guard kernel == geometry.kernel else {
            throw CBAMError(.shapeMismatch, "W's kernel \(Shape.describe(kernel)) differs from kernel_shape \(geometry.kernel)", field: "W")
        }
        if let b = o.optional(2) {
            try requireFloat(b, "B")
            guard b.count == m else {
                throw CBAMError(.shapeMismatch, "B has \(b.count) values but W has \(m) output channels", field: "B")
            }
        }
        let (outSpatial, _, _) = try withField("X") { try geometry.resolve(input: Array(x.shape.dropFirst(2))) }
        let output = [n, m] + outSpatial
        try count(output, field: "Y")
        // The kernel unfolds each image into a [C/group · kernel, out…] column buffer.
        let columns = try count([c / group] + kernel, field: "W")
        try count([columns] + outSpatial, field: "X")
        try requireFloat(x, "X")
        try requireFloat(w, "W")
        return [ValueType(.float, output)]
    }

    /// ConvTranspose: X `[N, C, spatial…]`, W `[C, M/group, kernel…]`, B `[M]` → float32
    /// `[N, M, out…]`, out = stride·(in − 1) + output_padding + dilated kernel − pads, or
    /// `output_shape` / in·stride (SAME auto_pad) with the pads that take.
    static func convTranspose(_ o: Operands) throws -> [ValueType] {
        let w = try o.required(1, "W")
        let x = try o.required(0, "X")
        let geometry = try convWindow(o, weight: w)
        let group = try group(o)
        let outputPadding = try o.context.ints("output_padding")
        let outputShape = try o.context.ints("output_shape")
        if let outputPadding, outputPadding.contains(where: { $0 < 0 || $0 >= 1 << 24 }) {
            throw o.context.invalid("output_padding", "must be non-negative and below 2^24, got \(outputPadding)")
        }
        if let outputShape, outputShape.contains(where: { $0 < 0 || $0 >= 1 << 24 }) {
            throw o.context.invalid("output_shape", "must be non-negative and below 2^24, got \(outputShape)")
        }
        let rank = geometry.rank
        guard x.rank == rank + 2 else {
            throw CBAMError(.shapeMismatch, "X has rank \(x.rank) but a \(rank)-D ConvTranspose needs rank \(rank + 2)", field: "X")
        }
        guard w.rank == x.rank else {
            throw CBAMError(.shapeMismatch, "W has rank \(w.rank) but X has rank \(x.rank)", field: "W")
        }
        let (n, c) = (x.shape[0], x.shape[1])
        guard w.shape[0] == c, c % group == 0 else {
            throw CBAMError(.shapeMismatch, "W \(Shape.describe(w.shape)) does not fit X with \(c) channels and group \(group)", field: "W")
        }
        let kernel = Array(w.shape.dropFirst(2))
        guard kernel == geometry.kernel else {
            throw CBAMError(.shapeMismatch, "W's kernel \(Shape.describe(kernel)) differs from kernel_shape \(geometry.kernel)", field: "W")
        }
        let m = try withField("W") { try Shape.multiply(w.shape[1], group) }
        if let b = o.optional(2) {
            try requireFloat(b, "B")
            guard b.count == m else {
                throw CBAMError(.shapeMismatch, "B has \(b.count) values but the op has \(m) output channels", field: "B")
            }
        }
        if let outputPadding, outputPadding.count != rank {
            throw o.context.invalid("output_padding", "must have \(rank) values, got \(outputPadding.count)")
        }
        var target: [Int]? = nil
        if let outputShape {
            // The spatial sizes, or [N, M, spatial…] whose last `rank` values are used.
            guard outputShape.count >= rank else {
                throw o.context.invalid("output_shape", "has \(outputShape.count) values; \(rank) spatial sizes are needed")
            }
            target = Array(outputShape.suffix(rank))
        }
        var outSpatial: [Int] = []
        for axis in 0..<rank {
            let input = x.shape[axis + 2], stride = geometry.strides[axis]
            let extent = geometry.dilations[axis] * (kernel[axis] - 1) + 1
            let full = try withField("X") {
                try Shape.sum([try Shape.multiply(stride, input - 1), outputPadding?[axis] ?? 0, extent])
            }
            var wanted = target?[axis]
            if wanted == nil, geometry.autoPad == .sameUpper || geometry.autoPad == .sameLower {
                wanted = try withField("X") { try Shape.multiply(input, stride) }
            }
            if let wanted {
                // The total padding full − wanted may be negative (the end grows, as output_padding would).
                guard wanted > 0, wanted <= full + stride else {
                    throw CBAMError(.shapeMismatch, "output size \(wanted) cannot be produced by ConvTranspose on spatial axis \(axis) (at most \(full + stride - 1))",
                                    field: target != nil ? attribute("output_shape") : "X")
                }
                outSpatial.append(wanted)
            } else {
                let (begin, end) = geometry.autoPad == .valid ? (0, 0) : (geometry.pads[axis], geometry.pads[axis + rank])
                let size = full - begin - end
                guard size > 0 else {
                    throw CBAMError(.shapeMismatch, "pads leave no output on spatial axis \(axis)", field: attribute("pads"))
                }
                outSpatial.append(size)
            }
        }
        let output = [n, m] + outSpatial
        try count(kernel, field: "W")
        try count(Array(x.shape.dropFirst(2)), field: "X")
        try count(outSpatial, field: "Y")
        try count(output, field: "Y")
        // Column buffer: [M/group · kernel, in…].
        let rows = try count([w.shape[1]] + kernel, field: "W")
        try count([rows] + Array(x.shape.dropFirst(2)), field: "X")
        try requireFloat(x, "X")
        try requireFloat(w, "W")
        return [ValueType(.float, output)]
    }

    /// MaxPool / AveragePool / LpPool: float32 Y `[N, C, out…]`; MaxPool also gives int64 Indices.
    static func windowPool(_ o: Operands, indices: Bool) throws -> [ValueType] {
        let geometry = try SpatialGeometry(o.context, kernel: nil)
        let columnMajor = try o.context.int("storage_order", default: 0) != 0
        let x = try o.required(0, "X")
        let rank = geometry.rank
        guard x.rank == rank + 2 else {
            throw CBAMError(.shapeMismatch, "X has rank \(x.rank) but a \(rank)-D pool needs rank \(rank + 2)", field: "X")
        }
        let (outSpatial, _, _) = try withField("X") { try geometry.resolve(input: Array(x.shape.dropFirst(2))) }
        let output = Array(x.shape.prefix(2)) + outSpatial
        try count(output, field: "Y")
        // The general (not 2-D row-major) path also sizes the input plane and the window.
        if rank != 2 || columnMajor {
            try count(Array(x.shape.dropFirst(2)), field: "X")
            try count(geometry.kernel, field: attribute("kernel_shape"))
        }
        try requireFloat(x, "X")
        return indices ? [ValueType(.float, output), ValueType(.int64, output)] : [ValueType(.float, output)]
    }

    /// GlobalAveragePool / GlobalMaxPool / GlobalLpPool: float32 X `[N, C, spatial…]`,
    /// not empty → `[N, C, 1, …, 1]`.
    static func globalPool(_ o: Operands) throws -> ValueType {
        let x = try o.required(0, "X")
        guard x.rank >= 3 else {
            throw CBAMError(.shapeMismatch, "X must be [N, C, spatial…], got \(Shape.describe(x.shape))", field: "X")
        }
        try requireFloat(x, "X")
        guard try count(x.shape, field: "X") > 0 else {
            throw CBAMError(.shapeMismatch, "X has an empty spatial extent \(Shape.describe(x.shape))", field: "X")
        }
        return ValueType(.float, Array(x.shape.prefix(2)) + Array(repeating: 1, count: x.rank - 2))
    }
}
