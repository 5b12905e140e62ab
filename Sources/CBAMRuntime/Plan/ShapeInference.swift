/// The element type and concrete shape of a value, known before anything runs.
///
/// A plan is compiled for one input-shape signature, so every dimension is a number
/// here; symbolic dimensions (`batch`) are resolved from the run's inputs first.
public struct ValueType: Sendable, Hashable, CustomStringConvertible {
    public var dataType: DataType
    public var shape: [Int]

    public init(_ dataType: DataType, _ shape: [Int]) {
        self.dataType = dataType
        self.shape = shape
    }

    /// Element count (checked against ``Shape/maxElementCount`` when the type was made by inference).
    public var count: Int { shape.reduce(1, *) }
    /// Bytes of the element buffer.
    public var byteCount: Int { count * dataType.byteSize }
    public var description: String { "\(dataType)\(Shape.describe(shape))" }
}

/// Output types of a node from its input types, following each op's ONNX definition.
///
/// Values that a shape depends on (Reshape's `shape`, Slice's `starts`, Resize's
/// `scales`, …) come from `context.constant(i)`: the planner folds `Shape` nodes and
/// every computation on constants before it asks, so those inputs are constants by
/// then. An input it needs that is still not constant is refused with an error.
enum ShapeInference {
    /// The output types of `context.node`, one per node output ("" outputs included).
    /// `inputs[i]` is nil where an optional input was omitted. Throws a `CBAMError`
    /// (kind `.shapeMismatch`, `.invalidAttribute`, `.typeMismatch`, …, with the
    /// field named) for inputs the op cannot combine — the same checks its kernel makes.
    static func infer(_ context: NodeContext, inputs: [ValueType?]) throws -> [ValueType] {
        throw CBAMError(.unsupportedOp, "no shape inference for \(context.node.opType) yet")
    }

    /// Input indices whose *values* (not only shapes) decide the output shape, for
    /// `opType` at `opset` (Reshape → [1], Slice → [1, 2, 3, 4], ConstantOfShape → [0], …).
    /// The planner treats graph inputs that reach one of these as part of the plan's key.
    static func valueOperands(_ opType: String, opset: Int) -> [Int] {
        []
    }
}
