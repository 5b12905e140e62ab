import CONNXProto
import CProtobufC
import Foundation

/// Reads ONNX protobuf files into cbam-run's IR.
///
/// This file is the only Swift code that sees protobuf-c structs: it asks
/// protobuf-c to decode the bytes, copies every field the runner uses into Swift
/// values (checking them as it goes), and frees the C message before returning.
/// Nothing decoded here is trusted: dimensions, data sizes and type codes are
/// checked, and every failure is a ``CBAMError`` naming the file and field.
public enum ModelLoader {
    /// Loads an `.onnx` model file.
    /// Tensors stored as external data (the dynamo exporter's default `model.onnx.data`)
    /// are read from files beside it.
    public static func load(contentsOf path: String) throws -> Model {
        let (handle, size) = try open(path)
        defer { try? handle.close() }
        let directory = (path as NSString).deletingLastPathComponent
        // A pipe or a special file reports no size: read it to its end instead.
        guard size > 0 else {
            return try load(bytes: [UInt8](handle.readDataToEndOfFile()), fileName: path, externalDataDirectory: directory)
        }
        return try decode(ModelBytes(descriptor: handle.fileDescriptor, count: size, path: path), fileName: path, externalDataDirectory: directory)
    }

    /// Decodes a model from bytes already in memory; `fileName` is used in messages.
    /// External-data tensors are read from `externalDataDirectory` (refused when it is nil).
    public static func load(bytes: [UInt8], fileName: String = "<memory>", externalDataDirectory: String? = nil) throws -> Model {
        try load(bytes: bytes, fileName: fileName, externalDataDirectory: externalDataDirectory, splitRawData: true)
    }

    /// `splitRawData: false` decodes the whole file with protobuf-c (what a file the splitter
    /// gives up on gets), for tests that hold the two paths together.
    static func load(bytes: [UInt8], fileName: String, externalDataDirectory: String?, splitRawData: Bool) throws -> Model {
        try bytes.withUnsafeBytes {
            try decode(ModelBytes(memory: $0, path: fileName), fileName: fileName, externalDataDirectory: externalDataDirectory,
                       splitRawData: splitRawData)
        }
    }

    /// protobuf-c decodes the file without its initializers' raw_data (``RawDataSplitter``),
    /// which is then read straight into the tensors: the weights are in memory once while
    /// loading, not as the file's bytes, protobuf-c's copy and the tensors at once.
    private static func decode(_ bytes: ModelBytes, fileName: String, externalDataDirectory: String?, splitRawData: Bool = true) throws -> Model {
        guard bytes.count > 0 else {
            throw CBAMError(.notONNX, "the file is empty, not an ONNX model", file: fileName)
        }
        let split = splitRawData ? try withErrorContext(file: fileName) { try RawDataSplitter.split(bytes) } : nil
        // Wire data the splitter does not follow: protobuf-c decodes the whole file and judges it.
        let encoded = try split?.skeleton ?? bytes.read(0..<bytes.count)
        let message: UnsafeMutablePointer<Onnx__ModelProto>? = try encoded.withUnsafeBytes { raw in
            // protobuf-c recurses into nested messages: bound the nesting first.
            try withErrorContext(file: fileName) { try NestingGuard.check(raw) }
            return onnx__model_proto__unpack(nil, raw.count, raw.baseAddress?.assumingMemoryBound(to: UInt8.self))
        }
        _ = consume encoded
        guard let message else {
            throw CBAMError(.notONNX, "not an ONNX model: protobuf decoding failed (the file is truncated, corrupt or of another format)", file: fileName)
        }
        defer {
            onnx__model_proto__free_unpacked(message, nil)
            ProcessMemory.returnFreedMemory()
        }
        let converter = ProtoConverter(external: externalDataDirectory.map { ExternalDataFiles(directory: $0) },
                                       initializerData: split.map { (bytes, $0.rawData) })
        return try withErrorContext(file: fileName) { try converter.convertModel(message.pointee) }
    }

    /// Loads a serialized ONNX `TensorProto` (the `.pb` files of ONNX test data).
    /// Returns the tensor and the name stored in it (may be empty).
    public static func loadTensor(contentsOf path: String) throws -> (name: String, tensor: Tensor) {
        try loadTensor(bytes: try readFile(path), fileName: path)
    }

    /// Decodes a serialized `TensorProto` from bytes in memory; `fileName` is used in messages.
    public static func loadTensor(bytes: [UInt8], fileName path: String = "<memory>") throws -> (name: String, tensor: Tensor) {
        let message: UnsafeMutablePointer<Onnx__TensorProto>? = bytes.withUnsafeBufferPointer {
            onnx__tensor_proto__unpack(nil, $0.count, $0.baseAddress)
        }
        guard let message else {
            throw CBAMError(.notONNX, "not an ONNX TensorProto: protobuf decoding failed", file: path)
        }
        defer { onnx__tensor_proto__free_unpacked(message, nil) }
        return try withErrorContext(file: path) {
            (string(message.pointee.name), try ProtoConverter(external: nil).convertTensor(message.pointee, field: "tensor"))
        }
    }

    /// The file opened for reading, and its size (0 for a pipe or special file).
    static func open(_ path: String) throws -> (FileHandle, size: Int) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CBAMError(.io, "no such file", file: path)
        }
        guard !isDirectory.boolValue, let handle = FileHandle(forReadingAtPath: path) else {
            throw CBAMError(.io, "cannot read the file", file: path)
        }
        var status = stat()
        guard fstat(handle.fileDescriptor, &status) == 0, status.st_size >= 0, status.st_size <= Int.max / 2 else {
            try? handle.close()
            throw CBAMError(.io, "cannot read the file's size", file: path)
        }
        return (handle, Int(status.st_size))
    }

    /// The file's bytes, read straight into the array (one copy of the file in memory, not two).
    static func readFile(_ path: String) throws -> [UInt8] {
        let (handle, size) = try open(path)
        defer { try? handle.close() }
        if size == 0 { return [UInt8](handle.readDataToEndOfFile()) }
        return try ModelBytes(descriptor: handle.fileDescriptor, count: size, path: path).read(0..<size)
    }

    /// Little-endian element bytes (ONNX raw_data, .npy payloads) to a typed buffer.
    /// cbam-run runs on little-endian hosts only (x86-64, arm64), so this is a copy.
    static func fromRawBytes(_ raw: UnsafeRawBufferPointer, type: DataType, count: Int) -> Tensor.Storage {
        let byteCount = count * type.byteSize
        precondition(raw.count >= byteCount, "fewer raw bytes than the tensor needs")
        return storage(of: type, count: count) { $0.copyMemory(from: raw.baseAddress!, byteCount: byteCount) }
    }

    /// A buffer of `count` elements of `type` whose little-endian bytes `fill` writes
    /// (called once, not for an empty buffer).
    static func storage(of type: DataType, count: Int, fill: (UnsafeMutableRawPointer) throws -> Void) rethrows -> Tensor.Storage {
        func make<T>(_: T.Type, _ fill: (UnsafeMutableRawPointer) throws -> Void) rethrows -> [T] {
            try [T](unsafeUninitializedCapacity: count) { destination, initialized in
                if count > 0 { try fill(UnsafeMutableRawPointer(destination.baseAddress!)) }
                initialized = count
            }
        }
        switch type {
        case .float: return .float(try make(Float.self, fill))
        case .double: return .double(try make(Double.self, fill))
        case .int64: return .int64(try make(Int64.self, fill))
        case .int32: return .int32(try make(Int32.self, fill))
        case .int8: return .int8(try make(Int8.self, fill))
        case .uint8: return .uint8(try make(UInt8.self, fill))
        // Any non-zero byte is true; copying raw bytes into Bool could make invalid Bools.
        case .bool: return .bool(try make(UInt8.self, fill).map { $0 != 0 })
        case .float16: return .float16(try make(Float16.self, fill))
        }
    }

    // MARK: - C helpers

    static func string(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        return String(cString: pointer)
    }

    static func bytesToString(_ data: ProtobufCBinaryData) -> String {
        guard data.len > 0, let bytes = data.data else { return "" }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: data.len), as: UTF8.self)
    }

    static func buffer<T>(_ pointer: UnsafeMutablePointer<T>?, _ count: Int) -> UnsafeBufferPointer<T> {
        UnsafeBufferPointer(start: count > 0 ? pointer : nil, count: count > 0 && pointer != nil ? count : 0)
    }
}

/// Copies protobuf-c messages into the IR. Every field is checked as it is copied.
struct ProtoConverter {
    /// Where external-data tensors are read from; nil refuses them.
    let external: ExternalDataFiles?
    /// The file the top-level initializers' raw_data is read from, and where each one's lies
    /// (in initializer order), when ``RawDataSplitter`` took it out before decoding.
    var initializerData: (bytes: ModelBytes, ranges: [Range<Int>?])? = nil

    /// Graphs nest through attributes (If/Loop bodies); a hostile file could nest them
    /// deeply enough to exhaust the stack, so conversion stops at this depth.
    static let maxGraphDepth = 32

    func convertModel(_ proto: Onnx__ModelProto) throws -> Model {
        guard let graph = proto.graph else {
            throw CBAMError(.malformedModel, "the model has no graph", field: "graph")
        }
        var opsets: [String: Int] = [:]
        for entry in ModelLoader.buffer(proto.opset_import, proto.n_opset_import) {
            guard let entry else { continue }
            var domain = ModelLoader.string(entry.pointee.domain)
            if domain == "ai.onnx" { domain = "" }
            opsets[domain] = Int(entry.pointee.version)
        }
        if opsets[""] == nil, opsets.isEmpty {
            // IR version 1/2 files had no opset_import; ONNX says to assume opset 1.
            opsets[""] = 1
        }
        var metadata: [String: String] = [:]
        for entry in ModelLoader.buffer(proto.metadata_props, proto.n_metadata_props) {
            guard let entry else { continue }
            metadata[ModelLoader.string(entry.pointee.key)] = ModelLoader.string(entry.pointee.value)
        }
        return Model(
            irVersion: Int(proto.ir_version),
            producerName: ModelLoader.string(proto.producer_name),
            producerVersion: ModelLoader.string(proto.producer_version),
            opsetImports: opsets,
            metadata: metadata,
            graph: try convertGraph(graph.pointee, depth: 0))
    }

    func convertGraph(_ proto: Onnx__GraphProto, depth: Int) throws -> Graph {
        guard depth < Self.maxGraphDepth else {
            throw CBAMError(.malformedModel, "subgraphs nest deeper than \(Self.maxGraphDepth) levels", field: "graph")
        }
        var initializers: [String: Tensor] = [:]
        for (index, pointer) in ModelLoader.buffer(proto.initializer, proto.n_initializer).enumerated() {
            guard let pointer else { continue }
            let name = ModelLoader.string(pointer.pointee.name)
            let field = "initializer \"\(name)\""
            guard !name.isEmpty else {
                throw CBAMError(.malformedModel, "initializer #\(index) has no name", field: "initializer")
            }
            guard initializers[name] == nil else {
                throw CBAMError(.malformedModel, "two initializers have this name", field: field)
            }
            var raw: (ModelBytes, Range<Int>)? = nil
            if depth == 0, let (bytes, ranges) = initializerData {
                guard ranges.count == proto.n_initializer else {
                    throw CBAMError(.malformedModel, "the initializers decoded (\(proto.n_initializer)) are not those found in the file (\(ranges.count))", field: "initializer")
                }
                raw = ranges[index].map { (bytes, $0) }
            }
            initializers[name] = try convertTensor(pointer.pointee, field: field, rawData: raw)
            // The weights are Swift's now: give protobuf-c's copy back at once, so loading
            // never holds the weights twice over (free_unpacked skips a null buffer).
            if pointer.pointee.has_raw_data != 0, let data = pointer.pointee.raw_data.data {
                free(data)
                pointer.pointee.raw_data.data = nil
                pointer.pointee.raw_data.len = 0
            }
        }
        var nodes: [Node] = []
        nodes.reserveCapacity(proto.n_node)
        for pointer in ModelLoader.buffer(proto.node, proto.n_node) {
            guard let pointer else { continue }
            nodes.append(try convertNode(pointer.pointee, depth: depth))
        }
        let inputs = try ModelLoader.buffer(proto.input, proto.n_input).compactMap { try $0.map { try convertValueInfo($0.pointee) } }
        let outputs = try ModelLoader.buffer(proto.output, proto.n_output).compactMap { try $0.map { try convertValueInfo($0.pointee) } }
        // Every later stage looks values up by name: a nameless or repeated input or output
        // has no place (found by the fuzz-run target: a nameless input reached the planner).
        for (kind, values) in [("input", inputs), ("output", outputs)] {
            if let index = values.firstIndex(where: { $0.name.isEmpty }) {
                throw CBAMError(.malformedModel, "graph \(kind) #\(index) has no name", field: "graph \(kind)")
            }
        }
        var inputNames = Set<String>()
        for input in inputs where !inputNames.insert(input.name).inserted {
            throw CBAMError(.malformedModel, "two graph inputs are named \"\(input.name)\"", field: "graph input")
        }
        return Graph(
            name: ModelLoader.string(proto.name),
            nodes: nodes,
            initializers: initializers,
            inputs: inputs,
            outputs: outputs,
            valueInfo: try ModelLoader.buffer(proto.value_info, proto.n_value_info).compactMap { try $0.map { try convertValueInfo($0.pointee) } })
    }

    func convertNode(_ proto: Onnx__NodeProto, depth: Int) throws -> Node {
        var node = Node(
            name: ModelLoader.string(proto.name),
            opType: ModelLoader.string(proto.op_type),
            domain: ModelLoader.string(proto.domain) == "ai.onnx" ? "" : ModelLoader.string(proto.domain),
            inputs: ModelLoader.buffer(proto.input, proto.n_input).map { ModelLoader.string($0) },
            outputs: ModelLoader.buffer(proto.output, proto.n_output).map { ModelLoader.string($0) })
        guard !node.opType.isEmpty else {
            throw CBAMError(.malformedModel, "a node has no op_type", node: node.ref, field: "op_type")
        }
        for pointer in ModelLoader.buffer(proto.attribute, proto.n_attribute) {
            guard let pointer else { continue }
            let name = ModelLoader.string(pointer.pointee.name)
            let value = try withErrorContext(node: node.ref, field: "attribute \"\(name)\"") {
                try convertAttribute(pointer.pointee, depth: depth)
            }
            if let value { node.attributes[name] = value }
        }
        return node
    }

    /// Converts an attribute; nil for kinds no kernel reads (sparse tensors, type protos),
    /// which a kernel that needs them then reports as missing.
    func convertAttribute(_ proto: Onnx__AttributeProto, depth: Int) throws -> Attribute? {
        var type = proto.has_type != 0 ? Int(proto.type.rawValue) : 0
        if type == 0 {
            // Files from before IR version 2 leave `type` unset; infer it from the field present.
            if proto.has_f != 0 { type = 1 } else if proto.has_i != 0 { type = 2 } else if proto.has_s != 0 { type = 3 }
            else if proto.t != nil { type = 4 } else if proto.g != nil { type = 5 } else if proto.n_floats > 0 { type = 6 }
            else if proto.n_ints > 0 { type = 7 } else if proto.n_strings > 0 { type = 8 } else if proto.n_tensors > 0 { type = 9 }
        }
        switch type {
        case 1: return .float(proto.f)
        case 2: return .int(Int(proto.i))
        case 3: return .string(ModelLoader.bytesToString(proto.s))
        case 4:
            guard let t = proto.t else { throw CBAMError(.malformedModel, "TENSOR attribute has no tensor") }
            return .tensor(try convertTensor(t.pointee, field: "t"))
        case 5:
            guard let g = proto.g else { throw CBAMError(.malformedModel, "GRAPH attribute has no graph") }
            return .graph(try convertGraph(g.pointee, depth: depth + 1))
        case 6: return .floats(Array(UnsafeBufferPointer(start: proto.floats, count: proto.n_floats)))
        case 7: return .ints(UnsafeBufferPointer(start: proto.ints, count: proto.n_ints).map { Int($0) })
        case 8: return .strings(UnsafeBufferPointer(start: proto.strings, count: proto.n_strings).map(ModelLoader.bytesToString))
        case 9:
            return .tensors(try ModelLoader.buffer(proto.tensors, proto.n_tensors).compactMap { try $0.map { try convertTensor($0.pointee, field: "tensors") } })
        case 10:
            return .graphs(try ModelLoader.buffer(proto.graphs, proto.n_graphs).compactMap { try $0.map { try convertGraph($0.pointee, depth: depth + 1) } })
        default:
            return nil
        }
    }

    func convertValueInfo(_ proto: Onnx__ValueInfoProto) throws -> ValueInfo {
        let name = ModelLoader.string(proto.name)
        guard let tensorType = proto.type?.pointee.tensor_type?.pointee else {
            return ValueInfo(name: name, elementType: nil, elementTypeCode: 0, shape: nil)
        }
        let code = tensorType.has_elem_type != 0 ? tensorType.elem_type : 0
        var shape: [Dimension]? = nil
        if let shapeProto = tensorType.shape?.pointee {
            shape = ModelLoader.buffer(shapeProto.dim, shapeProto.n_dim).map { pointer -> Dimension in
                guard let dim = pointer?.pointee else { return .unknown }
                switch dim.value_case {
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE:
                    return dim.dim_value >= 0 ? .fixed(Int(dim.dim_value)) : .unknown
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM:
                    let symbol = ModelLoader.string(dim.dim_param)
                    return symbol.isEmpty ? .unknown : .symbolic(symbol)
                default:
                    return .unknown
                }
            }
        }
        return ValueInfo(name: name, elementType: DataType(rawValue: code), elementTypeCode: code, shape: shape)
    }

    /// Copies a TensorProto's data out of `raw_data` or the typed field that matches its type.
    /// `field` names the tensor in errors (e.g. `initializer "conv.weight"`). `rawData` is
    /// where the raw_data taken out before decoding lies (``RawDataSplitter``).
    func convertTensor(_ proto: Onnx__TensorProto, field: String, rawData: (ModelBytes, Range<Int>)? = nil) throws -> Tensor {
        let dims = UnsafeBufferPointer(start: proto.dims, count: proto.n_dims).map { Int($0) }
        let count: Int
        do { count = try Shape.elementCount(dims) } catch let error as CBAMError {
            throw error.withContext(field: "\(field) dims")
        }
        let code = proto.has_data_type != 0 ? proto.data_type : 0
        guard let type = DataType(rawValue: code) else {
            throw CBAMError(.unsupportedType, "element type \(DataType.onnxName(of: code)) is not supported", field: "\(field) data_type")
        }
        if proto.has_data_location != 0, proto.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL {
            var entries: [String: String] = [:]
            for entry in ModelLoader.buffer(proto.external_data, proto.n_external_data) {
                guard let entry else { continue }
                entries[ModelLoader.string(entry.pointee.key)] = ModelLoader.string(entry.pointee.value)
            }
            guard let external else {
                throw CBAMError(.malformedModel, "stores its data in an external file, and no folder was given to read it from", field: field)
            }
            let (bytes, range) = try external.range(entries, byteCount: count * type.byteSize, field: field)
            return try Tensor(shape: dims, storage: ModelLoader.storage(of: type, count: count) { try bytes.copy(range, into: $0) })
        }
        if proto.has_raw_data != 0 || rawData != nil {
            let expected = count * type.byteSize
            let length = rawData?.1.count ?? proto.raw_data.len
            guard length == expected else {
                throw CBAMError(.malformedModel, "raw_data holds \(length) bytes but dims \(Shape.describe(dims)) of \(type) need \(expected)", field: "\(field) raw_data")
            }
            if let (bytes, range) = rawData {
                return try Tensor(shape: dims, storage: ModelLoader.storage(of: type, count: count) { try bytes.copy(range, into: $0) })
            }
            let raw = UnsafeRawBufferPointer(start: proto.raw_data.data, count: proto.raw_data.len)
            return try Tensor(shape: dims, storage: ModelLoader.fromRawBytes(raw, type: type, count: count))
        }
        func typed<C, E>(_ pointer: UnsafeMutablePointer<C>?, _ n: Int, _ name: String, _ convert: (C) -> E) throws -> [E] {
            guard n == count else {
                throw CBAMError(.malformedModel, "\(name) holds \(n) values but dims \(Shape.describe(dims)) need \(count)", field: "\(field) \(name)")
            }
            return UnsafeBufferPointer(start: pointer, count: n).map(convert)
        }
        let storage: Tensor.Storage
        switch type {
        case .float: storage = .float(try typed(proto.float_data, proto.n_float_data, "float_data") { $0 })
        case .double: storage = .double(try typed(proto.double_data, proto.n_double_data, "double_data") { $0 })
        case .int64: storage = .int64(try typed(proto.int64_data, proto.n_int64_data, "int64_data") { $0 })
        case .int32: storage = .int32(try typed(proto.int32_data, proto.n_int32_data, "int32_data") { $0 })
        // Narrow types travel widened to int32 in int32_data; truncatingIfNeeded keeps their bit pattern.
        case .int8: storage = .int8(try typed(proto.int32_data, proto.n_int32_data, "int32_data") { Int8(truncatingIfNeeded: $0) })
        case .uint8: storage = .uint8(try typed(proto.int32_data, proto.n_int32_data, "int32_data") { UInt8(truncatingIfNeeded: $0) })
        // float16 travels as its 16-bit pattern in int32_data.
        case .float16: storage = .float16(try typed(proto.int32_data, proto.n_int32_data, "int32_data") { Float16(bitPattern: UInt16(truncatingIfNeeded: $0)) })
        case .bool: storage = .bool(try typed(proto.int32_data, proto.n_int32_data, "int32_data") { $0 != 0 })
        }
        return try Tensor(shape: dims, storage: storage)
    }
}
