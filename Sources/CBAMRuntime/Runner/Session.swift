import Dispatch
import Foundation

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
    /// The model's nodes this step stands for: `[node]`, or the nodes a fusion pass merged.
    public let replaced: [Node]
    /// Multiply-accumulates of the step, from the plan.
    public let macs: Int
    /// How the step computes ("onednn-blocked:brgconv:avx512_core nhwc", "im2col+sgemm", "reference", …).
    public let kernel: String

    public init(index: Int, node: Node, inputs: [Tensor?], outputs: [Tensor], seconds: Double? = nil,
                startNanoseconds: UInt64? = nil, replaced: [Node]? = nil, macs: Int = 0, kernel: String = "") {
        self.index = index
        self.node = node
        self.inputs = inputs
        self.outputs = outputs
        self.seconds = seconds
        self.startNanoseconds = startNanoseconds
        self.replaced = replaced ?? [node]
        self.macs = macs
        self.kernel = kernel
    }
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
    /// Threads for kernels that split their work; 1 = single-threaded. Every pool the
    /// session's kernels use honours it (GEMM calls run one thread each and the kernels split
    /// the work themselves; oneDNN primitives are built for the count), so sessions with different counts can run at once.
    public var threads: Int
    /// Memory and work a run may use; a plan past either is refused before it allocates.
    public var limits: ResourceLimits
    /// Runs the rewrite passes (BatchNorm folding, Conv fusions, in-place elementwise ops).
    /// Off, the plan runs every node as the file has it: the reference for differential tests.
    public var optimize: Bool
    /// How each Conv picks its kernel (default: the fastest on this CPU, timed when the plan is compiled).
    public var convolution: ConvolutionKernel
    /// Whether the plan may hold more than the weights, the arena and free scratch for speed
    /// (default: `CBAM_MEMORY`, else ``MemoryPreference/speed``).
    public var memory: MemoryPreference
    /// Keeps the values between convolutions in the layout the convolution kernels want
    /// (NHWC or nChw8c, by CPU) instead of reordering at every Conv. Off (or
    /// `CBAM_LAYOUT=plain`), every value is plain NCHW: the reference for differential tests.
    /// `CBAM_LAYOUT=nhwc|nChw8c|nChw16c` carries that layout instead of the CPU's (to compare).
    public var carryLayouts: Bool
    /// MACs from which a convolution's neighbours are carried (tests lower it to carry everything).
    var carryFromMACs = LayoutPass.minimumMACs
    /// The layout to carry instead of the one this CPU's convolutions prefer (tests of the other CPUs' layouts).
    var carriedLayout: Layout? = nil
    /// Seconds a run may take (from the call to `run`, compiling a new plan included); past it
    /// the run stops before its next step with a `.cancelled` error. nil: no limit.
    public var timeout: Double?
    /// A token whose ``CancellationToken/cancel()`` stops every run of the session between steps.
    public var cancellation: CancellationToken?

    public init(threads: Int = 1, limits: ResourceLimits = ResourceLimits(), optimize: Bool = true,
                convolution: ConvolutionKernel = .fromEnvironment, memory: MemoryPreference = .fromEnvironment, timeout: Double? = nil,
                cancellation: CancellationToken? = nil, carryLayouts: Bool = ProcessInfo.processInfo.environment["CBAM_LAYOUT"] != "plain") {
        self.threads = max(1, threads)
        self.limits = limits
        self.optimize = optimize
        self.convolution = convolution
        self.memory = memory
        self.carryLayouts = carryLayouts
        switch ProcessInfo.processInfo.environment["CBAM_LAYOUT"] {
        case "nChw16c"?: carriedLayout = .channelBlocked(16)
        case "nChw8c"?: carriedLayout = .channelBlocked(8)
        case "nhwc"?: carriedLayout = .channelsLast
        default: break
        }
        self.timeout = timeout.map { $0.isNaN ? 0 : max(0, $0) }
        self.cancellation = cancellation
    }
}

/// What a plan may spend memory on beyond one copy of the weights, the arena and scratch that
/// fits memory the plan has anyway.
public enum MemoryPreference: String, Sendable, CaseIterable {
    /// Faster kernels that hold more, where they time faster: our Winograd kernel (transformed
    /// weights, 16/9 of its layers' weights) and Winograd scratch of up to 4 MB past the memory the
    /// plan has anyway. ResNet-50 + CBAM peaks at 1.39–1.58× its weights (measured as the peers
    /// are), SE-ResNet-34 and ResNet-18 + CBAM 10–20 % faster than `lean`.
    case speed
    /// Nothing past the weights, the arena and free scratch: issue 8's memory line (peak ≤ 1.3× the
    /// weights on ResNet-50 + CBAM) holds.
    case lean

    /// `CBAM_MEMORY` from the environment (speed, lean), else `speed`.
    public static var fromEnvironment: MemoryPreference {
        ProcessInfo.processInfo.environment["CBAM_MEMORY"].flatMap(MemoryPreference.init(rawValue:)) ?? .speed
    }
}

/// The ways a planned Conv can compute. The plan times the candidates on the CPU it runs on
/// and keeps the fastest; the others are there to compare (`CBAM_CONV=direct|im2col|onednn|blocked|carried|winograd|…`, ``fromEnvironment``).
public enum ConvolutionKernel: String, Sendable, CaseIterable {
    case fastest
    /// As `fastest`, without Winograd: only the direct kernels (to compare, or for results
    /// rounded as the direct convolution rounds them).
    case direct
    /// im2col into scratch memory and oneDNN's sgemm, then bias, residual and Relu in one pass.
    case im2col
    /// A oneDNN primitive on plain NCHW, with post-ops.
    case oneDNN
    /// A oneDNN primitive in the layout it prefers, with reorders around it.
    case oneDNNBlocked
    /// A oneDNN primitive asked for exactly the layout its carried neighbours lie in (no
    /// reorder), where that differs from its preferred one (grouped convolutions); elsewhere
    /// the plan's usual choice.
    case oneDNNCarried
    /// oneDNN's Winograd kernel wherever it has one (3×3, stride 1, ungrouped, maps of 20 and
    /// more, AVX-512), else the plan's usual choice. `fastest` takes it only where it times
    /// 1.15× the direct kernel (``ConvCandidate/winogradMargin``).
    case oneDNNWinograd
    /// As `oneDNNWinograd`, but a batch of 2 or more runs image by image through the batch-1
    /// primitive (its smaller F(2×2) scratch); `fastest` takes that where the batch's own
    /// Winograd scratch would grow the plan and this one's does not.
    case oneDNNWinogradPerImage
    /// The whole batch's patches `[N·oH·oW, kH·kW·C]` (NHWC) through one oneDNN 1×1 convolution,
    /// so the weights are read once a run, wherever it applies (ungrouped 2-D), else the plan's usual choice. `fastest`
    /// takes it where reading the weights bounds the time
    /// (``ConvCandidate/prefersBatchFolded(batch:outputPixels:weightBytes:)``).
    case folded
    /// The streamed kernel (one pass over the weights, read ahead) on every ungrouped 2-D
    /// convolution, else the plan's usual choice. `fastest` builds it for at most 32 output pixels
    /// over the batch (128 for 1×1 layers) and at least 2 MB of weights, and takes it there untimed on AVX-512,
    /// timed (1.1×, ``ConvCandidate/streamedMargin``) elsewhere.
    case streamed
    /// Our Winograd F(2×2, 3×3) kernel (Plan/PlannedConvolution+WinogradF2.swift) on every 3×3
    /// stride-1 ungrouped convolution, else the plan's usual choice. `fastest` builds it for such
    /// convolutions on maps under ``winogradMinimumMap`` and takes it where it times
    /// 1.1× (``ConvCandidate/winogradF2Margin``) the plan's choice.
    case winogradF2
    /// Our kernel for grouped convolutions (Plan/PlannedConvolution+Grouped.swift) wherever it
    /// applies (as many outputs as inputs per group, a width dividing the vector lanes or a
    /// multiple of them, channels a whole number of vectors), else the plan's usual choice. `fastest` and `direct` take it where it
    /// times 1.05× (``ConvCandidate/groupedMargin``) the plan's choice.
    case grouped

    /// `CBAM_CONV` from the environment (direct, im2col, onednn, blocked, carried, winograd, winograd-per-image, folded, streamed,
    /// winograd-f2, grouped), else `fastest`.
    public static var fromEnvironment: ConvolutionKernel {
        switch ProcessInfo.processInfo.environment["CBAM_CONV"] {
        case "direct"?: return .direct
        case "im2col"?: return .im2col
        case "onednn"?: return .oneDNN
        case "blocked"?: return .oneDNNBlocked
        case "carried"?: return .oneDNNCarried
        case "winograd"?: return .oneDNNWinograd
        case "winograd-per-image"?: return .oneDNNWinogradPerImage
        case "folded"?: return .folded
        case "streamed"?: return .streamed
        case "winograd-f2"?: return .winogradF2
        case "grouped"?: return .grouped
        default: return .fastest
        }
    }
}

/// A model prepared to run.
///
/// Building checks the whole graph (every input produced somewhere, no cycles, every
/// op supported — all unsupported nodes reported at once — and every node's
/// attributes). Running compiles a ``Plan`` for the inputs' shapes the first time it
/// sees them and reuses it after: a second run with the same shapes compiles nothing
/// and allocates no intermediate memory. A session may be run from several threads at once.
public final class Session: @unchecked Sendable {
    /// The model. A session loaded from a file keeps its graph and small initializers here,
    /// but not its weights: those go to the first plan compiled, which lets each go once the
    /// kernel reading it holds its own copy (a oneDNN convolution's reordered weights), and a
    /// later plan reads them from the file again. So the process holds the weights once.
    public private(set) var model: Model
    /// The model's file name, used as the first part of every error message.
    public let fileName: String
    public let options: SessionOptions
    let registry: OpRegistry

    /// Node indices in topological order.
    private var order: [Int] = []
    /// The nodes in the order they run, without those computed from initializers alone.
    public private(set) var executionOrder: [Node] = []
    /// Initializers and the values the session folded from them alone, shared by every plan
    /// (without the weights of a session loaded from a file: see ``weights``).
    private var sessionConstants: [String: Tensor] = [:]
    /// The weights of a session loaded from a file, handed to the plans; nil otherwise.
    private var weights: SessionWeights?
    /// Bytes of the model's initializers, all of them.
    private var weightBytes = 0
    /// Graph inputs whose values (not only shapes) decide some shape: part of a plan's key.
    private var valueKeyedInputs: Set<String> = []

    /// Compiled plans by input signature, most recently used last.
    private var plans: [(key: PlanKey, plan: Plan)] = []
    private let planLock = NSLock()
    /// Plans kept per session; a new signature past this evicts the least recently used.
    static let maximumCachedPlans = 8

    public init(model: Model, fileName: String = "<model>", options: SessionOptions = SessionOptions(),
                registry: OpRegistry = .standard) throws {
        self.model = model
        self.fileName = fileName
        self.options = options
        self.registry = registry
        try withErrorContext(file: fileName) { try build() }
    }

    /// Loads an `.onnx` file and prepares it. The weights are read from the file again when a
    /// plan for new input shapes is compiled (an error if the file changed meanwhile).
    public convenience init(contentsOf path: String, options: SessionOptions = SessionOptions()) throws {
        let identity = try withErrorContext(file: path) { try FileIdentity(path) }
        try self.init(model: try ModelLoader.load(contentsOf: path), fileName: path, options: options)
        try withErrorContext(file: path) { try handOverWeights(identity: identity, path: path) }
    }

    /// Initializers from this size up are weights a session loaded from a file does not keep.
    static let weightThresholdBytes = 16 << 10

    /// Moves the large initializers (not graph inputs) out of ``model`` and the session's
    /// constants into ``weights``, which can read them from `path` again.
    private func handOverWeights(identity: FileIdentity, path: String) throws {
        let graphInputs = Set(model.graph.inputs.map(\.name))
        var taken: [String: Tensor] = [:]
        for (name, tensor) in model.graph.initializers
        where !graphInputs.contains(name) && tensor.valueType.byteCount >= Self.weightThresholdBytes && sessionConstants[name] == tensor {
            taken[name] = tensor
        }
        guard !taken.isEmpty else { return }
        let types = taken.mapValues(\.valueType)
        for name in taken.keys {
            model.graph.initializers[name] = nil
            sessionConstants[name] = nil
        }
        weights = SessionWeights(taken) {
            let reloaded = try ModelLoader.load(contentsOf: path)
            guard try FileIdentity(path) == identity else {
                throw CBAMError(.io, "the model file changed since the session loaded it; load it again for new input shapes", file: path)
            }
            var weights: [String: Tensor] = [:]
            for (name, type) in types {
                guard let tensor = reloaded.graph.initializers[name], tensor.valueType == type else {
                    throw CBAMError(.io, "the model file changed since the session loaded it (initializer \"\(name)\"); load it again for new input shapes", file: path)
                }
                weights[name] = tensor
            }
            return weights
        }
    }

    // MARK: - Building

    private func build() throws {
        let graph = model.graph
        order = try topologicalOrder(graph)

        // Every op must be known before anything is built: report all the missing ones at once.
        let unsupported = order.map { graph.nodes[$0] }.filter { registry.builder(for: $0) == nil }
        if !unsupported.isEmpty {
            let list = unsupported.map { "\"\($0.ref.name)\" (\($0.domain.isEmpty ? "" : $0.domain + "::")\($0.opType))" }
            let kinds = Set(unsupported.map(\.opType)).sorted().joined(separator: ", ")
            throw CBAMError(.unsupportedOp, "\(unsupported.count) node(s) use ops cbam-run does not support (\(kinds)): " + list.joined(separator: ", "))
        }

        // Attributes are checked now, so a bad one fails here rather than at the first run.
        // Nodes computed from initializers alone are folded once for every plan (their
        // sizes checked against the memory limit first) and left out of the execution order.
        let graphInputNames = Set(graph.inputs.map(\.name))
        var known = graph.initializers.filter { !graphInputNames.contains($0.key) }
        var foldedBytes = 0
        var remaining: [Int] = []
        for index in order {
            let node = graph.nodes[index]
            let opset = model.opsetImports[node.domain] ?? model.onnxOpset
            let inputs = node.inputs.map { $0.isEmpty ? nil : known[$0] }
            let context = NodeContext(node: node, opset: opset, threads: options.threads, constants: inputs)
            let kernel = try withErrorContext(node: node.ref) { try registry.builder(for: node)!(context) }
            guard zip(node.inputs, inputs).allSatisfy({ $0.0.isEmpty || $0.1 != nil }) && !node.outputs.isEmpty else {
                executionOrder.append(node)
                remaining.append(index)
                continue
            }
            try withErrorContext(node: node.ref) {
                let types = try ShapeInference.infer(context, inputs: inputs.map { $0?.valueType })
                for type in types {
                    foldedBytes = try Budget.add(type.byteCount, to: foldedBytes, limit: options.limits.maxMemory, what: "constant folding")
                }
                for (name, tensor) in zip(node.outputs, try kernel.run(inputs)) where !name.isEmpty { known[name] = tensor }
            }
        }
        sessionConstants = known
        weightBytes = graph.initializers.values.reduce(0) { $0 + $1.valueType.byteCount }
        order = remaining
        valueKeyedInputs = Self.inputsReachingShapeValues(model)
    }

    /// Graph inputs from which a value flows into an operand that decides a shape
    /// (Reshape's shape, Slice's starts, Resize's scales, …), not through Shape or Size.
    static func inputsReachingShapeValues(_ model: Model) -> Set<String> {
        let graph = model.graph
        var producer: [String: Node] = [:]
        for node in graph.nodes { for output in node.outputs where !output.isEmpty { producer[output] = node } }
        var pending: [String] = []
        for node in graph.nodes {
            let opset = model.opsetImports[node.domain] ?? model.onnxOpset
            for index in ShapeInference.valueOperands(node.opType, opset: opset) where index < node.inputs.count && !node.inputs[index].isEmpty {
                pending.append(node.inputs[index])
            }
        }
        let inputNames = Set(graph.inputs.map(\.name))
        var seen = Set<String>(), result = Set<String>()
        while let name = pending.popLast() {
            guard seen.insert(name).inserted else { continue }
            if inputNames.contains(name) { result.insert(name) }
            guard let node = producer[name], !(node.domain.isEmpty && (node.opType == "Shape" || node.opType == "Size")) else { continue }
            pending.append(contentsOf: node.inputs.filter { !$0.isEmpty })
        }
        return result
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

    // MARK: - Plans

    /// What identifies a plan: each runtime input's type, and the values of those whose
    /// values decide shapes.
    struct PlanKey: Hashable {
        var types: [String: ValueType]
        var values: [String: [UInt8]]
    }

    /// The plan for `feeds` (already checked), compiled now unless cached.
    func plan<Input: RunInput>(for feeds: [String: Input]) throws -> Plan {
        var key = PlanKey(types: [:], values: [:])
        var constants: [String: Tensor] = [:]
        for (name, input) in feeds {
            if valueKeyedInputs.contains(name) {
                let tensor = input.tensorValue()
                constants[name] = tensor
                let bytes = tensor.valueType.byteCount
                key.values[name] = [UInt8](unsafeUninitializedCapacity: bytes) { buffer, initialized in
                    if let base = buffer.baseAddress { tensor.copyBytes(to: base) }
                    initialized = bytes
                }
            }
            key.types[name] = input.valueType
        }
        planLock.lock()
        if let index = plans.firstIndex(where: { $0.key == key }) {
            let entry = plans.remove(at: index)
            plans.append(entry)
            planLock.unlock()
            return entry.plan
        }
        planLock.unlock()
        let planner = Planner(model: model, order: order, threads: options.threads, limits: options.limits,
                              optimize: options.optimize, convolution: options.convolution, memory: options.memory, carryLayouts: options.carryLayouts, carryFromMACs: options.carryFromMACs, carriedLayout: options.carriedLayout, registry: registry,
                              sessionConstants: sessionConstants)
        let plan = try planner.compile(inputTypes: key.types.filter { constants[$0.key] == nil }, inputConstants: constants,
                                       weights: try weights?.take())
        planLock.lock()
        plans.append((key, plan))
        if plans.count > Self.maximumCachedPlans { plans.removeFirst() }
        planLock.unlock()
        return plan
    }

    /// The plan for inputs of these types (inputs whose values decide shapes cannot be
    /// planned from types alone and must be given as `values`).
    func plan(inputTypes: [String: ValueType], values: [String: Tensor] = [:]) throws -> Plan {
        try withErrorContext(file: fileName) {
            var feeds = values
            for (name, type) in inputTypes where feeds[name] == nil {
                // Zeros: only the type matters, unless the input decides a shape (then zeros, not garbage).
                let zeros = AlignedBuffer(byteCount: type.byteCount)
                zeros.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: type.byteCount)
                feeds[name] = Tensor(copying: zeros.pointer, type: type)
            }
            return try plan(for: feeds)
        }
    }

    // MARK: - Running

    /// The graph inputs a caller must supply (inputs without an initializer).
    public var requiredInputs: [ValueInfo] { model.graph.requiredInputs }
    public var outputNames: [String] { model.graph.outputs.map(\.name) }

    /// Runs the graph on `feeds` (graph input name → tensor) and returns every graph output.
    ///
    /// Inputs are checked against the declared element type and shape: fixed
    /// dimensions must match, symbolic ones (`batch`) take any size.
    public func run(_ feeds: [String: Tensor], observer: RunObserver? = nil) throws -> [String: Tensor] {
        try runInputs(feeds, observer: observer)
    }

    /// Runs the graph on inputs in the caller's memory (checked like ``run(_:observer:)``),
    /// copied straight into the plan's memory: no ``Tensor`` is made of them. The C API and the
    /// Python package run this way.
    public func run(borrowing feeds: [String: BorrowedTensor], observer: RunObserver? = nil) throws -> [String: Tensor] {
        try runInputs(feeds, observer: observer)
    }

    func runInputs<Input: RunInput>(_ feeds: [String: Input], observer: RunObserver?) throws -> [String: Tensor] {
        try withErrorContext(file: fileName) {
            let interrupt = RunInterrupt(options)
            let checked = try checkedFeeds(feeds)
            return try plan(for: checked).run(checked, observer: observer, interrupt: interrupt)
        }
    }

    /// The feeds after checking names, types and shapes, with initializer defaults for
    /// optional inputs that were not given.
    func checkedFeeds<Input: RunInput>(_ feeds: [String: Input]) throws -> [String: Input] {
        let declared = Set(model.graph.inputs.map(\.name))
        if let unknown = feeds.keys.sorted().first(where: { !declared.contains($0) }) {
            let names = requiredInputs.map { "\"\($0.name)\"" }.joined(separator: ", ")
            throw CBAMError(.missingInput, "the model has no input named \"\(unknown)\" (its inputs: \(names))")
        }
        var result: [String: Input] = [:]
        for info in model.graph.inputs {
            if let input = feeds[info.name] {
                try Self.check(input.valueType, against: info)
                result[info.name] = input
            } else if model.graph.initializers[info.name] == nil {
                throw CBAMError(.missingInput, "input \"\(info.name)\" \(info.shapeDescription) was not supplied")
            }
        }
        return result
    }

    /// Runs with inputs given in the order of ``requiredInputs``.
    public func run(positional tensors: [Tensor], observer: RunObserver? = nil) throws -> [String: Tensor] {
        let names = requiredInputs.map(\.name)
        guard tensors.count == names.count else {
            throw CBAMError(.missingInput, "the model takes \(names.count) input(s) (\(names.joined(separator: ", "))) but \(tensors.count) were given", file: fileName)
        }
        return try run(Dictionary(uniqueKeysWithValues: zip(names, tensors)), observer: observer)
    }

    static func check(_ given: ValueType, against info: ValueInfo) throws {
        if let expected = info.elementType, expected != given.dataType {
            throw CBAMError(.typeMismatch, "input \"\(info.name)\" must be \(expected) but the given tensor is \(given.dataType)")
        } else if info.elementType == nil, info.elementTypeCode != 0 {
            throw CBAMError(.unsupportedType, "input \"\(info.name)\" has element type \(DataType.onnxName(of: info.elementTypeCode)), which cbam-run does not support")
        }
        guard let shape = info.shape else { return }
        guard shape.count == given.shape.count else {
            throw CBAMError(.shapeMismatch, "input \"\(info.name)\" must have shape \(info.shapeDescription) (rank \(shape.count)) but the given tensor has shape \(Shape.describe(given.shape))")
        }
        for (axis, dim) in shape.enumerated() {
            if case .fixed(let n) = dim, n != given.shape[axis] {
                throw CBAMError(.shapeMismatch, "input \"\(info.name)\" must have shape \(info.shapeDescription) but the given tensor has shape \(Shape.describe(given.shape)) (axis \(axis))")
            }
        }
    }
}

/// Figures of a compiled plan, for `bench`, `inspect` and callers that budget memory.
public struct PlanSummary: Sendable, Codable {
    /// Seconds compiling took (0 when the plan came from the cache).
    public var compileSeconds: Double
    /// Steps the plan runs, and the model's nodes they stand for.
    public var steps: Int
    public var nodes: Int
    /// Bytes of the one arena holding every intermediate value.
    public var arenaBytes: Int
    /// Bytes of scratch memory kernels share (im2col columns).
    public var scratchBytes: Int
    /// Bytes of constants the plan computed (folded values and BatchNorm-folded weights).
    public var foldedBytes: Int
    /// Bytes of the model's own weights and constants.
    public var weightBytes: Int
    /// What one run holds at its peak beyond the weights: arena + scratch + folded constants.
    public var peakBytes: Int
    /// Multiply-accumulates of one run.
    public var macs: Int
    /// Values that share another's bytes (views and in-place outputs).
    public var sharedValues: Int
    /// Values kept in the convolution kernels' own layout (NHWC, nChw8c, …) rather than
    /// plain NCHW, that layout, and the reorders convolution steps still make.
    public var carriedValues: Int
    public var carriedLayout: String?
    public var reorders: Int
    /// What each rewrite pass did.
    public var passes: [String]
}

extension Session {
    /// Compiles (or finds in the cache) the plan for these feeds without running it, and
    /// describes it. Limits are checked here too.
    public func prepare(_ feeds: [String: Tensor]) throws -> PlanSummary {
        try withErrorContext(file: fileName) {
            let start = DispatchTime.now().uptimeNanoseconds
            let plan = try plan(for: try checkedFeeds(feeds))
            let took = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            return plan.summary(compileSeconds: took, weightBytes: weightBytes)
        }
    }
}

extension Plan {
    func summary(compileSeconds: Double, weightBytes: Int) -> PlanSummary {
        PlanSummary(compileSeconds: compileSeconds, steps: steps.count, nodes: steps.reduce(0) { $0 + $1.entry.replaces.count },
                    arenaBytes: arenaBytes, scratchBytes: scratchBytes, foldedBytes: foldedBytes, weightBytes: weightBytes,
                    peakBytes: peakBytes, macs: macs, sharedValues: sharedValues, carriedValues: carriedValues,
                    carriedLayout: carriedLayout?.description, reorders: steps.reduce(0) { $0 + $1.kernel.reorders }, passes: typed.log)
    }
}

/// The weights a session loaded from a file hands to the plans it compiles.
///
/// The first compile takes the ones loaded with the model (nothing else holds them then), and
/// each later compile reads them from the file again: a plan lets a weight go once its
/// kernel holds a copy, so no tensor of it outlives the compile in the session.
final class SessionWeights: @unchecked Sendable {
    private let lock = NSLock()
    private var loaded: [String: Tensor]?
    private let reload: () throws -> [String: Tensor]

    init(_ loaded: [String: Tensor], reload: @escaping () throws -> [String: Tensor]) {
        self.loaded = loaded
        self.reload = reload
    }

    func take() throws -> [String: Tensor] {
        lock.lock()
        let taken = loaded
        loaded = nil
        lock.unlock()
        return try taken ?? reload()
    }
}

/// Which file a path names and its size and modification time: a file replaced or
/// rewritten since it was loaded has another.
struct FileIdentity: Equatable {
    let device: UInt64, inode: UInt64, size: Int64, modifiedSeconds: Int, modifiedNanoseconds: Int

    init(_ path: String) throws {
        var status = stat()
        guard stat(path, &status) == 0 else { throw CBAMError(.io, "cannot read the file's size", file: path) }
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        size = Int64(status.st_size)
        modifiedSeconds = status.st_mtim.tv_sec
        modifiedNanoseconds = status.st_mtim.tv_nsec
    }
}
