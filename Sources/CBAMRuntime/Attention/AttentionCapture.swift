/// One attention map captured during a run.
public struct AttentionMap: Sendable {
    public enum Kind: String, Sendable, Codable {
        case channel, spatial, other
        /// A Softmax over key positions weighting values through a MatMul (`[N, heads, queries, keys]`).
        case selfAttention = "self-attention"
    }

    /// Position in execution order, from 0.
    public let index: Int
    /// Channel maps open a block; the spatial map that follows joins it.
    public let block: Int
    public let kind: Kind
    public let gate: AttentionGate
    /// The gate's output as computed (not resized): e.g. `[N,C]`, `[N,C,1,1]` or `[N,1,H,W]`.
    public let tensor: Tensor
    /// Shape of the feature map the gate multiplies (e.g. `[N,C,H,W]`).
    public let featureShape: [Int]
}

/// A run observer that keeps the output of every attention gate and the shape of
/// the feature map it multiplies, then classifies and groups them.
public final class AttentionCapture: RunObserver {
    /// Gates by their output tensor, and by the output of the Mul that applies them: value
    /// names are unique in an ONNX graph, node names need not be (they may repeat or be empty).
    private let gatesByNode: [String: AttentionGate]
    private let gatesByMul: [String: AttentionGate]
    private var order: [String] = []
    private var tensors: [String: Tensor] = [:]
    private var featureShapes: [String: [Int]] = [:]
    /// Gates returned as model outputs whose input is not feature-like (rank < 3) are dropped.
    private var notFeatureLike: Set<String> = []

    public init(gates: [AttentionGate]) {
        gatesByNode = Dictionary(gates.map { ($0.tensor, $0) }, uniquingKeysWith: { first, _ in first })
        gatesByMul = Dictionary(gates.compactMap { gate in gate.mul.flatMap { mul in mul.outputs.first.map { ($0, gate) } } },
                                uniquingKeysWith: { first, _ in first })
    }

    public func nodeDidRun(_ event: NodeEvent) throws {
        let name = event.node.outputs.first ?? ""
        if !name.isEmpty, let gate = gatesByNode[name], let output = event.outputs.first {
            order.append(name)
            tensors[name] = output
            // A fused step (a map-only spatial gate) may not have written the gate's input: the
            // gate keeps its input's shape, so its output's rank stands in.
            if gate.mul == nil, (event.inputs.first??.rank ?? output.rank) < 3 { notFeatureLike.insert(name) }
        }
        if event.replaced.count <= 1, !name.isEmpty, let gate = gatesByMul[name], gate.featureInputIndex < event.inputs.count,
           let feature = event.inputs[gate.featureInputIndex] {
            featureShapes[gate.tensor] = feature.shape
        } else if event.replaced.count > 1 {
            // A fused step whose last node is the gate's Mul (a fused attention gate): the
            // feature map is the step's input of the same name, or its first input (a spatial
            // gate that applies the channel scale reads x, shaped as the x · s_c it stands for).
            for inner in event.replaced {
                guard let output = inner.outputs.first, let gate = gatesByMul[output], gate.featureInputIndex < inner.inputs.count,
                      case let position = event.node.inputs.firstIndex(of: inner.inputs[gate.featureInputIndex]) ?? 0,
                      position < event.inputs.count, let feature = event.inputs[position] else { continue }
                featureShapes[gate.tensor] = feature.shape
            }
        }
    }

    /// The captured maps in execution order, classified and grouped into blocks.
    public func maps() -> [AttentionMap] {
        let names = order.filter { !notFeatureLike.contains($0) && gatesByNode[$0] != nil && tensors[$0] != nil }
        let kinds = names.map { name -> AttentionMap.Kind in
            let gate = gatesByNode[name]!, tensor = tensors[name]!
            if gate.selfAttention { return .selfAttention }
            return gate.mul == nil ? Self.classifyReturned(tensor.shape) : Self.classify(tensor.shape, feature: featureShapes[name] ?? [])
        }
        return zip(names, zip(kinds, Self.blocks(kinds))).enumerated().map { index, item in
            let (name, (kind, block)) = item
            return AttentionMap(index: index, block: block, kind: kind, gate: gatesByNode[name]!, tensor: tensors[name]!,
                                featureShape: featureShapes[name] ?? [])
        }
    }

    /// The block of each map, in execution order: a channel map opens a block and the
    /// spatial map right after it joins that block; any other map stands alone.
    static func blocks(_ kinds: [AttentionMap.Kind]) -> [Int] {
        var result: [Int] = []
        var block = -1
        var blockHasSpatial = true
        var blockHasChannel = false
        for kind in kinds {
            switch kind {
            case .channel:
                block += 1
                blockHasChannel = true
                blockHasSpatial = false
            case .spatial:
                if !(blockHasChannel && !blockHasSpatial) { block += 1; blockHasChannel = false }
                blockHasSpatial = true
            case .other, .selfAttention:
                block += 1
                blockHasChannel = false
                blockHasSpatial = true
            }
            result.append(block)
        }
        return result
    }

    /// Channel: one value per (item, channel) of an `[N,C,H,W]` feature map with H·W > 1.
    /// Spatial: one value per (item, pixel) with C > 1. Anything else (branch selection,
    /// maps of other ranks) is "other".
    static func classify(_ gate: [Int], feature: [Int]) -> AttentionMap.Kind {
        guard feature.count == 4 else { return .other }
        let (n, c, h, w) = (feature[0], feature[1], feature[2], feature[3])
        let squeezed = gate.filter { $0 != 1 }
        let count = gate.reduce(1, *)
        if h * w > 1, c > 1, count == n * c, squeezed == [n, c].filter({ $0 != 1 }) {
            return .channel
        }
        if c > 1, h * w > 1, count == n * h * w, squeezed == [n, h, w].filter({ $0 != 1 }) {
            return .spatial
        }
        return .other
    }
}

extension AttentionCapture {
    /// A map the model returns has no feature map to compare with: `[N,C,1,1]` is a
    /// channel map, `[N,1,H,W]` a spatial one, anything else "other".
    static func classifyReturned(_ shape: [Int]) -> AttentionMap.Kind {
        guard shape.count == 4 else { return .other }
        if shape[1] > 1, shape[2] * shape[3] == 1 { return .channel }
        if shape[1] == 1, shape[2] * shape[3] > 1 { return .spatial }
        return .other
    }
}

extension Session {
    /// The attention gates of this model, in execution order.
    public var attentionGates: [AttentionGate] {
        // Keyed by each node's first output: unique in a graph, where node names may repeat or be empty.
        let position = Dictionary(executionOrder.enumerated().compactMap { item in item.element.outputs.first.map { ($0, item.offset) } },
                                  uniquingKeysWith: { a, _ in a })
        return AttentionDetector.gates(in: model.graph)
            .filter { position[$0.tensor] != nil }
            .sorted { position[$0.tensor]! < position[$1.tensor]! }
    }

    /// Runs the model and returns its outputs with every attention map it computed.
    public func runCapturingAttention(_ feeds: [String: Tensor], observer: RunObserver? = nil) throws -> (outputs: [String: Tensor], maps: [AttentionMap]) {
        try capturingAttention(feeds, observer: observer)
    }

    /// The same on inputs in the caller's memory (see ``run(borrowing:observer:)``).
    public func runCapturingAttention(borrowing feeds: [String: BorrowedTensor], observer: RunObserver? = nil) throws
        -> (outputs: [String: Tensor], maps: [AttentionMap]) {
        try capturingAttention(feeds, observer: observer)
    }

    private func capturingAttention<Input: RunInput>(_ feeds: [String: Input], observer: RunObserver?) throws
        -> (outputs: [String: Tensor], maps: [AttentionMap]) {
        let capture = AttentionCapture(gates: attentionGates)
        let outputs = try runInputs(feeds, observer: observer.map { ObserverGroup([capture, $0]) } ?? capture)
        return (outputs, capture.maps())
    }
}
