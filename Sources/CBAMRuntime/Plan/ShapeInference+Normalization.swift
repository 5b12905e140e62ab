// Shape rules for the normalisations of FeatureNormalization.swift: LayerNormalization,
// InstanceNormalization, GroupNormalization. They check through the same geometry types
// the kernels build, so both refuse the same inputs.

extension ShapeInference {
    static func normalizationRules() -> [String: Rule] {
        var rules: [String: Rule] = [:]
        /// Y like X; Mean and InvStdDev (float32) with the normalised axes set to 1.
        rules["LayerNormalization"] = { o in
            let axis = try o.context.int("axis", default: -1)
            _ = try o.context.float("epsilon", default: 1e-5)
            _ = try o.context.int("stash_type", default: 1)
            let x = try o.required(0, "X"), scale = try o.required(1, "Scale")
            let geometry = try LayerNormGeometry(x: x, scale: scale, bias: o.optional(2), axis: axis)
            let statistics = ValueType(.float, geometry.statisticsShape)
            return [x, statistics, statistics]
        }
        rules["InstanceNormalization"] = { o in
            _ = try o.context.float("epsilon", default: 1e-5)
            let x = try o.required(0, "input")
            _ = try ChannelGroups(x: x, groups: nil, scale: try o.required(1, "scale"), bias: try o.required(2, "B"), perGroup: false)
            return [x]
        }
        rules["GroupNormalization"] = { o in
            _ = try o.context.float("epsilon", default: 1e-5)
            let groups = try groupCount(o.context)
            _ = try o.context.int("stash_type", default: 1)
            let x = try o.required(0, "X")
            _ = try ChannelGroups(x: x, groups: groups, scale: try o.required(1, "scale"), bias: try o.required(2, "bias"), perGroup: o.opset < 21)
            return [x]
        }
        return rules
    }
}
