import Foundation

// BatchNormalization (inference form) and Softmax / LogSoftmax, float32.

extension OpRegistry {
    mutating func registerNormalization() {
        register("BatchNormalization") { context in
            let epsilon = try context.float("epsilon", default: 1e-5)
            let momentum = try context.float("momentum", default: 0.9)
            // training_mode (opset 14+) normalises with the batch's own statistics and
            // also returns the updated running mean and variance.
            let training = try context.int("training_mode", default: 0) != 0
            return Kernel { inputs in
                let x = try required(inputs, 0, "X"), scale = try required(inputs, 1, "scale"), bias = try required(inputs, 2, "B")
                let mean = try required(inputs, 3, "input_mean"), variance = try required(inputs, 4, "input_var")
                guard training else {
                    return [try batchNorm(x: x, scale: scale, bias: bias, mean: mean, variance: variance, epsilon: epsilon)]
                }
                // The statistics are per channel over [N, C, …]: a lower rank has no channel axis
                // (and a rank-0 X would index an empty shape).
                guard x.rank >= 2 else { throw CBAMError(.shapeMismatch, "X must be [N, C, …], got \(Shape.describe(x.shape))", field: "X") }
                let axes = [0] + Array(2..<Swift.max(x.rank, 2))
                let batchMean = try meanOver(x, axes: axes)
                let centered = try arithmetic(x, try batchMean.reshaped([1, batchMean.count] + Array(repeating: 1, count: Swift.max(x.rank - 2, 0))),
                                              float: -, double: -, int64: { $0 &- $1 }, int32: { $0 &- $1 })
                let batchVariance = try meanOver(try arithmetic(centered, centered, float: *, double: *, int64: { $0 &* $1 }, int32: { $0 &* $1 }), axes: axes)
                let y = try batchNorm(x: x, scale: scale, bias: bias, mean: batchMean, variance: batchVariance, epsilon: epsilon)
                func blend(_ running: Tensor, _ current: Tensor) throws -> Tensor {
                    let r = try running.floats("running statistic"), c = try current.floats()
                    guard r.count == c.count else { throw CBAMError(.shapeMismatch, "running statistics must have one value per channel") }
                    return .float(running.shape, zip(r, c).map { $0 * momentum + $1 * (1 - momentum) })
                }
                return [y, try blend(mean, batchMean), try blend(variance, batchVariance)]
            }
        }
        register("Softmax") { context in try softmaxKernel(context, log: false) }
        register("LogSoftmax") { context in try softmaxKernel(context, log: true) }
    }
}

/// Y = scale · (X − mean) / √(var + ε) + B per channel; X `[N, C, …]`, the others `[C]`.
func batchNorm(x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, variance: Tensor, epsilon: Float) throws -> Tensor {
    guard x.rank >= 2 else { throw CBAMError(.shapeMismatch, "X must be [N, C, …], got \(Shape.describe(x.shape))", field: "X") }
    let channels = x.shape[1]
    let params = try [scale, bias, mean, variance].map { try $0.floats("BatchNormalization parameter") }
    guard params.allSatisfy({ $0.count == channels }) else {
        throw CBAMError(.shapeMismatch, "scale, B, mean and var must each have \(channels) values (X has \(channels) channels)")
    }
    let (s, b, mu, v) = (params[0], params[1], params[2], params[3])
    let multiplier = (0..<channels).map { s[$0] / (v[$0] + epsilon).squareRoot() }
    let shift = (0..<channels).map { b[$0] - mu[$0] * multiplier[$0] }
    let inner = x.count / Swift.max(x.shape[0] * channels, 1)
    var values = try x.floats("X")
    values.withUnsafeMutableBufferPointer { p in
        for plane in 0..<(x.shape[0] * channels) {
            let c = plane % channels, a = multiplier[c], d = shift[c]
            let row = p.baseAddress! + plane * inner
            for i in 0..<inner { row[i] = row[i] * a + d }
        }
    }
    return .float(x.shape, values)
}

/// The float32 mean of `x` over `axes`, flattened to one value per kept element.
private func meanOver(_ x: Tensor, axes: [Int]) throws -> Tensor {
    let layout = try ReductionLayout(inputShape: x.shape, axes: axes, keepDims: false)
    var sums = [Double](repeating: 0, count: layout.outputCount)
    let values = try x.floats("X")
    layout.forEach(inputShape: x.shape) { i, o in sums[o] += Double(values[i]) }
    return .float([sums.count], sums.map { Float($0 / Double(Swift.max(layout.reducedCount, 1))) })
}

/// Softmax over `axis`. Before opset 13 the input is flattened to 2-D at `axis`
/// (default 1) and normalised over the whole second part; from 13 on, over one axis (default -1).
private func softmaxKernel(_ context: NodeContext, log: Bool) throws -> Kernel {
    let legacy = context.opset < 13
    let axisAttribute = try context.int("axis", default: legacy ? 1 : -1)
    return Kernel.single { inputs in
        let x = try required(inputs, 0, "input")
        let axis = try Shape.normalizeAxis(axisAttribute, rank: x.rank)
        let extent = legacy ? x.shape[axis...].reduce(1, *) : x.shape[axis]
        let inner = legacy ? 1 : x.shape[(axis + 1)...].reduce(1, *)
        let outer = x.shape[..<axis].reduce(1, *)
        var values = try x.floats("input")
        values.withUnsafeMutableBufferPointer { p in
            for o in 0..<outer {
                for i in 0..<inner {
                    let base = o * extent * inner + i
                    var maximum = -Float.infinity
                    for k in 0..<extent { maximum = Swift.max(maximum, p[base + k * inner]) }
                    var sum: Float = 0
                    for k in 0..<extent {
                        let e = Foundation.exp(p[base + k * inner] - maximum)
                        p[base + k * inner] = e
                        sum += e
                    }
                    for k in 0..<extent {
                        let index = base + k * inner
                        p[index] = log ? Foundation.log(p[index] / sum) : p[index] / sum
                    }
                }
            }
        }
        return .float(x.shape, values)
    }
}
