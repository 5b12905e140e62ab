// Fusion of CBAM's two attention gates into one step each.
//
// Channel gate: `Mul(x, g)` where g is `Sigmoid(t)` (maybe reshaped or broadcast on
// its way to the Mul) and t is computed only from global average and/or max pools of
// x through small ops (Gemm, MatMul, 1×1 Conv, a 1-D Conv along the channels, Relu,
// Add/Sub/Mul/Div, BatchNormalization, views). The region becomes one
// `cbam::ChannelGate` step: one pass over x for both statistics, the small ops on the
// pooled vectors (encoded as a tiny program, see ``ChannelGateProgram``), the sigmoid,
// then one pass writing x · s.
//
// Spatial gate: `Mul(x, s)` where s is `Sigmoid(Conv_k×k(Concat(channel max, channel
// mean)))` in either order (maybe with a bias, e.g. a folded BatchNorm). It becomes one
// `cbam::SpatialGate` step: one pass over x for the per-pixel max and mean, the k×k
// convolution and sigmoid on the small [N,1,H,W] map, then one pass writing x · s.
//
// Both fused nodes output [the Mul's output, the Sigmoid's output]: the sigmoid map
// keeps its name, so the plan reports the Sigmoid node to observers (attention capture
// finds its gates by node name) and any other reader of the map still finds it. Where
// anything in between is read elsewhere, or a form is not recognised, the graph is
// left as it is.

extension Passes {
    /// `Mul(x, Sigmoid(f(pools of x)))` → `cbam::ChannelGate`.
    static func fuseChannelGates(_ graph: TypedGraph) -> TypedGraph {
        GateFusion(graph).run(kind: "ChannelGate", log: "fuse-channel-gate", what: "channel gate(s) (pool, MLP, sigmoid, scale) merged into one step") {
            $0.matchChannelGate(mul: $1, featureSide: $2)
        }
    }

    /// `Mul(x, Sigmoid(Conv(Concat(max_c x, mean_c x))))` → `cbam::SpatialGate`.
    static func fuseSpatialGates(_ graph: TypedGraph) -> TypedGraph {
        GateFusion(graph).run(kind: "SpatialGate", log: "fuse-spatial-gate", what: "spatial gate(s) (channel max and mean, conv, sigmoid, scale) merged into one step") {
            $0.matchSpatialGate(mul: $1, featureSide: $2)
        }
    }

    /// `Sigmoid(Conv(Concat(max_c x, mean_c x)))` left after ``fuseSpatialGates(_:)`` (the map is
    /// the module's output, or applied elsewhere) → `cbam::SpatialGate` with `apply = 0`: the
    /// statistics, the conv and the sigmoid in one step that writes only the map (output 1).
    static func fuseSpatialMaps(_ graph: TypedGraph) -> TypedGraph {
        let fusion = GateFusion(graph)
        return fusion.rewrite(kind: "SpatialGate", log: "fuse-spatial-map",
                              what: "spatial attention map(s) (channel max and mean, conv, sigmoid) merged into one step") { index, available in
            guard let (x, match) = fusion.matchSpatialMap(sigmoid: index), available(match) else { return nil }
            var gate = match
            gate.attributes["apply"] = .int(0)
            return (x, ["", match.sigmoidOutput], gate)
        }
    }
}

/// A recognised gate: the entries it replaces, the fused node's extra inputs (new
/// constants) and attributes.
struct GateMatch {
    /// Every entry of the region except the Mul, whose place the fused step takes.
    var region: Set<Int>
    /// Constant inputs after x: existing constant names, or new tensors to add under a fresh name.
    var constants: [GateConstant]
    var attributes: [String: Attribute]
    var sigmoidOutput: String
}

enum GateConstant {
    case existing(String)
    case new(Tensor)
}

/// The matcher state shared by both gate passes: the graph as it was before the pass,
/// who reads and who writes every value.
struct GateFusion {
    let graph: TypedGraph
    let readers: [String: Int]
    let producers: [String: Int]
    let consumers: [String: [Int]]
    let graphOutputs: Set<String>

    /// Ops whose output has the input's elements in the same order (the planner's views).
    static let viewOps = Planner.viewOps
    /// Bound on the entries a channel gate's small computation may span.
    static let maxRegion = 64

    init(_ graph: TypedGraph) {
        self.graph = graph
        readers = graph.readerCounts()
        producers = graph.producers()
        var consumers: [String: [Int]] = [:]
        for (index, entry) in graph.entries.enumerated() {
            for input in Set(entry.node.inputs) where !input.isEmpty { consumers[input, default: []].append(index) }
        }
        self.consumers = consumers
        graphOutputs = Set(graph.outputs)
    }

    static func isONNX(_ node: Node) -> Bool { node.domain.isEmpty || node.domain == "ai.onnx" }

    /// One named output (any further outputs omitted).
    static func singleOutput(_ node: Node) -> String? {
        guard let first = node.outputs.first, !first.isEmpty, node.outputs.dropFirst().allSatisfy(\.isEmpty) else { return nil }
        return first
    }

    /// The entry computing a runtime value (nil for constants and graph inputs).
    func producer(_ value: String) -> Int? { graph.constants[value] == nil ? producers[value] : nil }

    func floatType(_ value: String) -> ValueType? {
        guard let type = graph.types[value], type.dataType == .float else { return nil }
        return type
    }

    /// Read by exactly one entry and not a graph output: a value a fusion may hide.
    func isPrivate(_ value: String) -> Bool { readers[value] == 1 && !graphOutputs.contains(value) }

    // MARK: - The pass loop

    /// `Mul(x, g)` → a `kind` step where `match` recognises g as a gate on x (either operand).
    func run(kind: String, log: String, what: String,
             _ match: (GateFusion, _ mul: Int, _ featureSide: Int) -> GateMatch?) -> TypedGraph {
        rewrite(kind: kind, log: log, what: what) { index, available in
            let node = graph.entries[index].node
            guard Self.isONNX(node), node.opType == "Mul", node.inputs.count == 2, let output = Self.singleOutput(node) else { return nil }
            for side in 0..<2 {
                if let gate = match(self, index, side), available(gate) { return (node.inputs[side], [output, gate.sigmoidOutput], gate) }
            }
            return nil
        }
    }

    /// Each fusion `find` reports at an entry (tried in order; `available` says whether a match
    /// keeps clear of the entries earlier fusions took) becomes one `kind` step in that entry's
    /// place — x, every constant and the statistics' source are ready there — reading x then the
    /// match's constants and writing `outputs`; the entries of its region go.
    func rewrite(kind: String, log: String, what: String,
                 _ find: (_ index: Int, _ available: (GateMatch) -> Bool) -> (x: String, outputs: [String], match: GateMatch)?) -> TypedGraph {
        var result = graph
        var claimed = Set<Int>(), removed = Set<Int>()
        var fused = 0
        for index in graph.entries.indices where !claimed.contains(index) {
            guard let (x, outputs, gate) = find(index, { $0.region.isDisjoint(with: claimed) && !$0.region.contains(index) }) else { continue }
            var inputs = [x]
            for (k, constant) in gate.constants.enumerated() {
                switch constant {
                case .existing(let name):
                    inputs.append(name)
                case .new(let tensor):
                    let name = "\(outputs.first { !$0.isEmpty } ?? x)::\(kind.lowercased())_\(k)"
                    result.constants[name] = tensor
                    result.types[name] = tensor.valueType
                    inputs.append(name)
                }
            }
            let indices = (gate.region.union([index])).sorted()
            let replaces = indices.flatMap { graph.entries[$0].replaces }
            let node = Node(name: replaces.map(\.ref.name).joined(separator: "+"), opType: kind, domain: Passes.domain,
                            inputs: inputs, outputs: outputs, attributes: gate.attributes)
            result.entries[index] = TypedGraph.Entry(node: node, opset: graph.entries[index].opset, replaces: replaces)
            claimed.formUnion(indices)
            removed.formUnion(gate.region)
            fused += 1
        }
        guard fused > 0 else { return graph }
        result.entries = result.entries.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        result.log.append("\(log): \(fused) \(what)")
        return result
    }

    // MARK: - From the Mul back to the Sigmoid

    /// The path from the Mul's gate operand back to its Sigmoid: broadcasts (Expand,
    /// Tile of size-1 axes) nearest the Mul, views before them.
    struct GatePath {
        let sigmoid: Int
        let entries: [Int]
        /// The value the first broadcast reads (the gate operand itself when there is none).
        let broadcastSource: String
    }

    func gatePath(from value: String) -> GatePath? {
        var current = value
        var entries: [Int] = []
        var source: String? = nil
        for _ in 0..<16 {
            guard let index = producer(current) else { return nil }
            let node = graph.entries[index].node
            guard Self.isONNX(node), Self.singleOutput(node) == current, let input = node.inputs.first, !input.isEmpty else { return nil }
            if node.opType == "Sigmoid" {
                return GatePath(sigmoid: index, entries: entries, broadcastSource: source ?? current)
            }
            // Everything between the Sigmoid and the Mul disappears: only the Mul may read it.
            guard isPrivate(current) else { return nil }
            switch node.opType {
            case "Expand" where source == nil:
                break
            case "Tile" where source == nil:
                guard node.inputs.count == 2, let repeats = graph.constants[node.inputs[1]].flatMap({ try? $0.integers() }),
                      let inType = graph.types[input], repeats.count == inType.rank,
                      zip(repeats, inType.shape).allSatisfy({ $0.0 == 1 || $0.1 == 1 }) else { return nil }
            case let op where Self.viewOps.contains(op):
                if source == nil { source = current }
            default:
                return nil
            }
            entries.append(index)
            current = input
        }
        return nil
    }

    /// `shape`, aligned right with `x`'s rank, keeps x's size on `kept` axes and is 1 elsewhere.
    static func fits(_ shape: [Int], _ x: [Int], kept: Set<Int>) -> Bool {
        guard shape.count <= x.count else { return false }
        let padded = Array(repeating: 1, count: x.count - shape.count) + shape
        return x.indices.allSatisfy { kept.contains($0) ? padded[$0] == x[$0] : padded[$0] == 1 }
    }

    /// Readers of the sigmoid map outside the gate come after the Mul (where the fused step writes it).
    func sigmoidReadersAreLater(_ sigmoidOutput: String, path: GatePath, mul: Int) -> Bool {
        let inside = Set(path.entries + [mul])
        return (consumers[sigmoidOutput] ?? []).allSatisfy { inside.contains($0) || $0 > mul }
    }

    /// The gate operand of `Mul(x, g)` and its path, checked against x's type (`kept`: the
    /// axes of x the gate varies along).
    func gateOperand(mul: Int, featureSide: Int, kept: Set<Int>) -> (x: String, type: ValueType, path: GatePath)? {
        let node = graph.entries[mul].node
        let x = node.inputs[featureSide], g = node.inputs[1 - featureSide]
        // The kept axes must exist: a rank-3 feature (MobileViT's tokens) has no axis 3.
        guard !x.isEmpty, !g.isEmpty, x != g, graph.constants[x] == nil, let xType = floatType(x), xType.rank >= 3,
              kept.allSatisfy({ $0 < xType.rank }), let output = Self.singleOutput(node), graph.types[output] == xType,
              let path = gatePath(from: g), let sourceType = graph.types[path.broadcastSource],
              Self.fits(sourceType.shape, xType.shape, kept: kept) else { return nil }
        let sigmoid = graph.entries[path.sigmoid].node
        guard let map = floatType(sigmoid.outputs[0]), map.count == kept.reduce(1, { $0 * xType.shape[$1] }),
              sigmoid.inputs[0] != x, sigmoidReadersAreLater(sigmoid.outputs[0], path: path, mul: mul) else { return nil }
        return (x, xType, path)
    }

    /// The axes a Reduce* node reduces (attribute, or constant input from opset 18 — 13 for ReduceSum).
    func reduceAxes(_ entry: TypedGraph.Entry, rank: Int) -> [Int]? {
        let node = entry.node
        let fromInput = entry.opset >= (node.opType == "ReduceSum" ? 13 : 18)
        let axes: [Int]?
        if fromInput {
            axes = node.inputs.count > 1 && !node.inputs[1].isEmpty ? graph.constants[node.inputs[1]].flatMap { try? $0.integers() } : nil
        } else {
            axes = (try? NodeContext(node: node, opset: entry.opset).ints("axes")) ?? nil
        }
        guard let axes, !axes.isEmpty else { return nil }
        let resolved = axes.compactMap { try? Shape.normalizeAxis($0, rank: rank) }
        guard resolved.count == axes.count, Set(resolved).count == resolved.count else { return nil }
        return resolved
    }

    func keepDims(_ node: Node) -> Bool? { (try? NodeContext(node: node, opset: 1).int("keepdims", default: 1)).map { $0 != 0 } }

    // MARK: - Spatial gate

    func matchSpatialGate(mul: Int, featureSide: Int) -> GateMatch? {
        guard let (x, xType, path) = gateOperand(mul: mul, featureSide: featureSide, kept: [0, 2, 3]), xType.rank == 4 else { return nil }
        return spatialMap(sigmoid: path.sigmoid, x: x, xShape: xType.shape, region: Set(path.entries + [path.sigmoid]))
    }

    /// A Sigmoid whose map is not applied in the graph (a spatial-attention module exported on
    /// its own returns it): the same computation from x, x found through the channel max.
    func matchSpatialMap(sigmoid index: Int) -> (x: String, match: GateMatch)? {
        let sigmoid = graph.entries[index].node
        guard Self.isONNX(sigmoid), sigmoid.opType == "Sigmoid", sigmoid.inputs.count == 1, let convIndex = producer(sigmoid.inputs[0]),
              let concatInput = graph.entries[convIndex].node.inputs.first, let concatIndex = producer(concatInput),
              let first = graph.entries[concatIndex].node.inputs.first,
              let x = channelReduction(of: first)?.x, let xType = floatType(x),
              let match = spatialMap(sigmoid: index, x: x, xShape: xType.shape, region: []) else { return nil }
        return (x, match)
    }

    /// The spatial gate's map computed from x: `Sigmoid(Conv(Concat(max_c x, mean_c x)))`, the
    /// Sigmoid at `sigmoid`; `region`: entries the match already covers.
    private func spatialMap(sigmoid sigmoidIndex: Int, x: String, xShape: [Int], region covered: Set<Int>) -> GateMatch? {
        let (n, h, w) = (xShape[0], xShape[2], xShape[3])
        var region = covered
        let sigmoid = graph.entries[sigmoidIndex].node
        // Conv 2 → 1 channels with constant weight (and bias), stride 1, the map's size.
        let convOutput = sigmoid.inputs[0]
        guard isPrivate(convOutput), let convIndex = producer(convOutput) else { return nil }
        let convEntry = graph.entries[convIndex], conv = convEntry.node
        guard Self.isONNX(conv), conv.opType == "Conv", Self.singleOutput(conv) == convOutput, conv.inputs.count >= 2,
              graph.types[convOutput]?.shape == [n, 1, h, w],
              let weight = graph.constants[conv.inputs[1]], weight.dataType == .float, weight.rank == 4,
              weight.shape[0] == 1, weight.shape[1] == 2 else { return nil }
        let hasBias = conv.inputs.count > 2 && !conv.inputs[2].isEmpty
        if hasBias {
            guard let bias = graph.constants[conv.inputs[2]], bias.dataType == .float, bias.count == 1 else { return nil }
        }
        let context = NodeContext(node: conv, opset: convEntry.opset, constants: conv.inputs.map { graph.constants[$0] })
        guard (try? context.int("group", default: 1)) == 1,
              let geometry = try? ConvWindow(context).geometry(weight: weight), geometry.rank == 2,
              geometry.strides == [1, 1], geometry.kernel == Array(weight.shape.dropFirst(2)),
              let resolved = try? geometry.resolve(input: [h, w]), resolved.output == [h, w] else { return nil }
        region.insert(convIndex)
        // Concat of the channel max and the channel mean along axis 1.
        let concatOutput = conv.inputs[0]
        guard isPrivate(concatOutput), let concatIndex = producer(concatOutput) else { return nil }
        let concat = graph.entries[concatIndex].node
        guard Self.isONNX(concat), concat.opType == "Concat", Self.singleOutput(concat) == concatOutput, concat.inputs.count == 2,
              let axis = try? NodeContext(node: concat, opset: 1).int("axis", default: 0),
              (try? Shape.normalizeAxis(axis, rank: 4)) == 1, graph.types[concatOutput]?.shape == [n, 2, h, w] else { return nil }
        region.insert(concatIndex)
        var kinds: [String] = []
        for input in concat.inputs {
            guard let (kind, entries, source) = channelReduction(of: input), source == x else { return nil }
            kinds.append(kind)
            region.formUnion(entries)
        }
        guard Set(kinds) == ["ReduceMax", "ReduceMean"], region.count <= Self.maxRegion else { return nil }
        var constants: [GateConstant] = [.existing(conv.inputs[1])]
        if hasBias { constants.append(.existing(conv.inputs[2])) }
        return GateMatch(region: region, constants: constants,
                         attributes: ["pads": .ints(resolved.padBegin + resolved.padEnd), "dilations": .ints(geometry.dilations),
                                      "mean_first": .int(kinds[0] == "ReduceMean" ? 1 : 0)],
                         sigmoidOutput: sigmoid.outputs[0])
    }

    /// `value` as ReduceMax or ReduceMean over axis 1 of a 4-D x, maybe through views: the op,
    /// the entries and x.
    func channelReduction(of value: String) -> (kind: String, entries: [Int], x: String)? {
        var current = value
        var entries: [Int] = []
        for _ in 0..<8 {
            guard isPrivate(current), let index = producer(current) else { return nil }
            let entry = graph.entries[index], node = entry.node
            guard Self.isONNX(node), Self.singleOutput(node) == current, let input = node.inputs.first else { return nil }
            entries.append(index)
            if Self.viewOps.contains(node.opType) {
                current = input
                continue
            }
            guard node.opType == "ReduceMax" || node.opType == "ReduceMean", let rank = graph.types[input]?.rank, rank == 4,
                  reduceAxes(entry, rank: rank) == [1], keepDims(node) != nil else { return nil }
            return (node.opType, entries, input)
        }
        return nil
    }

    // MARK: - Channel gate

    func matchChannelGate(mul: Int, featureSide: Int) -> GateMatch? {
        guard let (x, xType, path) = gateOperand(mul: mul, featureSide: featureSide, kept: [0, 1]) else { return nil }
        let sigmoid = graph.entries[path.sigmoid].node
        var builder = ChannelProgramBuilder(fusion: self, x: x, xShape: xType.shape)
        guard let result = builder.slot(sigmoid.inputs[0], depth: 0), builder.counts[result] == xType.shape[0] * xType.shape[1],
              builder.region.count <= Self.maxRegion else { return nil }
        // Nothing the small computation makes may be read outside it.
        var insideReads: [String: Int] = [:]
        for index in builder.region.union([path.sigmoid]) {
            for input in graph.entries[index].node.inputs where !input.isEmpty { insideReads[input, default: 0] += 1 }
        }
        for index in builder.region {
            for output in graph.entries[index].node.outputs where !output.isEmpty {
                guard (readers[output] ?? 0) == (insideReads[output] ?? 0), !graphOutputs.contains(output) else { return nil }
            }
        }
        return GateMatch(region: builder.region.union(path.entries + [path.sigmoid]), constants: builder.constants.map { .new($0) },
                         attributes: ["program": .ints(builder.code), "counts": .ints(builder.counts), "result": .int(result),
                                      "pools": .ints([builder.usesAverage ? 1 : 0, builder.usesMax ? 1 : 0])],
                         sigmoidOutput: sigmoid.outputs[0])
    }
}

/// The small computation of a channel gate, from its pooled statistics to the sigmoid's
/// input, as the attributes of `cbam::ChannelGate` carry it.
///
/// Values live in slots of the step's scratch memory; `counts[i]` is slot i's element
/// count for the whole batch, slot 0 holds the global average of x per (n, c) and slot 1
/// the global max. `program` is a list of instructions of ``width`` ints
/// `[op, out, a, b, k, p0, p1, p2]`, each writing a new slot from earlier ones; `k` is
/// the index of a constant input of the node (1 = the first after x):
/// - linear: `out[r, o] = Σᵢ K[o, i] · a[r, i]` for the rows r of a (K is `[M, I]`);
/// - relu: `out = max(a, 0)`;
/// - add, sub, mul, div: `out = a ∘ b`, where an operand of -1 is the constant K
///   (shaped like out);
/// - conv1d: rows of `p0` values, each convolved with K (`[taps]`) at stride 1, begin
///   pad `p1` and dilation `p2`.
enum ChannelGateProgram {
    static let width = 8
    enum Op: Int { case linear = 0, relu, add, sub, mul, div, conv1d }
}

/// Builds a ``ChannelGateProgram`` from the graph, depth first from the sigmoid's input.
struct ChannelProgramBuilder {
    let fusion: GateFusion
    let x: String
    let xShape: [Int]
    var region = Set<Int>()
    var slots: [String: Int] = [:]
    var counts: [Int]
    var code: [Int] = []
    var constants: [Tensor] = []
    var usesAverage = false
    var usesMax = false

    init(fusion: GateFusion, x: String, xShape: [Int]) {
        self.fusion = fusion
        self.x = x
        self.xShape = xShape
        counts = [xShape[0] * xShape[1], xShape[0] * xShape[1]]
    }

    var graph: TypedGraph { fusion.graph }

    private mutating func newSlot(count: Int) -> Int {
        counts.append(count)
        return counts.count - 1
    }

    private mutating func constant(_ values: [Float], shape: [Int]) -> Int {
        constants.append(Tensor.float(shape, values))
        return constants.count  // input index: x is input 0
    }

    private mutating func emit(_ op: ChannelGateProgram.Op, out: Int, a: Int, b: Int = -1, k: Int = -1, _ p0: Int = 0, _ p1: Int = 0, _ p2: Int = 0) {
        code += [op.rawValue, out, a, b, k, p0, p1, p2]
    }

    /// The slot holding `value`, emitting the instructions that compute it; nil when some
    /// op on the way is not one the gate kernel runs.
    mutating func slot(_ value: String, depth: Int) -> Int? {
        if let known = slots[value] { return known }
        guard depth < GateFusion.maxRegion, region.count < GateFusion.maxRegion, let type = fusion.floatType(value),
              let index = fusion.producer(value) else { return nil }
        let entry = graph.entries[index], node = entry.node
        guard GateFusion.isONNX(node), GateFusion.singleOutput(node) == value else { return nil }
        if let (pool, entries) = globalPool(value) {
            region.formUnion(entries)
            if pool == .average { usesAverage = true } else { usesMax = true }
            slots[value] = pool == .average ? 0 : 1
            return slots[value]
        }
        let inputs = node.inputs
        guard let first = inputs.first, !first.isEmpty else { return nil }
        let result: Int
        switch node.opType {
        case let op where GateFusion.viewOps.contains(op):
            guard let source = slot(inputs[0], depth: depth + 1) else { return nil }
            result = source
        case "Transpose":
            // Only moves axes of size 1: the elements keep their order.
            guard let inType = graph.types[inputs[0]] else { return nil }
            let perm = ((try? NodeContext(node: node, opset: 1).ints("perm")) ?? nil) ?? Array((0..<inType.rank).reversed())
            let moved = perm.filter { $0 >= 0 && $0 < inType.rank && inType.shape[$0] != 1 }
            guard perm.count == inType.rank, moved == moved.sorted(), let source = slot(inputs[0], depth: depth + 1) else { return nil }
            result = source
        case "Relu":
            guard let source = slot(inputs[0], depth: depth + 1) else { return nil }
            result = newSlot(count: type.count)
            emit(.relu, out: result, a: source)
        case "Add", "Sub", "Mul", "Div":
            guard inputs.count == 2, !inputs[1].isEmpty else { return nil }
            var operands: [Int] = []
            var constantIndex = -1
            for input in inputs {
                if let tensor = graph.constants[input] {
                    guard constantIndex < 0, let values = GateFusion.broadcast(tensor, to: type.shape) else { return nil }
                    constantIndex = constant(values, shape: type.shape)
                    operands.append(-1)
                } else {
                    guard graph.types[input]?.count == type.count, let source = slot(input, depth: depth + 1) else { return nil }
                    operands.append(source)
                }
            }
            let op: ChannelGateProgram.Op = ["Add": .add, "Sub": .sub, "Mul": .mul, "Div": .div][node.opType]!
            result = newSlot(count: type.count)
            emit(op, out: result, a: operands[0], b: operands[1], k: constantIndex)
        case "Gemm":
            let context = NodeContext(node: node, opset: entry.opset)
            guard inputs.count >= 2, let a = graph.types[inputs[0]], a.rank == 2, let b = graph.constants[inputs[1]], b.rank == 2,
                  (try? context.int("transA", default: 0)) == 0, let transB = try? context.int("transB", default: 0) != 0,
                  let alpha = try? context.float("alpha", default: 1), let beta = try? context.float("beta", default: 1),
                  let values = try? b.floats() else { return nil }
            let (k, m) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
            guard a.shape[1] == k, type.shape == [a.shape[0], m], let source = slot(inputs[0], depth: depth + 1) else { return nil }
            // PyTorch's Linear (transB, alpha 1) is already [m, k]: the kernel shares the
            // initializer's buffer instead of holding a second copy of the weights.
            var weights = values
            if !transB || alpha != 1 {
                for o in 0..<m { for i in 0..<k { weights[o * k + i] = alpha * (transB ? values[o * k + i] : values[i * m + o]) } }
            }
            result = linear(source, weights: weights, m: m, k: k, count: type.count)
            if inputs.count > 2, !inputs[2].isEmpty, beta != 0 {
                guard let c = graph.constants[inputs[2]], let bias = GateFusion.broadcast(c, to: type.shape) else { return nil }
                return finish(value, index, addConstant(result, bias.map { $0 * beta }, shape: type.shape))
            }
        case "MatMul":
            guard inputs.count == 2, let a = graph.types[inputs[0]], a.rank >= 1, let b = graph.constants[inputs[1]], b.rank == 2,
                  a.shape.last == b.shape[0], let values = try? b.floats(),
                  type.count == a.count / b.shape[0] * b.shape[1], let source = slot(inputs[0], depth: depth + 1) else { return nil }
            let (k, m) = (b.shape[0], b.shape[1])
            var weights = [Float](repeating: 0, count: m * k)
            for o in 0..<m { for i in 0..<k { weights[o * k + i] = values[i * m + o] } }
            result = linear(source, weights: weights, m: m, k: k, count: type.count)
        case "Conv":
            guard let (slotIndex, bias) = convolution(entry, outputType: type, depth: depth) else { return nil }
            result = slotIndex
            if let bias { return finish(value, index, addConstant(result, bias, shape: type.shape)) }
        case "BatchNormalization":
            let context = NodeContext(node: node, opset: entry.opset, constants: inputs.map { graph.constants[$0] })
            guard (try? context.int("training_mode", default: 0)) == 0, type.rank >= 2,
                  let epsilon = try? context.float("epsilon", default: 1e-5),
                  let (scale, shift) = try? Passes.batchNormAffine(context, epsilon: epsilon),
                  scale.count == type.shape[1], let source = slot(inputs[0], depth: depth + 1) else { return nil }
            let perChannel = [1, scale.count] + Array(repeating: 1, count: type.rank - 2)
            guard let scales = GateFusion.broadcast(Tensor.float(perChannel, scale), to: type.shape),
                  let shifts = GateFusion.broadcast(Tensor.float(perChannel, shift), to: type.shape) else { return nil }
            let scaled = newSlot(count: type.count)
            emit(.mul, out: scaled, a: source, b: -1, k: constant(scales, shape: type.shape))
            result = addConstant(scaled, shifts, shape: type.shape)
        default:
            return nil
        }
        return finish(value, index, result)
    }

    private mutating func finish(_ value: String, _ index: Int, _ result: Int) -> Int {
        region.insert(index)
        slots[value] = result
        return result
    }

    private mutating func linear(_ source: Int, weights: [Float], m: Int, k: Int, count: Int) -> Int {
        let out = newSlot(count: count)
        emit(.linear, out: out, a: source, k: constant(weights, shape: [m, k]))
        return out
    }

    private mutating func addConstant(_ source: Int, _ values: [Float], shape: [Int]) -> Int {
        let out = newSlot(count: values.count)
        emit(.add, out: out, a: source, b: -1, k: constant(values, shape: shape))
        return out
    }

    /// A Conv on a pooled vector: 1×1 on `[rows, C, 1, …]` (a linear layer, any group),
    /// or 1-D with one channel along a `[rows, 1, L]` vector (ECA's channel mixing).
    /// Returns the output slot and the bias shaped like the output.
    private mutating func convolution(_ entry: TypedGraph.Entry, outputType: ValueType, depth: Int) -> (Int, [Float]?)? {
        let node = entry.node
        guard node.inputs.count >= 2, let inType = graph.types[node.inputs[0]], inType.rank >= 3,
              let weight = graph.constants[node.inputs[1]], weight.dataType == .float, weight.rank == inType.rank,
              let values = try? weight.floats() else { return nil }
        let context = NodeContext(node: node, opset: entry.opset, constants: node.inputs.map { graph.constants[$0] })
        guard let group = try? context.int("group", default: 1), group >= 1,
              let geometry = try? ConvWindow(context).geometry(weight: weight), geometry.kernel == Array(weight.shape.dropFirst(2)),
              let resolved = try? geometry.resolve(input: Array(inType.shape.dropFirst(2))),
              outputType.shape == [inType.shape[0], weight.shape[0]] + resolved.output else { return nil }
        var bias: [Float]? = nil
        if node.inputs.count > 2, !node.inputs[2].isEmpty {
            guard let b = graph.constants[node.inputs[2]], b.count == weight.shape[0],
                  let shaped = GateFusion.broadcast(Tensor.float([1, b.count] + Array(repeating: 1, count: outputType.rank - 2), (try? b.floats()) ?? []),
                                                    to: outputType.shape) else { return nil }
            bias = shaped
        }
        let spatial = inType.shape.dropFirst(2)
        let (cin, m) = (inType.shape[1], weight.shape[0])
        if spatial.allSatisfy({ $0 == 1 }), resolved.output.allSatisfy({ $0 == 1 }), resolved.padBegin.allSatisfy({ $0 == 0 }),
           geometry.kernel.allSatisfy({ $0 == 1 }), cin % group == 0, m % group == 0, weight.shape[1] == cin / group {
            guard let source = slot(node.inputs[0], depth: depth + 1) else { return nil }
            let (cg, mg) = (cin / group, m / group)
            // Ungrouped, `[m, cin, 1, …]` is already the dense `[m, cin]` matrix: shared, not copied.
            var dense = values
            if group > 1 {
                dense = [Float](repeating: 0, count: m * cin)
                for o in 0..<m {
                    let g = o / mg
                    for i in 0..<cg { dense[o * cin + g * cg + i] = values[o * cg + i] }
                }
            }
            return (linear(source, weights: dense, m: m, k: cin, count: outputType.count), bias)
        }
        if inType.rank == 3, cin == 1, m == 1, group == 1, geometry.strides == [1] {
            guard let source = slot(node.inputs[0], depth: depth + 1) else { return nil }
            let out = newSlot(count: outputType.count)
            emit(.conv1d, out: out, a: source, k: constant(values, shape: [values.count]), inType.shape[2], resolved.padBegin[0], geometry.dilations[0])
            return (out, bias)
        }
        return nil
    }

    enum Pool { case average, max }

    /// `value` as a global average or max pool of x over all its spatial axes (in any of
    /// the exported forms), and the entries that compute it.
    func globalPool(_ value: String) -> (Pool, [Int])? {
        guard let index = fusion.producer(value) else { return nil }
        let entry = graph.entries[index], node = entry.node
        let spatial = Array(xShape.dropFirst(2))
        switch node.opType {
        case "GlobalAveragePool", "GlobalMaxPool":
            guard node.inputs.first == x else { return nil }
            return (node.opType == "GlobalMaxPool" ? .max : .average, [index])
        case "AveragePool", "MaxPool":
            guard node.inputs.first == x, let out = graph.types[value], out.shape == Array(xShape.prefix(2)) + spatial.map({ _ in 1 }),
                  let geometry = try? SpatialGeometry(NodeContext(node: node, opset: entry.opset), kernel: nil),
                  geometry.kernel == spatial, geometry.dilations.allSatisfy({ $0 == 1 }),
                  let resolved = try? geometry.resolve(input: spatial),
                  (resolved.padBegin + resolved.padEnd).allSatisfy({ $0 == 0 }) else { return nil }
            return (node.opType == "MaxPool" ? .max : .average, [index])
        case "ReduceMean", "ReduceMax":
            guard let (pool, axes, entries) = reduction(value, depth: 0) else { return nil }
            return axes.filter({ $0 >= 0 }) == [0, 1] ? (pool, entries) : nil
        default:
            return nil
        }
    }

    /// A chain of ReduceMean (or ReduceMax) from x over spatial axes: for each axis of
    /// `value`, the axis of x it is (-1: reduced and kept as 1).
    private func reduction(_ value: String, depth: Int) -> (Pool, [Int], [Int])? {
        guard depth < 8, let index = fusion.producer(value) else { return nil }
        let entry = graph.entries[index], node = entry.node
        guard GateFusion.isONNX(node), node.opType == "ReduceMean" || node.opType == "ReduceMax",
              GateFusion.singleOutput(node) == value, let input = node.inputs.first, let inType = graph.types[input],
              let axes = fusion.reduceAxes(entry, rank: inType.rank), let keep = fusion.keepDims(node) else { return nil }
        let pool: Pool = node.opType == "ReduceMax" ? .max : .average
        var origin: [Int], entries: [Int]
        if input == x {
            origin = Array(0..<xShape.count)
            entries = []
        } else {
            guard fusion.isPrivate(input), let (inner, innerOrigin, innerEntries) = reduction(input, depth: depth + 1), inner == pool else { return nil }
            origin = innerOrigin
            entries = innerEntries
        }
        // Only spatial axes (or ones already reduced) may be reduced.
        guard axes.allSatisfy({ origin[$0] >= 2 || origin[$0] < 0 }) else { return nil }
        let reduced = Set(axes)
        origin = keep ? origin.indices.map { reduced.contains($0) ? -1 : origin[$0] } : origin.indices.filter { !reduced.contains($0) }.map { origin[$0] }
        return (pool, origin, entries + [index])
    }
}

extension GateFusion {
    /// A float constant broadcast (numpy rules) to `shape`, or nil if it does not broadcast there.
    static func broadcast(_ tensor: Tensor, to shape: [Int]) -> [Float]? {
        guard tensor.dataType == .float, let values = try? tensor.floats(), tensor.rank <= shape.count else { return nil }
        let padded = Array(repeating: 1, count: shape.count - tensor.rank) + tensor.shape
        guard zip(padded, shape).allSatisfy({ $0 == $1 || $0 == 1 }) else { return nil }
        var strides = [Int](repeating: 0, count: shape.count)
        var step = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[axis] = padded[axis] == 1 ? 0 : step
            step *= padded[axis]
        }
        let total = shape.reduce(1, *)
        var result = [Float]()
        result.reserveCapacity(total)
        var position = [Int](repeating: 0, count: shape.count)
        for _ in 0..<total {
            var offset = 0
            for axis in shape.indices { offset += position[axis] * strides[axis] }
            result.append(values[offset])
            var axis = shape.count - 1
            while axis >= 0 {
                position[axis] += 1
                if position[axis] < shape[axis] { break }
                position[axis] = 0
                axis -= 1
            }
        }
        return result
    }
}
