/// What `cbam-run inspect` reports about a model: its declared interface, op and
/// parameter counts, every tensor's shape, per-node multiply-accumulates and the
/// attention blocks, with the unsupported ops when there are any.
///
/// Shapes come from running the model rather than from symbolic inference: each
/// symbolic input dimension is set to 1 for one run and 2 for a second, and a
/// tensor dimension that changes between the runs is shown in terms of the
/// symbol (`N`, `2*N`). Non-batch symbolic dimensions take `defaultSize`.
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
    public var notes: [String]
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
            unsupportedOps: unsupported, nodes: [], totalMACs: 0, attention: [], notes: [])
        guard unsupported.isEmpty else {
            report.notes.append("shapes, MACs and attention blocks need every op supported; unsupported: \(unsupported.joined(separator: ", "))")
            return report
        }
        do {
            try inferShapes(model: model, path: path, defaultSize: defaultSize, into: &report)
        } catch {
            report.notes.append("could not run the model on placeholder inputs to infer shapes: \(error)")
        }
        return report
    }

    /// Runs the model at batch 1 and 2 on zero inputs, recording shapes, MACs and attention maps.
    static func inferShapes(model: Model, path: String, defaultSize: Int, into report: inout InspectionReport) throws {
        let session = try Session(model: model, fileName: path)
        var symbols: [String: String] = [:]  // symbol name → how it is shown
        func feeds(batch: Int) throws -> [String: Tensor] {
            var result: [String: Tensor] = [:]
            for info in session.requiredInputs {
                guard let declared = info.shape else {
                    throw CBAMError(.missingInput, "input \"\(info.name)\" declares no shape")
                }
                let shape = declared.enumerated().map { axis, dim -> Int in
                    switch dim {
                    case .fixed(let n): return n
                    case .symbolic(let name):
                        symbols[name] = axis == 0 ? name : "\(name)"
                        return axis == 0 ? batch : defaultSize
                    case .unknown: return axis == 0 ? batch : defaultSize
                    }
                }
                let count = try Shape.elementCount(shape)
                let storage: Tensor.Storage
                switch info.elementType ?? .float {
                case .float: storage = .float([Float](repeating: 0, count: count))
                case .double: storage = .double([Double](repeating: 0, count: count))
                case .int64: storage = .int64([Int64](repeating: 0, count: count))
                case .int32: storage = .int32([Int32](repeating: 0, count: count))
                case .int8: storage = .int8([Int8](repeating: 0, count: count))
                case .uint8: storage = .uint8([UInt8](repeating: 0, count: count))
                case .bool: storage = .bool([Bool](repeating: false, count: count))
                case .float16: storage = .float16([Float16](repeating: 0, count: count))
                }
                result[info.name] = try Tensor(shape: shape, storage: storage)
            }
            return result
        }
        let first = ShapeRecorder(), second = ShapeRecorder()
        let (_, maps) = try session.runCapturingAttention(try feeds(batch: 1), observer: first)
        _ = try session.run(try feeds(batch: 2), observer: second)
        let batchSymbol = model.graph.requiredInputs.compactMap { info -> String? in
            if case .symbolic(let name)? = info.shape?.first { return name }
            return nil
        }.first ?? "N"

        /// A dimension that doubles from batch 1 to batch 2 is k·N.
        func describe(_ a: [Int], _ b: [Int]?) -> String {
            guard let b, b.count == a.count else { return Shape.describe(a) }
            let dims = zip(a, b).map { x, y -> String in
                if x == y { return String(x) }
                if y == 2 * x { return x == 1 ? batchSymbol : "\(x)*\(batchSymbol)" }
                return "?"
            }
            return "[" + dims.joined(separator: ", ") + "]"
        }
        var secondShapes: [String: [Int]] = [:]
        for record in second.records { for (name, shape) in zip(record.outputs, record.shapes) { secondShapes[name] = shape } }
        // A model with a fixed batch B runs at B: MACs, linear in the batch, are divided by B.
        var fixedBatch = 1
        if case .fixed(let b)? = model.graph.requiredInputs.first?.shape?.first, b > 1 {
            fixedBatch = b
            report.notes.append("the model's batch is fixed at \(b); MACs are per batch item (the run's MACs divided by \(b))")
        }
        report.nodes = first.records.enumerated().map { index, record in
            InspectionReport.NodeInfo(
                index: index, name: record.node.ref.name, opType: record.node.opType,
                outputs: zip(record.outputs, zip(record.shapes, record.types)).map { name, pair in
                    .init(name: name, type: pair.1.description, shape: describe(pair.0, secondShapes[name]))
                },
                macs: record.macs / fixedBatch)
        }
        report.totalMACs = report.nodes.reduce(0) { $0 + $1.macs }
        report.attention = maps.map { map in
            .init(index: map.index, block: map.block, kind: map.kind.rawValue, tensor: map.gate.tensor,
                  node: map.gate.node.ref.name, shape: describe(map.tensor.shape, secondShapes[map.gate.tensor]))
        }
        if !symbols.isEmpty {
            report.notes.append("shapes from runs at \(batchSymbol) = 1 and 2 on zero inputs; other symbolic dimensions set to \(defaultSize); MACs at batch 1")
        }
    }
}

/// Records each node's output shapes and MACs during a run.
final class ShapeRecorder: RunObserver {
    struct Record {
        let node: Node
        let outputs: [String]
        let shapes: [[Int]]
        let types: [DataType]
        let macs: Int
    }
    var records: [Record] = []

    func nodeDidRun(_ event: NodeEvent) throws {
        records.append(Record(node: event.node, outputs: event.node.outputs, shapes: event.outputs.map(\.shape),
                              types: event.outputs.map(\.dataType), macs: Self.macs(event)))
    }

    /// Multiply-accumulates of the ops that dominate a CNN's cost, from actual shapes.
    static func macs(_ event: NodeEvent) -> Int {
        let inputs = event.inputs
        guard let y = event.outputs.first else { return 0 }
        func shape(_ i: Int) -> [Int]? { i < inputs.count ? inputs[i]?.shape : nil }
        switch event.node.opType {
        case "Conv":
            // Each output element sums C/group · kernel products.
            guard let w = shape(1), w.count >= 3 else { return 0 }
            return y.count * w.dropFirst().reduce(1, *)
        case "ConvTranspose":
            guard let x = shape(0), let w = shape(1), w.count >= 3 else { return 0 }
            return x.count * w.dropFirst().reduce(1, *)
        case "Gemm":
            guard let a = shape(0), a.count == 2 else { return 0 }
            let transA = { if case .int(let v)? = event.node.attributes["transA"] { return v != 0 } else { return false } }()
            return y.count * (transA ? a[0] : a[1])
        case "MatMul":
            guard let a = shape(0), let k = a.last else { return 0 }
            return y.count * k
        default:
            return 0
        }
    }
}
