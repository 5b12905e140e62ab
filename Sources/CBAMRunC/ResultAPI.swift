import CBAMRuntime
import CCBAMRun
import Foundation

/// The largest rank the C API takes (ONNX sets none; no model in the zoo goes past 5).
let maximumRank = 32

/// A caller's input buffer as a ``BorrowedTensor``: the run copies it once, straight into the
/// plan's memory. Every field is checked before anything is read. Bool bytes are normalised
/// into a buffer appended to `keeping` (any nonzero byte is true: a C caller's bool bytes need
/// not be 0 or 1), which the caller frees after the run.
func borrowedTensor(from given: cbamrun_tensor, name: String, file: String, keeping: inout [UnsafeMutableRawBufferPointer]) throws -> BorrowedTensor {
    guard let type = DataType(rawValue: given.element_type) else {
        throw CBAMError(.unsupportedType, "input \"\(name)\" has element type \(DataType.onnxName(of: given.element_type)), which cbam-run does not support", file: file)
    }
    guard given.rank >= 0, given.rank <= maximumRank else {
        throw APIError("input \"\(name)\": rank \(given.rank) is not between 0 and \(maximumRank)")
    }
    guard given.shape != nil || given.rank == 0 else { throw APIError("input \"\(name)\": shape is NULL but rank is \(given.rank)") }
    var shape: [Int] = []
    for axis in 0..<Int(given.rank) {
        let dim = given.shape![axis]
        guard dim >= 0, dim <= Int64(Shape.maxElementCount) else {
            throw CBAMError(.invalidShape, "input \"\(name)\" has dimension \(dim) on axis \(axis)", file: file)
        }
        shape.append(Int(dim))
    }
    let count = try withContext(file) { try Shape.elementCount(shape) }
    guard given.data != nil || count == 0 else { throw APIError("input \"\(name)\": data is NULL") }
    let valueType = ValueType(type, shape)
    // An empty tensor reads nothing: any valid address will do.
    guard let source = given.data, count > 0 else { return BorrowedTensor(type: valueType, pointer: UnsafeRawPointer(bitPattern: 64)!) }
    guard type == .bool else { return BorrowedTensor(type: valueType, pointer: source) }
    let bytes = source.assumingMemoryBound(to: UInt8.self)
    let normalised = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 1)
    keeping.append(normalised)
    for i in 0..<count { normalised[i] = bytes[i] != 0 ? 1 : 0 }
    return BorrowedTensor(type: valueType, pointer: UnsafeRawPointer(normalised.baseAddress!))
}

private func withContext<T>(_ file: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as CBAMError { throw error.withContext(file: file) }
}

/// A tensor's name, shape and elements in memory the result owns, for `cbamrun_tensor`.
final class TensorStorage {
    let name: OwnedCString
    let elementType: Int32
    let shape: OwnedArray<Int64>
    let data: UnsafeMutableRawPointer
    let byteCount: Int

    init(name: String, tensor: Tensor) {
        self.name = OwnedCString(name)
        elementType = tensor.dataType.rawValue
        shape = OwnedArray(tensor.shape.map(Int64.init))
        byteCount = tensor.count * tensor.dataType.byteSize
        data = .allocate(byteCount: max(byteCount, 1), alignment: 64)
        tensor.copyBytes(to: data)  // Swift's Bool is one byte, 0 or 1, as the header states
    }

    deinit { data.deallocate() }

    var c: cbamrun_tensor {
        cbamrun_tensor(name: UnsafePointer(name.pointer), element_type: elementType, rank: Int32(shape.count),
                       shape: UnsafePointer(shape.pointer), data: UnsafeRawPointer(data))
    }
}

/// What `cbamrun_result *` points to: the outputs in the session's output order, and the maps.
final class ResultBox {
    let outputs: [TensorStorage]
    let maps: [(map: AttentionMap, node: OwnedCString, tensor: TensorStorage)]
    /// What produced it (cbamrun_load_image's summary line), or "".
    var note = OwnedCString("")

    init(outputs: [String: Tensor], names: [String], maps: [AttentionMap]) throws {
        self.outputs = try names.map { name in
            guard let tensor = outputs[name] else { throw CBAMError(.malformedModel, "the run did not produce output \"\(name)\"") }
            return TensorStorage(name: name, tensor: tensor)
        }
        self.maps = maps.map { ($0, OwnedCString($0.gate.node.ref.name), TensorStorage(name: $0.gate.tensor, tensor: $0.tensor)) }
    }
}

@_cdecl("cbamrun_result_output_count")
public func cbamrun_result_output_count(_ result: OpaquePointer?) -> Int {
    object(result, as: ResultBox.self)?.outputs.count ?? 0
}

@_cdecl("cbamrun_result_output")
public func cbamrun_result_output(_ result: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<cbamrun_tensor>?) -> OpaquePointer? {
    guarded {
        guard let box = object(result, as: ResultBox.self) else { throw APIError("cbamrun_result_output: result is NULL") }
        guard let out else { throw APIError("cbamrun_result_output: out is NULL") }
        guard index >= 0, index < box.outputs.count else {
            throw APIError("cbamrun_result_output: index \(index) is out of range (the result has \(box.outputs.count) output(s))")
        }
        out.pointee = box.outputs[index].c
    }
}

@_cdecl("cbamrun_result_attention_count")
public func cbamrun_result_attention_count(_ result: OpaquePointer?) -> Int {
    object(result, as: ResultBox.self)?.maps.count ?? 0
}

@_cdecl("cbamrun_result_attention")
public func cbamrun_result_attention(_ result: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<cbamrun_attention_map>?) -> OpaquePointer? {
    guarded {
        guard let box = object(result, as: ResultBox.self) else { throw APIError("cbamrun_result_attention: result is NULL") }
        guard let out else { throw APIError("cbamrun_result_attention: out is NULL") }
        guard index >= 0, index < box.maps.count else {
            throw APIError("cbamrun_result_attention: index \(index) is out of range (the result has \(box.maps.count) map(s))")
        }
        let (map, node, tensor) = box.maps[index]
        let kind: cbamrun_attention_kind
        switch map.kind {
        case .channel: kind = CBAMRUN_ATTENTION_CHANNEL
        case .spatial: kind = CBAMRUN_ATTENTION_SPATIAL
        case .other: kind = CBAMRUN_ATTENTION_OTHER
        case .selfAttention: kind = CBAMRUN_ATTENTION_SELF
        }
        out.pointee = cbamrun_attention_map(index: Int32(map.index), block: Int32(map.block), kind: Int32(bitPattern: kind.rawValue),
                                            node: UnsafePointer(node.pointer), tensor: tensor.c)
    }
}

@_cdecl("cbamrun_result_free")
public func cbamrun_result_free(_ result: OpaquePointer?) {
    release(result, as: ResultBox.self)
}

@_cdecl("cbamrun_result_note")
public func cbamrun_result_note(_ result: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard let box = object(result, as: ResultBox.self) else { return UnsafePointer(emptyNote.pointer) }
    return UnsafePointer(box.note.pointer)
}

private let emptyNote = OwnedCString("")

@_cdecl("cbamrun_load_image")
public func cbamrun_load_image(_ path: UnsafePointer<CChar>?, _ shape: UnsafePointer<Int64>?, _ rank: Int32,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?) -> OpaquePointer? {
    guarded {
        guard let out else { throw APIError("cbamrun_load_image: out is NULL") }
        out.pointee = nil
        guard let path else { throw APIError("cbamrun_load_image: path is NULL") }
        guard rank >= -1, rank <= Int32(maximumRank) else { throw APIError("cbamrun_load_image: rank \(rank) is not between -1 and \(maximumRank)") }
        guard shape != nil || rank <= 0 else { throw APIError("cbamrun_load_image: shape is NULL but rank is \(rank)") }
        let dims: [CBAMRuntime.Dimension]? = rank < 0 ? nil : (0..<Int(rank)).map { axis in
            let dim = shape![axis]
            return dim >= 0 && dim <= Int64(Shape.maxElementCount) ? .fixed(Int(dim)) : .symbolic("d\(axis)")
        }
        let file = String(cString: path)
        let info = ValueInfo(name: "image", elementType: .float, shape: dims)
        let image = try InputFiles.loadImage(file, for: info, request: ImagePreprocessing.Request())
        let box = try ResultBox(outputs: ["image": image.tensor], names: ["image"], maps: [])
        box.note = OwnedCString(image.summary(path: file))
        out.pointee = retain(box)
    }
}
