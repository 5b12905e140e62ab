import CDNNL
import Synchronization

// oneDNN (Debian's libdnnl, C API): the process-wide CPU engine, status checking,
// memory layouts, and the machinery the DNNL* kernels share — one primitive per
// OpenMP thread count and a pool of execution contexts.
//
// Threads. Debian's oneDNN runs on GNU OpenMP. A primitive fixes its thread count
// when it is created (its kernels partition the work for omp_get_max_threads() at that
// moment and run that many threads whatever the count at execution), so a DNNL* object
// builds one primitive per thread count asked of it, lazily, and sets OpenMP's count on
// the calling thread before each execute. omp_set_num_threads changes only the calling
// thread's own setting in libgomp, so sessions with different counts do not disturb each
// other. Each thread that calls execute with threads > 1 gets its own pool of libgomp
// workers.
//
// Spinning. libgomp's idle workers spin (GOMP_SPINCOUNT, 300 000 by default) before they
// sleep. On a quiet machine that is what makes 2-thread primitives fast (a parallel region
// costs ~5 µs instead of ~20 µs passive); on a machine whose cores are shared with other
// processes it is ruinous (ResNet-50's convolutions on 2 threads: ~20 GFLOP/s instead of
// ~180) and the spin can slow a DispatchQueue.concurrentPerform loop that follows. libgomp
// reads OMP_WAIT_POLICY / GOMP_SPINCOUNT once, when the process starts, so only the
// environment (or a re-exec with it set) can change that: OMP_WAIT_POLICY=passive is the
// safe choice, GOMP_SPINCOUNT=10000 the compromise that kept both. See docs/onednn.md.

/// Process-wide oneDNN state and helpers.
public enum OneDNN {
    /// The CPU engine, created once (Swift initialises a static `let` exactly once,
    /// thread-safely). A failure is kept and rethrown at each use.
    private static let engineResult: Result<Handle, CBAMError> = {
        var engine: dnnl_engine_t?
        do {
            try check(dnnl_engine_create(&engine, dnnl_cpu, 0), "dnnl_engine_create")
            return .success(Handle(engine!))
        } catch let error as CBAMError {
            return .failure(error)
        } catch {
            return .failure(CBAMError(.unsupportedOp, "oneDNN: \(error)"))
        }
    }()

    /// The process's CPU engine.
    static func engine() throws -> dnnl_engine_t { try engineResult.get().pointer }

    /// Throws a `CBAMError` naming `call` unless `status` is `dnnl_success`.
    @inline(__always)
    static func check(_ status: dnnl_status_t, _ call: @autoclosure () -> String) throws {
        guard status != dnnl_success else { return }
        throw error(status, call())
    }

    static func error(_ status: dnnl_status_t, _ call: String) -> CBAMError {
        let name = String(cString: dnnl_status2str(status))
        switch status {
        case dnnl_unimplemented:
            return CBAMError(.unsupportedOp, "oneDNN has no implementation for this case (\(call): \(name))")
        default:
            // invalid_arguments (a geometry oneDNN refuses), out_of_memory, runtime_error.
            return CBAMError(.invalidShape, "oneDNN refused the operation (\(call): \(name))")
        }
    }

    /// The instruction set oneDNN dispatches to on this CPU, e.g. "avx512_core_amx" or "avx2".
    /// (The most capable set its kernels may use; each primitive's `implementation` says
    /// which one it took.)
    public static var isaName: String {
        let isa = dnnl_get_effective_cpu_isa()
        let name = String(cString: dnnl_cpu_isa2str(isa))
        return name.hasPrefix("cpu_isa_") ? String(name.dropFirst("cpu_isa_".count)) : name
    }

    /// The library version, e.g. "2.6.3".
    public static var version: String {
        guard let v = dnnl_version()?.pointee else { return "unknown" }
        return "\(v.major).\(v.minor).\(v.patch)"
    }

    /// The library version with its threading runtime and commit, e.g. "2.6.3 (cpu_runtime omp, commit 1234abc)".
    public static var versionDetails: String {
        guard let v = dnnl_version()?.pointee else { return "unknown" }
        let runtime = String(cString: dnnl_runtime2str(v.cpu_runtime))
        let hash = v.hash.map { String(cString: $0) } ?? "?"
        return "\(v.major).\(v.minor).\(v.patch) (cpu_runtime \(runtime), commit \(hash))"
    }

    // MARK: Threads

    /// Sets OpenMP's thread count for parallel regions started by the calling thread.
    @inline(__always)
    static func setThreads(_ count: Int) { omp_set_num_threads(Int32(Swift.max(1, count))) }

    /// OpenMP's thread count for the calling thread (libgomp keeps one per thread).
    public static var threadsOnThisThread: Int { Int(omp_get_max_threads()) }

    /// Runs `body` with OpenMP's thread count set to `count` on this thread, then restores it.
    static func withThreads<T>(_ count: Int, _ body: () throws -> T) rethrows -> T {
        let previous = omp_get_max_threads()
        setThreads(count)
        defer { omp_set_num_threads(previous) }
        return try body()
    }

    // MARK: Memory descriptors

    /// A float32 memory descriptor with `dims` in the layout `tag` (`dnnl_format_tag_any` lets a primitive choose).
    static func descriptor(_ dims: [Int], _ tag: dnnl_format_tag_t, type: dnnl_data_type_t = dnnl_f32) throws -> dnnl_memory_desc_t {
        var desc = dnnl_memory_desc_t()
        let d = dims.map { dnnl_dim_t($0) }
        try check(dnnl_memory_desc_init_by_tag(&desc, Int32(d.count), d, type, tag), "dnnl_memory_desc_init_by_tag")
        return desc
    }

    /// A float32 memory descriptor from dims and element strides.
    static func descriptor(_ dims: [Int], strides: [Int]) throws -> dnnl_memory_desc_t {
        var desc = dnnl_memory_desc_t()
        let d = dims.map { dnnl_dim_t($0) }, s = strides.map { dnnl_dim_t($0) }
        try check(dnnl_memory_desc_init_by_strides(&desc, Int32(d.count), d, dnnl_f32, s), "dnnl_memory_desc_init_by_strides")
        return desc
    }

    /// The plain row-major tag for `rank` dimensions (abcd… — NCHW for activations).
    static func plainTag(rank: Int) -> dnnl_format_tag_t {
        switch rank {
        case 1: return dnnl_a
        case 2: return dnnl_ab
        case 3: return dnnl_abc
        case 4: return dnnl_abcd
        case 5: return dnnl_abcde
        default: return dnnl_abcdef
        }
    }

    /// The memory descriptor a primitive expects for execute argument `argument`.
    static func query(_ pd: const_dnnl_primitive_desc_t, argument: Int32) -> dnnl_memory_desc_t? {
        guard let md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, argument) else { return nil }
        return md.pointee.ndims == 0 ? nil : md.pointee
    }

    /// The implementation oneDNN chose for a primitive descriptor, e.g. "brgconv:avx512_core" or "jit:avx2".
    static func implementation(_ pd: const_dnnl_primitive_desc_t) -> String {
        var info: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info) == dnnl_success, let info else { return "?" }
        return String(cString: info)
    }

    /// Wraps a raw oneDNN handle so it can sit in a `static let`.
    fileprivate struct Handle: @unchecked Sendable {
        let pointer: OpaquePointer
        init(_ pointer: OpaquePointer) { self.pointer = pointer }
    }
}

// Execute-argument indices (DNNL_ARG_*; the C macros alias one another, which Swift does not import).
enum DNNLArgument {
    static let source: Int32 = 1        // DNNL_ARG_SRC, DNNL_ARG_FROM
    static let destination: Int32 = 17  // DNNL_ARG_DST, DNNL_ARG_TO
    static let weights: Int32 = 33      // DNNL_ARG_WEIGHTS
    static let bias: Int32 = 41         // DNNL_ARG_BIAS
    static let scratchpad: Int32 = 80   // DNNL_ARG_SCRATCHPAD
}

// MARK: - Layouts

/// A float32 tensor's memory layout as oneDNN describes it: the logical dims and how
/// they are laid out (plain NCHW, or blocked such as nChw16c with channels padded to the block).
public struct DNNLLayout: @unchecked Sendable, Equatable, CustomStringConvertible {
    var desc: dnnl_memory_desc_t

    init(_ desc: dnnl_memory_desc_t) { self.desc = desc }

    /// The plain row-major (NCHW for activations) layout of `dims`.
    public static func plain(_ dims: [Int]) throws -> DNNLLayout {
        DNNLLayout(try OneDNN.descriptor(dims, OneDNN.plainTag(rank: dims.count)))
    }

    /// The logical dimensions (N, C, H, W for activations).
    public var dims: [Int] {
        withUnsafeBytes(of: desc.dims) { raw in Array(raw.bindMemory(to: dnnl_dim_t.self).prefix(Int(desc.ndims))).map(Int.init) }
    }

    /// Floats to allocate for a tensor in this layout (blocked layouts pad channels up to the block).
    public var elementCount: Int {
        var copy = desc
        return dnnl_memory_desc_get_size(&copy) / MemoryLayout<Float>.size
    }

    /// True for the plain row-major layout.
    public var isPlain: Bool {
        guard let plain = try? DNNLLayout.plain(dims) else { return false }
        return self == plain
    }

    /// oneDNN's tag name in its letter notation: "abcd" is plain, "aBcd16b" is NCHW with
    /// channels in blocks of 16 (nChw16c), "acdb" is NHWC. Upper case marks a blocked dim.
    public var tag: String {
        guard desc.format_kind == dnnl_blocked else { return "format_kind \(desc.format_kind.rawValue)" }
        let rank = Int(desc.ndims)
        let blocking = desc.format_desc.blocking
        let strides = withUnsafeBytes(of: blocking.strides) { Array($0.bindMemory(to: dnnl_dim_t.self).prefix(rank)) }
        let blocks = withUnsafeBytes(of: blocking.inner_blks) { Array($0.bindMemory(to: dnnl_dim_t.self).prefix(Int(blocking.inner_nblks))) }
        let indices = withUnsafeBytes(of: blocking.inner_idxs) { Array($0.bindMemory(to: dnnl_dim_t.self).prefix(Int(blocking.inner_nblks))) }
        let letters = Array("abcdefghijkl")
        // Outer dims from the largest stride to the smallest. A tie involves a dim of size 1,
        // whose place does not matter: put it first, then keep logical order.
        let dims = self.dims
        let order = (0..<rank).sorted {
            if strides[$0] != strides[$1] { return strides[$0] > strides[$1] }
            if (dims[$0] == 1) != (dims[$1] == 1) { return dims[$0] == 1 }
            return $0 < $1
        }
        var name = order.map { axis in
            indices.contains(dnnl_dim_t(axis)) ? String(letters[axis]).uppercased() : String(letters[axis])
        }.joined()
        for (block, axis) in zip(blocks, indices) { name += "\(block)\(letters[Int(axis)])" }
        return name
    }

    /// The tag in activation letters for 4-D tensors (n, c, h, w: "nchw", "nChw16c", "nhwc"); `tag` otherwise.
    public var description: String {
        guard desc.ndims == 4 else { return tag }
        let map: [Character: Character] = ["a": "n", "b": "c", "c": "h", "d": "w", "A": "N", "B": "C", "C": "H", "D": "W"]
        return String(tag.map { map[$0] ?? $0 })
    }

    public static func == (lhs: DNNLLayout, rhs: DNNLLayout) -> Bool {
        var (a, b) = (lhs.desc, rhs.desc)
        return dnnl_memory_desc_equal(&a, &b) != 0
    }
}

// MARK: - Shared execution machinery

/// One oneDNN operation, compiled per OpenMP thread count, with a pool of execution
/// contexts so that concurrent executes need no lock around the kernel itself.
///
/// Arguments are of two kinds. *Call* arguments (source, destination, …) get a fresh
/// pointer at each execute: every context has its own memory objects for them and
/// rebinds them with `dnnl_memory_set_data_handle`. *Bound* arguments (weights, bias)
/// are owned here; when the primitive for another thread count wants the weights in
/// another layout, they are reordered from the copy already held.
///
/// Steady state (a thread count seen before, no more concurrent callers than before)
/// allocates nothing on the Swift side; oneDNN's own execute bookkeeping is its business.
final class DNNLExecutable: @unchecked Sendable {
    /// Builds the primitive descriptor; called with OpenMP's count already set to the thread count.
    typealias Builder = (_ threads: Int) throws -> dnnl_primitive_desc_t

    struct Variant: @unchecked Sendable {
        let primitive: dnnl_primitive_t
        let scratchpad: dnnl_memory_desc_t?
        let bound: [dnnl_exec_arg_t]
        let implementation: String
    }

    /// One bound argument held in every layout some variant asked for. A borrowed copy (no
    /// buffer) wraps the caller's memory during `init` only: it is read from, never bound. The
    /// others lie in a buffer of their own, freed with the copy after its memory object is destroyed.
    private struct BoundArgument {
        let index: Int32
        var copies: [(layout: DNNLLayout, memory: dnnl_memory_t, buffer: AlignedBuffer?)]

        static func isBorrowed(_ copy: (layout: DNNLLayout, memory: dnnl_memory_t, buffer: AlignedBuffer?)) -> Bool { copy.buffer == nil }
    }

    /// What one executing thread needs to itself.
    private final class Context: @unchecked Sendable {
        let stream: dnnl_stream_t
        let calls: [dnnl_memory_t]
        let scratchpad: dnnl_memory_t?
        /// The scratchpad's bytes, and this context's own buffer for them, made the first time a
        /// call brings none (a plan's step brings its scratch memory; tests and timing do not).
        let scratchBytes: Int
        var scratch: UnsafeMutableRawPointer?
        let args: UnsafeMutablePointer<dnnl_exec_arg_t>
        let argCount: Int

        init(engine: dnnl_engine_t, variant: Variant, calls callLayouts: [(Int32, DNNLLayout)]) throws {
            var stream: dnnl_stream_t?
            try OneDNN.check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue), "dnnl_stream_create")
            self.stream = stream!
            var memories: [dnnl_memory_t] = []
            var failure: Error?
            for (_, layout) in callLayouts {
                var memory: dnnl_memory_t?
                var desc = layout.desc
                let status = dnnl_memory_create(&memory, &desc, engine, nil)
                if status != dnnl_success { failure = OneDNN.error(status, "dnnl_memory_create"); break }
                memories.append(memory!)
            }
            var scratchMemory: dnnl_memory_t?
            var bytes = 0
            if failure == nil, var desc = variant.scratchpad {
                bytes = dnnl_memory_desc_get_size(&desc)
                // No buffer yet (a null handle): each call binds one.
                let status = dnnl_memory_create(&scratchMemory, &desc, engine, nil)
                if status != dnnl_success { failure = OneDNN.error(status, "dnnl_memory_create (scratchpad)") }
            }
            calls = memories
            scratchpad = scratchMemory
            scratchBytes = bytes
            scratch = nil
            argCount = callLayouts.count + variant.bound.count + (scratchMemory == nil ? 0 : 1)
            args = .allocate(capacity: argCount)
            var i = 0
            for (index, (arg, _)) in callLayouts.enumerated() where index < memories.count {
                args[i] = dnnl_exec_arg_t(arg: arg, memory: memories[index]); i += 1
            }
            for arg in variant.bound { args[i] = arg; i += 1 }
            if let scratchMemory { args[i] = dnnl_exec_arg_t(arg: DNNLArgument.scratchpad, memory: scratchMemory) }
            // Every stored property is set: a throw from here on still runs deinit, which frees what was made.
            if let failure { throw failure }
        }

        deinit {
            for memory in calls { dnnl_memory_destroy(memory) }
            if let scratchpad { dnnl_memory_destroy(scratchpad) }
            scratch?.deallocate()
            args.deallocate()
            dnnl_stream_destroy(stream)
        }
    }

    private struct State: @unchecked Sendable {  // only touched under the mutex
        var variants: [Int: Variant] = [:]
        var pools: [Int: [Context]] = [:]
        var bound: [BoundArgument] = []
    }

    private let engine: dnnl_engine_t
    private let build: Builder
    /// Call arguments in the order `execute` takes their pointers.
    let callLayouts: [(Int32, DNNLLayout)]
    private let state: Mutex<State>

    /// `constants`: the arguments bound at build (weights, bias) as the caller holds them (index,
    /// layout, values), read during this init only. The variant for `threads` is built now and
    /// each constant copied once, straight into the layout that variant wants: no copy in the
    /// caller's layout lives beside the reordered one, so a Conv's weights are held twice at most
    /// (the caller's and oneDNN's) while the plan is compiled, not three times.
    init(callLayouts: [(Int32, DNNLLayout)], constants: [(Int32, DNNLLayout, UnsafeRawPointer)] = [], threads: Int? = nil,
         build: @escaping Builder) throws {
        engine = try OneDNN.engine()
        self.build = build
        self.callLayouts = callLayouts
        state = Mutex(State())
        // Every stored property is set: a throw from here on runs deinit, which destroys the
        // memory objects made (a borrowed one's buffer stays the caller's).
        for (index, layout, values) in constants {
            var memory: dnnl_memory_t?
            var desc = layout.desc
            try OneDNN.check(dnnl_memory_create(&memory, &desc, engine, UnsafeMutableRawPointer(mutating: values)), "dnnl_memory_create")
            state.withLock { $0.bound.append(BoundArgument(index: index, copies: [(layout, memory!, nil)])) }
        }
        if let threads { _ = try variant(threads: threads) }
        // A constant the first variant did not bind gets a copy of its own in the caller's layout.
        try state.withLock { state in
            for i in state.bound.indices {
                guard let copy = state.bound[i].copies.first(where: BoundArgument.isBorrowed) else { continue }
                let (owned, buffer) = try DNNLReorder.copy(copy.memory, from: copy.layout, to: copy.layout, engine: engine)
                dnnl_memory_destroy(copy.memory)
                state.bound[i].copies = state.bound[i].copies.filter { !BoundArgument.isBorrowed($0) } + [(copy.layout, owned, buffer)]
            }
        }
    }

    deinit {
        state.withLock { state in
            state.pools = [:]
            for variant in state.variants.values { dnnl_primitive_destroy(variant.primitive) }
            for argument in state.bound { for copy in argument.copies { dnnl_memory_destroy(copy.memory) } }
        }
    }

    /// The variant for `threads`, created now if this is the first time it is asked for.
    func variant(threads: Int) throws -> Variant {
        try state.withLock { state in try variant(threads: threads, in: &state) }
    }

    private func variant(threads: Int, in state: inout State) throws -> Variant {
        if let variant = state.variants[threads] { return variant }
        return try OneDNN.withThreads(threads) {
            let pd = try build(threads)
            defer { dnnl_primitive_desc_destroy(pd) }
            for (index, layout) in callLayouts {
                guard let wanted = OneDNN.query(pd, argument: index), DNNLLayout(wanted) == layout else {
                    throw CBAMError(.unsupportedOp, "oneDNN's primitive for \(threads) thread(s) wants another layout for argument \(index)")
                }
            }
            var bound: [dnnl_exec_arg_t] = []
            for i in state.bound.indices {
                let index = state.bound[i].index
                guard let wanted = OneDNN.query(pd, argument: index).map(DNNLLayout.init) else { continue }
                if let copy = state.bound[i].copies.first(where: { $0.layout == wanted && !BoundArgument.isBorrowed($0) }) {
                    bound.append(dnnl_exec_arg_t(arg: index, memory: copy.memory))
                } else {
                    let first = state.bound[i].copies[0]
                    let (memory, buffer) = try DNNLReorder.copy(first.memory, from: first.layout, to: wanted, engine: engine)
                    state.bound[i].copies.append((wanted, memory, buffer))
                    bound.append(dnnl_exec_arg_t(arg: index, memory: memory))
                }
            }
            var primitive: dnnl_primitive_t?
            try OneDNN.check(dnnl_primitive_create(&primitive, pd), "dnnl_primitive_create")
            let scratchpad = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0).flatMap { $0.pointee.ndims == 0 ? nil : $0.pointee }
            let variant = Variant(primitive: primitive!, scratchpad: scratchpad, bound: bound, implementation: OneDNN.implementation(pd))
            state.variants[threads] = variant
            // Copies no variant binds (a borrowed one, the caller's layout once reordered) are
            // dropped: a later variant that wants another layout reorders from a copy that stayed.
            // A Conv's weights are then held once by oneDNN, not twice.
            let inUse = Set(state.variants.values.flatMap { $0.bound.compactMap { $0.memory.map { UnsafeRawPointer($0) } } })
            for i in state.bound.indices where state.bound[i].copies.count > 1 {
                let unused = state.bound[i].copies.filter { !inUse.contains(UnsafeRawPointer($0.memory)) }
                let kept = state.bound[i].copies.filter { inUse.contains(UnsafeRawPointer($0.memory)) }
                guard !kept.isEmpty else { continue }
                for copy in unused { dnnl_memory_destroy(copy.memory) }
                state.bound[i].copies = kept
            }
            return variant
        }
    }

    /// Bytes of scratch memory the primitive for `threads` needs during a call (0: none).
    func scratchpadBytes(threads: Int) throws -> Int {
        guard var desc = try variant(threads: Swift.max(1, threads)).scratchpad else { return 0 }
        return dnnl_memory_desc_get_size(&desc)
    }

    /// Runs the primitive on `threads` OpenMP threads with the call arguments bound to `pointers`
    /// (in `callLayouts` order). `scratchpad`: ``scratchpadBytes(threads:)`` bytes, 64-byte
    /// aligned, the caller's for this call (a plan passes its step's scratch memory, shared by
    /// all steps, so primitives with large scratchpads — Winograd's transformed tiles — do not
    /// each keep their own); nil: the executable's own buffer. Safe to call from several
    /// threads at once (each with its own scratchpad).
    func execute(threads: Int, _ p0: UnsafeMutableRawPointer, _ p1: UnsafeMutableRawPointer,
                 _ p2: UnsafeMutableRawPointer? = nil, scratchpad: UnsafeMutableRawPointer? = nil) throws {
        let threads = Swift.max(1, threads)
        let (variant, pooled) = try state.withLock { state -> (Variant, Context?) in
            let variant = try self.variant(threads: threads, in: &state)
            return (variant, state.pools[threads]?.popLast())
        }
        let context = try pooled ?? Context(engine: engine, variant: variant, calls: callLayouts)
        defer {
            state.withLock { state in
                if state.pools[threads] == nil { state.pools[threads] = [] }
                state.pools[threads]!.append(context)
            }
        }
        // The primitive runs as many threads as it was built for, but oneDNN's helpers (zero
        // padding, some reorders) read OpenMP's count at execution: keep the two equal, and
        // give the caller's thread its own count back afterwards.
        let previous = omp_get_max_threads()
        OneDNN.setThreads(threads)
        defer { omp_set_num_threads(previous) }
        // Rebinding a blocked layout whose channels are padded to the block zeroes the padding
        // (in the source too): buffers must be `elementCount` floats of that layout.
        for (i, memory) in context.calls.enumerated() {
            guard let pointer = i == 0 ? p0 : i == 1 ? p1 : p2 else { throw CBAMError(.missingInput, "oneDNN execute: argument \(i) is missing") }
            try OneDNN.check(dnnl_memory_set_data_handle(memory, pointer), "dnnl_memory_set_data_handle")
        }
        if let memory = context.scratchpad {
            if scratchpad == nil, context.scratch == nil {
                context.scratch = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(context.scratchBytes, 1), alignment: 64)
            }
            try OneDNN.check(dnnl_memory_set_data_handle(memory, scratchpad ?? context.scratch), "dnnl_memory_set_data_handle (scratchpad)")
        }
        try OneDNN.check(dnnl_primitive_execute(variant.primitive, context.stream, Int32(context.argCount), context.args),
                         "dnnl_primitive_execute")
        try OneDNN.check(dnnl_stream_wait(context.stream), "dnnl_stream_wait")
    }
}

// MARK: - Reorder

/// Converts a tensor between two layouts of the same dims (e.g. plain NCHW ↔ nChw16c).
/// Safe to execute from several threads at once.
public final class DNNLReorder: @unchecked Sendable {
    public let source: DNNLLayout
    public let destination: DNNLLayout
    private let executable: DNNLExecutable

    public init(from source: DNNLLayout, to destination: DNNLLayout) throws {
        guard source.dims == destination.dims else {
            throw CBAMError(.shapeMismatch, "a reorder needs equal dims, got \(source.dims) and \(destination.dims)")
        }
        self.source = source
        self.destination = destination
        let engine = try OneDNN.engine()
        executable = try DNNLExecutable(callLayouts: [(DNNLArgument.source, source), (DNNLArgument.destination, destination)]) { _ in
            try DNNLReorder.primitiveDesc(from: source, to: destination, engine: engine, userScratchpad: true)
        }
    }

    /// The implementation oneDNN chose (e.g. "jit:uni" or "simple:any").
    public var implementation: String { (try? executable.variant(threads: 1).implementation) ?? "?" }

    /// Reads `source.elementCount` floats at `source` and writes `destination.elementCount` at `destination`.
    public func execute(source: UnsafePointer<Float>, destination: UnsafeMutablePointer<Float>, threads: Int = 1) throws {
        try executable.execute(threads: threads, UnsafeMutableRawPointer(mutating: source), UnsafeMutableRawPointer(destination))
    }

    static func primitiveDesc(from source: DNNLLayout, to destination: DNNLLayout, engine: dnnl_engine_t,
                              userScratchpad: Bool) throws -> dnnl_primitive_desc_t {
        var attr: dnnl_primitive_attr_t?
        try OneDNN.check(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attr) }
        if userScratchpad {
            try OneDNN.check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "dnnl_primitive_attr_set_scratchpad_mode")
        }
        var (s, d) = (source.desc, destination.desc)
        var pd: dnnl_primitive_desc_t?
        try OneDNN.check(dnnl_reorder_primitive_desc_create(&pd, &s, engine, &d, engine, attr), "dnnl_reorder_primitive_desc_create")
        return pd!
    }

    /// A new memory object in layout `to` holding `memory`'s contents (layout `from`), on a buffer
    /// of ours (an ``AlignedBuffer``: huge pages for large weights, which every run streams
    /// through) that must outlive the memory object. Used once per layout at build time
    /// (weights), so it runs on the calling thread's OpenMP count.
    static func copy(_ memory: dnnl_memory_t, from: DNNLLayout, to: DNNLLayout, engine: dnnl_engine_t) throws -> (dnnl_memory_t, AlignedBuffer) {
        var target: dnnl_memory_t?
        var desc = to.desc
        let buffer = AlignedBuffer(byteCount: dnnl_memory_desc_get_size(&desc))
        try OneDNN.check(dnnl_memory_create(&target, &desc, engine, buffer.pointer), "dnnl_memory_create")
        do {
            let pd = try primitiveDesc(from: from, to: to, engine: engine, userScratchpad: false)
            defer { dnnl_primitive_desc_destroy(pd) }
            var primitive: dnnl_primitive_t?
            try OneDNN.check(dnnl_primitive_create(&primitive, pd), "dnnl_primitive_create (reorder)")
            defer { dnnl_primitive_destroy(primitive) }
            var stream: dnnl_stream_t?
            try OneDNN.check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue), "dnnl_stream_create")
            defer { dnnl_stream_destroy(stream) }
            var args = [dnnl_exec_arg_t(arg: DNNLArgument.source, memory: memory),
                        dnnl_exec_arg_t(arg: DNNLArgument.destination, memory: target)]
            try OneDNN.check(dnnl_primitive_execute(primitive, stream, 2, &args), "dnnl_primitive_execute (reorder)")
            try OneDNN.check(dnnl_stream_wait(stream), "dnnl_stream_wait")
            return (target!, buffer)
        } catch {
            dnnl_memory_destroy(target)
            throw error
        }
    }
}
