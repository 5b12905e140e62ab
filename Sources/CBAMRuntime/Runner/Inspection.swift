/// What `cbam-run inspect` reports about a model: its declared interface, op and
/// parameter counts, every tensor's shape, per-node multiply-accumulates and the
/// attention blocks, with the unsupported ops when there are any.
///
/// Shapes come from compiled plans, without running anything: the batch dimension is
/// set to 1 for one plan and 2 for a second, and a tensor dimension that differs
/// between them is shown in terms of the symbol (`N`, `2*N`). Non-batch symbolic
/// dimensions take `defaultSize`.
public struct InspectionReport: Codable, Sendable {
    public struct Value: Codable, Sendable {
        public var name: String
        public var type: String
        public var shape: String
    }
    public struct NodeInfo: Codable, Sendable {
        public var index: Int
        public var name: String
        public var opType: String
        public var outputs: [Value]
        /// Multiply-accumulates for one run at batch 1 (Conv, ConvTranspose, Gemm, MatMul; 0 otherwise).
        public var macs: Int
    }
    public struct AttentionInfo: Codable, Sendable {
        public var index: Int
        public var block: Int
        public var kind: String
        public var tensor: String
        public var node: String
        public var shape: String
    }

    public var file: String
    public var producer: String
    public var irVersion: Int
    public var opsets: [String: Int]
    public var inputs: [Value]
    public var outputs: [Value]
    public var opCounts: [String: Int]
    /// Elements in floating-point initializers: the learned weights (with folded
    /// BatchNorm, the conv biases it leaves behind; with kept BatchNorm, its running statistics).
    public var parameterCount: Int
    /// Elements in integer and bool initializers (shape and index constants), not parameters.
    public var constantCount: Int
    public var initializerCount: Int
    public var unsupportedOps: [String]
    public var nodes: [NodeInfo]
    /// Σ of `nodes[].macs` (batch 1).
    public var totalMACs: Int
    public var attention: [AttentionInfo]
    /// The optimised plan at batch 1: memory, MACs and what each pass did.
    public var plan: PlanSummary?
    /// The optimised plan's steps (`inspect --plan`).
    public var planSteps: [PlanStepInfo]
    public var notes: [String]

    public struct PlanStepInfo: Codable, Sendable {
        public var name: String
        public var opType: String
        /// How the step computes ("im2col+sgemm", "simd broadcast", "reference", …).
        public var kernel: String
        /// The model's nodes the step stands for.
        public var replaces: [String]
        public var output: String
        public var macs: Int
    }
}

public enum Inspector {
    /// Builds the report; only a file that cannot be loaded throws. A model that cannot
    /// run (unsupported ops, bad shapes) still gets its static part and a note.
    public static func inspect(contentsOf path: String, defaultSize: Int = 64) throws -> InspectionReport {
        let model = try ModelLoader.load(contentsOf: path)
        let graph = model.graph
        func typeName(_ info: ValueInfo) -> String { info.elementType?.description ?? DataType.onnxName(of: info.elementTypeCode) }
        var counts: [String: Int] = [:]
        for node in graph.nodes { counts[node.opType, default: 0] += 1 }
        let unsupported = Set(graph.nodes.filter { OpRegistry.standard.builder(for: $0) == nil }.map(\.opType)).sorted()
        var report = InspectionReport(
            file: path, producer: "\(model.producerName) \(model.producerVersion)".trimmingCharacters(in: .whitespaces),
            irVersion: model.irVersion,
            opsets: Dictionary(model.opsetImports.map { ($0.key.isEmpty ? "ai.onnx" : $0.key, $0.value) }, uniquingKeysWith: { a, _ in a }),
            inputs: graph.requiredInputs.map { .init(name: $0.name, type: typeName($0), shape: $0.shapeDescription) },
            outputs: graph.outputs.map { .init(name: $0.name, type: typeName($0), shape: $0.shapeDescription) },
            opCounts: counts,
            parameterCount: graph.initializers.values.filter { $0.dataType == .float || $0.dataType == .double }.reduce(0) { $0 + $1.count },
            constantCount: graph.initializers.values.filter { $0.dataType != .float && $0.dataType != .double }.reduce(0) { $0 + $1.count },
            initializerCount: graph.initializers.count,
            unsupportedOps: unsupported, nodes: [], totalMACs: 0, attention: [], plan: nil, planSteps: [], notes: [])
        guard unsupported.isEmpty else {
            report.notes.append("shapes, MACs and attention blocks need every op supported; unsupported: \(unsupported.joined(separator: ", "))")
            return report
        }
        do {
            try inferShapes(model: model, path: path, defaultSize: defaultSize, into: &report)
        } catch {
            report.notes.append("could not plan the model to infer shapes: \(error)")
        }
        return report
    }

    /// Compiles the model at batch 1 and 2 (nothing runs), reading shapes, MACs, memory
    /// and the attention maps' kinds from the plans.
    static func inferShapes(model: Model, path: String, defaultSize: Int, into report: inout InspectionReport) throws {
        // The plan without passes keeps one step per node of the file.
        let session = try Session(model: model, fileName: path, options: SessionOptions(optimize: false))
        var symbols: [String: String] = [:]
        func inputTypes(batch: Int) throws -> [String: ValueType] {
            var result: [String: ValueType] = [:]
            for info in session.requiredInputs {
                guard let declared = info.shape else {
                    throw CBAMError(.missingInput, "input \"\(info.name)\" declares no shape")
                }
                let shape = declared.enumerated().map { axis, dim -> Int in
                    switch dim {
                    case .fixed(let n): return n
                    case .symbolic(let name):
                        symbols[name] = name
                        return axis == 0 ? batch : defaultSize
                    case .unknown: return axis == 0 ? batch : defaultSize
                    }
                }
                _ = try Shape.elementCount(shape)
                result[info.name] = ValueType(info.elementType ?? .float, shape)
            }
            return result
        }
        let first = try session.plan(inputTypes: try inputTypes(batch: 1))
        let second = try session.plan(inputTypes: try inputTypes(batch: 2))
        let batchSymbol = model.graph.requiredInputs.compactMap { info -> String? in
            if case .symbolic(let name)? = info.shape?.first { return name }
            return nil
        }.first ?? "N"

        /// A dimension that doubles from batch 1 to batch 2 is k·N.
        func describe(_ name: String) -> String {
            guard let a = first.typed.types[name]?.shape else { return "[?]" }
            guard let b = second.typed.types[name]?.shape, b.count == a.count else { return Shape.describe(a) }
            let dims = zip(a, b).map { x, y -> String in
                if x == y { return String(x) }
                if y == 2 * x { return x == 1 ? batchSymbol : "\(x)*\(batchSymbol)" }
                return "?"
            }
            return "[" + dims.joined(separator: ", ") + "]"
        }
        // A model with a fixed batch B is planned at B: MACs, linear in the batch, are divided by B.
        var fixedBatch = 1
        if case .fixed(let b)? = model.graph.requiredInputs.first?.shape?.first, b > 1 {
            fixedBatch = b
            report.notes.append("the model's batch is fixed at \(b); MACs are per batch item (the plan's MACs divided by \(b))")
        }
        // Steps and views, in the order they run.
        var order: [(node: Node, macs: Int)] = first.views.filter { $0.afterStep < 0 }.map { ($0.entry.node, 0) }
        for (index, step) in first.steps.enumerated() {
            order.append((step.entry.node, step.macs))
            order.append(contentsOf: first.views.filter { $0.afterStep == index }.map { ($0.entry.node, 0) })
        }
        report.nodes = order.enumerated().map { index, item in
            InspectionReport.NodeInfo(
                index: index, name: item.node.ref.name, opType: item.node.opType,
                outputs: item.node.outputs.filter { !$0.isEmpty }.map { name in
                    .init(name: name, type: first.typed.types[name]?.dataType.description ?? "?", shape: describe(name))
                },
                macs: item.macs / fixedBatch)
        }
        report.totalMACs = report.nodes.reduce(0) { $0 + $1.macs }

        // Attention gates, classified from their planned shapes.
        let types = first.typed.types
        let gates = session.attentionGates.filter { gate in
            gate.mul != nil || (types[gate.node.inputs.first ?? ""]?.shape.count ?? 0) >= 3
        }
        let kinds = gates.map { gate -> AttentionMap.Kind in
            let shape = types[gate.node.outputs[0]]?.shape ?? []
            if gate.selfAttention { return .selfAttention }
            guard let mul = gate.mul else { return AttentionCapture.classifyReturned(shape) }
            return AttentionCapture.classify(shape, feature: types[mul.inputs[gate.featureInputIndex]]?.shape ?? [])
        }
        report.attention = zip(gates, zip(kinds, AttentionCapture.blocks(kinds))).enumerated().map { index, item in
            let (gate, (kind, block)) = item
            return .init(index: index, block: block, kind: kind.rawValue, tensor: gate.node.outputs[0],
                         node: gate.node.ref.name, shape: describe(gate.node.outputs[0]))
        }

        // Memory and what the passes do, from the optimised plan at batch 1.
        let optimised = try Session(model: model, fileName: path).plan(inputTypes: try inputTypes(batch: 1))
        let summary = optimised.summary(compileSeconds: optimised.compileSeconds,
                                        weightBytes: model.graph.initializers.values.reduce(0) { $0 + $1.valueType.byteCount })
        report.plan = summary
        report.planSteps = optimised.steps.map { step in
            .init(name: step.entry.node.ref.name, opType: (step.entry.node.domain.isEmpty ? "" : step.entry.node.domain + "::") + step.entry.node.opType,
                  kernel: step.kernel.detail, replaces: step.entry.replaces.map(\.ref.name),
                  output: step.entry.node.outputs.first.map(describeShape(optimised)) ?? "", macs: step.macs)
        }
        if !symbols.isEmpty {
            report.notes.append("shapes from plans at \(batchSymbol) = 1 and 2 (nothing runs); other symbolic dimensions set to \(defaultSize); MACs and memory at batch 1")
        }
    }

    private static func describeShape(_ plan: Plan) -> (String) -> String {
        { name in plan.typed.types[name].map { Shape.describe($0.shape) } ?? "" }
    }
}

