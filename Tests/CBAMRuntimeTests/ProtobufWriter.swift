import Foundation

/// A tiny protobuf wire-format writer, so tests can build ONNX files (valid and
/// hostile) byte by byte. Only what the ONNX messages need: varints, fixed32
/// floats, length-delimited fields (bytes, strings, sub-messages) and packed arrays.
struct ProtobufWriter {
    enum WireType: UInt64 { case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5 }

    private(set) var bytes: [UInt8] = []

    /// Base-128 varint; negative int64 values are written as their 10-byte two's complement.
    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func tag(_ field: Int, _ wireType: WireType) { varint(UInt64(field) << 3 | wireType.rawValue) }

    /// A varint field (int32, int64, enum, bool).
    mutating func int(_ field: Int, _ value: Int64) {
        tag(field, .varint)
        varint(UInt64(bitPattern: value))
    }

    /// A fixed32 float field.
    mutating func float(_ field: Int, _ value: Float) {
        tag(field, .fixed32)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    mutating func bytes(_ field: Int, _ data: [UInt8]) {
        tag(field, .lengthDelimited)
        varint(UInt64(data.count))
        bytes += data
    }

    mutating func string(_ field: Int, _ text: String) { bytes(field, Array(text.utf8)) }

    /// An embedded message built by `build`.
    mutating func message(_ field: Int, _ build: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        build(&inner)
        bytes(field, inner.bytes)
    }

    /// A repeated int64 written one tag per value (ONNX's `dims`, `ints`).
    mutating func repeatedInt64(_ field: Int, _ values: [Int64]) { for v in values { int(field, v) } }

    /// A packed repeated int64 (`int64_data`).
    mutating func packedInt64(_ field: Int, _ values: [Int64]) {
        var inner = ProtobufWriter()
        for v in values { inner.varint(UInt64(bitPattern: v)) }
        bytes(field, inner.bytes)
    }

    /// A packed repeated float (`float_data`).
    mutating func packedFloats(_ field: Int, _ values: [Float]) {
        var payload: [UInt8] = []
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { payload += $0 } }
        bytes(field, payload)
    }
}

/// Builders for ONNX messages with the official field numbers (Schemas/onnx.proto).
/// Each returns the serialized message; nest them with `ProtobufWriter.bytes`.
enum ONNXBytes {
    enum Dim { case value(Int64), param(String) }
    enum AttributeValue { case float(Float), int(Int64), string(String), ints([Int64]) }

    static func model(graph: [UInt8]?, opset: Int64 = 13, irVersion: Int64 = 8) -> [UInt8] {
        var w = ProtobufWriter()
        w.int(1, irVersion)
        w.message(8) { $0.string(1, ""); $0.int(2, opset) }
        if let graph { w.bytes(7, graph) }
        return w.bytes
    }

    static func graph(nodes: [[UInt8]], name: String = "g", initializers: [[UInt8]] = [],
                      inputs: [[UInt8]], outputs: [[UInt8]]) -> [UInt8] {
        var w = ProtobufWriter()
        for n in nodes { w.bytes(1, n) }
        w.string(2, name)
        for t in initializers { w.bytes(5, t) }
        for i in inputs { w.bytes(11, i) }
        for o in outputs { w.bytes(12, o) }
        return w.bytes
    }

    static func node(_ opType: String, name: String, inputs: [String], outputs: [String],
                     attributes: [(String, AttributeValue)] = []) -> [UInt8] {
        var w = ProtobufWriter()
        for i in inputs { w.string(1, i) }
        for o in outputs { w.string(2, o) }
        w.string(3, name)
        w.string(4, opType)
        for (attrName, value) in attributes { w.bytes(5, attribute(attrName, value)) }
        return w.bytes
    }

    static func attribute(_ name: String, _ value: AttributeValue) -> [UInt8] {
        var w = ProtobufWriter()
        w.string(1, name)
        switch value {
        case .float(let f): w.float(2, f); w.int(20, 1)
        case .int(let i): w.int(3, i); w.int(20, 2)
        case .string(let text): w.string(4, text); w.int(20, 3)
        case .ints(let values): w.repeatedInt64(8, values); w.int(20, 7)
        }
        return w.bytes
    }

    /// A tensor-typed ValueInfoProto; `dims == nil` records no shape.
    static func valueInfo(_ name: String, elemType: Int64 = 1, dims: [Dim]? = nil) -> [UInt8] {
        var w = ProtobufWriter()
        w.string(1, name)
        w.message(2) { type in
            type.message(1) { tensorType in
                tensorType.int(1, elemType)
                guard let dims else { return }
                tensorType.message(2) { shape in
                    for dim in dims {
                        shape.message(1) {
                            switch dim {
                            case .value(let v): $0.int(1, v)
                            case .param(let p): $0.string(2, p)
                            }
                        }
                    }
                }
            }
        }
        return w.bytes
    }

    /// A float TensorProto whose data lives in an external file (data_location EXTERNAL,
    /// external_data key/value entries as the dynamo exporter writes them).
    static func externalTensor(_ name: String, dims: [Int64], entries: [(String, String)]) -> [UInt8] {
        var w = ProtobufWriter()
        w.repeatedInt64(1, dims)
        w.int(2, 1)
        w.string(8, name)
        for (key, value) in entries { w.message(13) { $0.string(1, key); $0.string(2, value) } }
        w.int(14, 1)
        return w.bytes
    }

    /// A TensorProto; give at most one of `floats`, `int64s`, `raw`.
    static func tensor(_ name: String, dims: [Int64], dataType: Int64 = 1, floats: [Float]? = nil,
                       int64s: [Int64]? = nil, raw: [UInt8]? = nil) -> [UInt8] {
        var w = ProtobufWriter()
        w.repeatedInt64(1, dims)
        w.int(2, dataType)
        if let floats { w.packedFloats(4, floats) }
        if let int64s { w.packedInt64(7, int64s) }
        w.string(8, name)
        if let raw { w.bytes(9, raw) }
        return w.bytes
    }
}
