// Planned float32 LayerNormalization, InstanceNormalization and GroupNormalization with
// constant scale and bias: the reference kernels' row loop (``RowNormalization``) on the
// arena, rows split across threads. A scale or bias computed at run time takes the
// reference path.

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
                loop.run(source, target, rows: Parallel.share(worker, of: workers, count: loop.rows), mean: m, inverseDeviation: v)
            }
        }
    }
}
