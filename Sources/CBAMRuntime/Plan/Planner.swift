import Dispatch

/// Compiles a model for one input signature into a ``Plan``:
/// typed graph → passes → memory (views, in place, arena offsets) → kernels.
struct Planner {
    let model: Model
    let order: [Int]
    let threads: Int
    let limits: ResourceLimits
    let optimize: Bool
    let convolution: ConvolutionKernel
    let memory: MemoryPreference
    /// Whether convolutions' neighbours may stay in the convolution kernels' layout (``LayoutPass``).
    let carryLayouts: Bool
    let carryFromMACs: Int
    let carriedLayout: Layout?
    let registry: OpRegistry

    /// Ops whose output is the input's bytes under another shape: no step, no copy.
    static let viewOps: Set<String> = ["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"]

    /// Constants the session folded once for every plan (initializers and what depends on them alone).
    let sessionConstants: [String: Tensor]

    /// Compiles the plan. `weights` (large initializers the session hands over, nil when
    /// they are among ``sessionConstants``) are taken: the planner holds the only references,
    /// and lets each go once the kernels that read it have their own copy.
    func compile(inputTypes: [String: ValueType], inputConstants: [String: Tensor], weights: consuming [String: Tensor]? = nil) throws -> Plan {
        let start = DispatchTime.now().uptimeNanoseconds
        var constants = sessionConstants
        if let weights = consume weights { constants.merge(weights) { current, _ in current } }
        let original = OriginalConstants(constants)
        var typed = try TypedGraph.build(model: model, order: order, constants: constants, inputTypes: inputTypes,
                                         inputConstants: inputConstants, limits: limits, registry: registry)
        constants = [:]
        if optimize { try Passes.run(&typed, limits: limits) }
        let plan = try lower(&typed, original: original)
        plan.compileSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        ProcessMemory.returnFreedMemory()
        return plan
    }

    /// The names and buffers of the constants a compile starts from, to tell what the passes computed.
    struct OriginalConstants {
        let names: Set<String>
        let buffers: Set<UnsafeRawPointer>
        init(_ constants: [String: Tensor]) {
            names = Set(constants.keys)
            buffers = Set(constants.values.compactMap(\.storage.bufferAddress))
        }
    }

    /// Places every value and builds every step's kernel. Constants that only kernels with
    /// their own copies read are dropped from `typed` as those kernels are built.
    private func lower(_ typed: inout TypedGraph, original: OriginalConstants) throws -> Plan {
        // 1. Views share their source's bytes: union the names into roots.
        var parent: [String: String] = [:]
        func root(_ name: String) -> String {
            var current = name
            while let next = parent[current] { current = next }
            return current
        }
        var stepEntries: [TypedGraph.Entry] = []
        var viewEntries: [(afterStep: Int, entry: TypedGraph.Entry)] = []
        for entry in typed.entries {
            let node = entry.node
            if Self.isView(entry, typed) {
                parent[node.outputs[0]] = root(node.inputs[0])
                viewEntries.append((stepEntries.count - 1, entry))
                continue
            }
            stepEntries.append(entry)
        }

        // 2. Lifetimes of roots: produced at `first`, last read at `last` (graph outputs: forever).
        let forever = Int.max
        var first: [String: Int] = [:], last: [String: Int] = [:]
        for name in typed.inputs { first[name] = -1; last[name] = -1 }
        for (index, entry) in stepEntries.enumerated() {
            for output in entry.node.outputs where !output.isEmpty {
                first[output] = index
                last[output] = Swift.max(last[output] ?? index, index)
            }
        }
        for (index, entry) in stepEntries.enumerated() {
            for input in entry.node.inputs where !input.isEmpty && typed.constants[input] == nil {
                let r = root(input)
                last[r] = Swift.max(last[r] ?? index, index)
            }
        }
        for output in typed.outputs where typed.constants[output] == nil { last[root(output)] = forever }

        // 3. Layouts: which values stay in the convolution kernels' own layout.
        var layouts: [String: Layout] = [:]
        if optimize && carryLayouts && convolution != .im2col, LayoutPass.machineLayout != nil, let carried = carriedLayout ?? LayoutPass.machineLayout {
            var excluded = Set(typed.inputs).union(typed.outputs)
            for view in viewEntries {
                excluded.insert(view.entry.node.inputs[0])
                excluded.insert(root(view.entry.node.inputs[0]))
                excluded.insert(view.entry.node.outputs[0])
            }
            layouts = LayoutPass.assign(steps: stepEntries, typed: typed, excluded: excluded, carried: carried, minimumMACs: carryFromMACs)
        }
        func layout(_ name: String) -> Layout { layouts[name] ?? .plain }

        // 4. In place: an elementwise step may write over an input that dies with it.
        var sharedValues = parent.count
        if optimize {
            for (index, entry) in stepEntries.enumerated() {
                guard let candidates = Self.inPlaceInputs(entry), let output = entry.node.outputs.first, !output.isEmpty,
                      let outputType = typed.types[output] else { continue }
                for k in candidates where k < entry.node.inputs.count {
                    let input = entry.node.inputs[k]
                    guard !input.isEmpty, typed.constants[input] == nil, let inputType = typed.types[input] else { continue }
                    let r = root(input)
                    guard last[r] == index, typed.types[r]?.byteCount == outputType.byteCount, layout(r) == layout(output),
                          inputType.shape == outputType.shape, inputType.dataType == outputType.dataType,
                          !entry.node.inputs.enumerated().contains(where: { $0.offset != k && !$0.element.isEmpty && root($0.element) == r })
                    else { continue }
                    parent[output] = r
                    last[r] = last[output]
                    last[output] = nil
                    first[output] = nil
                    sharedValues += 1
                    break
                }
            }
        }

        // 5. Arena offsets for every root, by lifetime.
        var intervals: [ArenaLayout.Interval] = []
        for (name, start) in first where parent[name] == nil {
            guard let type = typed.types[name] else { continue }
            intervals.append(.init(name: name, bytes: type.byteCount, first: start, last: last[name] ?? start))
        }
        let arena = ArenaLayout(intervals)

        // 6. Operands and kernels.
        let pool = ConstantPool()
        // The last step reading each constant, and the constants some step reads through its
        // operand (not released even when a later reader holds a copy).
        var lastReader: [String: Int] = [:]
        for (index, entry) in stepEntries.enumerated() {
            for name in entry.node.inputs where !name.isEmpty && typed.constants[name] != nil { lastReader[name] = index }
        }
        var readThroughOperand = Set(typed.outputs)
        var released = Set<String>()
        var releasedBytes = 0
        func operand(_ name: String) throws -> Operand? {
            guard !name.isEmpty else { return nil }
            guard let type = typed.types[name] else { throw CBAMError(.malformedModel, "value \"\(name)\" has no type") }
            if let constant = typed.constants[name] { return Operand(type: type, address: .fixed(pool.address(of: name, constant))) }
            guard let offset = arena.offsets[root(name)] else { throw CBAMError(.malformedModel, "value \"\(name)\" has no place in the arena") }
            return Operand(type: type, address: .arena(offset), layout: layout(name))
        }
        var scratchBytes = 0
        var totalMACs = 0
        var steps: [Plan.Step] = []
        for entry in stepEntries {
            let node = entry.node
            let step = try withErrorContext(node: node.ref) { () -> Plan.Step in
                let inputs = try node.inputs.map(operand)
                let outputs = try node.outputs.map(operand)
                let constants = node.inputs.map { $0.isEmpty ? nil : typed.constants[$0] }
                let index = steps.count, paidFor = arena.size + scratchBytes
                let context = PlanContext(node: NodeContext(node: node, opset: entry.opset, threads: threads, constants: constants),
                                          inputs: inputs, outputs: outputs, threads: threads, convolution: convolution, memory: memory,
                                          scratchIsFree: { arena.scratch(bytes: $0, during: index).end.map { $0 <= paidFor } ?? false })
                let kernel: PlannedKernel
                // A step with an operand in a carried layout runs a builder that handles layouts, or
                // the reference kernel through the adapter, which converts (never a plain-only kernel).
                let carriesLayout = (inputs + outputs).contains { ($0?.layout ?? .plain) != .plain }
                if let builder = PlannedKernels.builder(for: node), !carriesLayout || PlannedKernels.handlesLayouts(node),
                   let planned = try builder(context) {
                    kernel = planned
                } else if let legacy = registry.builder(for: node) {
                    kernel = PlannedKernels.adapter(try legacy(context.node), context)
                } else {
                    throw CBAMError(.unsupportedOp, "no kernel for \(node.domain.isEmpty ? "" : node.domain + "::")\(node.opType)")
                }
                let macs = MACs.count(node, inputs: inputs.map { $0?.type }, outputs: outputs.map { $0?.type })
                var step = Plan.Step(entry: entry, kernel: kernel, inputs: inputs, outputs: outputs, macs: macs)
                // The step's scratch (im2col columns, a oneDNN scratchpad, reorder buffers) goes where no value
                // live during the step lies: a Winograd step's several MB then mostly cost nothing.
                if context.scratchBytes > 0 {
                    let place = arena.scratch(bytes: context.scratchBytes, during: index)
                    (step.scratchBytes, step.scratchOffset) = (context.scratchBytes, place.offset)
                    scratchBytes = place.end.map { Swift.max(scratchBytes, $0 - arena.size) } ?? .max  // the budget check refuses .max
                }
                return step
            }
            totalMACs = totalMACs.addingReportingOverflow(step.macs).overflow ? .max : totalMACs + step.macs
            for (position, name) in entry.node.inputs.enumerated() where !name.isEmpty && typed.constants[name] != nil {
                if !step.kernel.copiedConstantInputs.contains(position) {
                    readThroughOperand.insert(name)
                } else if lastReader[name] == steps.count, !readThroughOperand.contains(name) {
                    releasedBytes += typed.constants[name]?.valueType.byteCount ?? 0
                    pool.release(name)
                    typed.constants[name] = nil
                    released.insert(name)
                }
            }
            // malloc keeps freed blocks resident until trimmed: give the weights' memory back as
            // it goes, so the copies the next kernels make do not come on top of it; likewise
            // after each convolution, whose losing candidates (their weight copies, the buffers
            // they were timed on) would otherwise stay resident below the next step's peak.
            // (ResNet-50 + CBAM at batch 1: compile peak 171.4 → 168.3 MB, no slower to compile.)
            if releasedBytes >= 8 << 20 || entry.node.opType.contains("Conv") {
                ProcessMemory.returnFreedMemory()
                releasedBytes = 0
            }
            steps.append(step)
        }

        // 7. Figures and limits, before any arena is allocated.
        // Constants the passes computed and the plan keeps (BatchNorm-folded weights a oneDNN
        // primitive copied are gone by now). A rewrite that reshapes a weight (a fused gate's
        // MLP) shares its buffer: counted once.
        var foldedBytes = 0
        for (name, tensor) in typed.constants where !original.names.contains(name) {
            if let address = tensor.storage.bufferAddress, original.buffers.contains(address) { continue }
            foldedBytes = foldedBytes.addingReportingOverflow(tensor.valueType.byteCount).overflow ? .max : foldedBytes + tensor.valueType.byteCount
        }
        let (planned, overflow) = arena.size.addingReportingOverflow(scratchBytes)
        let (peak, overflow2) = planned.addingReportingOverflow(foldedBytes)
        if overflow || overflow2 || peak > limits.maxMemory {
            throw CBAMError(.resourceLimit, "the plan needs \(overflow || overflow2 ? "more than 2^63 bytes" : Budget.format(bytes: peak)) of memory (intermediates \(Budget.format(bytes: arena.size)), scratch \(Budget.format(bytes: scratchBytes)), folded constants \(Budget.format(bytes: foldedBytes))) but the limit is \(Budget.format(bytes: limits.maxMemory)); raise it with --max-memory")
        }
        if totalMACs > limits.maxMACs {
            throw CBAMError(.resourceLimit, "the plan needs \(totalMACs) multiply-accumulates but the limit is \(limits.maxMACs); raise it with --max-macs")
        }
        let inputOperands = try typed.inputs.map { ($0, try operand($0)!) }
        let outputValues = try typed.outputs.map { name -> (String, Plan.Output) in
            if let constant = typed.constants[name] { return (name, .constant(constant)) }
            return (name, .operand(try operand(name)!))
        }
        let views = try viewEntries.map { view in
            Plan.View(afterStep: view.afterStep, entry: view.entry, input: try operand(view.entry.node.inputs[0])!,
                      output: try operand(view.entry.node.outputs[0])!)
        }
        return Plan(typed: typed, steps: steps, views: views, inputs: inputOperands, outputs: outputValues, arenaBytes: arena.size,
                    scratchBytes: scratchBytes, foldedBytes: foldedBytes, macs: totalMACs, sharedValues: sharedValues,
                    carried: layouts, constantPool: pool, releasedConstants: released)
    }

    /// A view entry: a view op on a runtime value whose output has the same bytes.
    static func isView(_ entry: TypedGraph.Entry, _ typed: TypedGraph) -> Bool {
        let node = entry.node
        guard node.domain.isEmpty, viewOps.contains(node.opType), let input = node.inputs.first, !input.isEmpty,
              typed.constants[input] == nil, let output = node.outputs.first, !output.isEmpty,
              let inType = typed.types[input], let outType = typed.types[output],
              inType.dataType == outType.dataType, inType.count == outType.count else { return false }
        if node.opType == "Dropout" {
            // Its mask output, when requested, has to be written: not a pure view. Nor is it one
            // in training mode (random; the kernel refuses it) or when that mode is decided at run time.
            if node.outputs.count > 1 && !node.outputs[1].isEmpty { return false }
            if node.inputs.count > 2, !node.inputs[2].isEmpty {
                let ratio = node.inputs.count > 1 && !node.inputs[1].isEmpty ? typed.constants[node.inputs[1]]?.doubles().first : 0.5
                guard let mode = typed.constants[node.inputs[2]], let training = try? mode.integers("training_mode").first,
                      training == 0 || ratio == 0 else { return false }
            }
        }
        return true
    }

    /// Inputs whose bytes the entry's first output may take over (elementwise ops that read
    /// each element before writing the same position).
    static func inPlaceInputs(_ entry: TypedGraph.Entry) -> [Int]? {
        let node = entry.node
        if node.domain == Passes.domain {
            if node.opType == "FusedConv" { return nil }
            if node.opType == "AddRelu" { return [0, 1] }
            // A gate with a residual (its last input) reads x and R at each position before writing it.
            if case .int(1)? = node.attributes["residual"] { return [0, node.inputs.count - 1] }
            return [0]
        }
        guard node.domain.isEmpty else { return nil }
        switch node.opType {
        case "Relu", "Sigmoid", "Tanh", "Exp", "Neg", "Abs", "LeakyRelu", "HardSigmoid", "HardSwish", "Clip", "Sqrt", "Reciprocal":
            return [0]
        case "Add", "Mul", "Sub", "Div":
            return [0, 1]
        default:
            return nil
        }
    }
}

/// Offsets in one arena for values with known lifetimes: a value may reuse bytes of one
/// whose last reader ran before it was produced. Largest first, each at the lowest
/// offset that overlaps no placed value alive at the same time (as onnxruntime's and
/// tinygrad's planners do).
struct ArenaLayout {
    struct Interval {
        let name: String
        let bytes: Int
        /// Step that writes it (-1 for graph inputs) and the last step that reads it.
        let first: Int
        let last: Int
    }

    /// Alignment of every value: a cache line, so vector loads never split one.
    static let alignment = 64

    let offsets: [String: Int]
    let size: Int
    /// A value's place and lifetime.
    private typealias Placed = (offset: Int, end: Int, first: Int, last: Int)
    /// Every value's place and lifetime, for ``gap(bytes:during:)``.
    private let placed: [Placed]

    init(_ intervals: [Interval]) {
        let sorted = intervals.sorted { ($0.bytes, $1.name) > ($1.bytes, $0.name) }
        var placed: [Placed] = []
        var offsets: [String: Int] = [:]
        var size = 0
        for value in sorted {
            let bytes = (value.bytes + Self.alignment - 1) / Self.alignment * Self.alignment
            let offset = Self.lowestFit(bytes, first: value.first, last: value.last, among: placed)
            placed.append((offset, offset + bytes, value.first, value.last))
            offsets[value.name] = offset
            size = Swift.max(size, offset + bytes)
        }
        self.offsets = offsets
        self.size = size
        self.placed = placed
    }

    /// The lowest offset (a multiple of ``alignment``) where `bytes` fit beside every value live
    /// during `step` (written before or by it, read by it or later): memory the step may use
    /// as scratch. Past ``size`` when no gap in the arena is large enough.
    func gap(bytes: Int, during step: Int) -> Int {
        Self.lowestFit(bytes, first: step, last: step, among: placed)
    }

    /// Where `bytes` of scratch for `step` go (``gap(bytes:during:)``) and where they end, nil
    /// when that passes `Int.max`.
    func scratch(bytes: Int, during step: Int) -> (offset: Int, end: Int?) {
        let offset = gap(bytes: bytes, during: step)
        let (end, overflow) = offset.addingReportingOverflow(bytes)
        return (offset, overflow ? nil : end)
    }

    /// First fit: the lowest offset where `bytes` lie clear of every placed value whose lifetime
    /// meets `first...last` (placed values end on ``alignment`` boundaries, so the offset does too).
    private static func lowestFit(_ bytes: Int, first: Int, last: Int, among placed: [Placed]) -> Int {
        var offset = 0
        for other in placed.filter({ $0.first <= last && first <= $0.last }).sorted(by: { $0.offset < $1.offset }) {
            if offset <= other.offset, bytes <= other.offset - offset { break }
            offset = Swift.max(offset, other.end)
        }
        return offset
    }
}
