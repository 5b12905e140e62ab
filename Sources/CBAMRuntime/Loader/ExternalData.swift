import Foundation

/// Reads tensors that a model stores outside its `.onnx` file (ONNX "external data",
/// which the dynamo exporter writes by default as `model.onnx.data`).
///
/// A tensor names its file (`location`, relative to the model's folder), and
/// optionally an `offset` and `length` in bytes. The location must stay inside the
/// model's folder (no absolute paths, no `..`), and the byte range inside the file;
/// a hostile model cannot make cbam-run read anything else. Each file is opened once and
/// read piece by piece (no mapping: only the tensors hold the weights).
final class ExternalDataFiles {
    let directory: String
    private var files: [String: (handle: FileHandle, bytes: ModelBytes)] = [:]

    init(directory: String) {
        self.directory = directory.isEmpty ? "." : directory
    }

    deinit {
        for file in files.values { try? file.handle.close() }
    }

    /// The file and byte range holding exactly `byteCount` bytes of the tensor described by `entries`.
    func range(_ entries: [String: String], byteCount: Int, field: String) throws -> (ModelBytes, Range<Int>) {
        guard let location = entries["location"], !location.isEmpty else {
            throw CBAMError(.malformedModel, "external data has no location", field: "\(field) external_data")
        }
        let components = location.split(separator: "/", omittingEmptySubsequences: false)
        guard !location.hasPrefix("/"), !location.contains("\\"), !components.contains(".."), !location.contains("\0") else {
            throw CBAMError(.malformedModel, "external data location \"\(location)\" leaves the model's folder", field: "\(field) external_data")
        }
        func number(_ key: String) throws -> Int? {
            guard let text = entries[key] else { return nil }
            guard let value = Int(text), value >= 0 else {
                throw CBAMError(.malformedModel, "external data \(key) \"\(text)\" is not a byte count", field: "\(field) external_data")
            }
            return value
        }
        let offset = try number("offset") ?? 0
        let length = try number("length") ?? byteCount
        guard length == byteCount else {
            throw CBAMError(.malformedModel, "external data length \(length) but the tensor needs \(byteCount) bytes", field: "\(field) external_data")
        }
        let bytes = try file(location, field: field)
        guard offset <= bytes.count, byteCount <= bytes.count - offset else {
            throw CBAMError(.malformedModel, "external data range \(offset)..<\(offset + byteCount) is past the end of \"\(location)\" (\(bytes.count) bytes)", field: "\(field) external_data")
        }
        return (bytes, offset..<(offset + byteCount))
    }

    private func file(_ location: String, field: String) throws -> ModelBytes {
        if let cached = files[location] { return cached.bytes }
        let path = (directory as NSString).appendingPathComponent(location)
        let opened: (FileHandle, size: Int)
        do { opened = try ModelLoader.open(path) } catch {
            throw CBAMError(.io, "cannot read the external data file \"\(location)\" beside the model", file: path, field: "\(field) external_data")
        }
        let bytes = ModelBytes(descriptor: opened.0.fileDescriptor, count: opened.size, path: path)
        files[location] = (opened.0, bytes)
        return bytes
    }
}
