/// How a tensor's elements are ordered in memory.
///
/// `plain` is row-major NCHW (C order), what every ONNX value is. The other two are the
/// layouts oneDNN's convolution kernels read fastest, which the layout pass
/// (``LayoutPass``) carries between convolutions of 4-D `[N, C, H, W]` values:
/// `channelsLast` is NHWC (brgconv's on AVX-512), `channelBlocked(b)` is `nChw{b}c`,
/// channels in blocks of `b` with the block innermost (`[N, C/b, H, W, b]`; jit:avx2's
/// nChw8c). All three are one formula: element (n, c, p) of a `[N, C, P]` tensor (P = H·W
/// pixels) with block size `b` (1 for plain, C for channels-last) sits at
/// `((n · C/b + c/b) · P + p) · b + c mod b`.
public enum Layout: Hashable, Sendable, CustomStringConvertible {
    case plain
    case channelsLast
    case channelBlocked(Int)

    public var description: String {
        switch self {
        case .plain: return "nchw"
        case .channelsLast: return "nhwc"
        case .channelBlocked(let b): return "nChw\(b)c"
        }
    }

    /// Channels per block for a tensor with `channels` channels (1 for plain, all for NHWC).
    @inline(__always)
    func block(channels: Int) -> Int {
        switch self {
        case .plain: return 1
        case .channelsLast: return channels
        case .channelBlocked(let b): return b
        }
    }

    /// Whether a 4-D float tensor of `shape` can be stored in this layout (whole blocks only).
    func fits(_ shape: [Int]) -> Bool {
        guard self != .plain else { return true }
        guard shape.count == 4, shape[1] > 0 else { return false }
        let b = block(channels: shape[1])
        return b > 0 && shape[1] % b == 0
    }

    /// Copies the `[N, C, spatial…]` float tensor at `source` (in `from`) to `target` (in `to`).
    /// The simple path for observers and reference kernels; convolutions reorder with oneDNN.
    static func convert(_ source: UnsafePointer<Float>, from: Layout, _ target: UnsafeMutablePointer<Float>, to: Layout, shape: [Int]) {
        let count = shape.reduce(1, *)
        guard from != to, shape.count >= 2, count > 0 else {
            target.update(from: source, count: count)
            return
        }
        let (n, c) = (shape[0], shape[1]), pixels = count / (n * c)
        let (bs, bt) = (from.block(channels: c), to.block(channels: c))
        for item in 0..<n {
            for channel in 0..<c {
                let s = ((item * (c / bs) + channel / bs) * pixels) * bs + channel % bs
                let t = ((item * (c / bt) + channel / bt) * pixels) * bt + channel % bt
                for p in 0..<pixels { target[t + p * bt] = source[s + p * bs] }
            }
        }
    }
}

/// The memory of one run: the arena that holds every intermediate value at its
/// planned offset, and the scratch area kernels use inside one step (im2col columns).
/// Both are taken from the session's pool, so a steady-state run allocates nothing.
struct RunMemory {
    let arena: UnsafeMutableRawPointer
    let scratch: UnsafeMutableRawPointer

    /// The memory `step` runs with: its scratch memory where the plan placed it.
    @inline(__always)
    func forStep(_ step: Plan.Step) -> RunMemory { RunMemory(arena: arena, scratch: arena + step.scratchOffset) }
}

/// Where an operand's bytes are during a run: at an offset in the run's arena or its
/// scratch area, or at a fixed address that outlives the plan (a constant).
enum Address: Hashable {
    case arena(Int)
    case scratch(Int)
    case fixed(UnsafeMutableRawPointer)

    @inline(__always)
    func pointer(_ memory: RunMemory) -> UnsafeMutableRawPointer {
        switch self {
        case .arena(let offset): return memory.arena + offset
        case .scratch(let offset): return memory.scratch + offset
        case .fixed(let pointer): return pointer
        }
    }
}

/// A value as a kernel sees it: element type, shape, layout and where its bytes are.
/// Kernels capture operands when they are built and resolve them against the run's
/// arena base each time they run, so running allocates nothing.
struct Operand {
    let type: ValueType
    let address: Address
    var layout: Layout = .plain

    var shape: [Int] { type.shape }
    var count: Int { type.count }

    @inline(__always)
    func floats(_ memory: RunMemory) -> UnsafeMutablePointer<Float> {
        address.pointer(memory).assumingMemoryBound(to: Float.self)
    }
}

/// A compiled step's computation: reads its inputs and writes its outputs through
/// operands fixed at plan time, resolved against the run's memory.
struct PlannedKernel {
    let run: (_ memory: RunMemory) throws -> Void
    /// How it computes, for `inspect --plan` and the profile (e.g. "im2col+sgemm").
    var detail: String
    /// Layout conversions the step makes around its computation (a Conv whose operands lie
    /// in another layout than its kernel reads).
    var reorders: Int
    /// Positions of constant inputs the kernel copied while it was built (a oneDNN
    /// primitive's reordered weights) and never reads through their operands: the plan
    /// lets the tensors go once no other step reads them, so the weights are held once.
    var copiedConstantInputs: Set<Int>

    init(detail: String = "", reorders: Int = 0, copiedConstantInputs: Set<Int> = [], _ run: @escaping (_ memory: RunMemory) throws -> Void) {
        self.run = run
        self.detail = detail
        self.reorders = reorders
        self.copiedConstantInputs = copiedConstantInputs
    }
}

// MARK: - Moving values between Tensors and raw memory

extension Tensor {
    /// Copies the elements into `destination` (which holds `count` elements of this type).
    public func copyBytes(to destination: UnsafeMutableRawPointer) {
        func copy<T>(_ values: [T]) {
            values.withUnsafeBytes { bytes in
                if let source = bytes.baseAddress, bytes.count > 0 { destination.copyMemory(from: source, byteCount: bytes.count) }
            }
        }
        switch storage {
        case .float(let v): copy(v)
        case .double(let v): copy(v)
        case .int64(let v): copy(v)
        case .int32(let v): copy(v)
        case .int8(let v): copy(v)
        case .uint8(let v): copy(v)
        case .bool(let v): copy(v)
        case .float16(let v): copy(v)
        }
    }

    /// A tensor holding a copy of the `type.count` elements at `source`.
    public init(copying source: UnsafeRawPointer, type: ValueType) {
        let count = type.count
        func read<T>(_: T.Type) -> [T] {
            [T](unsafeUninitializedCapacity: count) { buffer, initialized in
                if count > 0 { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: source, byteCount: count * MemoryLayout<T>.stride) }
                initialized = count
            }
        }
        let storage: Storage
        switch type.dataType {
        case .float: storage = .float(read(Float.self))
        case .double: storage = .double(read(Double.self))
        case .int64: storage = .int64(read(Int64.self))
        case .int32: storage = .int32(read(Int32.self))
        case .int8: storage = .int8(read(Int8.self))
        case .uint8: storage = .uint8(read(UInt8.self))
        case .bool: storage = .bool(read(Bool.self))
        case .float16: storage = .float16(read(Float16.self))
        }
        self.init(unchecked: type.shape, storage)
    }

    /// A plain tensor holding the values of `operand`, stored at `source` in the operand's layout.
    init(copying source: UnsafeRawPointer, operand: Operand) {
        guard operand.layout != .plain, operand.type.dataType == .float else {
            self.init(copying: source, type: operand.type)
            return
        }
        let count = operand.count
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            Layout.convert(source.assumingMemoryBound(to: Float.self), from: operand.layout, buffer.baseAddress!, to: .plain, shape: operand.shape)
            initialized = count
        }
        self.init(unchecked: operand.shape, .float(values))
    }

    /// Writes the elements into `destination` in `operand`'s layout.
    func copyBytes(to destination: UnsafeMutableRawPointer, operand: Operand) {
        guard operand.layout != .plain, case .float(let values) = storage else { return copyBytes(to: destination) }
        values.withUnsafeBufferPointer { source in
            Layout.convert(source.baseAddress!, from: .plain, destination.assumingMemoryBound(to: Float.self), to: operand.layout, shape: shape)
        }
    }

    /// This tensor's element type and shape.
    var valueType: ValueType { ValueType(dataType, shape) }
}

/// What a run reads a graph input from: a ``Tensor``, or a caller's buffer (``BorrowedTensor``).
/// Either is copied once, into the plan's arena.
protocol RunInput {
    var valueType: ValueType { get }
    /// Writes the values at `destination`, laid out as `operand` says.
    func copyBytes(to destination: UnsafeMutableRawPointer, operand: Operand)
    /// The values as a tensor, for the inputs whose values decide shapes (they key the plan cache).
    func tensorValue() -> Tensor
}

extension Tensor: RunInput {
    func tensorValue() -> Tensor { self }
}

/// A graph input in the caller's memory, given to ``Session/run(borrowing:observer:)`` without
/// first being copied into a ``Tensor``: `pointer` holds `type.count` values of `type.dataType`,
/// row-major (a Bool is one byte, 0 or 1). The run copies them once, into its own memory; the
/// buffer must stay valid and unchanged until the call returns, and is not kept after it.
public struct BorrowedTensor: RunInput, @unchecked Sendable {
    public let type: ValueType
    public let pointer: UnsafeRawPointer

    public init(type: ValueType, pointer: UnsafeRawPointer) {
        self.type = type
        self.pointer = pointer
    }

    var valueType: ValueType { type }

    func copyBytes(to destination: UnsafeMutableRawPointer, operand: Operand) {
        guard operand.layout != .plain, type.dataType == .float else {
            return destination.copyMemory(from: pointer, byteCount: type.byteCount)
        }
        Layout.convert(pointer.assumingMemoryBound(to: Float.self), from: .plain, destination.assumingMemoryBound(to: Float.self),
                       to: operand.layout, shape: type.shape)
    }

    func tensorValue() -> Tensor { Tensor(copying: pointer, type: type) }
}

/// Memory aligned for vector loads (64 bytes: one cache line, one AVX-512 register),
/// freed when the owner goes away. Arenas, constants and oneDNN's reordered weights live in
/// these; from 2 MiB on, on transparent huge pages (``HugePages``).
final class AlignedBuffer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int

    /// Allocates `byteCount` bytes (at least one, so the pointer is never null). The
    /// caller has checked the size against the memory budget.
    init(byteCount: Int) {
        self.byteCount = byteCount
        if HugePages.suits(byteCount), let mapped = HugePages.map(byteCount) {
            pointer = mapped
            self.mapped = true
            HugePages.advise(pointer, byteCount: byteCount)
        } else {
            pointer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(byteCount, 1), alignment: 64)
            mapped = false
        }
    }

    /// True when the buffer has its own mapping (``HugePages/map(_:)``), false when it came from the allocator.
    private let mapped: Bool

    deinit {
        if mapped { HugePages.unmap(pointer, byteCount: byteCount) } else { pointer.deallocate() }
    }
}
