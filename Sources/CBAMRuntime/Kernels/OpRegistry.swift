/// A compiled node, ready to compute: attributes were parsed and checked when it
/// was built, so `run` only computes.
///
/// `inputs` has one entry per node input, `nil` where an optional input was
/// omitted (an empty input name). It returns one tensor per node output.
public struct Kernel {
    let compute: ([Tensor?]) throws -> [Tensor]

    public init(_ compute: @escaping ([Tensor?]) throws -> [Tensor]) { self.compute = compute }

    /// A kernel with one output.
    public static func single(_ compute: @escaping ([Tensor?]) throws -> Tensor) -> Kernel {
        Kernel { [try compute($0)] }
    }

    public func run(_ inputs: [Tensor?]) throws -> [Tensor] { try compute(inputs) }
}

/// Maps ONNX op types to kernel builders.
///
/// Each op family registers its ops in its own file (`registerElementwise()`,
/// `registerConvolution()`, …); ``standard`` holds them all. A builder reads a
/// node's attributes once, with the ONNX spec's defaults, and returns a ``Kernel``.
public struct OpRegistry: Sendable {
    public typealias Builder = @Sendable (NodeContext) throws -> Kernel

    private var builders: [String: Builder] = [:]

    public init() {}

    /// Registers (or replaces) the builder for `opType` in `domain` ("" = ONNX).
    public mutating func register(_ opType: String, domain: String = "", _ builder: @escaping Builder) {
        builders[Self.key(domain, opType)] = builder
    }

    public func builder(for node: Node) -> Builder? {
        builders[Self.key(node.domain, node.opType)]
    }

    /// Supported op types of the default ONNX domain, sorted.
    public var supportedOps: [String] {
        builders.keys.filter { !$0.contains("::") }.sorted()
    }

    private static func key(_ domain: String, _ opType: String) -> String {
        domain.isEmpty || domain == "ai.onnx" ? opType : domain + "::" + opType
    }

    /// Every op cbam-run implements.
    public static let standard: OpRegistry = {
        var registry = OpRegistry()
        registry.registerElementwise()
        registry.registerActivations()
        registry.registerConvolution()
        registry.registerPooling()
        registry.registerReduction()
        registry.registerLinear()
        registry.registerNormalization()
        registry.registerFeatureNormalization()
        registry.registerShapeOps()
        registry.registerResize()
        return registry
    }()
}

/// What a kernel builder may know about its node before the graph runs:
/// attributes, the opset, and the inputs that are constants (initializers or
/// outputs of constant-folded nodes).
public struct NodeContext {
    public let node: Node
    /// Opset version of the node's domain.
    public let opset: Int
    /// Intra-op threads the kernel may use.
    public let threads: Int
    let constants: [Tensor?]

    public init(node: Node, opset: Int, threads: Int = 1, constants: [Tensor?] = []) {
        self.node = node
        self.opset = opset
        self.threads = max(1, threads)
        self.constants = constants
    }

    /// The constant value of input `index`, when it is known before running.
    public func constant(_ index: Int) -> Tensor? {
        index < constants.count ? constants[index] : nil
    }

    // MARK: Attributes (each error names the attribute; the runner adds the node)

    public func has(_ name: String) -> Bool { node.attributes[name] != nil }

    public func int(_ name: String, default value: Int) throws -> Int {
        try intIfPresent(name) ?? value
    }

    public func intIfPresent(_ name: String) throws -> Int? {
        switch node.attributes[name] {
        case nil: return nil
        case .int(let v)?: return v
        case let other?: throw wrongType(name, "int", other)
        }
    }

    public func float(_ name: String, default value: Float) throws -> Float {
        switch node.attributes[name] {
        case nil: return value
        case .float(let v)?: return v
        case .int(let v)?: return Float(v)  // some exporters write whole numbers as ints
        case let other?: throw wrongType(name, "float", other)
        }
    }

    public func string(_ name: String, default value: String) throws -> String {
        switch node.attributes[name] {
        case nil: return value
        case .string(let v)?: return v
        case let other?: throw wrongType(name, "string", other)
        }
    }

    public func ints(_ name: String) throws -> [Int]? {
        switch node.attributes[name] {
        case nil: return nil
        case .ints(let v)?: return v
        case .int(let v)?: return [v]
        case let other?: throw wrongType(name, "ints", other)
        }
    }

    public func floats(_ name: String) throws -> [Float]? {
        switch node.attributes[name] {
        case nil: return nil
        case .floats(let v)?: return v
        case let other?: throw wrongType(name, "floats", other)
        }
    }

    public func tensor(_ name: String) throws -> Tensor? {
        switch node.attributes[name] {
        case nil: return nil
        case .tensor(let v)?: return v
        case let other?: throw wrongType(name, "tensor", other)
        }
    }

    /// An error about attribute `name`, for checks a builder makes on its value.
    public func invalid(_ name: String, _ message: String) -> CBAMError {
        CBAMError(.invalidAttribute, message, field: "attribute \"\(name)\"")
    }

    private func wrongType(_ name: String, _ expected: String, _ actual: Attribute) -> CBAMError {
        invalid(name, "expected \(expected), found \(actual.typeName)")
    }
}

/// Fetches input `index`, or throws a missing-input error naming it.
@inline(__always)
func required(_ inputs: [Tensor?], _ index: Int, _ what: String) throws -> Tensor {
    guard index < inputs.count, let tensor = inputs[index] else {
        throw CBAMError(.missingInput, "required input \(index) (\(what)) is missing")
    }
    return tensor
}
