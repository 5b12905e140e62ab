import Dispatch
import Foundation

/// A model compiled for one input signature: the steps in order, each with its kernel
/// and its operands at fixed places, and the size of the one arena a run needs.
///
/// Compiling types every value (``TypedGraph``), folds constants, runs the rewrite
/// passes (``Passes``), lets views share their source's bytes, lets elementwise ops
/// write over an input that dies with them, and places every other intermediate at an
/// offset in the arena so that values alive at the same time never overlap. Limits
/// are checked on these figures before any arena exists.
final class Plan: @unchecked Sendable {
    struct Step {
        let entry: TypedGraph.Entry
        let kernel: PlannedKernel
        /// Operands of the entry's inputs (nil where omitted) and outputs (nil where unnamed).
        let inputs: [Operand?]
        let outputs: [Operand?]
        let macs: Int
        /// Where the step's scratch memory starts in the run's buffer: in a gap of the arena that
        /// no value live during the step occupies, or past the arena (``ArenaLayout/gap(bytes:during:)``).
        var scratchOffset = 0
        /// Bytes of scratch memory the step's kernel asked for.
        var scratchBytes = 0
    }

    /// A view: its output is its input's bytes. Observers see it after `afterStep` (-1: before the first step).
    struct View {
        let afterStep: Int
        let entry: TypedGraph.Entry
        let input: Operand
        let output: Operand
    }

    enum Output {
        case operand(Operand)
        case constant(Tensor)
    }

    let typed: TypedGraph
    let steps: [Step]
    let views: [View]
    let inputs: [(name: String, operand: Operand)]
    let outputs: [(name: String, value: Output)]
    /// Bytes of the arena: every intermediate, at its planned offset.
    let arenaBytes: Int
    /// Bytes past the arena that some step's scratch memory needs (most steps' fits in the
    /// arena's gaps: see ``Step/scratchOffset``).
    let scratchBytes: Int
    /// Bytes of the constants this plan computed itself (folded values, rewritten weights).
    let foldedBytes: Int
    /// Multiply-accumulates of one run (Conv, ConvTranspose, Gemm, MatMul).
    let macs: Int
    /// Seconds spent compiling.
    var compileSeconds: Double = 0
    /// Views and in-place outputs: how many values share another's bytes.
    let sharedValues: Int
    /// Values kept in `carriedLayout` between convolutions (``LayoutPass``).
    let carriedValues: Int
    let carriedLayout: Layout?

    /// Arenas not in use by a run. A run takes one (or makes one) and gives it back, so
    /// runs of one session from several threads each have their own.
    private var idleArenas: [AlignedBuffer] = []
    private let arenaLock = NSLock()
    /// Keeps the tensors whose buffers constant operands point into.
    private let constantPool: ConstantPool
    /// Constants only kernels with their own copies read (a oneDNN convolution's weights):
    /// let go after compiling, so their operands point nowhere and observers see no tensor.
    let releasedConstants: Set<String>

    /// Peak bytes of one run beyond the model's weights: arena, scratch and folded constants.
    var peakBytes: Int { arenaBytes + scratchBytes + foldedBytes }

    init(typed: TypedGraph, steps: [Step], views: [View], inputs: [(String, Operand)], outputs: [(String, Output)], arenaBytes: Int,
         scratchBytes: Int, foldedBytes: Int, macs: Int, sharedValues: Int, carried: [String: Layout], constantPool: ConstantPool,
         releasedConstants: Set<String> = []) {
        self.typed = typed
        self.releasedConstants = releasedConstants
        self.steps = steps
        self.views = views
        self.inputs = inputs.map { (name: $0.0, operand: $0.1) }
        self.outputs = outputs.map { (name: $0.0, value: $0.1) }
        self.arenaBytes = arenaBytes
        self.scratchBytes = scratchBytes
        self.foldedBytes = foldedBytes
        self.macs = macs
        self.sharedValues = sharedValues
        self.carriedValues = carried.count
        self.carriedLayout = carried.values.first
        self.constantPool = constantPool
    }

    // MARK: - Running

    /// Runs the plan: copies the feeds into the arena, runs every step, copies the outputs out.
    func run<Input: RunInput>(_ feeds: [String: Input], observer: RunObserver?, interrupt: RunInterrupt? = nil) throws -> [String: Tensor] {
        let arena = takeArena()
        defer { giveBack(arena) }
        let memory = RunMemory(arena: arena.pointer, scratch: arena.pointer)
        for (name, operand) in inputs {
            guard let tensor = feeds[name] else { throw CBAMError(.missingInput, "input \"\(name)\" was not supplied") }
            tensor.copyBytes(to: operand.address.pointer(memory), operand: operand)
        }
        if let observer {
            try runObserved(memory, observer, interrupt)
        } else {
            for (index, step) in steps.enumerated() {
                try interrupt?.check(step: index, of: steps.count)
                try withErrorContext(node: step.entry.node.ref) { try step.kernel.run(memory.forStep(step)) }
            }
        }
        var results: [String: Tensor] = [:]
        for (name, value) in outputs {
            switch value {
            case .operand(let operand): results[name] = Tensor(copying: operand.address.pointer(memory), operand: operand)
            case .constant(let tensor): results[name] = tensor
            }
        }
        return results
    }

    /// The observed loop: each step's inputs are read before it runs (an in-place step
    /// overwrites one), its outputs after, and the observer sees them as tensors.
    private func runObserved(_ memory: RunMemory, _ observer: RunObserver, _ interrupt: RunInterrupt?) throws {
        let timed = observer.wantsTiming
        var eventIndex = 0
        func tensor(_ operand: Operand) -> Tensor { Tensor(copying: operand.address.pointer(memory), operand: operand) }
        func emitViews(after step: Int) throws {
            for view in views where view.afterStep == step {
                try observer.nodeDidRun(NodeEvent(index: eventIndex, node: view.entry.node, inputs: [tensor(view.input)],
                                                  outputs: [tensor(view.output)], seconds: timed ? 0 : nil,
                                                  startNanoseconds: timed ? DispatchTime.now().uptimeNanoseconds : nil))
                eventIndex += 1
            }
        }
        try emitViews(after: -1)
        for (index, step) in steps.enumerated() {
            try interrupt?.check(step: index, of: steps.count)
            let inputs = zip(step.entry.node.inputs, step.inputs).map { name, operand -> Tensor? in
                if let constant = typed.constants[name] { return constant }
                if releasedConstants.contains(name) { return nil }
                return operand.map(tensor)
            }
            let start = timed ? DispatchTime.now().uptimeNanoseconds : 0
            try withErrorContext(node: step.entry.node.ref) { try step.kernel.run(memory.forStep(step)) }
            let seconds = timed ? Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 : nil
            let outputs = step.outputs.map { operand -> Tensor in operand.map(tensor) ?? Tensor.float([0], []) }
            try observer.nodeDidRun(NodeEvent(index: eventIndex, node: step.entry.node, inputs: inputs, outputs: outputs,
                                              seconds: seconds, startNanoseconds: timed ? start : nil,
                                              replaced: step.entry.replaces, macs: step.macs, kernel: step.kernel.detail))
            eventIndex += 1
            // A fused step that also writes some of its inner nodes' outputs (a fused attention
            // gate writes its sigmoid map) reports those nodes too, so observers find them by name.
            if step.entry.replaces.count > 1 {
                var known: [String: Tensor] = [:]
                for (name, value) in zip(step.entry.node.inputs, inputs) where !name.isEmpty { known[name] = value }
                for (name, value) in zip(step.entry.node.outputs, outputs) where !name.isEmpty { known[name] = value }
                let final = Set(step.entry.node.outputs.prefix(1))
                for inner in step.entry.replaces where inner.outputs.allSatisfy({ $0.isEmpty || known[$0] != nil })
                    && !inner.outputs.contains(where: { final.contains($0) }) {
                    try observer.nodeDidRun(NodeEvent(index: eventIndex, node: inner, inputs: inner.inputs.map { known[$0] ?? typed.constants[$0] },
                                                      outputs: inner.outputs.map { known[$0] ?? Tensor.float([0], []) },
                                                      seconds: timed ? 0 : nil, startNanoseconds: timed ? start : nil))
                    eventIndex += 1
                }
            }
            try emitViews(after: index)
        }
    }

    private func takeArena() -> AlignedBuffer {
        arenaLock.lock()
        let idle = idleArenas.popLast()
        arenaLock.unlock()
        return idle ?? AlignedBuffer(byteCount: arenaBytes + scratchBytes)
    }

    private func giveBack(_ arena: AlignedBuffer) {
        arenaLock.lock()
        idleArenas.append(arena)
        arenaLock.unlock()
    }
}

/// Holds the constant tensors that plan operands point into.
///
/// A constant's operand is the address of its array's elements. The pool keeps the
/// tensor (and so its buffer) alive for as long as the plan, and nothing ever mutates
/// a constant, so the buffer never moves: weights are used where they were loaded,
/// not copied into the plan.
final class ConstantPool: @unchecked Sendable {
    private var held: [String: (tensor: Tensor, pointer: UnsafeMutableRawPointer)] = [:]
    /// One byte of storage for empty constants, whose arrays have no element address.
    private let empty = AlignedBuffer(byteCount: 64)

    func address(of name: String, _ tensor: Tensor) -> UnsafeMutableRawPointer {
        if let existing = held[name] { return existing.pointer }
        func base<T>(_ values: [T]) -> UnsafeMutableRawPointer {
            values.withUnsafeBufferPointer { $0.baseAddress.map { UnsafeMutableRawPointer(mutating: $0) } } ?? empty.pointer
        }
        let pointer: UnsafeMutableRawPointer
        switch tensor.storage {
        case .float(let v): pointer = base(v)
        case .double(let v): pointer = base(v)
        case .int64(let v): pointer = base(v)
        case .int32(let v): pointer = base(v)
        case .int8(let v): pointer = base(v)
        case .uint8(let v): pointer = base(v)
        case .bool(let v): pointer = base(v)
        case .float16(let v): pointer = base(v)
        }
        held[name] = (tensor, pointer)
        return pointer
    }

    /// Lets the tensor go: its operands must not be read any more.
    func release(_ name: String) {
        held[name] = nil
    }
}
