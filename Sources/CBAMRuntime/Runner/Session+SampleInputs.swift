extension Session {
    /// Inputs of the declared element types and shapes, for smoke runs and fuzzing.
    ///
    /// Symbolic and unknown dimensions get `symbolicSize`, an unrecorded shape is a vector
    /// of `symbolicSize`, and an undeclared element type is float32. Values are a small
    /// repeating ramp (floats -1.5…1.5, integers 0…2, so index inputs stay in range of
    /// most axes). Throws a `.resourceLimit` error when an input would hold more than
    /// `maxElements` elements, before allocating it.
    public func sampleInputs(symbolicSize: Int = 2, maxElements: Int = 1 << 16) throws -> [String: Tensor] {
        var feeds: [String: Tensor] = [:]
        for info in requiredInputs {
            let shape = (info.shape ?? [.unknown]).map { dim -> Int in
                if case .fixed(let n) = dim { return n }
                return symbolicSize
            }
            let count = try Shape.elementCount(shape)
            guard count <= maxElements else {
                throw CBAMError(.resourceLimit, "input \"\(info.name)\" \(Shape.describe(shape)) holds \(count) elements, more than the \(maxElements) allowed here", file: fileName)
            }
            let ramp = (0..<count).map { $0 % 7 }
            let storage: Tensor.Storage
            switch info.elementType ?? .float {
            case .float: storage = .float(ramp.map { Float($0) * 0.5 - 1.5 })
            case .double: storage = .double(ramp.map { Double($0) * 0.5 - 1.5 })
            case .float16: storage = .float16(ramp.map { Float16(Float($0) * 0.5 - 1.5) })
            case .int64: storage = .int64(ramp.map { Int64($0 % 3) })
            case .int32: storage = .int32(ramp.map { Int32($0 % 3) })
            case .int8: storage = .int8(ramp.map { Int8($0 % 3) })
            case .uint8: storage = .uint8(ramp.map { UInt8($0 % 3) })
            case .bool: storage = .bool(ramp.map { $0 % 2 == 1 })
            }
            feeds[info.name] = try Tensor(shape: shape, storage: storage)
        }
        return feeds
    }
}
