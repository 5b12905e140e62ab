import Foundation

/// Where an ONNX file's bytes are read from while it is split: a file read piece by piece
/// (`pread`, through a small window), or bytes already in memory.
///
/// Reading a file this way keeps its weights out of the process's memory until each is
/// copied into its tensor: neither a whole-file buffer nor a mapping (whose pages would
/// count as resident, and whose truncation by another process would be a SIGBUS) holds them.
final class ModelBytes {
    let count: Int
    private let descriptor: Int32?
    private let memory: UnsafeRawBufferPointer?
    private let path: String
    /// The window of the file last read, and where it starts.
    private var window: [UInt8] = []
    private var windowStart = 0
    private static let windowSize = 1 << 18

    /// An open regular file of `count` bytes; the descriptor stays owned by the caller.
    init(descriptor: Int32, count: Int, path: String) {
        self.descriptor = descriptor
        self.memory = nil
        self.count = count
        self.path = path
    }

    /// Bytes in memory, valid while this object is used.
    init(memory: UnsafeRawBufferPointer, path: String) {
        self.descriptor = nil
        self.memory = memory
        self.count = memory.count
        self.path = path
    }

    /// The byte at `offset` (< count).
    func byte(at offset: Int) throws -> UInt8 {
        if let memory { return memory[offset] }
        if offset < windowStart || offset >= windowStart + window.count {
            let next = try read(offset..<Swift.min(count, offset + Self.windowSize))
            (window, windowStart) = (next, offset)
        }
        return window[offset - windowStart]
    }

    /// The bytes of `range` (inside 0..<count) into `destination`, which holds at least range.count bytes.
    func copy(_ range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
        if let memory {
            if !range.isEmpty { destination.copyMemory(from: memory.baseAddress! + range.lowerBound, byteCount: range.count) }
            return
        }
        var done = 0
        while done < range.count {
            let got = pread(descriptor!, destination + done, range.count - done, off_t(range.lowerBound + done))
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { throw CBAMError(.io, "the file changed size or could not be read to its end", file: path) }
            done += got
        }
    }

    func read(_ range: Range<Int>) throws -> [UInt8] {
        if memory == nil, range.lowerBound >= windowStart, range.upperBound <= windowStart + window.count {
            return Array(window[(range.lowerBound - windowStart)..<(range.upperBound - windowStart)])
        }
        return try [UInt8](unsafeUninitializedCapacity: range.count) { buffer, initialized in
            if let base = buffer.baseAddress { try copy(range, into: base) }
            initialized = range.count
        }
    }
}

/// Takes the weights out of an ONNX file before protobuf-c decodes it.
///
/// protobuf-c copies every `bytes` field it decodes, so decoding a file whose weights sit
/// in its initializers' `raw_data` held them twice (the file's bytes and the decoded copy),
/// and converting them to tensors held them twice again. This walk through the wire format
/// copies everything *except* the top-level initializers' `raw_data` into a small
/// "skeleton" that protobuf-c decodes, and notes where each initializer's bytes lie in the
/// file; ``ProtoConverter`` then reads them straight into the tensors. So loading holds the
/// weights once. The walk follows ModelProto.graph (7) → GraphProto.initializer (5) →
/// TensorProto.raw_data (9); everything else is copied as it is. Wire data it does not
/// expect (groups, bad lengths, a second graph field, which protobuf would merge) makes it
/// give up, and the file is decoded whole, as before, so protobuf-c judges it.
enum RawDataSplitter {
    struct Split {
        /// The file without the initializers' raw_data, for protobuf-c.
        var skeleton: [UInt8]
        /// Per initializer, in file order: where its raw_data lies in the file (nil: none).
        var rawData: [Range<Int>?]
    }

    private struct GiveUp: Error {}

    private enum Replacement {
        case drop
        case message([UInt8])
    }

    /// nil when the file should be decoded whole instead.
    static func split(_ bytes: ModelBytes) throws -> Split? {
        var rawData: [Range<Int>?] = []
        do {
            var graphs = 0
            let skeleton = try rewrite(bytes, 0..<bytes.count) { field, payload in
                guard field == 7 else { return nil }
                graphs += 1
                guard graphs == 1 else { throw GiveUp() }
                return .message(try rewrite(bytes, payload) { field, payload in
                    guard field == 5 else { return nil }
                    var raw: Range<Int>? = nil
                    let tensor = try rewrite(bytes, payload) { field, payload in
                        guard field == 9 else { return nil }
                        raw = payload  // a repeated scalar field: the last one counts
                        return .drop
                    }
                    rawData.append(raw)
                    return .message(tensor)
                })
            }
            return Split(skeleton: skeleton, rawData: rawData)
        } catch is GiveUp {
            return nil
        }
    }

    /// The message in `range` with each length-delimited field for which `replace` returns
    /// a replacement dropped or re-encoded with it; other fields copied as they are.
    private static func rewrite(_ bytes: ModelBytes, _ range: Range<Int>,
                                replace: (_ field: UInt64, _ payload: Range<Int>) throws -> Replacement?) throws -> [UInt8] {
        var output: [UInt8] = []
        var position = range.lowerBound
        func varint() throws -> UInt64 {
            var value: UInt64 = 0, shift: UInt64 = 0
            while position < range.upperBound, shift < 64 {
                let byte = try bytes.byte(at: position)
                position += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            throw GiveUp()
        }
        while position < range.upperBound {
            let fieldStart = position
            let key = try varint()
            switch key & 7 {
            case 0: _ = try varint()
            case 1, 5:
                let size = key & 7 == 1 ? 8 : 4
                guard size <= range.upperBound - position else { throw GiveUp() }
                position += size
            case 2:
                let length = try varint()
                guard length <= UInt64(range.upperBound - position) else { throw GiveUp() }
                let payload = position..<(position + Int(length))
                position = payload.upperBound
                switch try replace(key >> 3, payload) {
                case nil: break
                case .drop?: continue
                case .message(let replacement)?:
                    appendVarint(key, to: &output)
                    appendVarint(UInt64(replacement.count), to: &output)
                    output += replacement
                    continue
                }
            default:
                throw GiveUp()
            }
            output += try bytes.read(fieldStart..<position)
        }
        return output
    }

    private static func appendVarint(_ value: UInt64, to output: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            output.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        output.append(UInt8(value))
    }
}
