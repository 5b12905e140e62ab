// Planned float32 LayerNormalization, InstanceNormalization and GroupNormalization with
// constant scale and bias: the reference kernels' row loop (``RowNormalization``) in its
// eight-lane float32 form on the arena, rows split across threads. A scale or bias computed at run time takes the
// reference path. And `cbam::ChannelLayerNorm` (NormalizationFusion.swift): LayerNorm
// over the channel axis of `[N, C, …]` as it lies (``ChannelNormalization``).

extension PlannedKernels {
    static func registerFeatureNormalization(_ table: inout [String: Builder]) {
        table["LayerNormalization"] = { context in
            let node = context.node
            let x = try context.input(0, "X"), scale = try context.input(1, "Scale")
            let bias = context.inputs.count > 2 ? context.inputs[2] : nil
            guard let scaleValue = node.constant(1), bias == nil || node.constant(2) != nil else { return nil }
            let geometry = try LayerNormGeometry(x: x.type, scale: scale.type, bias: bias?.type,
                                                 axis: try node.int("axis", default: -1))
            let loop = RowNormalization(rows: geometry.rows, length: geometry.length, segment: 1, period: 1,
                                        epsilon: try node.float("epsilon", default: 1e-5),
                                        scale: try expand(scaleValue, to: geometry.normalizedShape).floats("Scale"),
                                        bias: try node.constant(2).map { try expand($0, to: geometry.normalizedShape).floats("B") })
            let statistics = (1...2).map { $0 < context.outputs.count ? context.outputs[$0] : nil }
            return try rows(context, loop, detail: geometry.axis == x.shape.count - 1 ? "layernorm last axis" : "layernorm",
                            mean: statistics[0], inverseDeviation: statistics[1])
        }
        table["InstanceNormalization"] = { context in
            try channelGroups(context, groups: nil, names: ("scale", "B"), detail: "instancenorm")
        }
        table["GroupNormalization"] = { context in
            try channelGroups(context, groups: try groupCount(context.node), names: ("scale", "bias"), detail: "groupnorm")
        }
        table[Passes.domain + "::ChannelLayerNorm"] = { try channelLayerNorm($0) }
    }

    /// Instance or GroupNormalization (`groups` nil: one group per channel).
    private static func channelGroups(_ context: PlanContext, groups: Int?, names: (String, String), detail: String) throws -> PlannedKernel? {
        let node = context.node
        let x = try context.input(0, "X"), scale = try context.input(1, names.0), bias = try context.input(2, names.1)
        guard let scaleValue = node.constant(1), let biasValue = node.constant(2) else { return nil }
        let geometry = try ChannelGroups(x: x.type, groups: groups, scale: scale.type, bias: bias.type,
                                         perGroup: groups != nil && node.opset < 21)
        let loop = geometry.normalization(epsilon: try node.float("epsilon", default: 1e-5),
                                          scale: try scaleValue.floats(names.0), bias: try biasValue.floats(names.1))
        return try rows(context, loop, detail: detail, mean: nil, inverseDeviation: nil)
    }

    /// Runs `loop` from input 0 into output 0, the rows shared among the threads.
    private static func rows(_ context: PlanContext, _ loop: RowNormalization, detail: String,
                             mean: Operand?, inverseDeviation: Operand?) throws -> PlannedKernel? {
        let x = try context.input(0, "X"), y = try context.output(0)
        guard y.type == x.type, mean.map({ $0.count == loop.rows }) ?? true, inverseDeviation.map({ $0.count == loop.rows }) ?? true else { return nil }
        let workers = x.count >= Parallel.minimumElements ? Swift.max(1, Swift.min(context.threads, loop.rows)) : 1
        return PlannedKernel(detail: detail) { memory in
            let (source, target) = (UnsafePointer(x.floats(memory)), y.floats(memory))
            let (m, v) = (mean?.floats(memory), inverseDeviation?.floats(memory))
            Parallel.forEach(workers) { worker in
                loop.runVectorized(source, target, rows: Parallel.share(worker, of: workers, count: loop.rows), mean: m, inverseDeviation: v)
            }
        }
    }
}

extension PlannedKernels {
    /// `cbam::ChannelLayerNorm`: X `[N, C, …]`, Scale and B `[C]` (constants) → Y like X.
    /// The pass only makes it with constant parameters, so nil never happens for its nodes.
    static func channelLayerNorm(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        let x = try context.input(0, "X"), y = try context.output(0)
        guard x.type.dataType == .float, x.shape.count >= 2, y.type == x.type, let scale = node.constant(1) else { return nil }
        let channels = x.shape[1]
        let loop = ChannelNormalization(
            batch: x.shape[0], channels: channels, positions: x.count / Swift.max(x.shape[0] * channels, 1),
            epsilon: try node.float("epsilon", default: 1e-5), scale: try expand(scale, to: [channels]).floats("Scale"),
            bias: try node.constant(2).map { try expand($0, to: [channels]).floats("B") })
        let workers = x.count >= Parallel.minimumElements ? Swift.max(1, Swift.min(context.threads, loop.units)) : 1
        return PlannedKernel(detail: "channel layernorm") { memory in
            let (source, target) = (UnsafePointer(x.floats(memory)), y.floats(memory))
            Parallel.forEach(workers) { worker in
                loop.run(source, target, units: Parallel.share(worker, of: workers, count: loop.units))
            }
        }
    }
}

/// LayerNorm over the channels of X `[N, C, P]` (P the positions, any spatial rank):
/// `y[n, c, p] = (x[n, c, p] − mean[n, p]) / √(var[n, p] + ε) · scale[c] + bias[c]`,
/// mean and (biased) variance over c taken in Double, as ``RowNormalization`` takes them
/// (a float sum loses digits when the channels share a large mean). The work comes in
/// units of up to ``block`` positions of one item; each unit reads its columns of all
/// channels twice (mean, then squared deviations) and writes them once, the statistics
/// of the block's positions running across positions. Y may be X (each unit reads its
/// columns before writing them).
struct ChannelNormalization {
    static let block = 64
    let batch: Int
    let channels: Int
    let positions: Int
    let epsilon: Float
    let scale: [Float]
    let bias: [Float]?

    var blocks: Int { (positions + Self.block - 1) / Self.block }
    var units: Int { batch * blocks }

    func run(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, units range: Range<Int>) {
        guard !range.isEmpty, channels > 0 else { return }
        let (c, p) = (channels, positions)
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * Self.block) { sums in
          withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * Self.block) { statistics in
            let (sum, squares) = (sums.baseAddress!, sums.baseAddress! + Self.block)
            let mean = statistics.baseAddress!, inverse = mean + Self.block
            scale.withUnsafeBufferPointer { scale in
                for unit in range {
                    let item = unit / blocks, start = (unit % blocks) * Self.block
                    let count = Swift.min(Self.block, p - start)
                    let first = item * c * p + start
                    for j in 0..<count { sum[j] = 0; squares[j] = 0 }
                    for channel in 0..<c {
                        let row = x + first + channel * p
                        for j in 0..<count { sum[j] += Double(row[j]) }
                    }
                    for j in 0..<count { sum[j] /= Double(c) }
                    for channel in 0..<c {
                        let row = x + first + channel * p
                        for j in 0..<count {
                            let d = Double(row[j]) - sum[j]
                            squares[j] += d * d
                        }
                    }
                    for j in 0..<count {
                        mean[j] = Float(sum[j])
                        inverse[j] = 1 / (Float(squares[j] / Double(c)) + epsilon).squareRoot()
                    }
                    for channel in 0..<c {
                        let row = x + first + channel * p, out = y + first + channel * p
                        let a = scale[channel], b = bias?[channel] ?? 0
                        for j in 0..<count { out[j] = (row[j] - mean[j]) * inverse[j] * a + b }
                    }
                }
            }
          }
        }
    }
}
