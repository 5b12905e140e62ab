/// Stacking inputs into one batch and taking items back out (`cbam-run batch --batch-size`).
extension Tensor {
    /// Joins tensors of one element type and one shape `[1, …]` into `[n, …]` (copies every value once).
    public static func stacking(_ items: [Tensor]) throws -> Tensor {
        guard let first = items.first else { throw CBAMError(.invalidShape, "nothing to stack") }
        if items.count == 1 { return first }
        guard first.rank >= 1, first.shape[0] == 1 else {
            throw CBAMError(.shapeMismatch, "stacking needs tensors of shape [1, …], not \(Shape.describe(first.shape))")
        }
        for item in items where item.shape != first.shape || item.dataType != first.dataType {
            throw CBAMError(.shapeMismatch, "cannot stack \(item) with \(first): shapes or types differ")
        }
        guard case .float = first.storage else {
            throw CBAMError(.unsupportedType, "stacking holds float32 inputs only, not \(first.dataType)")
        }
        var values: [Float] = []
        values.reserveCapacity(first.count * items.count)
        for item in items { values += try item.floats() }
        return try Tensor(shape: [items.count] + first.shape.dropFirst(), floats: values)
    }

    /// Item `i` along axis 0, as shape `[1, …]`.
    public func item(_ i: Int) throws -> Tensor {
        guard rank >= 1, i >= 0, i < shape[0] else {
            throw CBAMError(.invalidShape, "no item \(i) in a tensor of shape \(Shape.describe(shape))")
        }
        let size = count / Swift.max(shape[0], 1)
        let picked = try storage.picking(Array((i * size)..<((i + 1) * size)))
        return try Tensor(shape: [1] + shape.dropFirst(), storage: picked)
    }
}

extension AttentionMap {
    /// The map of batch item `i` alone (shapes keep a batch axis of 1).
    public func item(_ i: Int) throws -> AttentionMap {
        var feature = featureShape
        if !feature.isEmpty { feature[0] = 1 }
        return AttentionMap(index: index, block: block, kind: kind, gate: gate, tensor: try tensor.item(i), featureShape: feature)
    }
}
