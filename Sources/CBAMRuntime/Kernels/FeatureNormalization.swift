import Foundation

// The normalisations of modern CNNs and vision transformers, float32: LayerNormalization
// (ConvNeXt, PoolFormer, MaxViT, …), InstanceNormalization and GroupNormalization
// (PoolFormer's GroupNorm with one group). All three take the mean and variance of a
// row of X and apply a scale and bias; ``RowNormalization`` is that loop, shared by the
// reference kernels here and the planned ones (Plan/PlannedNormalization.swift).

extension OpRegistry {
    mutating func registerFeatureNormalization() {
        register("LayerNormalization") { context in
            let axis = try context.int("axis", default: -1)
            let epsilon = try context.float("epsilon", default: 1e-5)
            _ = try context.int("stash_type", default: 1)  // float32 X: statistics are taken in Double either way
            return Kernel { inputs in
                let x = try required(inputs, 0, "X"), scale = try required(inputs, 1, "Scale")
                let bias = inputs.count > 2 ? inputs[2] : nil
                let geometry = try LayerNormGeometry(x: ValueType(of: x), scale: ValueType(of: scale), bias: bias.map(ValueType.init(of:)), axis: axis)
                let normalization = RowNormalization(
                    rows: geometry.rows, length: geometry.length, segment: 1, period: 1, epsilon: epsilon,
                    scale: try expand(scale, to: geometry.normalizedShape).floats("Scale"),
                    bias: try bias.map { try expand($0, to: geometry.normalizedShape).floats("B") })
                return try normalization.tensors(x, statisticsShape: geometry.statisticsShape)
            }
        }
        register("InstanceNormalization") { context in
            let epsilon = try context.float("epsilon", default: 1e-5)
            return Kernel.single { inputs in
                let x = try required(inputs, 0, "input"), scale = try required(inputs, 1, "scale"), bias = try required(inputs, 2, "B")
                let geometry = try ChannelGroups(x: ValueType(of: x), groups: nil, scale: ValueType(of: scale), bias: ValueType(of: bias), perGroup: false)
                return try geometry.normalization(epsilon: epsilon, scale: scale.floats("scale"), bias: bias.floats("B")).tensors(x)[0]
            }
        }
        register("GroupNormalization") { context in
            let epsilon = try context.float("epsilon", default: 1e-5)
            let groups = try groupCount(context)
            _ = try context.int("stash_type", default: 1)
            // Opset 18 took one scale and bias per group; opset 21 one per channel.
            let perGroup = context.opset < 21
            return Kernel.single { inputs in
                let x = try required(inputs, 0, "X"), scale = try required(inputs, 1, "scale"), bias = try required(inputs, 2, "bias")
                let geometry = try ChannelGroups(x: ValueType(of: x), groups: groups, scale: ValueType(of: scale), bias: ValueType(of: bias), perGroup: perGroup)
                return try geometry.normalization(epsilon: epsilon, scale: scale.floats("scale"), bias: bias.floats("bias")).tensors(x)[0]
            }
        }
    }
}

/// GroupNormalization's required `num_groups`, at least 1.
func groupCount(_ context: NodeContext) throws -> Int {
    guard let groups = try context.intIfPresent("num_groups") else { throw context.invalid("num_groups", "is required") }
    guard groups >= 1 else { throw context.invalid("num_groups", "must be at least 1, got \(groups)") }
    return groups
}

/// LayerNormalization's view of X: `rows` rows of `length` elements, the axes from `axis` on
/// normalised together. Scale (and B) must broadcast to those axes. Checked the same way by
/// the kernel and the shape rule, so both refuse alike.
struct LayerNormGeometry {
    let axis: Int
    let rows: Int
    let length: Int
    /// X's shape from `axis` on.
    let normalizedShape: [Int]
    /// Mean's and InvStdDev's shape: X's with the normalised axes set to 1.
    let statisticsShape: [Int]

    init(x: ValueType, scale: ValueType, bias: ValueType?, axis axisAttribute: Int) throws {
        guard x.dataType == .float else { throw CBAMError(.typeMismatch, "X must be float32 but is \(x.dataType)", field: "X") }
        axis = try withField(ShapeInference.attribute("axis")) { try Shape.normalizeAxis(axisAttribute, rank: x.rank) }
        normalizedShape = Array(x.shape[axis...])
        rows = x.shape[..<axis].reduce(1, *)
        length = normalizedShape.reduce(1, *)
        statisticsShape = Array(x.shape[..<axis]) + Array(repeating: 1, count: x.rank - axis)
        for (name, parameter) in [("Scale", scale), ("B", bias)] {
            guard let parameter else { continue }
            guard parameter.dataType == .float else { throw CBAMError(.typeMismatch, "\(name) must be float32 but is \(parameter.dataType)", field: name) }
            guard parameter.rank <= normalizedShape.count, (try? Shape.broadcast(parameter.shape, normalizedShape)) == normalizedShape else {
                throw CBAMError(.shapeMismatch, "\(name) \(Shape.describe(parameter.shape)) does not broadcast to the normalised shape \(Shape.describe(normalizedShape))", field: name)
            }
        }
    }
}

/// InstanceNormalization's and GroupNormalization's view of X `[N, C, …]`: `N · G` rows of
/// `C/G · spatial` elements (G = C for InstanceNormalization), scale and bias per channel
/// (or per group: GroupNormalization before opset 21).
struct ChannelGroups {
    let batch: Int
    let channels: Int
    let groups: Int
    let spatial: Int
    let perGroup: Bool

    init(x: ValueType, groups requested: Int?, scale: ValueType, bias: ValueType, perGroup: Bool) throws {
        guard x.dataType == .float else { throw CBAMError(.typeMismatch, "X must be float32 but is \(x.dataType)", field: "X") }
        guard x.rank >= 2 else { throw CBAMError(.shapeMismatch, "X must be [N, C, …], got \(Shape.describe(x.shape))", field: "X") }
        batch = x.shape[0]
        channels = x.shape[1]
        groups = requested ?? channels
        spatial = x.shape[2...].reduce(1, *)
        self.perGroup = perGroup
        guard groups >= 1, channels % groups == 0 else {
            throw CBAMError(.invalidAttribute, "X has \(channels) channels, which do not split into \(groups) groups", field: ShapeInference.attribute("num_groups"))
        }
        let expected = perGroup ? groups : channels
        let names = requested == nil ? ("scale", "B") : ("scale", "bias")
        for (name, parameter) in [(names.0, scale), (names.1, bias)] {
            guard parameter.dataType == .float else { throw CBAMError(.typeMismatch, "\(name) must be float32 but is \(parameter.dataType)", field: name) }
            guard parameter.rank == 1, parameter.count == expected else {
                throw CBAMError(.shapeMismatch, "\(name) \(Shape.describe(parameter.shape)) must hold one value per \(perGroup ? "group" : "channel") (\(expected))", field: name)
            }
        }
    }

    /// The row loop for these groups, with per-group parameters spread over their channels.
    func normalization(epsilon: Float, scale: [Float], bias: [Float]) -> RowNormalization {
        let width = channels / groups
        let spread = { (values: [Float]) in perGroup ? (0..<channels).map { values[$0 / Swift.max(width, 1)] } : values }
        return RowNormalization(rows: batch * groups, length: width * spatial, segment: spatial, period: groups,
                                epsilon: epsilon, scale: spread(scale), bias: spread(bias))
    }
}

/// `y = (x − mean) / √(var + ε) · scale + bias` over `rows` rows of `length` elements each,
/// mean and (biased) variance per row, taken in Double.
///
/// Scale and bias change every `segment` elements: row `r`'s segment `s` uses parameter
/// `(r mod period) · length/segment + s`. LayerNormalization has segment 1 and period 1
/// (one parameter per position in the row); Instance/GroupNormalization have segment =
/// the spatial size and period = the groups (a row is one group's channels of one image).
struct RowNormalization {
    let rows: Int
    let length: Int
    let segment: Int
    let period: Int
    let epsilon: Float
    let scale: [Float]
    /// nil: no bias (LayerNormalization without B).
    let bias: [Float]?

    init(rows: Int, length: Int, segment: Int, period: Int, epsilon: Float, scale: [Float], bias: [Float]?) {
        self.rows = rows
        self.length = length
        self.segment = Swift.max(segment, 1)
        self.period = Swift.max(period, 1)
        self.epsilon = epsilon
        self.scale = scale
        self.bias = bias
    }

    /// Normalises rows `range` of `x` into `y`; writes each row's mean and 1/√(var + ε)
    /// where `mean` / `inverseDeviation` are given. `y` may be `x`.
    func run(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows range: Range<Int>,
             mean: UnsafeMutablePointer<Float>? = nil, inverseDeviation: UnsafeMutablePointer<Float>? = nil) {
        let segments = length / segment
        scale.withUnsafeBufferPointer { scale in
            let bias = self.bias
            for row in range {
                let source = x + row * length, target = y + row * length
                var sum: Double = 0
                for i in 0..<length { sum += Double(source[i]) }
                let average = length > 0 ? sum / Double(length) : 0
                var squares: Double = 0
                for i in 0..<length {
                    let d = Double(source[i]) - average
                    squares += d * d
                }
                let variance = length > 0 ? squares / Double(length) : 0
                let mu = Float(average)
                let inverse = 1 / (Float(variance) + epsilon).squareRoot()
                mean?[row] = mu
                inverseDeviation?[row] = inverse
                let first = (row % period) * segments
                for s in 0..<segments {
                    let a = scale[first + s], b = bias?[first + s] ?? 0
                    let start = s * segment
                    for i in start..<(start + segment) { target[i] = (source[i] - mu) * inverse * a + b }
                }
            }
        }
    }

    /// As ``run(_:_:rows:mean:inverseDeviation:)``, eight lanes at a time in float32: a first mean,
    /// then one pass over the deviations from it (their sum corrects the mean, their squares give
    /// the variance: a mean far from zero costs little precision), then the affine map — per
    /// element for LayerNormalization (segment 1), per segment (a channel's plane) for Instance and
    /// GroupNormalization. The planned kernels run it (MobileViT's LayerNorm rows of 64–144 took
    /// 5–6 ns per element in the scalar Double loop); PlannedKernelTests holds it to that loop.
    func runVectorized(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows range: Range<Int>,
                       mean: UnsafeMutablePointer<Float>? = nil, inverseDeviation: UnsafeMutablePointer<Float>? = nil) {
        let n = length, segments = length / segment
        // The parameters every row reads must be there (the builders make them so); else the general loop.
        guard segments * segment == length, scale.count >= period * segments, (bias?.count ?? scale.count) == scale.count else {
            return run(x, y, rows: range, mean: mean, inverseDeviation: inverseDeviation)
        }
        scale.withUnsafeBufferPointer { scale in
            let s = scale.baseAddress!
            func withBias(_ body: (UnsafePointer<Float>?) -> Void) {
                if let bias { bias.withUnsafeBufferPointer { body($0.baseAddress) } } else { body(nil) }
            }
            withBias { b in
                for row in range {
                    let source = x + row * n, target = y + row * n
                    // A first mean, then the deviations from it: their sum corrects the mean (what
                    // rounding the first sum lost) and their squares give the variance.
                    let first = n > 0 ? VectorMath.sum(source, n) / Float(n) : 0
                    var (deviations, squareLanes) = (SIMD8<Float>.zero, SIMD8<Float>.zero)
                    var i = 0
                    while i + 8 <= n {
                        let d = UnsafeRawPointer(source + i).loadUnaligned(as: SIMD8<Float>.self) - SIMD8(repeating: first)
                        deviations += d
                        squareLanes += d * d
                        i += 8
                    }
                    var (shift, squares) = (deviations.sum(), squareLanes.sum())
                    while i < n { let d = source[i] - first; shift += d; squares += d * d; i += 1 }
                    let correction = n > 0 ? shift / Float(n) : 0
                    let average = first + correction
                    let variance = n > 0 ? Swift.max(0, squares / Float(n) - correction * correction) : 0
                    let inverse = 1 / (variance + epsilon).squareRoot()
                    mean?[row] = average
                    inverseDeviation?[row] = inverse
                    let centre = SIMD8<Float>(repeating: average), factor = SIMD8<Float>(repeating: inverse)
                    // The row's parameters start at p.
                    let p = (row % period) * segments
                    if segment == 1 {
                        // One scale and bias per element of the row (LayerNormalization).
                        i = 0
                        while i + 8 <= n {
                            let v = UnsafeRawPointer(source + i).loadUnaligned(as: SIMD8<Float>.self)
                            var r = (v - centre) * factor * UnsafeRawPointer(s + p + i).loadUnaligned(as: SIMD8<Float>.self)
                            if let b { r += UnsafeRawPointer(b + p + i).loadUnaligned(as: SIMD8<Float>.self) }
                            UnsafeMutableRawPointer(target + i).storeBytes(of: r, as: SIMD8<Float>.self)
                            i += 8
                        }
                        while i < n { target[i] = (source[i] - average) * inverse * s[p + i] + (b?[p + i] ?? 0); i += 1 }
                    } else {
                        // One scale and bias per segment (a channel's plane), broadcast over its elements.
                        for segmentIndex in 0..<segments {
                            let a = s[p + segmentIndex], shiftValue = b?[p + segmentIndex] ?? 0
                            let start = segmentIndex * segment
                            let (av, bv) = (SIMD8<Float>(repeating: a), SIMD8<Float>(repeating: shiftValue))
                            VectorMath.map(source + start, target + start, segment) { ($0 - centre) * factor * av + bv }
                        }
                    }
                }
            }
        }
    }

    /// The reference form: Y (and, for LayerNormalization, Mean and InvStdDev shaped
    /// `statisticsShape`) as tensors.
    func tensors(_ x: Tensor, statisticsShape: [Int]? = nil) throws -> [Tensor] {
        let values = try x.floats("X")
        var y = [Float](repeating: 0, count: values.count)
        var mean = [Float](repeating: 0, count: rows), inverse = [Float](repeating: 0, count: rows)
        values.withUnsafeBufferPointer { source in
            y.withUnsafeMutableBufferPointer { target in
                mean.withUnsafeMutableBufferPointer { m in
                    inverse.withUnsafeMutableBufferPointer { v in
                        if let s = source.baseAddress, let t = target.baseAddress {
                            run(s, t, rows: 0..<rows, mean: m.baseAddress, inverseDeviation: v.baseAddress)
                        }
                    }
                }
            }
        }
        guard let statisticsShape else { return [.float(x.shape, y)] }
        return [.float(x.shape, y), .float(statisticsShape, mean), .float(statisticsShape, inverse)]
    }
}
