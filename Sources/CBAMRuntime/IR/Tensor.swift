/// A dense tensor: a shape and one contiguous, row-major (C order) buffer.
///
/// The element at index `(i0, i1, …, ik)` sits at offset `i0*s0 + i1*s1 + … + ik`
/// where `s` are the row-major strides of ``shape``. Images are NCHW throughout
/// cbam-run. A scalar has shape `[]` and one element.
public struct Tensor: Sendable, Equatable {
    /// The element buffer; the case is the element type.
    public enum Storage: Sendable, Equatable {
        case float([Float])
        case double([Double])
        case int64([Int64])
        case int32([Int32])
        case int8([Int8])
        case uint8([UInt8])
        case bool([Bool])
        /// IEEE half precision. Held for Cast, shape ops and elementwise arithmetic
        /// (computed in float32 and rounded back); other kernels refuse it.
        case float16([Float16])
    }

    public let shape: [Int]
    public let storage: Storage

    /// Builds a tensor, checking that the buffer holds exactly `shape`'s element count.
    public init(shape: [Int], storage: Storage) throws {
        let expected = try Shape.elementCount(shape)
        guard storage.count == expected else {
            throw CBAMError(.shapeMismatch, "buffer holds \(storage.count) elements but shape \(Shape.describe(shape)) needs \(expected)")
        }
        self.shape = shape
        self.storage = storage
    }

    /// Builds a tensor whose buffer is already known to match `shape` (kernels that
    /// computed the buffer from the shape). Checked in debug builds only.
    init(unchecked shape: [Int], _ storage: Storage) {
        assert((try? Shape.elementCount(shape)) == storage.count, "buffer does not match shape")
        self.shape = shape
        self.storage = storage
    }

    public init(shape: [Int], floats: [Float]) throws { try self.init(shape: shape, storage: .float(floats)) }
    public init(shape: [Int], int64s: [Int64]) throws { try self.init(shape: shape, storage: .int64(int64s)) }

    /// A float32 tensor from a buffer computed for `shape` (kernel outputs).
    static func float(_ shape: [Int], _ values: [Float]) -> Tensor { Tensor(unchecked: shape, .float(values)) }
    /// An int64 tensor from a buffer computed for `shape` (shape-like outputs).
    static func int64(_ shape: [Int], _ values: [Int64]) -> Tensor { Tensor(unchecked: shape, .int64(values)) }

    public var dataType: DataType { storage.dataType }
    public var rank: Int { shape.count }
    /// Number of elements (the product of ``shape``; 1 for a scalar).
    public var count: Int { storage.count }

    /// The float32 buffer, or a type-mismatch error naming `what` (e.g. "input X").
    public func floats(_ what: @autoclosure () -> String = "tensor") throws -> [Float] {
        if case .float(let values) = storage { return values }
        throw CBAMError(.typeMismatch, "\(what()) must be float32 but is \(dataType)")
    }

    /// The elements as integers, from any integer or bool buffer (shape, axes, indices inputs).
    public func integers(_ what: @autoclosure () -> String = "tensor") throws -> [Int] {
        switch storage {
        case .int64(let v): return v.map { Int($0) }
        case .int32(let v): return v.map { Int($0) }
        case .int8(let v): return v.map { Int($0) }
        case .uint8(let v): return v.map { Int($0) }
        case .bool(let v): return v.map { $0 ? 1 : 0 }
        case .float, .double, .float16:
            throw CBAMError(.typeMismatch, "\(what()) must hold integers but is \(dataType)")
        }
    }

    /// The elements as Double, from any element type (summaries and comparisons).
    public func doubles() -> [Double] {
        switch storage {
        case .float(let v): return v.map { Double($0) }
        case .double(let v): return v
        case .int64(let v): return v.map { Double($0) }
        case .int32(let v): return v.map { Double($0) }
        case .int8(let v): return v.map { Double($0) }
        case .uint8(let v): return v.map { Double($0) }
        case .bool(let v): return v.map { $0 ? 1 : 0 }
        case .float16(let v): return v.map { Double($0) }
        }
    }

    /// The same buffer under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        try Tensor(shape: newShape, storage: storage)
    }
}

extension Tensor.Storage {
    public var count: Int {
        switch self {
        case .float(let v): return v.count
        case .double(let v): return v.count
        case .int64(let v): return v.count
        case .int32(let v): return v.count
        case .int8(let v): return v.count
        case .uint8(let v): return v.count
        case .bool(let v): return v.count
        case .float16(let v): return v.count
        }
    }

    /// Where the elements lie, to tell a shared buffer from a copy (nil when empty).
    var bufferAddress: UnsafeRawPointer? {
        func address<T>(_ values: [T]) -> UnsafeRawPointer? { values.withUnsafeBytes { $0.baseAddress } }
        switch self {
        case .float(let v): return address(v)
        case .double(let v): return address(v)
        case .int64(let v): return address(v)
        case .int32(let v): return address(v)
        case .int8(let v): return address(v)
        case .uint8(let v): return address(v)
        case .bool(let v): return address(v)
        case .float16(let v): return address(v)
        }
    }

    public var dataType: DataType {
        switch self {
        case .float: return .float
        case .double: return .double
        case .int64: return .int64
        case .int32: return .int32
        case .int8: return .int8
        case .uint8: return .uint8
        case .bool: return .bool
        case .float16: return .float16
        }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor<\(dataType)>\(Shape.describe(shape))" }
}
