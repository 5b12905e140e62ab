/// How a tensor's elements are ordered in memory.
///
/// `plain` is row-major NCHW (C order), what every ONNX value is. `channelBlocked(b)`
/// is oneDNN's `nChw{b}c`: channels in blocks of `b`, the block innermost
/// (`[N, C/b, H, W, b]`), which convolution kernels on AVX2 (b = 8) and AVX-512
/// (b = 16) read fastest. Only plain is produced today; the tag travels with every
/// operand so the layout pass can carry blocked tensors between convolutions.
public enum Layout: Hashable, Sendable, CustomStringConvertible {
    case plain
    case channelBlocked(Int)

    public var description: String {
        switch self {
        case .plain: return "plain"
        case .channelBlocked(let b): return "nChw\(b)c"
        }
    }
}

/// The memory of one run: the arena that holds every intermediate value at its
/// planned offset, and the scratch area kernels use inside one step (im2col columns).
/// Both are taken from the session's pool, so a steady-state run allocates nothing.
struct RunMemory {
    let arena: UnsafeMutableRawPointer
    let scratch: UnsafeMutableRawPointer
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

    init(detail: String = "", _ run: @escaping (_ memory: RunMemory) throws -> Void) {
        self.run = run
        self.detail = detail
    }
}

// MARK: - Moving values between Tensors and raw memory

extension Tensor {
    /// Copies the elements into `destination` (which holds `count` elements of this type).
    func copyBytes(to destination: UnsafeMutableRawPointer) {
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
    init(copying source: UnsafeRawPointer, type: ValueType) {
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

    /// This tensor's element type and shape.
    var valueType: ValueType { ValueType(dataType, shape) }
}

/// Memory aligned for vector loads (64 bytes: one cache line, one AVX-512 register),
/// freed when the owner goes away. Arenas and constants live in these.
final class AlignedBuffer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int

    /// Allocates `byteCount` bytes (at least one, so the pointer is never null). The
    /// caller has checked the size against the memory budget.
    init(byteCount: Int) {
        self.byteCount = byteCount
        pointer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(byteCount, 1), alignment: 64)
    }

    deinit { pointer.deallocate() }
}
