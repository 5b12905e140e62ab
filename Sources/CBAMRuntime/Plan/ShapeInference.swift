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

extension ValueType {
    /// The type of a tensor that is already there (a constant, a graph input).
    init(of tensor: Tensor) { self.init(tensor.dataType, tensor.shape) }
    var rank: Int { shape.count }
}

/// Output types of a node from its input types, following each op's ONNX definition.
///
/// Values that a shape depends on (Reshape's `shape`, Slice's `starts`, Resize's
/// `scales`, …) come from `context.constant(i)`: the planner folds `Shape` nodes and
/// every computation on constants before it asks, so those inputs are constants by
/// then. An input it needs that is still not constant is refused with an error.
///
/// The rules are written against cbam-run's kernels, not only the ONNX text: an op's
/// inferred type is exactly what its kernel returns, and what the kernel refuses
/// (an element type it does not compute, a shape it cannot combine, an attribute out
/// of range) is refused here with the same error kind, before anything runs. The
/// per-op rules live beside this file, one file per op family.
enum ShapeInference {
    /// One op's rule: the types of the outputs the op produces (its kernel's outputs,
    /// in order; ``infer(_:inputs:)`` fits them to the node's declared outputs).
    typealias Rule = @Sendable (Operands) throws -> [ValueType]

    /// Every rule, by ONNX op type (default domain).
    static let rules: [String: Rule] = {
        var all: [String: Rule] = [:]
        for family in [elementwiseRules(), convolutionRules(), reductionRules(), normalizationRules(), linearRules(), shapeRules(), resizeRules()] {
            all.merge(family) { first, _ in first }
        }
        return all
    }()

    /// The output types of `context.node`, one per node output ("" outputs included).
    /// `inputs[i]` is nil where an optional input was omitted. Throws a `CBAMError`
    /// (kind `.shapeMismatch`, `.invalidAttribute`, `.typeMismatch`, …, with the
    /// field named) for inputs the op cannot combine — the same checks its kernel makes.
    static func infer(_ context: NodeContext, inputs: [ValueType?]) throws -> [ValueType] {
        let node = context.node
        guard node.domain.isEmpty || node.domain == "ai.onnx", let rule = rules[node.opType] else {
            let name = node.domain.isEmpty ? node.opType : node.domain + "::" + node.opType
            throw CBAMError(.unsupportedOp, "no shape inference for \(name)")
        }
        let operands = Operands(context: context, types: inputs)
        let produced = try rule(operands)
        // Every shape an op makes is checked here too, so a rule that forgot a bound
        // still cannot hand the planner a shape past 2^30 elements or with a negative size.
        for (index, type) in produced.enumerated() {
            let name = index < node.outputs.count ? node.outputs[index] : ""
            _ = try withField("output \(index)\(name.isEmpty ? "" : " (\"\(name)\")")") { try Shape.elementCount(type.shape) }
        }
        return try operands.fit(produced)
    }

    /// Input indices whose *values* (not only shapes) decide the output shape, for
    /// `opType` at `opset` (Reshape → [1], Slice → [1, 2, 3, 4], ConstantOfShape → [0], …).
    /// The planner treats graph inputs that reach one of these as part of the plan's key.
    static func valueOperands(_ opType: String, opset: Int) -> [Int] {
        switch opType {
        case "Reshape": return opset >= 5 ? [1] : []
        case "Expand", "Tile": return [1]
        case "ConstantOfShape": return [0]
        case "Slice": return opset >= 10 ? [1, 2, 3, 4] : []
        case "Pad": return opset >= 11 ? [1, 3] : []
        case "Resize": return opset >= 11 ? [1, 2, 3] : [1]
        case "Upsample": return opset >= 9 ? [1] : []
        case "Split", "Squeeze", "Unsqueeze": return opset >= 13 ? [1] : []
        case "ReduceSum": return opset >= 13 ? [1] : []
        case let op where op.hasPrefix("Reduce"): return opset >= 18 ? [1] : []
        default: return []
        }
    }
}

/// A node's inputs as a rule sees them: types, constant values, attributes.
struct Operands {
    let context: NodeContext
    let types: [ValueType?]

    var node: Node { context.node }
    var opset: Int { context.opset }

    /// The type of input `index`, or nil when it was omitted.
    func optional(_ index: Int) -> ValueType? {
        if index < types.count, let type = types[index] { return type }
        return context.constant(index).map(ValueType.init(of:))
    }

    /// The type of input `index`; a missing-input error naming it when omitted.
    func required(_ index: Int, _ name: String) throws -> ValueType {
        guard let type = optional(index) else {
            throw CBAMError(.missingInput, "required input \(index) (\(name)) is missing", field: name)
        }
        return type
    }

    /// The value of input `index`, which decides the output shape: nil when the input
    /// was omitted, an error when it is there but not a constant.
    func value(_ index: Int, _ name: String) throws -> Tensor? {
        guard optional(index) != nil else { return nil }
        guard let tensor = context.constant(index) else {
            throw CBAMError(.shapeMismatch, "the output shape depends on the value of input \(index) (\(name)), which is not known before running (it is not a constant)", field: name)
        }
        return tensor
    }

    /// The value of an integer input (shape, axes, pads, …) as `Int`s: nil when omitted.
    /// Its element type is checked first, as the kernel does (`Tensor.integers`).
    func integers(_ index: Int, _ name: String) throws -> [Int]? {
        guard let type = optional(index) else { return nil }
        try ShapeInference.requireIntegers(type, name)
        // An empty input has no values to wait for (Reduce*'s axes written as an empty tensor).
        if type.count == 0, context.constant(index) == nil { return [] }
        return try value(index, name).map { tensor in try withField(name) { try tensor.integers(name) } }
    }

    /// Fits the op's outputs to the node's declared outputs: extra outputs are not
    /// used, and a declared output the op does not produce is an error unless it is
    /// omitted (""), as the runner checks. An omitted output the op does not make
    /// gets an empty type (it is never read).
    func fit(_ produced: [ValueType]) throws -> [ValueType] {
        let declared = node.outputs.count
        if produced.count >= declared { return Array(produced.prefix(declared)) }
        if node.outputs[produced.count...].contains(where: { !$0.isEmpty }) {
            throw CBAMError(.malformedModel, "the node declares \(declared) outputs but the op produces \(produced.count)")
        }
        let filler = ValueType(produced.first?.dataType ?? .float, [0])
        return produced + Array(repeating: filler, count: declared - produced.count)
    }
}

extension ShapeInference {
    /// Types `Tensor.integers` reads (integer and bool buffers).
    static let integerLike: Set<DataType> = [.int64, .int32, .int8, .uint8, .bool]

    static func requireIntegers(_ type: ValueType, _ name: String) throws {
        guard integerLike.contains(type.dataType) else {
            throw CBAMError(.typeMismatch, "\(name) must hold integers but is \(type.dataType)", field: name)
        }
    }

    static func requireFloat(_ type: ValueType, _ name: String) throws {
        guard type.dataType == .float else {
            throw CBAMError(.typeMismatch, "\(name) must be float32 but is \(type.dataType)", field: name)
        }
    }

    /// The numpy broadcast of two shapes, with the error naming `field`.
    static func broadcast(_ a: [Int], _ b: [Int], field: String) throws -> [Int] {
        try withField(field) { try Shape.broadcast(a, b) }
    }

    /// `Shape.normalizeAxis` with the error naming `field`.
    static func axis(_ axis: Int, rank: Int, field: String, what: String = "axis") throws -> Int {
        try withField(field) { try Shape.normalizeAxis(axis, rank: rank, what: what) }
    }

    /// The element count of `shape`, with the error naming `field`.
    @discardableResult
    static func count(_ shape: [Int], field: String) throws -> Int {
        try withField(field) { try Shape.elementCount(shape) }
    }

    /// The 'attribute "name"' field text the kernels use.
    static func attribute(_ name: String) -> String { "attribute \"\(name)\"" }
}

/// Runs `body`, naming `field` in a `CBAMError` it throws that names none yet.
@inline(__always)
func withField<T>(_ field: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as CBAMError {
        throw error.withContext(field: field)
    }
}
