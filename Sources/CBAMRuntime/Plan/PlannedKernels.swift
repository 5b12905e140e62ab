/// What a planned kernel's builder knows: the node (attributes, opset, constant inputs),
/// every input and output as an ``Operand`` with its concrete type and place, and the
/// thread count. The builder checks and prepares everything once; the kernel it
/// returns only computes.
final class PlanContext {
    let node: NodeContext
    let inputs: [Operand?]
    let outputs: [Operand?]
    let threads: Int
    /// How Conv steps choose their kernel.
    let convolution: ConvolutionKernel
    /// Whether Conv steps may take kernels that hold more memory for speed.
    let memory: MemoryPreference
    /// Scratch bytes the kernel asked for (shared by all steps, one step at a time).
    private(set) var scratchBytes = 0
    /// Whether `bytes` of scratch would fit where the plan already has memory during this
    /// step (a gap of the arena, or scratch an earlier step made it add), so that asking for
    /// them grows no run's memory. A kernel with a memory-hungry variant asks before taking it.
    let scratchIsFree: (Int) -> Bool

    init(node: NodeContext, inputs: [Operand?], outputs: [Operand?], threads: Int, convolution: ConvolutionKernel = .fastest,
         memory: MemoryPreference = .speed, scratchIsFree: @escaping (Int) -> Bool = { _ in true }) {
        self.node = node
        self.convolution = convolution
        self.memory = memory
        self.scratchIsFree = scratchIsFree
        self.inputs = inputs
        self.outputs = outputs
        self.threads = Swift.max(1, threads)
    }

    /// Input `index`, or a missing-input error.
    func input(_ index: Int, _ what: String) throws -> Operand {
        guard index < inputs.count, let operand = inputs[index] else {
            throw CBAMError(.missingInput, "required input \(index) (\(what)) is missing")
        }
        return operand
    }

    /// Output `index` (a planned kernel is only built for nodes whose outputs are named).
    func output(_ index: Int) throws -> Operand {
        guard index < outputs.count, let operand = outputs[index] else {
            throw CBAMError(.malformedModel, "output \(index) is not named")
        }
        return operand
    }

    /// Reserves `bytes` of scratch memory for the kernel's own use during its step.
    func scratch(bytes: Int) -> Address {
        scratchBytes = Swift.max(scratchBytes, bytes)
        return .scratch(0)
    }
}

/// The planned kernels: op type → builder. A builder returns nil when it does not
/// handle the node's case (another element type, say); the planner then runs the
/// op's reference kernel through ``adapter(_:_:)``.
enum PlannedKernels {
    typealias Builder = @Sendable (PlanContext) throws -> PlannedKernel?

    static func builder(for node: Node) -> Builder? {
        let key = node.domain.isEmpty || node.domain == "ai.onnx" ? node.opType : node.domain + "::" + node.opType
        return builders[key]
    }

    /// Ops whose builders read every operand's layout (the others see plain operands only;
    /// see ``LayoutPass`` for which values are carried in another layout).
    static func handlesLayouts(_ node: Node) -> Bool {
        let key = node.domain.isEmpty || node.domain == "ai.onnx" ? node.opType : node.domain + "::" + node.opType
        return layoutAwareOps.contains(key)
    }

    private static let layoutAwareOps: Set<String> = [
        "Conv", Passes.domain + "::FusedConv", "Relu", "Add", "Sub", "Mul", "Div", Passes.domain + "::AddRelu",
        Passes.domain + "::ChannelGate", Passes.domain + "::SpatialGate", "GlobalAveragePool", "GlobalMaxPool", "MaxPool", "AveragePool",
        "ReduceMean", "ReduceMax",
    ]

    private static let builders: [String: Builder] = {
        var table: [String: Builder] = [:]
        registerElementwise(&table)
        registerConvolution(&table)
        registerPooling(&table)
        registerNormalization(&table)
        registerFeatureNormalization(&table)
        registerGates(&table)
        registerReduction(&table)
        registerShapeOps(&table)
        registerLinear(&table)
        registerLinearGelu(&table)
        registerMath(&table)
        return table
    }()

    /// Runs a reference (Tensor-in, Tensor-out) kernel inside a plan: inputs are copied
    /// out of the arena (into plain order, whatever their layout), outputs copied back in. Correct for every op; the ops that
    /// matter for speed have planned kernels instead.
    static func adapter(_ kernel: Kernel, _ context: PlanContext) -> PlannedKernel {
        let inputs = context.inputs, outputs = context.outputs
        let constants = inputs.indices.map { context.node.constant($0) }
        return PlannedKernel(detail: "reference") { memory in
            var values: [Tensor?] = []
            values.reserveCapacity(inputs.count)
            for (index, operand) in inputs.enumerated() {
                values.append(constants[index] ?? operand.map { Tensor(copying: $0.address.pointer(memory), operand: $0) })
            }
            let results = try kernel.run(values)
            for (index, operand) in outputs.enumerated() {
                guard let operand else { continue }
                guard index < results.count else {
                    throw CBAMError(.malformedModel, "the op produced \(results.count) outputs; output \(index) is missing")
                }
                guard results[index].valueType == operand.type else {
                    throw CBAMError(.shapeMismatch, "output \(index) is \(results[index].valueType) but the plan expected \(operand.type)")
                }
                results[index].copyBytes(to: operand.address.pointer(memory), operand: operand)
            }
        }
    }
}

/// Multiply-accumulates of the ops that dominate a CNN's cost, from planned types.
enum MACs {
    static func count(_ node: Node, inputs: [ValueType?], outputs: [ValueType?]) -> Int {
        func shape(_ i: Int) -> [Int]? { i < inputs.count ? inputs[i]?.shape : nil }
        let y = outputs.first ?? nil
        let product: (ArraySlice<Int>) -> Int = { $0.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? .max : $0 * $1 } }
        func times(_ a: Int, _ b: Int) -> Int { a.multipliedReportingOverflow(by: b).overflow ? .max : a * b }
        switch (node.domain, node.opType) {
        case ("", "Conv"), (Passes.domain, "FusedConv"):
            // Each output element sums C/group · kernel products.
            guard let y, let w = shape(1), w.count >= 3 else { return 0 }
            return times(y.count, product(w.dropFirst()))
        case (Passes.domain, "SpatialGate"):
            // The k×k convolution over the [N, 2, H, W] channel statistics (a map-only gate has no y).
            guard let x = inputs.first ?? nil, x.shape.count == 4, x.shape[1] > 0, let w = shape(1) else { return 0 }
            return times(x.count / x.shape[1], product(w[...]))
        case ("", "ConvTranspose"):
            guard let x = inputs.first??.count, let w = shape(1), w.count >= 3 else { return 0 }
            return times(x, product(w.dropFirst()))
        case ("", "Gemm"):
            guard let y, let a = shape(0), a.count == 2 else { return 0 }
            let transA = { if case .int(let v)? = node.attributes["transA"] { return v != 0 } else { return false } }()
            return times(y.count, transA ? a[0] : a[1])
        case ("", "MatMul"):
            guard let y, let a = shape(0), let k = a.last else { return 0 }
            return times(y.count, k)
        default:
            return 0
        }
    }
}
