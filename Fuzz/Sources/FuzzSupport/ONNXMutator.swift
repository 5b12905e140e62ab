/// A structure-aware mutator for ONNX model bytes: it decodes the protobuf wire format along
/// the ModelProto schema (graph → nodes, attributes, initializers, value infos → types →
/// shapes → dims), changes one thing a byte flip would rarely reach intact — a dim, an
/// attribute value, a data or element type, an op type, a node's wiring, the order or count
/// of repeated fields — and encodes the message again, so lengths stay consistent and the
/// mutant gets past the decoder into the converter, shape inference, planning and kernels.
///
/// It works on the wire format itself (no protobuf-c): fields it does not know stay as bytes.
public enum ONNXMutator {
    /// One decoded field. Length-delimited fields of a known message type also hold their children.
    struct Field {
        var number: Int
        var wire: Int          // 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
        var value: UInt64 = 0  // varint / fixed
        var bytes: [UInt8] = []
        var children: [Field]?
        var kind: Kind?
    }

    enum Kind { case model, graph, node, attribute, tensor, valueInfo, type, tensorType, shape, dim }

    /// Which length-delimited fields are messages, by the ONNX field numbers (Schemas/onnx.proto).
    static func child(of kind: Kind, _ number: Int) -> Kind? {
        switch (kind, number) {
        case (.model, 7): return .graph
        case (.graph, 1): return .node
        case (.graph, 5): return .tensor
        case (.graph, 11), (.graph, 12), (.graph, 13): return .valueInfo
        case (.node, 5): return .attribute
        case (.attribute, 5), (.attribute, 10): return .tensor
        case (.attribute, 6), (.attribute, 11): return .graph
        case (.valueInfo, 2): return .type
        case (.type, 1): return .tensorType
        case (.tensorType, 2): return .shape
        case (.shape, 1): return .dim
        default: return nil
        }
    }

    static func decode(_ bytes: ArraySlice<UInt8>, as kind: Kind, depth: Int = 0) -> [Field]? {
        guard depth < 12 else { return nil }
        var fields: [Field] = []
        var i = bytes.startIndex
        func varint() -> UInt64? {
            var result: UInt64 = 0, shift: UInt64 = 0
            while i < bytes.endIndex, shift < 64 {
                let byte = bytes[i]; i += 1
                result |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return result }
                shift += 7
            }
            return nil
        }
        while i < bytes.endIndex {
            guard let tag = varint(), tag >> 3 > 0, tag >> 3 < 1 << 29 else { return nil }
            var field = Field(number: Int(tag >> 3), wire: Int(tag & 7))
            switch field.wire {
            case 0:
                guard let v = varint() else { return nil }
                field.value = v
            case 1, 5:
                let n = field.wire == 1 ? 8 : 4
                guard bytes.endIndex - i >= n else { return nil }
                field.bytes = Array(bytes[i..<(i + n)]); i += n
            case 2:
                guard let length = varint(), length <= UInt64(bytes.endIndex - i) else { return nil }
                let body = bytes[i..<(i + Int(length))]; i += Int(length)
                field.bytes = Array(body)
                if let kind = child(of: kind, field.number), let children = decode(body, as: kind, depth: depth + 1) {
                    field.children = children
                    field.kind = kind
                }
            default:
                return nil
            }
            fields.append(field)
        }
        return fields
    }

    static func encode(_ fields: [Field]) -> [UInt8] {
        var out: [UInt8] = []
        func varint(_ v: UInt64) {
            var v = v
            while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            out.append(UInt8(v))
        }
        for field in fields {
            varint(UInt64(field.number) << 3 | UInt64(field.wire))
            switch field.wire {
            case 0: varint(field.value)
            case 2:
                let body = field.children.map(encode) ?? field.bytes
                varint(UInt64(body.count))
                out += body
            default: out += field.bytes
            }
        }
        return out
    }

    /// A path to one field: indices into nested `children` arrays.
    typealias Path = [Int]

    static func collect(_ fields: [Field], _ prefix: Path, _ kind: Kind, into list: inout [(Path, Kind, Field)]) {
        for (index, field) in fields.enumerated() {
            list.append((prefix + [index], kind, field))
            if let children = field.children, let childKind = field.kind { collect(children, prefix + [index], childKind, into: &list) }
        }
    }

    static func update(_ fields: inout [Field], _ path: ArraySlice<Int>, _ body: (inout [Field], Int) -> Void) {
        guard let first = path.first else { return }
        if path.count == 1 { body(&fields, first); return }
        guard fields.indices.contains(first), fields[first].children != nil else { return }
        update(&fields[first].children!, path.dropFirst(), body)
    }

    static let interesting: [Int64] = [0, 1, -1, 2, 3, 4, 7, 8, 16, 64, 255, 256, 65535, 1 << 20, 1 << 30, 1 << 31, 1 << 32, 1 << 40,
                                       Int64.max, Int64.min, -2, -64]
    static let ops = ["Conv", "Relu", "Sigmoid", "Mul", "Add", "Reshape", "Transpose", "Gather", "Slice", "Concat", "Split",
                      "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "ReduceMax", "Softmax", "MatMul", "Gemm",
                      "BatchNormalization", "Expand", "Tile", "Resize", "Pad", "Squeeze", "Unsqueeze", "Flatten", "Cast",
                      "ConvTranspose", "Where", "Shape", "ConstantOfShape", "Constant", "Range", "Einsum", "If", "Loop"]

    /// Mutates `bytes` (a ModelProto) with one structural change; nil when they do not decode
    /// along the schema or nothing applies (the caller then falls back to byte mutations).
    public static func mutate(_ bytes: [UInt8], seed: UInt32, maxSize: Int) -> [UInt8]? {
        var random = SplitMix(state: UInt64(seed) &* 0x9E3779B97F4A7C15 | 1)
        guard var fields = decode(bytes[...], as: .model) else { return nil }
        var all: [(Path, Kind, Field)] = []
        collect(fields, [], .model, into: &all)
        guard !all.isEmpty else { return nil }
        let names = Array(Set(all.filter { $0.1 == .node && ($0.2.number == 1 || $0.2.number == 2) }.map { $0.2.bytes }))
        for _ in 0..<8 {
            let (path, kind, field) = all[Int(random.next() % UInt64(all.count))]
            var changed = true
            switch (kind, field.wire, random.next() % 4) {
            case (_, 0, _):
                // A varint: dims, attribute ints, data/element types, opset versions, indices.
                let current = Int64(bitPattern: field.value)
                let choice = random.next() % 4
                let value: Int64 = choice == 0 ? interesting[Int(random.next() % UInt64(interesting.count))]
                    : choice == 1 ? current &+ Int64(random.next() % 5) &- 2
                    : choice == 2 ? Int64(random.next() % 17)  // data types and small values
                    : current &* 2
                update(&fields, path[...]) { $0[$1].value = UInt64(bitPattern: value) }
            case (.node, 2, 0) where (field.number == 1 || field.number == 2) && !names.isEmpty:
                // Rewire: a node input or output now names another value (or none).
                let name = random.next() % 8 == 0 ? [] : names[Int(random.next() % UInt64(names.count))]
                update(&fields, path[...]) { $0[$1].bytes = name }
            case (.node, 2, _) where field.number == 4:
                let op = ops[Int(random.next() % UInt64(ops.count))]
                update(&fields, path[...]) { $0[$1].bytes = Array(op.utf8) }
            case (_, 2, 1) where field.children != nil, (_, 5, 1):
                // Duplicate a field in place (another node, dim, attribute, repeated int).
                update(&fields, path[...]) { $0.insert($0[$1], at: $1) }
            case (_, _, 2):
                update(&fields, path[...]) { $0.remove(at: $1) }
            case (_, _, 3) where path.count >= 1:
                // Swap with a sibling: reorders nodes, dims, attributes.
                update(&fields, path[...]) { list, index in
                    let other = Int(random.next() % UInt64(list.count))
                    list.swapAt(index, other)
                }
            case (_, 5, _):
                let values: [Float] = [0, -1, 1e30, -1e30, .nan, .infinity, 0.5, 1e-30]
                let bits = values[Int(random.next() % UInt64(values.count))].bitPattern
                update(&fields, path[...]) { $0[$1].bytes = [UInt8(bits & 0xFF), UInt8((bits >> 8) & 0xFF), UInt8((bits >> 16) & 0xFF), UInt8(bits >> 24)] }
            default:
                changed = false
            }
            if changed {
                let out = encode(fields)
                return out.count <= maxSize ? out : nil
            }
        }
        return nil
    }

    struct SplitMix {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E3779B97F4A7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
            z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
            return z ^ (z >> 31)
        }
    }
}

/// libFuzzer's own byte-level mutator, linked into every target built with -sanitize=fuzzer.
@_silgen_name("LLVMFuzzerMutate")
func libFuzzerMutate(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int) -> Int

extension ONNXMutator {
    /// The body of a target's `LLVMFuzzerCustomMutator`: every other call a structural change
    /// (when the bytes decode as a model), otherwise libFuzzer's byte mutations, so inputs the
    /// schema does not describe still evolve.
    public static func customMutator(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int, _ seed: UInt32) -> Int {
        if seed % 2 == 0, let out = mutate(Array(UnsafeBufferPointer(start: data, count: size)), seed: seed, maxSize: maxSize), !out.isEmpty {
            out.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: out.count) }
            return out.count
        }
        return libFuzzerMutate(data, size, maxSize)
    }
}
