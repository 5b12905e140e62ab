// Fusions for ConvNeXt-style blocks: LayerNorm over the channels of an NCHW map, and
// Gelu after a Conv.
//
// Channel LayerNorm: timm's LayerNorm2d (ConvNeXt's stem, downsampling and, with
// `conv_mlp`, every block; PoolFormerV2; EfficientNet with LayerNorm) exports, with both
// the TorchScript and the dynamo exporter, as
//     Transpose(perm 0,2,…,1) → LayerNormalization(axis −1) → Transpose(perm 0,r−1,1,…)
// It becomes one `cbam::ChannelLayerNorm(X, Scale, B?)` step (attribute `epsilon`) that
// takes each position's mean and variance over C on X as it lies, without the two copies.
//
// Gelu: TorchScript (opset 17) writes nn.GELU as `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)`
// (the 0.5 on either side); that chain becomes one ONNX `Gelu` (approximate "none"), as the
// dynamo exporter writes it. A Gelu that alone reads a Conv's output (ConvNeXt's
// `conv_mlp` fc1) then merges into the Conv as `cbam::FusedConv` with `activation = "Gelu"`
// (oneDNN's eltwise_gelu post-op, or the im2col epilogue), which also lets the Conv's
// output stay in oneDNN's layout on its way to the next Conv. In ConvNeXt's channels-last
// blocks the Gelu follows `MatMul(A, B) + bias` instead: the three become one
// `cbam::LinearGelu` (PlannedLinearGelu.swift).

extension Passes {
    /// The four fusions below, in order.
    static func fuseNormalizationAndGelu(_ graph: TypedGraph) -> TypedGraph {
        fuseLinearGelu(fuseConvGelu(fuseGeluChains(fuseChannelLayerNorm(graph))))
    }

    /// `Transpose(0,2,…,1) → LayerNormalization(axis −1) → Transpose(0,r−1,1,…)` →
    /// `cbam::ChannelLayerNorm`, when Scale (and B) are float32 constants, the statistics
    /// outputs are unread and nothing else reads the two values in between. The fused step
    /// takes the second Transpose's place.
    static func fuseChannelLayerNorm(_ graph: TypedGraph) -> TypedGraph {
        var graph = graph
        let readers = graph.readerCounts(), producers = graph.producers()
        let isFree = { (value: String) in readers[value] == 1 && !graph.outputs.contains(value) }
        var removed = Set<Int>()
        var fused = 0
        for (index, entry) in graph.entries.enumerated() where isONNX(entry.node, "Transpose") {
            let back = entry.node
            guard back.inputs.count == 1, back.outputs.count == 1, let type = graph.types[back.outputs[0]], type.dataType == .float,
                  type.rank >= 3, permutation(back) == [0, type.rank - 1] + Array(1..<(type.rank - 1)),
                  let normIndex = producers[back.inputs[0]], !removed.contains(normIndex), isFree(back.inputs[0]) else { continue }
            let norm = graph.entries[normIndex].node
            guard isONNX(norm, "LayerNormalization"), norm.outputs.first == back.inputs[0],
                  norm.outputs.dropFirst().allSatisfy({ $0.isEmpty || readers[$0, default: 0] == 0 }),
                  norm.inputs.count >= 2, isChannelParameter(graph, norm.inputs[1], channels: type.shape[1]),
                  norm.inputs.count < 3 || norm.inputs[2].isEmpty || isChannelParameter(graph, norm.inputs[2], channels: type.shape[1]),
                  case let axis = attributeInt(norm, "axis") ?? -1, axis == -1 || axis == type.rank - 1,
                  let frontIndex = producers[norm.inputs[0]], !removed.contains(frontIndex), isFree(norm.inputs[0]) else { continue }
            let front = graph.entries[frontIndex].node
            guard isONNX(front, "Transpose"), front.outputs.count == 1, front.inputs.count == 1,
                  permutation(front) == [0] + Array(2..<type.rank) + [1], graph.types[front.inputs[0]] == type else { continue }
            var attributes: [String: Attribute] = [:]
            if let epsilon = norm.attributes["epsilon"] { attributes["epsilon"] = epsilon }
            let parameters = Array(norm.inputs[1...].prefix(2))
            let node = Node(name: [front, norm, back].map(\.ref.name).joined(separator: "+"), opType: "ChannelLayerNorm", domain: domain,
                            inputs: [front.inputs[0]] + parameters, outputs: back.outputs, attributes: attributes)
            graph.entries[index] = TypedGraph.Entry(node: node, opset: graph.entries[normIndex].opset,
                                                    replaces: [frontIndex, normIndex, index].flatMap { graph.entries[$0].replaces })
            removed.formUnion([frontIndex, normIndex])
            fused += 1
        }
        return dropping(removed, from: graph, log: "fuse-channel-layernorm", fused,
                        "Transpose → LayerNormalization → Transpose merged into one step over the channels")
    }

    /// `x · (1 + erf(x / √2)) · 0.5` as TorchScript writes it (Div by √2 or Mul by 1/√2; the
    /// Add's 1, the Muls' operands and the 0.5 on either side) → one `Gelu`, when every value
    /// inside the chain is read by the chain alone. The Gelu takes the last Mul's place.
    static func fuseGeluChains(_ graph: TypedGraph) -> TypedGraph {
        var graph = graph
        let readers = graph.readerCounts(), producers = graph.producers()
        var onlyReader: [String: Int] = [:]
        for (index, entry) in graph.entries.enumerated() { for input in entry.node.inputs where !input.isEmpty { onlyReader[input] = index } }
        let isFree = { (value: String) in readers[value] == 1 && !graph.outputs.contains(value) }
        func scalar(_ name: String, _ value: Float) -> Bool {
            guard let tensor = graph.constants[name], tensor.dataType == .float, tensor.count == 1, let v = try? tensor.floats().first else { return false }
            return abs(v - value) <= 1e-5 * abs(value)
        }
        /// The entry that alone reads `value`, when it is the binary `opType` with `value` on one side; and the other side.
        func next(_ value: String, _ opType: String) -> (index: Int, other: String)? {
            guard isFree(value), let index = onlyReader[value] else { return nil }
            let node = graph.entries[index].node
            guard isONNX(node, opType), node.inputs.count == 2, node.outputs.count == 1, node.inputs[0] != node.inputs[1],
                  let side = node.inputs.firstIndex(of: value) else { return nil }
            return (index, node.inputs[1 - side])
        }
        var removed = Set<Int>()
        var fused = 0
        for (erfIndex, entry) in graph.entries.enumerated() where isONNX(entry.node, "Erf") {
            let erf = entry.node
            guard erf.inputs.count == 1, erf.outputs.count == 1, let scaledIndex = producers[erf.inputs[0]], isFree(erf.inputs[0]) else { continue }
            let scaled = graph.entries[scaledIndex].node
            guard scaled.inputs.count == 2, let x = scaled.inputs.first, let type = graph.types[x], type.dataType == .float,
                  (isONNX(scaled, "Div") && scalar(scaled.inputs[1], Float(2).squareRoot()))
                    || (isONNX(scaled, "Mul") && scalar(scaled.inputs[1], Float(0.5).squareRoot())),
                  let add = next(erf.outputs[0], "Add"), scalar(add.other, 1),
                  let product = next(graph.entries[add.index].node.outputs[0], "Mul") else { continue }
            // Either Mul(Mul(x, 1 + erf), 0.5) or Mul(Mul(x, 0.5), 1 + erf).
            var chain = [scaledIndex, erfIndex, add.index, product.index]
            if product.other == x, let half = next(graph.entries[product.index].node.outputs[0], "Mul"), scalar(half.other, 0.5) {
                chain.append(half.index)
            } else if let halfIndex = producers[product.other], isFree(product.other), isONNX(graph.entries[halfIndex].node, "Mul"),
                      graph.entries[halfIndex].node.inputs.count == 2, graph.entries[halfIndex].node.inputs.contains(x),
                      graph.entries[halfIndex].node.inputs.contains(where: { scalar($0, 0.5) }) {
                chain.insert(halfIndex, at: 0)
            } else { continue }
            let last = chain.max()!
            let output = graph.entries[last].node.outputs[0]
            guard graph.types[output] == type, chain.allSatisfy({ !removed.contains($0) }) else { continue }
            let node = Node(name: chain.sorted().map { graph.entries[$0].node.ref.name }.joined(separator: "+"), opType: "Gelu",
                            inputs: [x], outputs: [output], attributes: ["approximate": .string("none")])
            graph.entries[last] = TypedGraph.Entry(node: node, opset: Swift.max(graph.entries[last].opset, 20),
                                                   replaces: chain.sorted().flatMap { graph.entries[$0].replaces })
            removed.formUnion(chain.filter { $0 != last })
            fused += 1
        }
        return dropping(removed, from: graph, log: "fuse-gelu-chain", fused, "Div → Erf → Add → Mul → Mul chain(s) merged into one Gelu")
    }

    /// `Gelu(Conv(…))` (or of a FusedConv without an activation) → `cbam::FusedConv` with
    /// `activation = "Gelu"` and the Gelu's `approximate`, when nothing else reads the Conv's
    /// output and its weights (and bias) are constants. 1-D and 2-D only, as for Relu.
    static func fuseConvGelu(_ graph: TypedGraph) -> TypedGraph {
        mergeConv(into: "Gelu", graph, log: "Gelu merged into the Conv before it", tag: "fuse-conv-gelu") { gelu, conv, isFree in
            guard gelu.inputs.count == 1, gelu.outputs.count == 1, let source = gelu.inputs.first, graph.types[source]?.dataType == .float,
                  let (conv, convIndex) = conv(source), isFree(source), conv.outputs == [source], conv.attributes["activation"] == nil else { return nil }
            var fused = conv
            fused.attributes["activation"] = .string("Gelu")
            fused.attributes["approximate"] = gelu.attributes["approximate"] ?? .string("none")
            return (convIndex, fused)
        }
    }

    /// `Gelu(Add(MatMul(A, B), bias))` with B a float32 constant `[K, N]` and bias a
    /// constant of N elements (either side of the Add) → `cbam::LinearGelu(A, B, bias)` with
    /// the Gelu's `approximate`, when the MatMul's and the Add's outputs are read by the next
    /// step alone. The fused step takes the Gelu's place.
    static func fuseLinearGelu(_ graph: TypedGraph) -> TypedGraph {
        var graph = graph
        let readers = graph.readerCounts(), producers = graph.producers()
        let isFree = { (value: String) in readers[value] == 1 && !graph.outputs.contains(value) }
        var removed = Set<Int>()
        var fused = 0
        for (index, entry) in graph.entries.enumerated() where isONNX(entry.node, "Gelu") {
            let gelu = entry.node
            guard gelu.inputs.count == 1, gelu.outputs.count == 1, isFree(gelu.inputs[0]),
                  let addIndex = producers[gelu.inputs[0]], !removed.contains(addIndex) else { continue }
            let add = graph.entries[addIndex].node
            guard isONNX(add, "Add"), add.inputs.count == 2, add.outputs == gelu.inputs, add.inputs[0] != add.inputs[1] else { continue }
            for side in 0..<2 {
                let (product, bias) = (add.inputs[side], add.inputs[1 - side])
                guard isFree(product), let matmulIndex = producers[product], !removed.contains(matmulIndex) else { continue }
                let matmul = graph.entries[matmulIndex].node
                guard isONNX(matmul, "MatMul"), matmul.inputs.count == 2, matmul.outputs == [product],
                      let a = graph.types[matmul.inputs[0]], a.dataType == .float, a.rank >= 2,
                      let b = graph.constants[matmul.inputs[1]], b.dataType == .float, b.rank == 2, b.shape[0] == a.shape.last,
                      let shift = graph.constants[bias], shift.dataType == .float, shift.count == b.shape[1], shift.rank <= 1,
                      graph.types[product] == graph.types[gelu.outputs[0]], graph.types[add.outputs[0]] == graph.types[product] else { continue }
                let node = Node(name: [matmul, add, gelu].map(\.ref.name).joined(separator: "+"), opType: "LinearGelu", domain: domain,
                                inputs: [matmul.inputs[0], matmul.inputs[1], bias], outputs: gelu.outputs,
                                attributes: ["approximate": gelu.attributes["approximate"] ?? .string("none")])
                graph.entries[index] = TypedGraph.Entry(node: node, opset: entry.opset,
                                                        replaces: [matmulIndex, addIndex, index].flatMap { graph.entries[$0].replaces })
                removed.formUnion([matmulIndex, addIndex])
                fused += 1
                break
            }
        }
        return dropping(removed, from: graph, log: "fuse-linear-gelu", fused, "MatMul → Add bias → Gelu merged into one step")
    }

    // MARK: - Helpers

    /// The graph without the entries `removed`, "`tag`: `count` `what`" in its log when `count` > 0.
    private static func dropping(_ removed: Set<Int>, from graph: TypedGraph, log tag: String, _ count: Int, _ what: String) -> TypedGraph {
        var graph = graph
        graph.entries = graph.entries.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        if count > 0 { graph.log.append("\(tag): \(count) \(what)") }
        return graph
    }

    private static func isONNX(_ node: Node, _ opType: String) -> Bool { GateFusion.isONNX(node) && node.opType == opType }

    private static func attributeInt(_ node: Node, _ name: String) -> Int? {
        if case .int(let value)? = node.attributes[name] { return value }
        return nil
    }

    /// A Transpose's `perm` (nil when absent: the reversal, which no fusion here wants).
    private static func permutation(_ node: Node) -> [Int]? {
        if case .ints(let perm)? = node.attributes["perm"] { return perm }
        return nil
    }

    /// A float32 constant of `channels` (or 1) elements: a LayerNorm parameter over the channel axis.
    private static func isChannelParameter(_ graph: TypedGraph, _ name: String, channels: Int) -> Bool {
        guard let tensor = graph.constants[name], tensor.dataType == .float else { return false }
        return tensor.count == channels && tensor.rank <= 1 || tensor.count == 1
    }
}
