import Dispatch

/// What the runner tells an observer after each node: the hook that attention
/// export, `--dump`, `--check-against` and `--profile` all plug into.
public struct NodeEvent {
    /// Position in execution order (0-based, folded constants excluded).
    public let index: Int
    public let node: Node
    /// The node's inputs, `nil` where an optional input was omitted.
    public let inputs: [Tensor?]
    /// The node's outputs, in the order of `node.outputs`.
    public let outputs: [Tensor]
    /// Wall time of the kernel, measured only when the observer asks for it.
    public let seconds: Double?
    /// When the kernel started (monotonic nanoseconds, `DispatchTime`), with ``seconds``.
    public let startNanoseconds: UInt64?
}

/// Receives every executed node's outputs. A plain run has no observer and pays
/// nothing; timing is taken only when ``wantsTiming`` is true.
public protocol RunObserver: AnyObject {
    var wantsTiming: Bool { get }
    func nodeDidRun(_ event: NodeEvent) throws
}

extension RunObserver {
    public var wantsTiming: Bool { false }
}

/// Forwards every event to several observers (e.g. attention capture and a dump).
public final class ObserverGroup: RunObserver {
    public let observers: [RunObserver]
    public init(_ observers: [RunObserver]) { self.observers = observers }
    public var wantsTiming: Bool { observers.contains { $0.wantsTiming } }
    public func nodeDidRun(_ event: NodeEvent) throws {
        for observer in observers { try observer.nodeDidRun(event) }
    }
}

/// Options fixed when a session is built.
public struct SessionOptions: Sendable {
    /// Threads for kernels that split their work (Conv, Gemm, MatMul); 1 = single-threaded.
    public var threads: Int
    public init(threads: Int = 1) { self.threads = max(1, threads) }
}

/// A model prepared to run: nodes sorted, kernels built, constants folded.
///
/// Building checks the whole graph first (every input produced somewhere, no
/// cycles, every op supported — all unsupported nodes reported at once), so a
/// session that exists can only fail on what its inputs bring.
public final class Session {
    public let model: Model
    /// The model's file name, used as the first part of every error message.
    public let fileName: String
    public let options: SessionOptions

    /// One executable node, with its tensors as slots of the run's value table.
    struct Step {
        let node: Node
        let kernel: Kernel
        let inputSlots: [Int?]
        let outputSlots: [Int]
        /// Slots whose last reader is this step: freed right after it runs.
        var releaseAfter: [Int]
    }

    private(set) var steps: [Step] = []
    /// The plan a run without an observer uses: ``steps`` with a Relu folded into the
    /// node before it where nothing else reads that node's output (see Fusion.swift).
    /// An observer sees every node, so observed runs use ``steps``.
    private(set) var fusedSteps: [Step] = []
    private var slotOfName: [String: Int] = [:]
    private var constantSlots: [(slot: Int, tensor: Tensor)] = []
    private var inputSlots: [(info: ValueInfo, slot: Int, defaultValue: Tensor?)] = []
    private var outputSlots: [(name: String, slot: Int)] = []

    /// The nodes in the order they run (folded constant nodes excluded).
    public var executionOrder: [Node] { steps.map(\.node) }

    /// Constant values known before running: initializers and folded node outputs.
    public private(set) var constants: [String: Tensor] = [:]

    public init(model: Model, fileName: String = "<model>", options: SessionOptions = SessionOptions(),
                registry: OpRegistry = .standard) throws {
        self.model = model
        self.fileName = fileName
        self.options = options
        BLAS.setThreads(options.threads)
        try withErrorContext(file: fileName) { try build(registry: registry) }
    }

    /// Loads an `.onnx` file and prepares it.
    public convenience init(contentsOf path: String, options: SessionOptions = SessionOptions()) throws {
        try self.init(model: try ModelLoader.load(contentsOf: path), fileName: path, options: options)
    }

    // MARK: - Building

    private func slot(_ name: String) -> Int {
        if let existing = slotOfName[name] { return existing }
        let new = slotOfName.count
        slotOfName[name] = new
        return new
    }

    private func build(registry: OpRegistry) throws {
        let graph = model.graph
        let order = try topologicalOrder(graph)

        // Every op must be known before anything is built: report all the missing ones at once.
        let unsupported = order.map { graph.nodes[$0] }.filter { registry.builder(for: $0) == nil }
        if !unsupported.isEmpty {
            let list = unsupported.map { "\"\($0.ref.name)\" (\($0.domain.isEmpty ? "" : $0.domain + "::")\($0.opType))" }
            let kinds = Set(unsupported.map(\.opType)).sorted().joined(separator: ", ")
            throw CBAMError(.unsupportedOp, "\(unsupported.count) node(s) use ops cbam-run does not support (\(kinds)): " + list.joined(separator: ", "))
        }

        var known: [String: Tensor] = [:]
        let graphInputNames = Set(graph.inputs.map(\.name))
        for (name, tensor) in graph.initializers where !graphInputNames.contains(name) {
            known[name] = tensor
        }

        for index in order {
            let node = graph.nodes[index]
            let domainOpset = model.opsetImports[node.domain] ?? model.onnxOpset
            let context = NodeContext(node: node, opset: domainOpset, threads: options.threads,
                                      constants: node.inputs.map { $0.isEmpty ? nil : known[$0] })
            let kernel = try withErrorContext(node: node.ref) { try registry.builder(for: node)!(context) }

            // Fold a node whose inputs are all constants: run it once now.
            let foldable = node.inputs.allSatisfy { $0.isEmpty || known[$0] != nil } && !node.outputs.isEmpty
            if foldable {
                let outputs = try withErrorContext(node: node.ref) {
                    try runChecked(kernel, node, node.inputs.map { $0.isEmpty ? nil : known[$0] })
                }
                for (name, tensor) in zip(node.outputs, outputs) where !name.isEmpty { known[name] = tensor }
                continue
            }
            steps.append(Step(node: node, kernel: kernel,
                              inputSlots: node.inputs.map { $0.isEmpty ? nil : slot($0) },
                              outputSlots: node.outputs.map { slot($0) },
                              releaseAfter: []))
        }
        constants = known

        for info in graph.inputs {
            inputSlots.append((info, slot(info.name), graph.initializers[info.name]))
        }
        for output in graph.outputs {
            outputSlots.append((output.name, slot(output.name)))
        }
        // Constants still read by a step or returned as outputs go into the table at each run.
        var needed = Set(steps.flatMap { $0.inputSlots.compactMap { $0 } })
        needed.formUnion(outputSlots.map(\.slot))
        for (name, tensor) in known {
            if let s = slotOfName[name], needed.contains(s) { constantSlots.append((s, tensor)) }
        }

        let keep = Set(outputSlots.map(\.slot))
        fusedSteps = Self.assignReleases(Self.fuseActivations(steps, keep: keep, threads: options.threads), keep: keep)
        steps = Self.assignReleases(steps, keep: keep)
    }

    /// Frees each intermediate after its last reader; graph outputs (`keep`) stay.
    static func assignReleases(_ plan: [Step], keep: Set<Int>) -> [Step] {
        var plan = plan
        var lastReader: [Int: Int] = [:]
        for (stepIndex, step) in plan.enumerated() {
            plan[stepIndex].releaseAfter = []
            for s in step.inputSlots.compactMap({ $0 }) { lastReader[s] = stepIndex }
        }
        for (s, stepIndex) in lastReader where !keep.contains(s) {
            plan[stepIndex].releaseAfter.append(s)
        }
        return plan
    }

    /// Kahn's algorithm over the file's nodes, ties broken by file order. Checks that
    /// every input is produced once, by a node, an initializer or a graph input.
    private func topologicalOrder(_ graph: Graph) throws -> [Int] {
        var producer: [String: Int] = [:]
        var available = Set(graph.initializers.keys)
        available.formUnion(graph.inputs.map(\.name))
        for (index, node) in graph.nodes.enumerated() {
            for output in node.outputs where !output.isEmpty {
                if available.contains(output) || producer[output] != nil {
                    throw CBAMError(.malformedModel, "output \"\(output)\" is produced twice", node: node.ref)
                }
                producer[output] = index
            }
        }
        var pending = [Int](repeating: 0, count: graph.nodes.count)
        var readers: [Int: [Int]] = [:]
        for (index, node) in graph.nodes.enumerated() {
            for input in node.inputs where !input.isEmpty {
                if let source = producer[input] {
                    pending[index] += 1
                    readers[source, default: []].append(index)
                } else if !available.contains(input) {
                    throw CBAMError(.malformedModel, "input \"\(input)\" is not produced by any node, initializer or graph input", node: node.ref)
                }
            }
        }
        // A min-heap would keep strict file order; a sorted ready list is simple and graphs are small.
        var ready = (0..<graph.nodes.count).filter { pending[$0] == 0 }
        var order: [Int] = []
        order.reserveCapacity(graph.nodes.count)
        var cursor = 0
        while cursor < ready.count {
            let index = ready[cursor]
            cursor += 1
            order.append(index)
            for reader in readers[index] ?? [] {
                pending[reader] -= 1
                if pending[reader] == 0 { ready.append(reader) }
            }
        }
        guard order.count == graph.nodes.count else {
            let stuck = graph.nodes.indices.filter { pending[$0] > 0 }.prefix(3).map { "\"\(graph.nodes[$0].ref.name)\"" }
            throw CBAMError(.malformedModel, "the graph has a cycle (involving node \(stuck.joined(separator: ", ")))")
        }
        for output in graph.outputs where producer[output.name] == nil && !available.contains(output.name) {
            throw CBAMError(.malformedModel, "graph output \"\(output.name)\" is not produced by any node")
        }
        return order
    }

    // MARK: - Running

    /// The graph inputs a caller must supply (inputs without an initializer).
    public var requiredInputs: [ValueInfo] { model.graph.requiredInputs }
    public var outputNames: [String] { outputSlots.map(\.name) }

    /// Runs the graph on `feeds` (graph input name → tensor) and returns every graph output.
    ///
    /// Inputs are checked against the declared element type and shape: fixed
    /// dimensions must match, symbolic ones (`batch`) take any size.
    public func run(_ feeds: [String: Tensor], observer: RunObserver? = nil) throws -> [String: Tensor] {
        try withErrorContext(file: fileName) {
            var table = [Tensor?](repeating: nil, count: slotOfName.count)
            for (s, tensor) in constantSlots { table[s] = tensor }

            let declared = Set(inputSlots.map(\.info.name))
            if let unknown = feeds.keys.sorted().first(where: { !declared.contains($0) }) {
                let names = requiredInputs.map { "\"\($0.name)\"" }.joined(separator: ", ")
                throw CBAMError(.missingInput, "the model has no input named \"\(unknown)\" (its inputs: \(names))")
            }
            for (info, s, defaultValue) in inputSlots {
                if let tensor = feeds[info.name] {
                    try Self.check(tensor, against: info)
                    table[s] = tensor
                } else if let defaultValue {
                    table[s] = defaultValue
                } else {
                    throw CBAMError(.missingInput, "input \"\(info.name)\" \(info.shapeDescription) was not supplied")
                }
            }

            for (index, step) in (observer == nil ? fusedSteps : steps).enumerated() {
                var inputs = [Tensor?]()
                inputs.reserveCapacity(step.inputSlots.count)
                for s in step.inputSlots { inputs.append(s.map { table[$0] } ?? nil) }
                let timed = observer?.wantsTiming == true
                let start = timed ? DispatchTime.now().uptimeNanoseconds : 0
                let outputs = try withErrorContext(node: step.node.ref) { try runChecked(step.kernel, step.node, inputs) }
                let seconds = timed ? Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 : nil
                for (s, tensor) in zip(step.outputSlots, outputs) { table[s] = tensor }
                if let observer {
                    try observer.nodeDidRun(NodeEvent(index: index, node: step.node, inputs: inputs, outputs: outputs,
                                                      seconds: seconds, startNanoseconds: timed ? start : nil))
                }
                for s in step.releaseAfter { table[s] = nil }
            }

            var results: [String: Tensor] = [:]
            for (name, s) in outputSlots {
                guard let tensor = table[s] else {
                    throw CBAMError(.malformedModel, "graph output \"\(name)\" was not computed")
                }
                results[name] = tensor
            }
            return results
        }
    }

    /// Runs with inputs given in the order of ``requiredInputs``.
    public func run(positional tensors: [Tensor], observer: RunObserver? = nil) throws -> [String: Tensor] {
        let names = requiredInputs.map(\.name)
        guard tensors.count == names.count else {
            throw CBAMError(.missingInput, "the model takes \(names.count) input(s) (\(names.joined(separator: ", "))) but \(tensors.count) were given", file: fileName)
        }
        return try run(Dictionary(uniqueKeysWithValues: zip(names, tensors)), observer: observer)
    }

    static func check(_ tensor: Tensor, against info: ValueInfo) throws {
        if let expected = info.elementType, expected != tensor.dataType {
            throw CBAMError(.typeMismatch, "input \"\(info.name)\" must be \(expected) but the given tensor is \(tensor.dataType)")
        } else if info.elementType == nil, info.elementTypeCode != 0 {
            throw CBAMError(.unsupportedType, "input \"\(info.name)\" has element type \(DataType.onnxName(of: info.elementTypeCode)), which cbam-run does not support")
        }
        guard let shape = info.shape else { return }
        guard shape.count == tensor.rank else {
            throw CBAMError(.shapeMismatch, "input \"\(info.name)\" must have shape \(info.shapeDescription) (rank \(shape.count)) but the given tensor has shape \(Shape.describe(tensor.shape))")
        }
        for (axis, dim) in shape.enumerated() {
            if case .fixed(let n) = dim, n != tensor.shape[axis] {
                throw CBAMError(.shapeMismatch, "input \"\(info.name)\" must have shape \(info.shapeDescription) but the given tensor has shape \(Shape.describe(tensor.shape)) (axis \(axis))")
            }
        }
    }
}

/// Runs a kernel and checks what it returned against what the node declares.
private func runChecked(_ kernel: Kernel, _ node: Node, _ inputs: [Tensor?]) throws -> [Tensor] {
    let outputs = try kernel.run(inputs)
    // Every named output must be produced; trailing omitted ("") outputs may be left out.
    if outputs.count < node.outputs.count, node.outputs[outputs.count...].contains(where: { !$0.isEmpty }) {
        throw CBAMError(.malformedModel, "the node declares \(node.outputs.count) outputs but the op produces \(outputs.count)")
    }
    return outputs
}
