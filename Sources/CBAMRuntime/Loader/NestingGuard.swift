/// Bounds how deeply graphs nest in an ONNX file *before* protobuf-c decodes it.
///
/// protobuf-c decodes nested messages recursively, so a hostile file that nests
/// graphs inside node attributes (GraphProto → NodeProto → AttributeProto.g →
/// GraphProto → …) tens of thousands of levels deep overflows the C stack — a crash,
/// not an error. That chain is the only cycle in the ONNX schema, so this walk
/// follows just those fields through the wire format (without recursion, skipping
/// everything else by its length) and refuses the file past ``maxGraphDepth``
/// levels. Malformed wire data is left for protobuf-c to reject.
enum NestingGuard {
    static let maxGraphDepth = ProtoConverter.maxGraphDepth

    private enum Message { case model, graph, node, attribute }

    /// Field numbers through which each message reaches the next in the cycle.
    private static func child(of message: Message, field: UInt64) -> Message? {
        switch (message, field) {
        case (.model, 7): return .graph                 // ModelProto.graph
        case (.graph, 1): return .node                  // GraphProto.node
        case (.node, 5): return .attribute              // NodeProto.attribute
        case (.attribute, 6), (.attribute, 11): return .graph  // AttributeProto.g, .graphs
        default: return nil
        }
    }

    static func check(_ buffer: UnsafeRawBufferPointer) throws {
        do {
            // Each entry: a message's byte range, its type, and how many graphs enclose it.
            var pending: [(start: Int, end: Int, message: Message, graphs: Int)] = [(0, buffer.count, .model, 0)]
            while let (start, end, message, graphs) = pending.popLast() {
                var position = start
                func varint() -> UInt64? {
                    var value: UInt64 = 0, shift: UInt64 = 0
                    while position < end, shift < 64 {
                        let byte = buffer[position]
                        position += 1
                        value |= UInt64(byte & 0x7F) << shift
                        if byte & 0x80 == 0 { return value }
                        shift += 7
                    }
                    return nil
                }
                scan: while position < end {
                    guard let key = varint() else { break }
                    switch key & 7 {
                    case 0: guard varint() != nil else { break scan }
                    case 1: position += 8
                    case 5: position += 4
                    case 2:
                        guard let length = varint(), length <= UInt64(end - position) else { break scan }
                        let fieldEnd = position + Int(length)
                        if let next = child(of: message, field: key >> 3) {
                            let depth = graphs + (next == .graph ? 1 : 0)
                            guard depth <= maxGraphDepth else {
                                throw CBAMError(.malformedModel, "graphs nest deeper than \(maxGraphDepth) levels (through node attributes)", field: "graph")
                            }
                            pending.append((position, fieldEnd, next, depth))
                        }
                        position = fieldEnd
                    default:
                        break scan  // groups (3, 4) and invalid wire types: protobuf-c decides
                    }
                }
            }
        }
    }
}
