import Foundation

/// A graph in which every value has an element type and a concrete shape, and every
/// computation on constants has been done: the input of the rewrite passes.
///
/// It is made for one input signature (the shapes of the run's inputs, and the values
/// of the small inputs that shapes depend on). `Shape` and `Size` of any value are
/// constants here, so the shape arithmetic exporters emit around `Reshape`
/// (Shape → Gather → Concat → Reshape) folds away.
struct TypedGraph {
    /// One node to run, with the opset of its domain and the original nodes it stands
    /// for (itself, or the nodes a fusion pass merged into it, in execution order).
    struct Entry {
        var node: Node
        var opset: Int
        var replaces: [Node]
    }

    var entries: [Entry]
    /// Every value's type: runtime inputs, constants and node outputs.
    var types: [String: ValueType]
    var constants: [String: Tensor]
    /// Graph inputs supplied at run time (not constants).
    var inputs: [String]
    var outputs: [String]
    /// What each pass did, for `inspect --plan`.
    var log: [String] = []

    /// How many entries read each value (a graph output counts as one more reader).
    func readerCounts() -> [String: Int] {
        var counts: [String: Int] = [:]
        for entry in entries { for input in entry.node.inputs where !input.isEmpty { counts[input, default: 0] += 1 } }
        for output in outputs { counts[output, default: 0] += 1 }
        return counts
    }

    /// The index of the entry that produces each value.
    func producers() -> [String: Int] {
        var result: [String: Int] = [:]
        for (index, entry) in entries.enumerated() { for output in entry.node.outputs where !output.isEmpty { result[output] = index } }
        return result
    }
}

/// What limits a plan must stay within; checked before anything is allocated.
public struct ResourceLimits: Sendable, Equatable {
    /// Bytes of intermediate and folded-constant memory one run may use.
    public var maxMemory: Int
    /// Multiply-accumulates one run may perform.
    public var maxMACs: Int

    public init(maxMemory: Int = ResourceLimits.machineMemory, maxMACs: Int = .max) {
        self.maxMemory = maxMemory
        self.maxMACs = maxMACs
    }

    /// What this machine can give a process: physical memory, or the address-space limit
    /// (`ulimit -v`) when that is lower.
    public static let machineMemory: Int = {
        var physical = Int.max
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        if pages > 0, pageSize > 0 { physical = pages.multipliedReportingOverflow(by: pageSize).overflow ? .max : pages * pageSize }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur < UInt64(Int.max) {
            physical = Swift.min(physical, Int(limit.rlim_cur))
        }
        return physical
    }()
}

extension TypedGraph {
    /// Types every value of `graph` for the given runtime input types and constant inputs,
    /// folding every node whose inputs are all constants (and every Shape/Size).
    ///
    /// - Parameters:
    ///   - order: node indices in execution order (the session's topological sort).
    ///   - inputTypes: types of the graph inputs supplied at run time.
    ///   - inputConstants: graph inputs whose values are part of the signature (see
    ///     ``ShapeInference/valueOperands(_:opset:)``), held as constants.
    ///   - limits: folded constants count against `maxMemory` before they are computed.
    static func build(model: Model, order: [Int], constants sessionConstants: [String: Tensor], inputTypes: [String: ValueType],
                      inputConstants: [String: Tensor], limits: ResourceLimits, registry: OpRegistry) throws -> TypedGraph {
        let graph = model.graph
        var types: [String: ValueType] = [:]
        var constants: [String: Tensor] = [:]
        for (name, tensor) in sessionConstants {
            constants[name] = tensor
            types[name] = tensor.valueType
        }
        // A graph input with an initializer takes it as its default when not fed.
        for info in graph.inputs where inputTypes[info.name] == nil && inputConstants[info.name] == nil {
            if let tensor = graph.initializers[info.name] {
                constants[info.name] = tensor
                types[info.name] = tensor.valueType
            }
        }
        for (name, tensor) in inputConstants {
            constants[name] = tensor
            types[name] = tensor.valueType
        }
        var runtimeInputs: [String] = []
        for info in graph.inputs where inputConstants[info.name] == nil {
            guard let type = inputTypes[info.name] else { continue }
            types[info.name] = type
            runtimeInputs.append(info.name)
        }

        var foldedBytes = 0
        var entries: [Entry] = []
        for index in order {
            let node = graph.nodes[index]
            let opset = model.opsetImports[node.domain] ?? model.onnxOpset
            try withErrorContext(node: node.ref) {
                let inputTypes = try node.inputs.enumerated().map { position, name -> ValueType? in
                    guard !name.isEmpty else { return nil }
                    guard let type = types[name] else {
                        throw CBAMError(.malformedModel, "input \(position) \"\(name)\" has no known type")
                    }
                    return type
                }
                let inputConstants = node.inputs.map { $0.isEmpty ? nil : constants[$0] }
                let context = NodeContext(node: node, opset: opset, constants: inputConstants)
                let outputTypes = try ShapeInference.infer(context, inputs: inputTypes)
                guard outputTypes.count >= node.outputs.filter({ !$0.isEmpty }).count else {
                    throw CBAMError(.malformedModel, "the node declares \(node.outputs.count) outputs but the op produces \(outputTypes.count)")
                }
                for (name, type) in zip(node.outputs, outputTypes) where !name.isEmpty { types[name] = type }

                let allConstant = zip(node.inputs, inputConstants).allSatisfy { $0.0.isEmpty || $0.1 != nil }
                let shapeOnly = node.domain.isEmpty && (node.opType == "Shape" || node.opType == "Size")
                guard (allConstant || shapeOnly) && !node.outputs.isEmpty else {
                    entries.append(Entry(node: node, opset: opset, replaces: [node]))
                    return
                }
                // Fold: check the memory first, then compute once with the node's own kernel.
                for type in outputTypes {
                    foldedBytes = try Budget.add(type.byteCount, to: foldedBytes, limit: limits.maxMemory, what: "constant folding")
                }
                let outputs: [Tensor]
                if shapeOnly && !allConstant {
                    // Only the input's shape matters, and it is known.
                    outputs = [try shapeOnlyValue(node, opset: opset, inputType: inputTypes[0]!)]
                } else {
                    outputs = try registry.builder(for: node)!(context).run(inputConstants)
                }
                for (position, (name, tensor)) in zip(node.outputs, outputs).enumerated() where !name.isEmpty {
                    guard tensor.valueType == outputTypes[position] else {
                        throw CBAMError(.shapeMismatch, "output \"\(name)\" is \(tensor.valueType) but shape inference gave \(outputTypes[position])")
                    }
                    constants[name] = tensor
                }
            }
        }
        for output in graph.outputs where types[output.name] == nil {
            throw CBAMError(.malformedModel, "graph output \"\(output.name)\" is not produced by any node")
        }
        return TypedGraph(entries: entries, types: types, constants: constants, inputs: runtimeInputs,
                          outputs: graph.outputs.map(\.name))
    }

    /// The value of Shape or Size of a runtime value, which depends only on its type.
    private static func shapeOnlyValue(_ node: Node, opset: Int, inputType: ValueType) throws -> Tensor {
        let dims = inputType.shape.map(Int64.init)
        if node.opType == "Size" { return Tensor.int64([], [Int64(inputType.count)]) }
        let context = NodeContext(node: node, opset: opset)
        let rank = dims.count
        func clamp(_ value: Int) -> Int { Swift.min(Swift.max(value < 0 ? value + rank : value, 0), rank) }
        let start = clamp(try context.int("start", default: 0))
        let end = clamp(try context.int("end", default: rank))
        let slice = start < end ? Array(dims[start..<end]) : []
        return Tensor.int64([slice.count], slice)
    }
}

/// Checked accounting against a limit.
enum Budget {
    static func add(_ bytes: Int, to total: Int, limit: Int, what: String) throws -> Int {
        let (sum, overflow) = total.addingReportingOverflow(bytes)
        guard !overflow, sum <= limit else {
            throw CBAMError(.resourceLimit, "\(what) needs more than \(format(bytes: limit)), the memory limit (raise it with --max-memory)")
        }
        return sum
    }

    /// `1.5 GiB` style.
    static func format(bytes: Int) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes), unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(bytes) bytes" : String(format: "%.1f %@", value, units[unit])
    }
}
