import Foundation
import Testing
@testable import CBAMRuntime

/// The loader decodes a skeleton without the initializers' raw_data and reads the weights
/// from the file itself (``RawDataSplitter``). These tests hold it to what protobuf-c makes
/// of the whole file.
struct RawDataSplitTests {
    /// Both ways of decoding `bytes`: split (from memory) and whole.
    func bothWays(_ bytes: [UInt8]) -> (split: Result<Model, Error>, whole: Result<Model, Error>) {
        (Result { try ModelLoader.load(bytes: bytes, fileName: "m.onnx", externalDataDirectory: nil, splitRawData: true) },
         Result { try ModelLoader.load(bytes: bytes, fileName: "m.onnx", externalDataDirectory: nil, splitRawData: false) })
    }

    func expectSame(_ a: Model, _ b: Model, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(a.graph.initializers == b.graph.initializers, "\(what): initializers differ", sourceLocation: sourceLocation)
        #expect(a.graph.nodes.map(\.name) == b.graph.nodes.map(\.name), "\(what): nodes differ", sourceLocation: sourceLocation)
        #expect(a.graph.inputs.map(\.name) == b.graph.inputs.map(\.name), sourceLocation: sourceLocation)
        #expect(a.opsetImports == b.opsetImports, sourceLocation: sourceLocation)
    }

    func floats(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    /// Every model file of the zoo: read from its file (split, piece by piece), it is the
    /// model protobuf-c decodes from the whole file.
    @Test func theZooLoadsAsTheWholeFileDecodes() throws {
        var checked = 0
        for entry in ZooEntry.all {
            let path = Repo.path("Models/" + entry.file)
            let bytes = try ModelLoader.readFile(path)
            #expect(try RawDataSplitter.split(bytes.withUnsafeBytes { ModelBytes(memory: $0, path: path) }) != nil, "\(entry.name): the splitter gave up")
            let fromFile = try ModelLoader.load(contentsOf: path)
            let whole = try ModelLoader.load(bytes: bytes, fileName: path, externalDataDirectory: nil, splitRawData: false)
            expectSame(fromFile, whole, entry.name)
            checked += 1
        }
        #expect(checked > 100)
    }

    /// A file several times the reader's window, with fields across the window's edges: read
    /// piece by piece it splits exactly as from memory, and loads as the whole file decodes.
    @Test func aLargeFileSplitsAsFromMemory() throws {
        var initializers: [[UInt8]] = []
        var nodes: [[UInt8]] = []
        for index in 0..<40 {
            // Sizes that do not divide the window, so headers land on every offset.
            let count = 3_000 + index * 1_237
            initializers.append(ONNXBytes.tensor("w\(index)", dims: [Int64(count)], raw: floats((0..<count).map { Float($0 % 97) + Float(index) })))
            nodes.append(ONNXBytes.node("Add", name: "add\(index)", inputs: [index == 0 ? "x" : "y\(index - 1)", "w\(index)"], outputs: ["y\(index)"]))
        }
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(nodes: nodes, initializers: initializers,
                                                           inputs: [ONNXBytes.valueInfo("x", dims: [.value(1)])], outputs: [ONNXBytes.valueInfo("y39")]))
        #expect(bytes.count > 4 << 20)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("split-\(UUID().uuidString).onnx").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }

        let fromMemory = try #require(try RawDataSplitter.split(bytes.withUnsafeBytes { ModelBytes(memory: $0, path: path) }))
        let (handle, size) = try ModelLoader.open(path)
        defer { try? handle.close() }
        let fromFile = try #require(try RawDataSplitter.split(ModelBytes(descriptor: handle.fileDescriptor, count: size, path: path)))
        #expect(fromFile.skeleton == fromMemory.skeleton)
        #expect(fromFile.rawData == fromMemory.rawData)
        #expect(fromMemory.skeleton.count < bytes.count / 100, "the skeleton holds no weights")
        expectSame(try ModelLoader.load(contentsOf: path), try bothWays(bytes).whole.get(), "large file")
    }

    /// Initializers keep their order and each its own bytes, whether they hold raw_data,
    /// typed data or raw_data twice (the last one counts, as protobuf's rule for a scalar field).
    @Test func initializersKeepTheirOrderAndData() throws {
        var twice = ProtobufWriter()
        twice.repeatedInt64(1, [2])
        twice.int(2, 1)
        twice.bytes(9, floats([1, 2]))
        twice.string(8, "twice")
        twice.bytes(9, floats([3, 4]))
        let graph = ONNXBytes.graph(
            nodes: [ONNXBytes.node("Add", name: "add", inputs: ["x", "a"], outputs: ["y"])],
            initializers: [ONNXBytes.tensor("a", dims: [2], raw: floats([5, 6])),
                           ONNXBytes.tensor("b", dims: [2], floats: [7, 8]),
                           twice.bytes,
                           ONNXBytes.tensor("c", dims: [1, 2], raw: floats([9, 10]))],
            inputs: [ONNXBytes.valueInfo("x", dims: [.value(2)])], outputs: [ONNXBytes.valueInfo("y")])
        let (split, whole) = bothWays(ONNXBytes.model(graph: graph))
        let model = try split.get()
        expectSame(model, try whole.get(), "four initializers")
        #expect(try model.graph.initializers["a"]?.floats() == [5, 6])
        #expect(try model.graph.initializers["b"]?.floats() == [7, 8])
        #expect(try model.graph.initializers["twice"]?.floats() == [3, 4])
        #expect(model.graph.initializers["c"]?.shape == [1, 2])
    }

    /// A second graph field (protobuf merges the two) and wire data the walk does not
    /// follow are decoded whole, so protobuf-c judges them as before.
    @Test func unusualFilesAreDecodedWhole() throws {
        let graph = ONNXBytes.graph(
            nodes: [ONNXBytes.node("Relu", name: "relu", inputs: ["x"], outputs: ["y"])],
            initializers: [ONNXBytes.tensor("w", dims: [1], raw: floats([1]))],
            inputs: [ONNXBytes.valueInfo("x", dims: [.value(1)])], outputs: [ONNXBytes.valueInfo("y")])
        var twoGraphs = ONNXBytes.model(graph: graph)
        var extra = ProtobufWriter()
        extra.bytes(7, ONNXBytes.graph(nodes: [], name: "merged", inputs: [], outputs: []))
        twoGraphs += extra.bytes
        #expect(try RawDataSplitter.split(twoGraphs.withUnsafeBytes { ModelBytes(memory: $0, path: "m") }) == nil)
        let (split, whole) = bothWays(twoGraphs)
        expectSame(try split.get(), try whole.get(), "two graph fields")

        // A length running past the end: no skeleton; protobuf-c refuses the file.
        let truncated = Array(ONNXBytes.model(graph: graph).dropLast(3))
        #expect(try RawDataSplitter.split(truncated.withUnsafeBytes { ModelBytes(memory: $0, path: "m") }) == nil)
        let error = try #require(thrownCBAMError { _ = try ModelLoader.load(bytes: truncated, fileName: "t.onnx") })
        #expect(error.kind == .notONNX)
    }

    /// raw_data of the wrong size is refused with the same message either way.
    @Test func aShortRawDataIsRefusedAlike() throws {
        let graph = ONNXBytes.graph(
            nodes: [ONNXBytes.node("Relu", name: "relu", inputs: ["x"], outputs: ["y"])],
            initializers: [ONNXBytes.tensor("w", dims: [3], raw: floats([1, 2]))],
            inputs: [ONNXBytes.valueInfo("x", dims: [.value(1)])], outputs: [ONNXBytes.valueInfo("y")])
        let (split, whole) = bothWays(ONNXBytes.model(graph: graph))
        let messages = [split, whole].map { result -> String in
            guard case .failure(let error) = result else { return "no error" }
            return "\(error)"
        }
        #expect(messages[0] == messages[1])
        #expect(messages[0].contains("raw_data holds 8 bytes but dims [3] of float32 need 12"), "\(messages[0])")
    }
}
