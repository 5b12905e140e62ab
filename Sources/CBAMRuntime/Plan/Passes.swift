/// The rewrite passes between typing and lowering. Each is a function from a typed
/// graph to a typed graph that leaves the graph unchanged where its pattern does not
/// apply, and says in the graph's log what it did. Fused nodes live in the `cbam`
/// domain, keep the names of the nodes they replace (joined by "+"), and list those
/// nodes in ``TypedGraph/Entry/replaces``, so errors and the profile name the model's
/// own nodes.
///
/// Views (Reshape, Flatten, Squeeze, Unsqueeze, Identity, inference Dropout) are not a
/// pass: the planner gives their output the input's bytes.
enum Passes {
    /// The domain of cbam-run's own fused ops.
    static let domain = "cbam"

    /// Every pass, in order.
    static func run(_ graph: inout TypedGraph, limits: ResourceLimits) throws {
        try strideOneTransposedAsConv(&graph)
        try foldBatchNormIntoConv(&graph)
        try depthwiseMultiplierAsDepthwise(&graph)
        graph = fuseChannelGates(graph)
        graph = fuseSpatialGates(graph)
        graph = fuseSpatialMaps(graph)
        graph = fuseGateResidual(graph)
        graph = mergeChannelScaleIntoSpatialGate(graph)
        graph = fuseConvResidualAdd(graph)
        graph = fuseConvRelu(graph)
        graph = fuseConvHardSwish(graph)
        graph = fuseConvSiLU(graph)
        graph = fuseAddRelu(graph)
        graph = fuseNormalizationAndGelu(graph)
    }

    // MARK: - A stride-1 ConvTranspose as the Conv it equals

    /// `ConvTranspose(X, W, B)` with every stride 1, one group, 2-D, no output padding or
    /// output_shape, explicit pads (auto_pad NOTSET) and W a constant → `Conv(X, W′, B)` with
    /// W′[o, c, ky, kx] = W[c, o, kH−1−ky, kW−1−kx] and pads d·(k−1) − p at each end (the
    /// transposed convolution's padding crops its output, the Conv's pads grow it back). Then the
    /// Conv's kernels, timed, fusions and all, run it (ResnetFPN4's first lift, 8 → 16 channels on
    /// 32×32: 0.29 ms in oneDNN's deconvolution with two reorders). Where a pad exceeds d·(k−1) the
    /// node is left as it is.
    static func strideOneTransposedAsConv(_ graph: inout TypedGraph) throws {
        var readers = graph.readerCounts()
        var rewritten = 0
        for (index, entry) in graph.entries.enumerated() where entry.node.domain.isEmpty && entry.node.opType == "ConvTranspose" {
            let node = entry.node
            guard node.inputs.count >= 2, node.outputs.count == 1, let weight = graph.constants[node.inputs[1]],
                  weight.dataType == .float, weight.rank == 4 else { continue }
            let context = NodeContext(node: node, opset: entry.opset, constants: node.inputs.map { graph.constants[$0] })
            let (c, m, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
            let dilations = try context.ints("dilations") ?? [1, 1], pads = try context.ints("pads") ?? [0, 0, 0, 0]
            guard try context.int("group", default: 1) == 1, try context.string("auto_pad", default: "NOTSET") == "NOTSET",
                  (try context.ints("strides") ?? [1, 1]) == [1, 1], (try context.ints("output_padding") ?? [0, 0]).allSatisfy({ $0 == 0 }),
                  !context.has("output_shape"), (try context.ints("kernel_shape") ?? [kh, kw]) == [kh, kw],
                  dilations.count == 2, dilations.allSatisfy({ $0 >= 1 }), pads.count == 4, pads.allSatisfy({ $0 >= 0 }) else { continue }
            let extents = [(kh - 1) * dilations[0], (kw - 1) * dilations[1]]
            let convPads = pads.enumerated().map { extents[$0.offset % 2] - $0.element }
            guard convPads.allSatisfy({ $0 >= 0 }) else { continue }
            let old = try weight.floats("W")
            var flipped = [Float](repeating: 0, count: old.count)
            for ci in 0..<c {
                for o in 0..<m {
                    for ky in 0..<kh {
                        for kx in 0..<kw {
                            flipped[((o * c + ci) * kh + ky) * kw + kx] = old[((ci * m + o) * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx)]
                        }
                    }
                }
            }
            let weightName = "\(node.outputs[0])::conv_weight"
            graph.constants[weightName] = try Tensor(shape: [m, c, kh, kw], floats: flipped)
            graph.types[weightName] = ValueType(.float, [m, c, kh, kw])
            var conv = node
            conv.opType = "Conv"
            conv.inputs[1] = weightName
            conv.attributes = ["kernel_shape": .ints([kh, kw]), "dilations": .ints(dilations), "pads": .ints(convPads), "strides": .ints([1, 1])]
            graph.entries[index].node = conv
            readers[node.inputs[1], default: 1] -= 1
            if readers[node.inputs[1]] == 0, !graph.outputs.contains(node.inputs[1]) { graph.constants[node.inputs[1]] = nil }
            rewritten += 1
        }
        if rewritten > 0 { graph.log.append("transposed-as-conv: \(rewritten) stride-1 ConvTranspose run as Conv with flipped weights") }
    }

    // MARK: - A depthwise Conv with a channel multiplier as a plain depthwise one

    /// `Conv(X, W)` with one input channel per group and k > 1 outputs each (group = C, W
    /// `[k·C, 1, kH, kW]`: a depthwise Conv with a channel multiplier, FastViT's and MobileOne's
    /// downsampling 7×7 and 1×1 branches) → X's channels each repeated k times
    /// (`Reshape [N, C, 1, H, W]` → `Expand [N, C, k, H, W]` → `Reshape [N, k·C, H, W]`: one
    /// broadcast copy, the Reshapes views) and the same Conv with k·C groups, a plain depthwise
    /// one: output channel g·k + j reads input channel g either way. oneDNN's depthwise kernel takes
    /// it; im2col ran one tiny sgemm per group (FastViT-T8's: 0.2–2 GFLOP/s, 3 of its 8 ms).
    static func depthwiseMultiplierAsDepthwise(_ graph: inout TypedGraph) throws {
        var rewritten = 0
        var entries: [TypedGraph.Entry] = []
        for entry in graph.entries {
            let node = entry.node
            guard isPlainConv(node), entry.opset >= 8, node.inputs.count >= 2, node.outputs.count == 1, !node.outputs[0].isEmpty,
                  let x = graph.types[node.inputs[0]], x.dataType == .float, x.shape.count == 4,
                  let weight = graph.constants[node.inputs[1]], weight.rank == 4, weight.shape[1] == 1,
                  case .int(let group)? = node.attributes["group"], group > 1, group == x.shape[1],
                  weight.shape[0] % group == 0, weight.shape[0] / group > 1 else {
                entries.append(entry)
                continue
            }
            let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]), k = weight.shape[0] / c
            let base = "\(node.outputs[0])::repeated"
            func value(_ suffix: String, _ shape: [Int]) -> String {
                graph.types[base + suffix] = ValueType(.float, shape)
                return base + suffix
            }
            func shapeConstant(_ suffix: String, _ shape: [Int]) throws -> String {
                let name = base + suffix
                graph.constants[name] = try Tensor(shape: [shape.count], int64s: shape.map(Int64.init))
                graph.types[name] = ValueType(.int64, [shape.count])
                return name
            }
            let (planes, stacked, joined) = (value("_planes", [n, c, 1, h, w]), value("_stacked", [n, c, k, h, w]), value("", [n, c * k, h, w]))
            let nodes = [
                Node(name: node.ref.name + "/repeat_planes", opType: "Reshape", inputs: [node.inputs[0], try shapeConstant("_shape5", [n, c, 1, h, w])], outputs: [planes]),
                Node(name: node.ref.name + "/repeat", opType: "Expand", inputs: [planes, try shapeConstant("_expand", [n, c, k, h, w])], outputs: [stacked]),
                Node(name: node.ref.name + "/repeat_join", opType: "Reshape", inputs: [stacked, try shapeConstant("_shape4", [n, c * k, h, w])], outputs: [joined]),
            ]
            entries += nodes.map { TypedGraph.Entry(node: $0, opset: entry.opset, replaces: []) }
            var conv = node
            conv.inputs[0] = joined
            conv.attributes["group"] = .int(c * k)
            entries.append(TypedGraph.Entry(node: conv, opset: entry.opset, replaces: entry.replaces))
            rewritten += 1
        }
        graph.entries = entries
        if rewritten > 0 { graph.log.append("depthwise-multiplier: \(rewritten) depthwise Conv(s) with a channel multiplier run on repeated input channels") }
    }

    // MARK: - BatchNormalization into the Conv before it

    /// `BN(Conv(X, W, B))` → `Conv(X, W·a, B·a + d)` with `a = scale/√(var+ε)`, `d = bias − mean·a`,
    /// where the Conv's weight and bias and all BN parameters are constants and nothing
    /// else reads the Conv's output. The original weights and BN parameters that nothing else
    /// reads leave the graph as each fold is made (in place: the caller's graph holds the only
    /// copy), so the weights are not held twice while a "BN kept" export is folded.
    static func foldBatchNormIntoConv(_ graph: inout TypedGraph) throws {
        var readers = graph.readerCounts()
        let producers = graph.producers()
        var removed = Set<Int>()
        var folded = 0
        for (index, entry) in graph.entries.enumerated() where entry.node.domain.isEmpty && entry.node.opType == "BatchNormalization" {
            let bn = entry.node
            guard bn.outputs.count == 1 || bn.outputs.dropFirst().allSatisfy(\.isEmpty),
                  let source = bn.inputs.first, let convIndex = producers[source], !removed.contains(convIndex),
                  readers[source] == 1, !graph.outputs.contains(source) else { continue }
            let conv = graph.entries[convIndex].node
            guard isPlainConv(conv), conv.outputs.count == 1, conv.inputs.count >= 2,
                  let weight = graph.constants[conv.inputs[1]], weight.dataType == .float, weight.rank >= 3 else { continue }
            let context = NodeContext(node: bn, opset: entry.opset, constants: bn.inputs.map { graph.constants[$0] })
            guard try context.int("training_mode", default: 0) == 0,
                  let (scale, shift) = try batchNormAffine(context, epsilon: try context.float("epsilon", default: 1e-5)),
                  scale.count == weight.shape[0] else { continue }
            let bias = conv.inputs.count > 2 && !conv.inputs[2].isEmpty ? graph.constants[conv.inputs[2]] : nil
            if conv.inputs.count > 2 && !conv.inputs[2].isEmpty && bias == nil { continue }  // a runtime bias
            let oldWeights = try weight.floats("W"), oldBias = try bias?.floats("B") ?? [Float](repeating: 0, count: scale.count)
            guard oldBias.count == scale.count else { continue }
            let perChannel = oldWeights.count / scale.count
            let newWeights = oldWeights.enumerated().map { $0.element * scale[$0.offset / perChannel] }
            let newBias = (0..<scale.count).map { oldBias[$0] * scale[$0] + shift[$0] }
            let weightName = "\(bn.outputs[0])::folded_weight", biasName = "\(bn.outputs[0])::folded_bias"
            graph.constants[weightName] = try Tensor(shape: weight.shape, floats: newWeights)
            graph.constants[biasName] = try Tensor(shape: [scale.count], floats: newBias)
            graph.types[weightName] = ValueType(.float, weight.shape)
            graph.types[biasName] = ValueType(.float, [scale.count])

            var fused = conv
            fused.inputs = [conv.inputs[0], weightName, biasName] + conv.inputs.dropFirst(3)
            fused.outputs = [bn.outputs[0]]
            fused.name = joinedName(conv, bn)
            graph.entries[index] = TypedGraph.Entry(node: fused, opset: graph.entries[convIndex].opset,
                                                    replaces: graph.entries[convIndex].replaces + entry.replaces)
            removed.insert(convIndex)
            readers[source] = 0
            for name in conv.inputs.dropFirst().prefix(2) + bn.inputs.dropFirst() where !name.isEmpty {
                readers[name, default: 1] -= 1
                if readers[name] == 0, !graph.outputs.contains(name) { graph.constants[name] = nil }
            }
            folded += 1
        }
        graph.entries = graph.entries.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        if folded > 0 { graph.log.append("fold-batchnorm: \(folded) BatchNormalization folded into the Conv before it") }
    }

    /// The per-channel `a` and `d` of an inference BatchNormalization (`y = a·x + d`), when
    /// its scale, bias, mean and variance are float32 constants of one length.
    static func batchNormAffine(_ context: NodeContext, epsilon: Float) throws -> (scale: [Float], shift: [Float])? {
        guard let s = context.constant(1), let b = context.constant(2), let mu = context.constant(3), let v = context.constant(4),
              [s, b, mu, v].allSatisfy({ $0.dataType == .float && $0.count == s.count }) else { return nil }
        let (scale, bias, mean, variance) = (try s.floats(), try b.floats(), try mu.floats(), try v.floats())
        let a = (0..<scale.count).map { scale[$0] / (variance[$0] + epsilon).squareRoot() }
        return (a, (0..<scale.count).map { bias[$0] - mean[$0] * a[$0] })
    }

    // MARK: - Conv + residual Add, Conv + Relu

    /// `Add(Conv(…), R)` → `FusedConv(…, R)` when R has the Conv output's type (a residual
    /// connection) and nothing else reads the Conv's output. The fused step takes the
    /// Add's place, where R is computed.
    static func fuseConvResidualAdd(_ graph: TypedGraph) -> TypedGraph {
        mergeConv(into: "Add", graph, log: "residual Add merged into the Conv that feeds it", tag: "fuse-conv-add") { add, conv, isFree in
            guard add.inputs.count == 2, add.outputs.count == 1, let outputType = graph.types[add.outputs[0]],
                  outputType.dataType == .float else { return nil }
            for side in 0..<2 {
                let source = add.inputs[side], other = add.inputs[1 - side]
                guard let (conv, convIndex) = conv(source), isFree(source), source != other,
                      graph.types[other] == outputType, graph.types[source] == outputType,
                      conv.inputs.count <= 3, conv.attributes["activation"] == nil else { continue }
                var fused = conv
                fused.inputs = Array(conv.inputs.prefix(3)) + Array(repeating: "", count: Swift.max(0, 3 - conv.inputs.count)) + [other]
                return (convIndex, fused)
            }
            return nil
        }
    }

    /// `Relu(Conv(…))` (or of a FusedConv) → `FusedConv(…, activation: Relu)` when nothing
    /// else reads the Conv's output.
    static func fuseConvRelu(_ graph: TypedGraph) -> TypedGraph {
        mergeConv(into: "Relu", graph, log: "Relu merged into the Conv before it", tag: "fuse-conv-relu") { relu, conv, isFree in
            guard let source = relu.inputs.first, relu.outputs.count == 1, graph.types[source]?.dataType == .float,
                  let (conv, convIndex) = conv(source), isFree(source), conv.attributes["activation"] == nil else { return nil }
            var fused = conv
            fused.attributes["activation"] = .string("Relu")
            return (convIndex, fused)
        }
    }

    /// `HardSwish(Conv(…))` → `FusedConv(…, activation: HardSwish)` when nothing else reads the
    /// Conv's output (MobileNetV3's and EfficientViT's convolutions): oneDNN applies it as a
    /// post-op, the im2col kernel in its epilogue; the other kernels take Relu only and stand aside.
    static func fuseConvHardSwish(_ graph: TypedGraph) -> TypedGraph {
        mergeConv(into: "HardSwish", graph, log: "HardSwish merged into the Conv before it", tag: "fuse-conv-hardswish") { node, conv, isFree in
            guard let source = node.inputs.first, node.inputs.count == 1, node.outputs.count == 1, graph.types[source]?.dataType == .float,
                  let (conv, convIndex) = conv(source), isFree(source), conv.attributes["activation"] == nil else { return nil }
            var fused = conv
            fused.attributes["activation"] = .string("HardSwish")
            return (convIndex, fused)
        }
    }

    /// `Mul(c, Sigmoid(c))` with `c = Conv(…)` (or a FusedConv without an activation) →
    /// `FusedConv(…, activation: SiLU)`, the SiLU of NFNet's, GCResNeXt's, MobileViT's and
    /// CoAtNet's convolutions, when the Sigmoid and the Mul alone read c and the Mul alone the
    /// Sigmoid. The fused step takes the Mul's place; the Conv and the Sigmoid go.
    static func fuseConvSiLU(_ graph: TypedGraph) -> TypedGraph {
        var graph = graph
        let readers = graph.readerCounts(), producers = graph.producers()
        var removed = Set<Int>()
        let readBy = { (value: String, count: Int) in readers[value] == count && !graph.outputs.contains(value) }
        let producer = { (value: String) -> (Node, Int)? in
            guard let index = producers[value], !removed.contains(index) else { return nil }
            return (graph.entries[index].node, index)
        }
        for (index, entry) in graph.entries.enumerated() where entry.node.domain.isEmpty && entry.node.opType == "Mul" {
            let mul = entry.node
            guard mul.inputs.count == 2, mul.outputs.count == 1, !removed.contains(index) else { continue }
            for side in 0..<2 {
                let c = mul.inputs[side], s = mul.inputs[1 - side]
                guard c != s, readBy(c, 2), readBy(s, 1), let type = graph.types[c], type.dataType == .float,
                      graph.types[s] == type, graph.types[mul.outputs[0]] == type,
                      let (sigmoid, sigmoidIndex) = producer(s), sigmoid.domain.isEmpty, sigmoid.opType == "Sigmoid", sigmoid.inputs == [c],
                      let (conv, convIndex) = fusableConv(producing: c, graph, producer), conv.attributes["activation"] == nil else { continue }
                var fused = conv
                fused.domain = domain
                fused.opType = "FusedConv"
                fused.attributes["activation"] = .string("SiLU")
                fused.outputs = mul.outputs
                fused.name = [conv, sigmoid, mul].map(\.ref.name).joined(separator: "+")
                graph.entries[index] = TypedGraph.Entry(node: fused, opset: graph.entries[convIndex].opset,
                                                        replaces: graph.entries[convIndex].replaces + graph.entries[sigmoidIndex].replaces + entry.replaces)
                removed.formUnion([convIndex, sigmoidIndex])
                break
            }
        }
        graph.entries = graph.entries.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        if !removed.isEmpty { graph.log.append("fuse-conv-silu: \(removed.count / 2) Sigmoid + Mul merged into the Conv before them") }
        return graph
    }

    /// The Conv (or FusedConv) producing `value` when a Conv fusion may take it: 1-D or 2-D,
    /// constant weights and bias (or none) — FusedConv has no reference kernel to fall back on.
    static func fusableConv(producing value: String, _ graph: TypedGraph, _ producer: (String) -> (Node, Int)?) -> (Node, Int)? {
        guard let (conv, convIndex) = producer(value),
              isPlainConv(conv) || (conv.domain == domain && conv.opType == "FusedConv"), conv.inputs.count >= 2,
              let weight = graph.constants[conv.inputs[1]], weight.rank <= 4,
              conv.inputs.count < 3 || conv.inputs[2].isEmpty || graph.constants[conv.inputs[2]] != nil else { return nil }
        return (conv, convIndex)
    }

    /// The driver of the Conv fusions: for each node of `opType`, `match` gets the node, a
    /// lookup of the Conv (or FusedConv, with constant weights and bias) producing a value, and whether
    /// a value is read by that node alone and is not a graph output; it returns the Conv's
    /// index and the fused node. The fused node (domain `cbam`, op `FusedConv`, the matched
    /// node's outputs) takes the matched node's place — where every input of both is ready —
    /// and the Conv's entry goes.
    static func mergeConv(into opType: String, _ graph: TypedGraph, log: String, tag: String,
                                  _ match: (Node, (String) -> (Node, Int)?, (String) -> Bool) -> (Int, Node)?) -> TypedGraph {
        mergeProducer(into: opType, as: "FusedConv", graph, log: log, tag: tag) { node, producer, isFree in
            // 1-D and 2-D only (a 3-D Conv runs as it is), constant weights and bias.
            return match(node, { fusableConv(producing: $0, graph, producer) }, isFree)
        }
    }

    /// The driver of the two-node fusions: for each node of `opType` (default domain), `match`
    /// gets the node, a lookup of the entry producing a value (not already merged), and whether
    /// a value is read by that node alone and is not a graph output; it returns the producer's
    /// index and the fused node. The fused node (domain `cbam`, op `fusedOpType`, the matched
    /// node's outputs, both names joined) takes the matched node's place — where every input
    /// of both is ready — and the producer's entry goes.
    static func mergeProducer(into opType: String, as fusedOpType: String, _ graph: TypedGraph, log: String, tag: String,
                              _ match: (Node, @escaping (String) -> (Node, Int)?, @escaping (String) -> Bool) -> (Int, Node)?) -> TypedGraph {
        var graph = graph
        let readers = graph.readerCounts()
        let producers = graph.producers()
        var removed = Set<Int>()
        for (index, entry) in graph.entries.enumerated() where entry.node.domain.isEmpty && entry.node.opType == opType {
            let producer = { (value: String) -> (Node, Int)? in
                guard let producerIndex = producers[value], !removed.contains(producerIndex) else { return nil }
                return (graph.entries[producerIndex].node, producerIndex)
            }
            let isFree = { (value: String) in readers[value] == 1 && !graph.outputs.contains(value) }
            guard let (producerIndex, matched) = match(entry.node, producer, isFree) else { continue }
            var fused = matched
            fused.domain = domain
            fused.opType = fusedOpType
            fused.outputs = entry.node.outputs
            fused.name = joinedName(graph.entries[producerIndex].node, entry.node)
            graph.entries[index] = TypedGraph.Entry(node: fused, opset: graph.entries[producerIndex].opset,
                                                    replaces: graph.entries[producerIndex].replaces + entry.replaces)
            removed.insert(producerIndex)
        }
        graph.entries = graph.entries.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        if !removed.isEmpty { graph.log.append("\(tag): \(removed.count) \(log)") }
        return graph
    }

    // MARK: - Add + Relu

    /// `Relu(Add(A, B))` → `cbam::AddRelu(A, B)`: one pass writing `max(A + B, 0)` instead of an
    /// Add writing the sum and a Relu reading it again. Left for the residual Adds the Conv and
    /// gate fusions could not take (a ResNeXt block whose last Conv has its own Relu before the
    /// sum). Applies when the Relu alone reads the Add's float output, which is no graph output;
    /// the fused step takes the Relu's place.
    static func fuseAddRelu(_ graph: TypedGraph) -> TypedGraph {
        mergeProducer(into: "Relu", as: "AddRelu", graph, log: "Add + Relu merged into one step", tag: "fuse-add-relu") { relu, producer, isFree in
            guard relu.inputs.count == 1, relu.outputs.count == 1, let sum = relu.inputs.first, isFree(sum),
                  graph.types[sum]?.dataType == .float, graph.types[relu.outputs[0]] == graph.types[sum],
                  let (add, addIndex) = producer(sum), add.domain.isEmpty, add.opType == "Add", add.inputs.count == 2,
                  add.inputs.allSatisfy({ !$0.isEmpty }), add.outputs == [sum] else { return nil }
            return (addIndex, add)
        }
    }

    // MARK: - Residual Add (+ Relu) after a gate

    /// `Relu(Add(y, R))` or `Add(y, R)`, where y is the first output of a fused
    /// `cbam::ChannelGate` or `cbam::SpatialGate` (the last gate of an SE or CBAM block) →
    /// the gate with R appended as its last input, attribute `residual = 1` and, with the
    /// Relu, `activation = "Relu"`: its second pass writes `max(x · s + R, 0)` straight away
    /// instead of three passes over the feature map. Applies when nothing else reads y (or
    /// the Add's output, for the Relu), R has y's type, and nothing reads the gate's map
    /// before the fused step, which takes the last replaced node's place (where R is ready).
    static func fuseGateResidual(_ graph: TypedGraph) -> TypedGraph {
        var graph = graph
        let readerCounts = graph.readerCounts()
        let producers = graph.producers()
        var onlyReader: [String: Int] = [:]
        for (index, entry) in graph.entries.enumerated() { for input in entry.node.inputs where !input.isEmpty { onlyReader[input] = index } }
        let isFree = { (value: String) in readerCounts[value] == 1 && !graph.outputs.contains(value) }
        var removed = Set<Int>(), fusedCount = 0
        for (addIndex, entry) in graph.entries.enumerated() where entry.node.domain.isEmpty && entry.node.opType == "Add" {
            let add = entry.node
            guard add.inputs.count == 2, add.outputs.count == 1, let type = graph.types[add.outputs[0]], type.dataType == .float else { continue }
            for side in 0..<2 {
                let (source, other) = (add.inputs[side], add.inputs[1 - side])
                guard let gateIndex = producers[source], !removed.contains(gateIndex), gateIndex < addIndex else { continue }
                let gate = graph.entries[gateIndex].node
                guard gate.domain == domain, gate.opType == "ChannelGate" || gate.opType == "SpatialGate",
                      gate.attributes["residual"] == nil, gate.outputs.first == source, isFree(source), source != other,
                      !other.isEmpty, graph.types[source] == type, graph.types[other] == type else { continue }
                // The Relu that alone reads the Add's output, if there is one.
                var last = addIndex
                var replaced = [(addIndex, add)]
                if isFree(add.outputs[0]), let reluIndex = onlyReader[add.outputs[0]], !removed.contains(reluIndex) {
                    let relu = graph.entries[reluIndex].node
                    if relu.domain.isEmpty, relu.opType == "Relu", relu.inputs == [add.outputs[0]], relu.outputs.count == 1,
                       graph.types[relu.outputs[0]] == type {
                        last = reluIndex
                        replaced.append((reluIndex, relu))
                    }
                }
                let maps = Set(gate.outputs.dropFirst().filter { !$0.isEmpty })
                guard !graph.entries[(gateIndex + 1)..<last].contains(where: { !maps.isDisjoint(with: $0.node.inputs) }) else { continue }
                var fused = gate
                // The spatial gate's optional B keeps its place: R goes fourth.
                if gate.opType == "SpatialGate" { fused.inputs += Array(repeating: "", count: Swift.max(0, 3 - gate.inputs.count)) }
                fused.inputs.append(other)
                fused.attributes["residual"] = .int(1)
                if replaced.count == 2 { fused.attributes["activation"] = .string("Relu") }
                fused.outputs[0] = replaced.last!.1.outputs[0]
                fused.name = ([gate] + replaced.map(\.1)).map(\.ref.name).joined(separator: "+")
                graph.entries[last] = TypedGraph.Entry(node: fused, opset: graph.entries[gateIndex].opset,
                                                       replaces: graph.entries[gateIndex].replaces + replaced.flatMap { graph.entries[$0.0].replaces })
                removed.insert(gateIndex)
                if last != addIndex { removed.insert(addIndex) }
                fusedCount += 1
                break
            }
        }
        graph.entries = graph.entries.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        if fusedCount > 0 { graph.log.append("fuse-gate-residual: \(fusedCount) residual Add (+ Relu) merged into the gate before it") }
        return graph
    }

    // MARK: - A CBAM block's channel scale applied inside its spatial gate

    /// A CBAM block: `ChannelGate(x) → y1 = x · g`, then `SpatialGate(y1) → y1 · s`. The
    /// spatial gate can take x and g instead: its channel statistics of x·g are computed as it
    /// reads x, and its last pass writes x · g · s. y1 is never written, which saves one
    /// write and one read of the block's feature map. The channel gate then only computes g
    /// (attribute `apply = 0`, no first output); the spatial gate gets g `[N, C]` as input 3
    /// (attribute `channel_scale = 1`, a residual moves to input 4). Applies where y1 is read
    /// by the spatial gate alone, the channel gate has no residual, and x is 4-D.
    static func mergeChannelScaleIntoSpatialGate(_ graph: TypedGraph) -> TypedGraph {
        var graph = graph
        let readerCounts = graph.readerCounts()
        let producers = graph.producers()
        var merged = 0
        for (spatialIndex, entry) in graph.entries.enumerated() where entry.node.domain == domain && entry.node.opType == "SpatialGate" {
            var spatial = entry.node
            guard spatial.attributes["channel_scale"] == nil, let y1 = spatial.inputs.first, !y1.isEmpty,
                  let channelIndex = producers[y1], channelIndex < spatialIndex else { continue }
            var channel = graph.entries[channelIndex].node
            guard channel.domain == domain, channel.opType == "ChannelGate", channel.attributes["residual"] == nil,
                  channel.attributes["apply"] == nil, channel.outputs.count == 2, channel.outputs[0] == y1,
                  readerCounts[y1] == 1, !graph.outputs.contains(y1), let x = channel.inputs.first, !x.isEmpty,
                  let xType = graph.types[x], xType.rank == 4, graph.types[y1] == xType,
                  case let map = channel.outputs[1], !map.isEmpty, let mapType = graph.types[map],
                  mapType.count == xType.shape[0] * xType.shape[1] else { continue }
            channel.outputs[0] = ""
            channel.attributes["apply"] = .int(0)
            spatial.inputs[0] = x
            // [X, W, B, (R)] → [X, W, B, g, (R)]: B keeps its place, a residual stays last.
            let residual = spatial.attributes["residual"] != nil ? spatial.inputs.popLast() : nil
            spatial.inputs += Array(repeating: "", count: Swift.max(0, 3 - spatial.inputs.count))
            spatial.inputs.append(map)
            if let residual { spatial.inputs.append(residual) }
            spatial.attributes["channel_scale"] = .int(1)
            graph.entries[channelIndex].node = channel
            graph.entries[spatialIndex].node = spatial
            merged += 1
        }
        if merged > 0 { graph.log.append("merge-channel-scale: \(merged) channel gate(s) scale inside the spatial gate after them (x · g never written)") }
        return graph
    }

    // MARK: - Helpers

    private static func isPlainConv(_ node: Node) -> Bool { node.domain.isEmpty && node.opType == "Conv" }

    /// "conv1+relu1": the fused node's name, from the names of the nodes it replaces.
    private static func joinedName(_ a: Node, _ b: Node) -> String { a.ref.name + "+" + b.ref.name }
}
