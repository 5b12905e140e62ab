/// Finds attention gates in a graph, whatever exporter wrote it.
///
/// A gate is a Sigmoid (HardSigmoid) or Softmax whose output reaches a Mul, possibly
/// through ops that only reshape or broadcast it (Reshape, Unsqueeze, Expand, Tile, …),
/// where the Mul's other operand is a feature map. That covers channel gates (CBAM's
/// channel attention, SE, ECA: `[N,C,1,1]`-like), spatial gates (CBAM's spatial
/// attention: `[N,1,H,W]`) and branch selection (SK, ResNeSt's split attention).
/// `x * sigmoid(x)` (SiLU) is an activation, not a gate, and is skipped.
///
/// A module exported on its own may return the map instead of applying it (seed 002's
/// ChannelAttention returns `sigmoid(…)`): a gate op whose output reaches a graph
/// output is kept as a map too, when its input is a feature-like tensor (rank ≥ 3,
/// checked at run time) so that a classifier's final Softmax is not taken for one.
///
/// Self-attention: a Softmax whose output (through the same pass-through ops) is an
/// operand of a MatMul weights the other operand, the values (`softmax(q·kᵀ) · v` in
/// ViT, BoTNet, HaloNet, CoAtNet, MaxViT; `x · softmax(mask)` in GCNet's context block).
/// It is recorded with `selfAttention` set, the MatMul as its `mul` and the values as
/// the feature input.
public struct AttentionGate: Sendable {
    /// The Sigmoid / Softmax node and its output tensor (the map as computed).
    public let node: Node
    public var tensor: String { node.outputs[0] }
    /// The Mul (MatMul for self-attention) that applies the gate, and which of its inputs
    /// carries the feature map (the values); nil when the model returns the map itself.
    public let mul: Node?
    public let featureInputIndex: Int
    /// A Softmax that weights values through a MatMul.
    public var selfAttention: Bool = false
}

public enum AttentionDetector {
    static let gateOps: Set<String> = ["Sigmoid", "HardSigmoid", "Softmax"]
    /// Ops a gate may pass through on its way to the Mul without ceasing to be the gate.
    static let passThrough: Set<String> = ["Reshape", "Unsqueeze", "Squeeze", "Expand", "Tile", "Identity", "Flatten",
                                            "Transpose", "Cast", "Split", "Slice", "Gather", "Concat"]
    static let maxHops = 8

    /// The gates of `graph`, in the graph's node order (the session reorders them by execution).
    public static func gates(in graph: Graph) -> [AttentionGate] {
        var consumers: [String: [Int]] = [:]
        for (index, node) in graph.nodes.enumerated() {
            for input in node.inputs where !input.isEmpty { consumers[input, default: []].append(index) }
        }
        let graphOutputs = Set(graph.outputs.map(\.name))
        var gates: [AttentionGate] = []
        for node in graph.nodes where gateOps.contains(node.opType) && node.domain.isEmpty {
            guard let output = node.outputs.first, !output.isEmpty else { continue }
            // Breadth-first from the gate's output through pass-through ops to the first Mul.
            var frontier = [output]
            var seen: Set<String> = [output]
            var found: AttentionGate? = nil
            var reachesOutput = false
            for _ in 0..<maxHops where found == nil && !frontier.isEmpty {
                var next: [String] = []
                for tensor in frontier {
                    if graphOutputs.contains(tensor) { reachesOutput = true }
                    for consumerIndex in consumers[tensor] ?? [] {
                        let consumer = graph.nodes[consumerIndex]
                        if consumer.opType == "Mul", consumer.inputs.count == 2 {
                            let gateSide = consumer.inputs[0] == tensor ? 0 : 1
                            let feature = consumer.inputs[1 - gateSide]
                            // SiLU: the "feature" is the gate's own input.
                            if feature == node.inputs.first && tensor == output { continue }
                            found = AttentionGate(node: node, mul: consumer, featureInputIndex: 1 - gateSide)
                            break
                        }
                        if node.opType == "Softmax", consumer.opType == "MatMul", consumer.inputs.count == 2 {
                            let weightSide = consumer.inputs[0] == tensor ? 0 : 1
                            found = AttentionGate(node: node, mul: consumer, featureInputIndex: 1 - weightSide, selfAttention: true)
                            break
                        }
                        if passThrough.contains(consumer.opType) {
                            for out in consumer.outputs where !out.isEmpty && seen.insert(out).inserted { next.append(out) }
                        }
                    }
                    if found != nil { break }
                }
                frontier = next
            }
            if let found {
                gates.append(found)
            } else if reachesOutput {
                gates.append(AttentionGate(node: node, mul: nil, featureInputIndex: 0))
            }
        }
        return gates
    }
}
