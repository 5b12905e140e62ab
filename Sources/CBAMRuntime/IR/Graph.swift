/// A loaded ONNX model in cbam-run's own terms: no protobuf types past the loader.
public struct Model: Sendable {
    public var irVersion: Int
    public var producerName: String
    public var producerVersion: String
    /// Operator-set version per domain; the default ONNX domain is the key "".
    public var opsetImports: [String: Int]
    public var metadata: [String: String]
    public var graph: Graph

    public init(irVersion: Int = 8, producerName: String = "", producerVersion: String = "",
                opsetImports: [String: Int] = ["": 17], metadata: [String: String] = [:], graph: Graph) {
        self.irVersion = irVersion
        self.producerName = producerName
        self.producerVersion = producerVersion
        self.opsetImports = opsetImports
        self.metadata = metadata
        self.graph = graph
    }

    /// The opset of the default ONNX domain (the one whose ops cbam-run implements).
    public var onnxOpset: Int { opsetImports[""] ?? opsetImports["ai.onnx"] ?? 1 }
}

/// A computation graph: nodes (in file order, not necessarily topological),
/// constant initializers, and typed graph inputs and outputs.
public struct Graph: Sendable {
    public var name: String
    public var nodes: [Node]
    /// Constant tensors by name. A graph input with an initializer of the same name
    /// takes the initializer as its default (ONNX IR ≥ 4 allows overriding it).
    public var initializers: [String: Tensor]
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    /// Types and shapes the exporter recorded for intermediate values (may be empty).
    public var valueInfo: [ValueInfo]

    public init(name: String = "", nodes: [Node], initializers: [String: Tensor] = [:],
                inputs: [ValueInfo], outputs: [ValueInfo], valueInfo: [ValueInfo] = []) {
        self.name = name
        self.nodes = nodes
        self.initializers = initializers
        self.inputs = inputs
        self.outputs = outputs
        self.valueInfo = valueInfo
    }

    /// The graph inputs a caller must supply: those without an initializer.
    public var requiredInputs: [ValueInfo] { inputs.filter { initializers[$0.name] == nil } }
}

/// One operator application.
public struct Node: Sendable {
    public var name: String
    public var opType: String
    /// "" for the default ONNX domain.
    public var domain: String
    /// Input value names; "" marks an omitted optional input.
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [String: Attribute]

    public init(name: String = "", opType: String, domain: String = "", inputs: [String], outputs: [String],
                attributes: [String: Attribute] = [:]) {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    /// The node's identity for error messages (name, or its first output when unnamed).
    public var ref: CBAMError.NodeRef {
        CBAMError.NodeRef(name: name.isEmpty ? (outputs.first.map { "<\($0)>" } ?? "<unnamed>") : name, opType: opType)
    }
}

/// A node attribute's value.
public indirect enum Attribute: Sendable {
    case float(Float)
    case int(Int)
    case string(String)
    case tensor(Tensor)
    case graph(Graph)
    case floats([Float])
    case ints([Int])
    case strings([String])
    case tensors([Tensor])
    case graphs([Graph])

    public var typeName: String {
        switch self {
        case .float: return "float"
        case .int: return "int"
        case .string: return "string"
        case .tensor: return "tensor"
        case .graph: return "graph"
        case .floats: return "floats"
        case .ints: return "ints"
        case .strings: return "strings"
        case .tensors: return "tensors"
        case .graphs: return "graphs"
        }
    }
}

/// One dimension of a declared shape.
public enum Dimension: Sendable, Equatable, CustomStringConvertible {
    case fixed(Int)
    /// A named, symbolic dimension such as "batch" (`dim_param`).
    case symbolic(String)
    case unknown

    public var description: String {
        switch self {
        case .fixed(let n): return String(n)
        case .symbolic(let name): return name
        case .unknown: return "?"
        }
    }
}

/// The declared name, element type and shape of a graph value.
public struct ValueInfo: Sendable {
    public var name: String
    /// nil when the file does not say, or names a type cbam-run does not hold.
    public var elementType: DataType?
    /// The raw ONNX type code (kept for messages about types we do not hold); 0 if absent.
    public var elementTypeCode: Int32
    /// nil when the file records no shape (rank unknown).
    public var shape: [Dimension]?

    public init(name: String, elementType: DataType? = .float, elementTypeCode: Int32? = nil, shape: [Dimension]? = nil) {
        self.name = name
        self.elementType = elementType
        self.elementTypeCode = elementTypeCode ?? elementType?.rawValue ?? 0
        self.shape = shape
    }

    /// `[batch, 3, 224, 224]` style.
    public var shapeDescription: String {
        guard let shape else { return "[?]" }
        return "[" + shape.map(\.description).joined(separator: ", ") + "]"
    }
}
