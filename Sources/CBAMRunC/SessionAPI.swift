import CBAMRuntime
import CCBAMRun
import Foundation

/// What `cbamrun_session *` points to: the session, and its inputs and outputs already
/// in C form so that reading them allocates nothing and the pointers live as long as it.
final class SessionBox {
    let session: Session
    let inputs: [ValueInfoStorage]
    let outputs: [ValueInfoStorage]
    /// The names a run binds positional inputs to, and the order of its outputs.
    let inputNames: [String]
    let outputNames: [String]

    init(_ session: Session) {
        self.session = session
        inputs = session.requiredInputs.map(ValueInfoStorage.init)
        outputs = session.model.graph.outputs.map(ValueInfoStorage.init)
        inputNames = session.requiredInputs.map(\.name)
        outputNames = session.outputNames
    }
}

/// A graph input's or output's name, type and shape, held for `cbamrun_value_info`.
final class ValueInfoStorage {
    let name: OwnedCString
    let elementType: Int32
    let rank: Int32
    let shape: OwnedArray<Int64>
    let dimNames: [OwnedCString?]
    let dimNamePointers: OwnedArray<UnsafePointer<CChar>?>

    init(_ info: ValueInfo) {
        name = OwnedCString(info.name)
        elementType = info.elementType?.rawValue ?? 0
        let dims = info.shape ?? []
        rank = info.shape == nil ? -1 : Int32(dims.count)
        shape = OwnedArray(dims.map { dim -> Int64 in
            if case .fixed(let n) = dim { return Int64(n) }
            return -1
        })
        dimNames = dims.map { dim in
            if case .symbolic(let symbol) = dim { return OwnedCString(symbol) }
            return nil
        }
        dimNamePointers = OwnedArray(dimNames.map { $0.map { UnsafePointer($0.pointer) } })
    }

    var c: cbamrun_value_info {
        cbamrun_value_info(name: UnsafePointer(name.pointer), element_type: elementType, rank: rank,
                           shape: UnsafePointer(shape.pointer), dim_names: UnsafePointer(dimNamePointers.pointer))
    }
}

/// Options as the CLI's flags give them: 0 threads = all cores, 0 limits = the defaults.
func sessionOptions(_ options: UnsafePointer<cbamrun_options>?) throws -> SessionOptions {
    let given = options?.pointee ?? cbamrun_options(threads: 0, max_memory: 0, max_macs: 0)
    guard (0...256).contains(given.threads) else {
        throw APIError("threads must be between 1 and 256, or 0 for all cores (got \(given.threads))")
    }
    guard given.max_memory >= 0 else { throw APIError("max_memory must be a number of bytes, or 0 for the default (got \(given.max_memory))") }
    guard given.max_macs >= 0 else { throw APIError("max_macs must be a count, or 0 for unlimited (got \(given.max_macs))") }
    var limits = ResourceLimits()
    if given.max_memory > 0 { limits.maxMemory = Int(given.max_memory) }
    if given.max_macs > 0 { limits.maxMACs = Int(given.max_macs) }
    let threads = given.threads == 0 ? ProcessInfo.processInfo.activeProcessorCount : Int(given.threads)
    return SessionOptions(threads: threads, limits: limits)
}

@_cdecl("cbamrun_session_create")
public func cbamrun_session_create(_ path: UnsafePointer<CChar>?, _ options: UnsafePointer<cbamrun_options>?,
                                   _ out: UnsafeMutablePointer<OpaquePointer?>?) -> OpaquePointer? {
    guarded {
        guard let out else { throw APIError("cbamrun_session_create: out is NULL") }
        out.pointee = nil
        guard let path else { throw APIError("cbamrun_session_create: path is NULL") }
        let session = try Session(contentsOf: String(cString: path), options: try sessionOptions(options))
        out.pointee = retain(SessionBox(session))
    }
}

@_cdecl("cbamrun_session_create_from_bytes")
public func cbamrun_session_create_from_bytes(_ data: UnsafeRawPointer?, _ size: Int, _ options: UnsafePointer<cbamrun_options>?,
                                              _ out: UnsafeMutablePointer<OpaquePointer?>?) -> OpaquePointer? {
    guarded {
        guard let out else { throw APIError("cbamrun_session_create_from_bytes: out is NULL") }
        out.pointee = nil
        guard data != nil || size == 0 else { throw APIError("cbamrun_session_create_from_bytes: data is NULL") }
        let options = try sessionOptions(options)
        let bytes = data.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
        let fileName = "<memory>"
        let model = try ModelLoader.load(bytes: bytes, fileName: fileName)
        out.pointee = retain(SessionBox(try Session(model: model, fileName: fileName, options: options)))
    }
}

@_cdecl("cbamrun_session_free")
public func cbamrun_session_free(_ session: OpaquePointer?) {
    release(session, as: SessionBox.self)
}

@_cdecl("cbamrun_session_input_count")
public func cbamrun_session_input_count(_ session: OpaquePointer?) -> Int {
    object(session, as: SessionBox.self)?.inputs.count ?? 0
}

@_cdecl("cbamrun_session_output_count")
public func cbamrun_session_output_count(_ session: OpaquePointer?) -> Int {
    object(session, as: SessionBox.self)?.outputs.count ?? 0
}

@_cdecl("cbamrun_session_input")
public func cbamrun_session_input(_ session: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<cbamrun_value_info>?) -> OpaquePointer? {
    guarded { try valueInfo(session, index, out, inputs: true) }
}

@_cdecl("cbamrun_session_output")
public func cbamrun_session_output(_ session: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<cbamrun_value_info>?) -> OpaquePointer? {
    guarded { try valueInfo(session, index, out, inputs: false) }
}

private func valueInfo(_ handle: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<cbamrun_value_info>?, inputs: Bool) throws {
    let function = inputs ? "cbamrun_session_input" : "cbamrun_session_output"
    guard let box = object(handle, as: SessionBox.self) else { throw APIError("\(function): session is NULL") }
    guard let out else { throw APIError("\(function): out is NULL") }
    let list = inputs ? box.inputs : box.outputs
    guard index >= 0, index < list.count else {
        throw APIError("\(function): index \(index) is out of range (the model has \(list.count) \(inputs ? "input" : "output")(s))")
    }
    out.pointee = list[index].c
}

@_cdecl("cbamrun_session_run")
public func cbamrun_session_run(_ handle: OpaquePointer?, _ inputs: UnsafePointer<cbamrun_tensor>?, _ inputCount: Int,
                                _ flags: UInt32, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> OpaquePointer? {
    guarded {
        guard let out else { throw APIError("cbamrun_session_run: out is NULL") }
        out.pointee = nil
        guard let box = object(handle, as: SessionBox.self) else { throw APIError("cbamrun_session_run: session is NULL") }
        guard inputCount >= 0, inputs != nil || inputCount == 0 else { throw APIError("cbamrun_session_run: inputs is NULL") }
        guard flags & ~CBAMRUN_RUN_ATTENTION == 0 else { throw APIError("cbamrun_session_run: unknown flags 0x\(String(flags, radix: 16))") }
        let session = box.session
        let names = box.inputNames
        var feeds: [String: BorrowedTensor] = [:]
        var normalised: [UnsafeMutableRawBufferPointer] = []  // bool inputs as 0 / 1 bytes, freed after the run
        defer { normalised.forEach { $0.deallocate() } }
        for position in 0..<inputCount {
            let given = inputs![position]
            let name: String
            if let pointer = given.name {
                name = String(cString: pointer)
            } else {
                guard position < names.count else {
                    throw APIError("input \(position) has no name and the model takes \(names.count) input(s) (\(names.joined(separator: ", ")))")
                }
                name = names[position]
            }
            guard feeds[name] == nil else { throw APIError("input \"\(name)\" is given twice") }
            feeds[name] = try borrowedTensor(from: given, name: name, file: session.fileName, keeping: &normalised)
        }
        let result: ResultBox
        if flags & CBAMRUN_RUN_ATTENTION != 0 {
            let (outputs, maps) = try session.runCapturingAttention(borrowing: feeds)
            result = try ResultBox(outputs: outputs, names: box.outputNames, maps: maps)
        } else {
            result = try ResultBox(outputs: try session.run(borrowing: feeds), names: box.outputNames, maps: [])
        }
        out.pointee = retain(result)
    }
}
