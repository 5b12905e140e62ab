import Foundation

/// Reads and writes NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
///
/// Layout: the magic `\x93NUMPY`, a version (major, minor), a little-endian header
/// length (2 bytes in 1.0, 4 bytes from 2.0), then a Python-dict header such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with spaces,
/// then the raw elements. cbam-run reads little-endian, C-order arrays of the element
/// types in ``DataType``; object (pickled) and structured dtypes are refused.
public enum NPY {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY

    /// Reads a `.npy` file; errors name the file.
    public static func read(contentsOf path: String) throws -> Tensor {
        let bytes = try ModelLoader.readFile(path)
        return try withErrorContext(file: path) { try decode(bytes) }
    }

    /// Decodes `.npy` bytes.
    public static func decode(_ bytes: [UInt8]) throws -> Tensor {
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
            throw CBAMError(.badNPY, "not a .npy file (no \\x93NUMPY magic)")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw CBAMError(.badNPY, "truncated header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw CBAMError(.badNPY, "format version \(major).\(bytes[7]) is not supported (1.0, 2.0 and 3.0 are)")
        }
        guard headerStart + headerLength <= bytes.count else { throw CBAMError(.badNPY, "truncated header") }
        // Version 3.0 allows UTF-8 in the header; 1.0/2.0 are Latin-1, ASCII in practice.
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        let (descr, fortranOrder, shape) = try parseHeader(header)
        guard !fortranOrder else {
            throw CBAMError(.badNPY, "Fortran-order arrays are not supported; save with np.ascontiguousarray")
        }
        let type = try dataType(descr)
        let count = try Shape.elementCount(shape)
        let dataStart = headerStart + headerLength
        let needed = count * type.byteSize
        guard bytes.count - dataStart >= needed else {
            throw CBAMError(.badNPY, "the file holds \(bytes.count - dataStart) data bytes but shape \(Shape.describe(shape)) of \(type) needs \(needed) (truncated?)")
        }
        let storage = bytes.withUnsafeBytes {
            ModelLoader.fromRawBytes(UnsafeRawBufferPointer(rebasing: $0[dataStart..<(dataStart + needed)]), type: type, count: count)
        }
        return try Tensor(shape: shape, storage: storage)
    }

    /// Maps a numpy `descr` to a ``DataType``; refuses big-endian, object and structured types.
    static func dataType(_ descr: String) throws -> DataType {
        let known: [String: DataType] = ["<f4": .float, "<f8": .double, "<f2": .float16, "<i8": .int64, "<i4": .int32,
                                         "|i1": .int8, "|u1": .uint8, "|b1": .bool, "<i1": .int8, "<u1": .uint8]
        if let type = known[descr] { return type }
        if descr.hasPrefix(">") { throw CBAMError(.badNPY, "big-endian dtype '\(descr)' is not supported") }
        if descr.hasPrefix("|O") { throw CBAMError(.badNPY, "object (pickled) arrays are refused") }
        if descr.hasPrefix("[") { throw CBAMError(.badNPY, "structured dtypes are refused") }
        throw CBAMError(.badNPY, "dtype '\(descr)' is not supported (float32, float64, int64, int32, int8, uint8 and bool are)")
    }

    /// Parses the header dict. Only the three keys numpy writes are read.
    static func parseHeader(_ header: String) throws -> (descr: String, fortranOrder: Bool, shape: [Int]) {
        func value(after key: String) -> Substring? {
            guard let range = header.range(of: "'\(key)':") else { return nil }
            return header[range.upperBound...].drop(while: { $0 == " " })
        }
        guard let descrPart = value(after: "descr") else { throw CBAMError(.badNPY, "the header has no 'descr'") }
        let descr: String
        if descrPart.first == "'" {
            let body = descrPart.dropFirst()
            guard let end = body.firstIndex(of: "'") else { throw CBAMError(.badNPY, "malformed 'descr'") }
            descr = String(body[..<end])
        } else {
            descr = "[" // a list: a structured dtype
        }
        let fortranOrder = value(after: "fortran_order")?.hasPrefix("True") ?? false
        guard let shapePart = value(after: "shape"), shapePart.first == "(", let close = shapePart.firstIndex(of: ")") else {
            throw CBAMError(.badNPY, "the header has no 'shape' tuple")
        }
        let shape = try shapePart[shapePart.index(after: shapePart.startIndex)..<close]
            .split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
            .map { text -> Int in
                guard let dim = Int(text), dim >= 0 else { throw CBAMError(.badNPY, "bad dimension '\(text)' in shape") }
                return dim
            }
        return (descr, fortranOrder, shape)
    }

    /// Encodes a tensor as a version 1.0 `.npy` (2.0 when the header needs it).
    public static func encode(_ tensor: Tensor) -> [UInt8] {
        let descr: String
        switch tensor.dataType {
        case .float: descr = "<f4"
        case .double: descr = "<f8"
        case .int64: descr = "<i8"
        case .int32: descr = "<i4"
        case .int8: descr = "|i1"
        case .uint8: descr = "|u1"
        case .bool: descr = "|b1"
        case .float16: descr = "<f2"
        }
        let shapeText = tensor.shape.isEmpty ? "()" : tensor.shape.count == 1 ? "(\(tensor.shape[0]),)"
            : "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        // Pad so the data starts on a 64-byte boundary, the header ending in '\n'.
        let prefix = header.utf8.count + 1 + 10 > 65535 ? 12 : 10
        let total = ((prefix + header.utf8.count + 1 + 63) / 64) * 64
        header += String(repeating: " ", count: total - prefix - header.utf8.count - 1) + "\n"
        var bytes = magic + [prefix == 10 ? 1 : 2, 0]
        let length = header.utf8.count
        bytes += prefix == 10 ? [UInt8(length & 0xFF), UInt8(length >> 8)]
            : [UInt8(length & 0xFF), UInt8((length >> 8) & 0xFF), UInt8((length >> 16) & 0xFF), UInt8(length >> 24)]
        bytes += Array(header.utf8)
        func append<T>(_ values: [T]) { values.withUnsafeBytes { bytes += $0 } }
        switch tensor.storage {
        case .float(let v): append(v)
        case .double(let v): append(v)
        case .int64(let v): append(v)
        case .int32(let v): append(v)
        case .int8(let v): append(v)
        case .uint8(let v): append(v)
        case .bool(let v): bytes += v.map { $0 ? 1 : 0 }
        case .float16(let v): append(v)
        }
        return bytes
    }

    /// Writes a tensor atomically: a failed write leaves no partial file behind.
    public static func write(_ tensor: Tensor, to path: String) throws {
        try FileOutput.write(encode(tensor), to: path)
    }
}
