import Foundation
import Testing
@testable import CBAMRuntime

/// Tensors stored beside the model (the dynamo exporter's `model.onnx.data`).
@Suite("External data")
struct ExternalDataTests {
    let directory: String

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cbam-external-" + UUID().uuidString).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// y = x + w, with w = [1, 2, 3] read from `weights.bin` at byte 8 (after 8 bytes of padding).
    func model(entries: [(String, String)]) throws -> String {
        let padding = [UInt8](repeating: 0xAB, count: 8)
        let w: [Float] = [1, 2, 3]
        let data = padding + w.withUnsafeBytes { Array($0) }
        try Data(data).write(to: URL(fileURLWithPath: directory + "/weights.bin"))
        let graph = ONNXBytes.graph(
            nodes: [ONNXBytes.node("Add", name: "add", inputs: ["x", "w"], outputs: ["y"])],
            initializers: [ONNXBytes.externalTensor("w", dims: [3], entries: entries)],
            inputs: [ONNXBytes.valueInfo("x", dims: [.value(3)])],
            outputs: [ONNXBytes.valueInfo("y", dims: [.value(3)])])
        let path = directory + "/model.onnx"
        try Data(ONNXBytes.model(graph: graph)).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func readsTheTensorAtItsOffset() throws {
        let path = try model(entries: [("location", "weights.bin"), ("offset", "8"), ("length", "12")])
        let session = try Session(contentsOf: path)
        let y = try session.run(["x": try Tensor(shape: [3], floats: [10, 20, 30])])["y"]
        #expect(try y?.floats() == [11, 22, 33])
    }

    @Test(arguments: [
        ([("location", "../weights.bin")], "leaves the model's folder"),
        ([("location", "/etc/passwd")], "leaves the model's folder"),
        ([("location", "missing.bin")], "cannot read the external data file"),
        ([("location", "weights.bin"), ("offset", "16")], "past the end"),
        ([("location", "weights.bin"), ("offset", "-1")], "is not a byte count"),
        ([("location", "weights.bin"), ("length", "4")], "the tensor needs 12 bytes"),
        ([("offset", "0")], "has no location"),
    ] as [([(String, String)], String)])
    func refusesBadEntries(_ entries: [(String, String)], _ message: String) throws {
        let path = try model(entries: entries)
        do {
            _ = try Session(contentsOf: path)
            Issue.record("expected an error containing \"\(message)\"")
        } catch let error as CBAMError {
            #expect(error.description.contains(message), "\(error)")
            #expect(error.description.contains("initializer \"w\""), "\(error)")
        }
    }

    @Test func modelsFromMemoryRefuseExternalData() throws {
        let path = try model(entries: [("location", "weights.bin"), ("offset", "8")])
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(throws: CBAMError.self) { try ModelLoader.load(bytes: bytes, fileName: "memory.onnx") }
    }
}
