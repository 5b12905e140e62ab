/// A type-generic rearrangement of tensor buffers: Transpose, Slice, Gather,
/// Concat and friends move elements without looking at them, so they are written
/// once against `[T]` and ``Tensor/Storage/transform(_:_:)`` picks `T`.
protocol StorageTransform {
    func apply<T>(_ arrays: [[T]]) throws -> [T]
}

extension Tensor.Storage {
    /// Applies `transform` to the buffers of `parts`, which must share one element type.
    static func transform<F: StorageTransform>(_ parts: [Tensor.Storage], _ transform: F) throws -> Tensor.Storage {
        guard let first = parts.first else { throw CBAMError(.missingInput, "no tensors to combine") }
        func all<T>(_ extract: (Tensor.Storage) -> [T]?) throws -> [[T]] {
            try parts.map {
                guard let values = extract($0) else {
                    throw CBAMError(.typeMismatch, "inputs mix element types (\(first.dataType) and \($0.dataType))")
                }
                return values
            }
        }
        switch first {
        case .float: return .float(try transform.apply(try all { if case .float(let v) = $0 { v } else { nil } }))
        case .double: return .double(try transform.apply(try all { if case .double(let v) = $0 { v } else { nil } }))
        case .int64: return .int64(try transform.apply(try all { if case .int64(let v) = $0 { v } else { nil } }))
        case .int32: return .int32(try transform.apply(try all { if case .int32(let v) = $0 { v } else { nil } }))
        case .int8: return .int8(try transform.apply(try all { if case .int8(let v) = $0 { v } else { nil } }))
        case .uint8: return .uint8(try transform.apply(try all { if case .uint8(let v) = $0 { v } else { nil } }))
        case .bool: return .bool(try transform.apply(try all { if case .bool(let v) = $0 { v } else { nil } }))
        case .float16: return .float16(try transform.apply(try all { if case .float16(let v) = $0 { v } else { nil } }))
        }
    }

    /// `output[i] = self[indices[i]]`; indices must be in range (callers compute them from shapes).
    func picking(_ indices: [Int]) throws -> Tensor.Storage {
        try Self.transform([self], Pick(indices: indices))
    }

    /// A buffer of `count` copies of element 0 of `self` (ConstantOfShape, constant padding).
    func repeatingFirst(_ count: Int) throws -> Tensor.Storage {
        try picking([Int](repeating: 0, count: count))
    }
}

/// Gathers elements by flat index.
struct Pick: StorageTransform {
    let indices: [Int]
    func apply<T>(_ arrays: [[T]]) throws -> [T] {
        let source = arrays[0]
        return try indices.map {
            guard $0 >= 0 && $0 < source.count else { throw CBAMError(.shapeMismatch, "index \($0) is out of range") }
            return source[$0]
        }
    }
}

/// Copies runs: for each `(array, start, length)` in `runs`, appends `arrays[array][start..<start+length]`.
/// Concat, Split and Gather are all sequences of contiguous runs.
struct CopyRuns: StorageTransform {
    let runs: [(array: Int, start: Int, length: Int)]
    let total: Int
    func apply<T>(_ arrays: [[T]]) throws -> [T] {
        var output = [T]()
        output.reserveCapacity(total)
        for run in runs {
            let source = arrays[run.array]
            guard run.start >= 0, run.length >= 0, run.start + run.length <= source.count else {
                throw CBAMError(.shapeMismatch, "a copied range falls outside its tensor")
            }
            output.append(contentsOf: source[run.start..<(run.start + run.length)])
        }
        return output
    }
}

extension Tensor {
    /// Flat row-major indices of the elements of a strided view: the view has
    /// `shape`, starts at `offset` and steps `strides` (may be negative) per axis.
    static func viewIndices(shape: [Int], offset: Int, strides: [Int]) throws -> [Int] {
        let count = try Shape.elementCount(shape)
        var indices = [Int]()
        indices.reserveCapacity(count)
        guard count > 0 else { return indices }
        let rank = shape.count
        if rank == 0 { return [offset] }
        var index = [Int](repeating: 0, count: rank)
        var current = offset
        let last = rank - 1
        for _ in 0..<(count / shape[last]) {
            for i in 0..<shape[last] { indices.append(current + i * strides[last]) }
            var axis = last - 1
            while axis >= 0 {
                index[axis] += 1
                current += strides[axis]
                if index[axis] < shape[axis] { break }
                current -= strides[axis] * shape[axis]
                index[axis] = 0
                axis -= 1
            }
        }
        return indices
    }
}
