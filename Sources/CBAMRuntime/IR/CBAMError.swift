/// Every failure in cbam-run is a thrown `CBAMError`: a kind for programs, a
/// message for people, and the context that locates it (file, node, field).
///
/// Lower layers throw with only a message; the layer that knows the node or the
/// file adds it with ``withContext(file:node:field:)`` as the error passes up, so
/// the CLI prints one line such as
/// `model.onnx: node "Conv_12" (Conv): weight has rank 3 but input has rank 4`.
public struct CBAMError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case notONNX            // the bytes are not a protobuf ModelProto
        case malformedModel     // decodes, but breaks an ONNX rule (no graph, dangling input, …)
        case unsupportedOp      // one or more nodes have no kernel
        case unsupportedType    // an element type cbam-run does not hold
        case invalidAttribute   // an attribute is missing, of the wrong type or out of range
        case invalidShape       // a negative dimension, an overflowing shape
        case shapeMismatch      // shapes that an op cannot combine
        case typeMismatch       // element types that an op cannot combine
        case missingInput       // a graph input not supplied, or an unknown input name
        case io                 // a file that cannot be read or written
        case badNPY             // a .npy file cbam-run cannot read
        case badImage           // a PNG or JPEG file cbam-run cannot decode (or refuses to)
        case usage              // a command-line argument that makes no sense
        case resourceLimit      // the plan needs more memory or work than the limits allow
        case cancelled          // the run passed its timeout or its cancellation token was cancelled
    }

    /// Where a node-level error happened.
    public struct NodeRef: Sendable, Equatable {
        public var name: String
        public var opType: String
        public init(name: String, opType: String) { self.name = name; self.opType = opType }
    }

    public var kind: Kind
    public var message: String
    public var file: String?
    public var node: NodeRef?
    public var field: String?

    public init(_ kind: Kind, _ message: String, file: String? = nil, node: NodeRef? = nil, field: String? = nil) {
        self.kind = kind
        self.message = message
        self.file = file
        self.node = node
        self.field = field
    }

    /// The same error with context filled in where it is still missing (inner context wins).
    public func withContext(file: String? = nil, node: NodeRef? = nil, field: String? = nil) -> CBAMError {
        var copy = self
        if copy.file == nil { copy.file = file }
        if copy.node == nil { copy.node = node }
        if copy.field == nil { copy.field = field }
        return copy
    }

    public var description: String {
        var parts: [String] = []
        if let file { parts.append(file) }
        if let node { parts.append("node \"\(node.name)\" (\(node.opType))") }
        if let field { parts.append(field) }
        parts.append(message)
        return parts.joined(separator: ": ")
    }
}

/// Runs `body`, adding context to any error it throws; non-cbam errors are wrapped.
@inline(__always)
func withErrorContext<T>(file: String? = nil, node: CBAMError.NodeRef? = nil, field: String? = nil,
                         _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as CBAMError {
        throw error.withContext(file: file, node: node, field: field)
    } catch {
        throw CBAMError(.io, "\(error)", file: file, node: node, field: field)
    }
}
