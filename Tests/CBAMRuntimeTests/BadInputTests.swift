import Foundation
import Testing
@testable import CBAMRuntime

// Every rejected input is a thrown CBAMError (never a crash), of the right kind,
// whose description names the file, node and field a user needs to find the fault.

@Suite struct BadInputTests {
    /// A fresh directory per test instance (Swift Testing makes one instance per test).
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cbam-bad-input-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// Writes `bytes` to `name` in the test's directory and returns the path.
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// Writes a model and tries to load and prepare it; returns the error.
    func sessionError(_ name: String, _ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> CBAMError {
        let path = try write(name, bytes)
        return try #require(thrownCBAMError(sourceLocation: sourceLocation) { _ = try Session(contentsOf: path) }, sourceLocation: sourceLocation)
    }

    /// A valid model: y = Relu(x), x float [1, 3, 4, 4].
    static func reluModel() -> [UInt8] {
        ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Relu", name: "relu_1", inputs: ["x"], outputs: ["y"])],
            inputs: [ONNXBytes.valueInfo("x", dims: [.value(1), .value(3), .value(4), .value(4)])],
            outputs: [ONNXBytes.valueInfo("y")]))
    }

    /// A model y = Add(x, w) whose initializer `w` is `tensor`.
    static func modelWithInitializer(_ tensor: [UInt8]) -> [UInt8] {
        ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Add", name: "add_1", inputs: ["x", "w"], outputs: ["y"])],
            initializers: [tensor],
            inputs: [ONNXBytes.valueInfo("x")],
            outputs: [ONNXBytes.valueInfo("y")]))
    }

    // MARK: - The writer itself

    @Test func writerBuildsALoadableModel() throws {
        let path = try write("relu.onnx", Self.reluModel())
        let model = try ModelLoader.load(contentsOf: path)
        #expect(model.onnxOpset == 13)
        #expect(model.graph.nodes.map(\.opType) == ["Relu"])
        #expect(model.graph.inputs.first?.shape == [.fixed(1), .fixed(3), .fixed(4), .fixed(4)])
        let session = try Session(model: model, fileName: path)
        let x = try Tensor(shape: [1, 3, 4, 4], floats: (0..<48).map { Float($0) - 24 })
        let y = try #require(session.run(["x": x])["y"])
        #expect(y.storage == .float((0..<48).map { max(Float($0) - 24, 0) }))
    }

    @Test func writerEncodesAttributesAndTensors() throws {
        // Conv with a float_data weight, int64_data shape-like initializer and typed attributes.
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Conv", name: "conv", inputs: ["x", "w"], outputs: ["y"],
                                   attributes: [("pads", .ints([0, 0, 0, 0])), ("group", .int(1)), ("alpha", .float(0.25))])],
            initializers: [ONNXBytes.tensor("w", dims: [1, 1, 1, 1], floats: [3]),
                           ONNXBytes.tensor("k", dims: [2], dataType: 7, int64s: [-1, 1 << 40])],
            inputs: [ONNXBytes.valueInfo("x", dims: [.param("batch"), .value(1), .value(1), .value(2)])],
            outputs: [ONNXBytes.valueInfo("y")]))
        let model = try ModelLoader.load(bytes: bytes, fileName: "conv.onnx")
        let node = try #require(model.graph.nodes.first)
        guard case .ints(let pads)? = node.attributes["pads"], case .int(let group)? = node.attributes["group"],
              case .float(let alpha)? = node.attributes["alpha"] else {
            Issue.record("attributes did not decode: \(node.attributes)")
            return
        }
        #expect(pads == [0, 0, 0, 0] && group == 1 && alpha == 0.25)
        #expect(model.graph.initializers["k"]?.storage == .int64([-1, 1 << 40]))
        #expect(model.graph.inputs[0].shape == [.symbolic("batch"), .fixed(1), .fixed(1), .fixed(2)])
        let y = try Session(model: model).run(["x": Tensor(shape: [1, 1, 1, 2], floats: [1, 2])])["y"]
        #expect(y?.storage == .float([3, 6]))
    }

    // MARK: - Files that are not ONNX models

    @Test func emptyFile() throws {
        let error = try sessionError("empty.onnx", [])
        #expect(error.kind == .notONNX)
        #expect(error.description.contains("empty.onnx"))
        #expect(error.description.contains("empty"))
    }

    @Test func textFile() throws {
        let error = try sessionError("notes.onnx", Array("hello, this is a text file and not an ONNX model\n".utf8))
        #expect(error.kind == .notONNX)
        #expect(error.description.contains("notes.onnx"))
        #expect(error.description.contains("not an ONNX model"))
    }

    @Test func randomBytes() throws {
        // A fixed pseudo-random sequence (xorshift), so the test is reproducible.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let bytes = (0..<4096).map { _ -> UInt8 in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
        let error = try sessionError("random.onnx", bytes)
        #expect(error.kind == .notONNX)
        #expect(error.description.contains("random.onnx"))
    }

    @Test(arguments: [0.25, 0.5, 0.9])
    func truncatedModel(fraction: Double) throws {
        let full = Self.reluModel()
        let error = try sessionError("cut.onnx", Array(full.prefix(Int(Double(full.count) * fraction))))
        #expect(error.kind == .notONNX)
        #expect(error.description.contains("cut.onnx"))
    }

    @Test func missingFile() throws {
        let path = directory.appendingPathComponent("absent.onnx").path
        let error = try #require(thrownCBAMError { _ = try Session(contentsOf: path) })
        #expect(error.kind == .io)
        #expect(error.description.contains("absent.onnx"))
    }

    // MARK: - Models that break ONNX rules

    @Test func modelWithoutGraph() throws {
        let error = try sessionError("nograph.onnx", ONNXBytes.model(graph: nil))
        #expect(error.kind == .malformedModel)
        #expect(error.field == "graph")
        #expect(error.description.contains("nograph.onnx"))
    }

    @Test func twoUnsupportedOpsAreReportedTogether() throws {
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("FooOp", name: "foo_1", inputs: ["x"], outputs: ["a"]),
                    ONNXBytes.node("Relu", name: "relu_1", inputs: ["a"], outputs: ["b"]),
                    ONNXBytes.node("BarOp", name: "bar_1", inputs: ["b"], outputs: ["y"])],
            inputs: [ONNXBytes.valueInfo("x")], outputs: [ONNXBytes.valueInfo("y")]))
        let error = try sessionError("exotic.onnx", bytes)
        #expect(error.kind == .unsupportedOp)
        for part in ["exotic.onnx", "\"foo_1\" (FooOp)", "\"bar_1\" (BarOp)", "2 node(s)"] {
            #expect(error.description.contains(part), "missing \(part) in: \(error)")
        }
        #expect(!error.description.contains("relu_1"))
    }

    @Test func danglingNodeInput() throws {
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Add", name: "add_1", inputs: ["x", "ghost"], outputs: ["y"])],
            inputs: [ONNXBytes.valueInfo("x")], outputs: [ONNXBytes.valueInfo("y")]))
        let error = try sessionError("dangling.onnx", bytes)
        #expect(error.kind == .malformedModel)
        #expect(error.description.contains("dangling.onnx"))
        #expect(error.description.contains("node \"add_1\" (Add)"))
        #expect(error.description.contains("\"ghost\""))
    }

    @Test func rawDataSizeMismatch() throws {
        // dims [2, 2] of float need 16 bytes; 12 are given.
        let error = try sessionError("raw.onnx", Self.modelWithInitializer(
            ONNXBytes.tensor("conv.weight", dims: [2, 2], raw: [UInt8](repeating: 0, count: 12))))
        #expect(error.kind == .malformedModel)
        #expect(error.field == "initializer \"conv.weight\" raw_data")
        #expect(error.description.contains("raw.onnx"))
        #expect(error.description.contains("12 bytes"))
        #expect(error.description.contains("16"))
    }

    @Test func typedDataCountMismatch() throws {
        let error = try sessionError("typed.onnx", Self.modelWithInitializer(ONNXBytes.tensor("w", dims: [3], floats: [1, 2])))
        #expect(error.kind == .malformedModel)
        #expect(error.field == "initializer \"w\" float_data")
    }

    @Test func negativeDims() throws {
        let error = try sessionError("negative.onnx", Self.modelWithInitializer(ONNXBytes.tensor("w", dims: [-1, 2], floats: [])))
        #expect(error.kind == .invalidShape)
        #expect(error.field == "initializer \"w\" dims")
        #expect(error.description.contains("negative"))
        #expect(error.description.contains("negative.onnx"))
    }

    @Test func dimsProductOverflow() throws {
        // 2^40 · 2^40 = 2^80 overflows Int; 2^40 · 2 is past the 2^30-element limit.
        for dims: [Int64] in [[1 << 40, 1 << 40], [1 << 40, 2]] {
            let error = try sessionError("huge.onnx", Self.modelWithInitializer(ONNXBytes.tensor("w", dims: dims, floats: [])))
            #expect(error.kind == .invalidShape)
            #expect(error.field == "initializer \"w\" dims")
            #expect(error.description.contains("2^30"))
        }
    }

    @Test func hugeDimsBeforeAZeroDoNotCrash() throws {
        // [2^62, 2^62, 0] holds no elements, but the running product overflows before the 0:
        // accepted as empty or refused as invalidShape, never a trap.
        let path = try write("zero.onnx", Self.modelWithInitializer(ONNXBytes.tensor("w", dims: [1 << 62, 1 << 62, 0], floats: [])))
        do { _ = try Session(contentsOf: path) } catch let error as CBAMError { #expect(error.kind == .invalidShape) }
    }

    /// Found by the fuzz-run target (Fuzz/Regressions/fuzz-run/nameless-graph-input): a nameless
    /// graph input reached the planner, which found no operand for it and trapped.
    @Test func namelessGraphInputOrOutput() throws {
        let input = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Relu", name: "relu_1", inputs: ["x"], outputs: ["y"])],
            inputs: [ONNXBytes.valueInfo("x"), ONNXBytes.valueInfo("", dims: [.value(2)])], outputs: [ONNXBytes.valueInfo("y")]))
        let error = try sessionError("nameless.onnx", input)
        #expect(error.kind == .malformedModel)
        #expect(error.description.hasSuffix("nameless.onnx: graph input: graph input #1 has no name"), "\(error)")
        let output = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Relu", name: "relu_1", inputs: ["x"], outputs: ["y"])],
            inputs: [ONNXBytes.valueInfo("x")], outputs: [ONNXBytes.valueInfo("")]))
        #expect(try sessionError("nameless.onnx", output).message == "graph output #0 has no name")
    }

    /// Two graph inputs with one name would make run(positional:) build a dictionary with a repeated key.
    @Test func repeatedGraphInputName() throws {
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Relu", name: "relu_1", inputs: ["x"], outputs: ["y"])],
            inputs: [ONNXBytes.valueInfo("x"), ONNXBytes.valueInfo("x")], outputs: [ONNXBytes.valueInfo("y")]))
        let error = try sessionError("twice.onnx", bytes)
        #expect(error.kind == .malformedModel && error.message == "two graph inputs are named \"x\"")
    }

    @Test func graphCycle() throws {
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Relu", name: "first", inputs: ["b"], outputs: ["a"]),
                    ONNXBytes.node("Relu", name: "second", inputs: ["a"], outputs: ["b"]),
                    ONNXBytes.node("Add", name: "out", inputs: ["a", "x"], outputs: ["y"])],
            inputs: [ONNXBytes.valueInfo("x")], outputs: [ONNXBytes.valueInfo("y")]))
        let error = try sessionError("cycle.onnx", bytes)
        #expect(error.kind == .malformedModel)
        #expect(error.description.contains("cycle"))
        #expect(error.description.contains("\"first\""))
        #expect(error.description.contains("\"second\""))
        #expect(error.description.contains("cycle.onnx"))
    }

    @Test func duplicateOutputName() throws {
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Relu", name: "relu_a", inputs: ["x"], outputs: ["y"]),
                    ONNXBytes.node("Neg", name: "neg_b", inputs: ["x"], outputs: ["y"])],
            inputs: [ONNXBytes.valueInfo("x")], outputs: [ONNXBytes.valueInfo("y")]))
        let error = try sessionError("twice.onnx", bytes)
        #expect(error.kind == .malformedModel)
        #expect(error.description.contains("\"y\""))
        #expect(error.description.contains("node \"neg_b\" (Neg)"))
    }

    @Test func nodeOutputShadowingAGraphInput() throws {
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Relu", name: "relu_x", inputs: ["x"], outputs: ["x"])],
            inputs: [ONNXBytes.valueInfo("x")], outputs: [ONNXBytes.valueInfo("x")]))
        let error = try sessionError("shadow.onnx", bytes)
        #expect(error.kind == .malformedModel)
        #expect(error.description.contains("node \"relu_x\" (Relu)"))
    }

    @Test func bfloat16Initializer() throws {
        // data_type 16 = BFLOAT16 (float16, 10, is held since it was added); 2 values in 4 raw bytes.
        let error = try sessionError("bf16.onnx", Self.modelWithInitializer(
            ONNXBytes.tensor("h", dims: [2], dataType: 16, raw: [0x80, 0x3F, 0, 0x40])))
        #expect(error.kind == .unsupportedType)
        #expect(error.field == "initializer \"h\" data_type")
        #expect(error.description.contains("BFLOAT16"))
        #expect(error.description.contains("bf16.onnx"))
    }

    @Test func unnamedInitializer() throws {
        let error = try sessionError("unnamed.onnx", Self.modelWithInitializer(ONNXBytes.tensor("", dims: [1], floats: [1])))
        #expect(error.kind == .malformedModel)
        #expect(error.field == "initializer")
    }

    @Test func nodeWithoutOpType() throws {
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("", name: "mystery", inputs: ["x"], outputs: ["y"])],
            inputs: [ONNXBytes.valueInfo("x")], outputs: [ONNXBytes.valueInfo("y")]))
        let error = try sessionError("noop.onnx", bytes)
        #expect(error.kind == .malformedModel)
        #expect(error.field == "op_type")
        #expect(error.description.contains("\"mystery\""))
    }

    @Test func badAttributeNamesNodeAndAttribute() throws {
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("MaxPool", name: "pool_1", inputs: ["x"], outputs: ["y"],
                                   attributes: [("kernel_shape", .ints([2, 2])), ("strides", .ints([0, 2]))])],
            inputs: [ONNXBytes.valueInfo("x")], outputs: [ONNXBytes.valueInfo("y")]))
        let error = try sessionError("attr.onnx", bytes)
        #expect(error.kind == .invalidAttribute)
        #expect(error.description.contains("attr.onnx: node \"pool_1\" (MaxPool): attribute \"strides\""))
    }

    // MARK: - Inputs that do not fit the model

    func reluSession() throws -> Session { try Session(contentsOf: try write("relu.onnx", Self.reluModel())) }

    @Test func inputShapeMismatch() throws {
        let session = try reluSession()
        let x = try Tensor(shape: [1, 3, 5, 5], floats: [Float](repeating: 0, count: 75))
        let error = try #require(thrownCBAMError { _ = try session.run(["x": x]) })
        #expect(error.kind == .shapeMismatch)
        for part in ["relu.onnx", "\"x\"", "[1, 3, 4, 4]", "[1, 3, 5, 5]"] {
            #expect(error.description.contains(part), "missing \(part) in: \(error)")
        }
    }

    @Test func inputRankMismatch() throws {
        let error = try #require(thrownCBAMError { _ = try reluSession().run(["x": Tensor(shape: [3, 4, 4], floats: [Float](repeating: 0, count: 48))]) })
        #expect(error.kind == .shapeMismatch)
        #expect(error.description.contains("[3, 4, 4]"))
    }

    @Test func missingInput() throws {
        let error = try #require(thrownCBAMError { _ = try reluSession().run([:]) })
        #expect(error.kind == .missingInput)
        #expect(error.description.contains("\"x\""))
        #expect(error.description.contains("relu.onnx"))
    }

    @Test func unknownInputName() throws {
        let x = try Tensor(shape: [1, 3, 4, 4], floats: [Float](repeating: 0, count: 48))
        let error = try #require(thrownCBAMError { _ = try reluSession().run(["x": x, "typo": x]) })
        #expect(error.kind == .missingInput)
        #expect(error.description.contains("\"typo\""))
    }

    @Test func positionalInputCount() throws {
        let error = try #require(thrownCBAMError { _ = try reluSession().run(positional: []) })
        #expect(error.kind == .missingInput)
        #expect(error.description.contains("relu.onnx"))
    }

    @Test func wrongElementType() throws {
        let x = try Tensor(shape: [1, 3, 4, 4], int64s: [Int64](repeating: 0, count: 48))
        let error = try #require(thrownCBAMError { _ = try reluSession().run(["x": x]) })
        #expect(error.kind == .typeMismatch)
        #expect(error.description.contains("\"x\""))
        #expect(error.description.contains("float32"))
        #expect(error.description.contains("int64"))
    }

    @Test func unsupportedInputElementType() throws {
        // A graph input declared BFLOAT16 (16): the model loads, a run names the type.
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Relu", name: "relu_1", inputs: ["x"], outputs: ["y"])],
            inputs: [ONNXBytes.valueInfo("x", elemType: 16)], outputs: [ONNXBytes.valueInfo("y")]))
        let session = try Session(contentsOf: try write("bf16-input.onnx", bytes))
        let error = try #require(thrownCBAMError { _ = try session.run(["x": Tensor(shape: [1], floats: [1])]) })
        #expect(error.kind == .unsupportedType)
        #expect(error.description.contains("BFLOAT16"))
    }

    // MARK: - Kernel-level errors name the node

    @Test func convWeightRankMismatchNamesTheNode() throws {
        // W is a graph input of rank 3 while X has rank 4 (kernel_shape says 3x3).
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Conv", name: "conv_bad", inputs: ["x", "w"], outputs: ["y"],
                                   attributes: [("kernel_shape", .ints([3, 3]))])],
            inputs: [ONNXBytes.valueInfo("x"), ONNXBytes.valueInfo("w")], outputs: [ONNXBytes.valueInfo("y")]))
        let session = try Session(contentsOf: try write("conv.onnx", bytes))
        let x = try Tensor(shape: [1, 1, 3, 3], floats: [Float](repeating: 1, count: 9))
        let w = try Tensor(shape: [1, 1, 9], floats: [Float](repeating: 1, count: 9))
        let error = try #require(thrownCBAMError { _ = try session.run(["x": x, "w": w]) })
        #expect(error.kind == .shapeMismatch)
        #expect(error.description.contains("conv.onnx: node \"conv_bad\" (Conv)"))
        #expect(error.description.contains("rank 3"))
    }

    @Test func convWeightRankMismatchInInitializer() throws {
        // The same fault with W stored as an initializer: caught while the session is built.
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Conv", name: "conv_bad", inputs: ["x", "w"], outputs: ["y"])],
            initializers: [ONNXBytes.tensor("w", dims: [1, 1, 3], floats: [1, 1, 1])],
            inputs: [ONNXBytes.valueInfo("x", dims: [.value(1), .value(1), .value(3), .value(3)])],
            outputs: [ONNXBytes.valueInfo("y")]))
        let session = try Session(contentsOf: try write("conv-init.onnx", bytes))
        let x = try Tensor(shape: [1, 1, 3, 3], floats: [Float](repeating: 1, count: 9))
        let error = try #require(thrownCBAMError { _ = try session.run(["x": x]) })
        #expect(error.kind == .shapeMismatch)
        #expect(error.description.contains("node \"conv_bad\" (Conv)"))
    }

    @Test func unnamedNodeIsNamedByItsOutput() throws {
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Add", name: "", inputs: ["x", "z"], outputs: ["sum_out"])],
            inputs: [ONNXBytes.valueInfo("x"), ONNXBytes.valueInfo("z")], outputs: [ONNXBytes.valueInfo("sum_out")]))
        let session = try Session(contentsOf: try write("unnamed-node.onnx", bytes))
        let error = try #require(thrownCBAMError {
            _ = try session.run(["x": Tensor(shape: [2], floats: [1, 2]), "z": Tensor(shape: [3], floats: [1, 2, 3])])
        })
        #expect(error.kind == .shapeMismatch)
        #expect(error.description.contains("node \"<sum_out>\" (Add)"))
    }

    // MARK: - NPY

    /// A .npy file: magic, version, header length, `header` padded to 64 bytes with "\n", then `data`.
    static func npy(_ header: String, major: UInt8 = 1, data: [UInt8]) -> [UInt8] {
        let prefix = major == 1 ? 10 : 12
        var text = header
        while (prefix + text.utf8.count + 1) % 64 != 0 { text += " " }
        text += "\n"
        let length = text.utf8.count
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [major, 0]
        bytes += major == 1 ? [UInt8(length & 0xFF), UInt8(length >> 8)] : [UInt8(length & 0xFF), UInt8(length >> 8), 0, 0]
        return bytes + Array(text.utf8) + data
    }

    static let fourFloats: [UInt8] = [Float](arrayLiteral: 1, 2, 3, 4).withUnsafeBytes { Array($0) }

    func npyError(_ name: String, _ bytes: [UInt8], kind: CBAMError.Kind = .badNPY,
                  sourceLocation: SourceLocation = #_sourceLocation) throws -> CBAMError {
        let path = try write(name, bytes)
        let error = try #require(thrownCBAMError(sourceLocation: sourceLocation) { _ = try NPY.read(contentsOf: path) }, sourceLocation: sourceLocation)
        #expect(error.kind == kind, sourceLocation: sourceLocation)
        #expect(error.description.contains(name), sourceLocation: sourceLocation)
        return error
    }

    @Test func npyReadsAValidFile() throws {
        let path = try write("ok.npy", Self.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", data: Self.fourFloats))
        let tensor = try NPY.read(contentsOf: path)
        #expect(tensor.shape == [2, 2])
        #expect(tensor.storage == .float([1, 2, 3, 4]))
        // and the encoder round-trips
        #expect(try NPY.decode(NPY.encode(tensor)) == tensor)
    }

    @Test func npyNotNPY() throws {
        let error = try npyError("text.npy", Array("just,some,csv\n1,2,3\n".utf8))
        #expect(error.description.contains("magic"))
    }

    @Test func npyTruncatedData() throws {
        // shape (4,) of float32 needs 16 bytes; 8 are present.
        let error = try npyError("short.npy", Self.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }",
                                                      data: Array(Self.fourFloats.prefix(8))))
        #expect(error.description.contains("truncated"))
    }

    @Test func npyTruncatedHeader() throws {
        let full = Self.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", data: Self.fourFloats)
        let error = try npyError("header.npy", Array(full.prefix(30)))
        #expect(error.description.contains("truncated"))
    }

    @Test func npyBigEndian() throws {
        let error = try npyError("big.npy", Self.npy("{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", data: Self.fourFloats))
        #expect(error.description.contains(">f4"))
        #expect(error.description.contains("big-endian"))
    }

    @Test func npyObjectDtype() throws {
        let error = try npyError("object.npy", Self.npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
                                                        data: [UInt8](repeating: 0, count: 16)))
        #expect(error.description.contains("object"))
    }

    @Test func npyFortranOrder() throws {
        let error = try npyError("fortran.npy", Self.npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", data: Self.fourFloats))
        #expect(error.description.contains("Fortran"))
    }

    @Test func npyUnsupportedVersion() throws {
        let error = try npyError("v4.npy", Self.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", major: 4, data: Self.fourFloats))
        #expect(error.description.contains("version 4"))
    }

    @Test func npyVersion2IsRead() throws {
        let path = try write("v2.npy", Self.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", major: 2, data: Self.fourFloats))
        #expect(try NPY.read(contentsOf: path).storage == .float([1, 2, 3, 4]))
    }

    @Test func npyUnsupportedDtypeAndBadShape() throws {
        let complex = try npyError("complex.npy", Self.npy("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", data: [UInt8](repeating: 0, count: 16)))
        #expect(complex.description.contains("<c8"))
        let shape = try npyError("shape.npy", Self.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", data: Self.fourFloats))
        #expect(shape.description.contains("-1"))
        _ = try npyError("noshape.npy", Self.npy("{'descr': '<f4', 'fortran_order': False, }", data: Self.fourFloats))
    }

    @Test func npyHugeShapeIsRefusedNotAllocated() throws {
        let error = try npyError("huge.npy", Self.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }", data: Self.fourFloats),
                                 kind: .invalidShape)
        #expect(error.description.contains("2^30"))
    }

    @Test func inputFilesConformRefusesLossyConversion() throws {
        let info = ValueInfo(name: "ids", elementType: .int64)
        let error = try #require(thrownCBAMError { _ = try InputFiles.conform(Tensor(shape: [1], floats: [1.5]), to: info, file: "ids.npy") })
        #expect(error.kind == .typeMismatch)
        #expect(error.description.contains("ids.npy"))
        #expect(error.description.contains("\"ids\""))
    }
}


// MARK: - Hostile values that must not trap

/// Models whose constants or attributes hold extreme integers. Each runs in a child
/// process (an exit test), so a trap fails that one test instead of killing the run.
/// The whole graph is constant, so the node runs while the session is built.
extension BadInputTests {
    @Suite struct HostileValues {
        /// y = op(constants…) with initializers `c0`, `c1`, … and the given attributes.
        static func constantModel(_ opType: String, _ initializers: [[UInt8]], names: [String],
                                  attributes: [(String, ONNXBytes.AttributeValue)] = [], opset: Int64 = 17) -> [UInt8] {
            ONNXBytes.model(graph: ONNXBytes.graph(
                nodes: [ONNXBytes.node(opType, name: "hostile", inputs: names, outputs: ["y"], attributes: attributes)],
                initializers: initializers, inputs: [], outputs: [ONNXBytes.valueInfo("y")]), opset: opset)
        }

        /// Loads and prepares `bytes`; a CBAMError is the expected outcome, anything else is recorded.
        static func prepare(_ bytes: [UInt8]) {
            do {
                _ = try Session(model: ModelLoader.load(bytes: bytes, fileName: "hostile.onnx"), fileName: "hostile.onnx")
            } catch is CBAMError {
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }

        @Test func controlBenignTileExitsCleanly() async {
            // The same harness on a harmless model: proves a failure below is the op, not the harness.
            await #expect(processExitsWith: .success) {
                BadInputTests.HostileValues.prepare(BadInputTests.HostileValues.constantModel("Tile", [ONNXBytes.tensor("c0", dims: [2], floats: [1, 2]),
                                               ONNXBytes.tensor("c1", dims: [1], dataType: 7, int64s: [3])],
                                      names: ["c0", "c1"]))
            }
        }

        @Test func tileWithHugeRepeats() async {
            // 4 · 2^62 overflows Int.
            await #expect(processExitsWith: .success) {
                BadInputTests.HostileValues.prepare(BadInputTests.HostileValues.constantModel("Tile", [ONNXBytes.tensor("c0", dims: [4], floats: [1, 2, 3, 4]),
                                               ONNXBytes.tensor("c1", dims: [1], dataType: 7, int64s: [1 << 62])],
                                      names: ["c0", "c1"]))
            }
        }

        @Test func constantOfShapeTooLargeToAllocateIsRefused() throws {
            // 2^31 float zeros would be 8 GiB: refused by the per-tensor limit before any allocation.
            let bytes = BadInputTests.HostileValues.constantModel("ConstantOfShape",
                [ONNXBytes.tensor("c0", dims: [1], dataType: 7, int64s: [1 << 31])], names: ["c0"])
            do {
                _ = try Session(model: ModelLoader.load(bytes: bytes, fileName: "hostile.onnx"), fileName: "hostile.onnx")
                Issue.record("a 2^31-element ConstantOfShape was accepted")
            } catch let error as CBAMError {
                #expect(error.kind == .invalidShape)
                #expect(error.description.contains("node \"hostile\" (ConstantOfShape)"), "\(error)")
            }
        }

        @Test func splitWithHugeSizes() async {
            // INT64_MAX + 2 overflows while summing the sizes.
            await #expect(processExitsWith: .success) {
                BadInputTests.HostileValues.prepare(BadInputTests.HostileValues.constantModel("Split", [ONNXBytes.tensor("c0", dims: [2], floats: [1, 2]),
                                                ONNXBytes.tensor("c1", dims: [2], dataType: 7, int64s: [Int64.max, 2])],
                                      names: ["c0", "c1"]))
            }
        }

        @Test func splitWithHugeNumOutputs() async throws {
            // num_outputs = 2^40 on a one-output node once made the kernel allocate 2^40 parts
            // (found by the shape-inference fuzz run); it is refused as an attribute now.
            await #expect(processExitsWith: .success) {
                BadInputTests.HostileValues.prepare(BadInputTests.HostileValues.constantModel("Split", [ONNXBytes.tensor("c0", dims: [4], floats: [1, 2, 3, 4])],
                                      names: ["c0"], attributes: [("num_outputs", .int(1 << 40))], opset: 18))
            }
            let bytes = BadInputTests.HostileValues.constantModel("Split", [ONNXBytes.tensor("c0", dims: [4], floats: [1, 2, 3, 4])],
                                                                  names: ["c0"], attributes: [("num_outputs", .int(1 << 40))], opset: 18)
            let error = thrownCBAMError { _ = try Session(model: ModelLoader.load(bytes: bytes, fileName: "hostile.onnx"), fileName: "hostile.onnx") }
            #expect(error?.kind == .invalidAttribute)
            #expect(error?.field == "attribute \"num_outputs\"")
        }

        @Test func sliceWithHugeStep() async {
            // x[0:5:INT64_MAX] is just x[0] in numpy; (5 - 0 + INT64_MAX - 1) overflows.
            await #expect(processExitsWith: .success) {
                BadInputTests.HostileValues.prepare(BadInputTests.HostileValues.constantModel("Slice", [ONNXBytes.tensor("c0", dims: [5], floats: [0, 1, 2, 3, 4]),
                                                ONNXBytes.tensor("c1", dims: [1], dataType: 7, int64s: [0]),
                                                ONNXBytes.tensor("c2", dims: [1], dataType: 7, int64s: [5]),
                                                ONNXBytes.tensor("c3", dims: [1], dataType: 7, int64s: [0]),
                                                ONNXBytes.tensor("c4", dims: [1], dataType: 7, int64s: [Int64.max])],
                                      names: ["c0", "c1", "c2", "c3", "c4"]))
            }
        }

        @Test func sliceWithMinimumStep() async {
            // -INT64_MIN overflows.
            await #expect(processExitsWith: .success) {
                BadInputTests.HostileValues.prepare(BadInputTests.HostileValues.constantModel("Slice", [ONNXBytes.tensor("c0", dims: [5], floats: [0, 1, 2, 3, 4]),
                                                ONNXBytes.tensor("c1", dims: [1], dataType: 7, int64s: [4]),
                                                ONNXBytes.tensor("c2", dims: [1], dataType: 7, int64s: [0]),
                                                ONNXBytes.tensor("c3", dims: [1], dataType: 7, int64s: [0]),
                                                ONNXBytes.tensor("c4", dims: [1], dataType: 7, int64s: [Int64.min])],
                                      names: ["c0", "c1", "c2", "c3", "c4"]))
            }
        }

        @Test func padWithHugePads() async {
            // 1 + INT64_MAX overflows while computing the output size.
            await #expect(processExitsWith: .success) {
                BadInputTests.HostileValues.prepare(BadInputTests.HostileValues.constantModel("Pad", [ONNXBytes.tensor("c0", dims: [1], floats: [1]),
                                              ONNXBytes.tensor("c1", dims: [2], dataType: 7, int64s: [Int64.max, 0])],
                                      names: ["c0", "c1"]))
            }
        }

        @Test func padWrapOnAnEmptyAxis() async {
            // wrap mode takes i % n with n = 0.
            await #expect(processExitsWith: .success) {
                BadInputTests.HostileValues.prepare(BadInputTests.HostileValues.constantModel("Pad", [ONNXBytes.tensor("c0", dims: [0], floats: []),
                                              ONNXBytes.tensor("c1", dims: [2], dataType: 7, int64s: [1, 1])],
                                      names: ["c0", "c1"], attributes: [("mode", .string("wrap"))], opset: 19))
            }
        }

        @Test func clipInt64WithInt64MaxBound() async {
            // Double(INT64_MAX) rounds up to 2^63, and Int64(2^63) traps.
            await #expect(processExitsWith: .success) {
                BadInputTests.HostileValues.prepare(BadInputTests.HostileValues.constantModel("Clip", [ONNXBytes.tensor("c0", dims: [2], dataType: 7, int64s: [1, 2]),
                                               ONNXBytes.tensor("c1", dims: [], dataType: 7, int64s: [0]),
                                               ONNXBytes.tensor("c2", dims: [], dataType: 7, int64s: [Int64.max])],
                                      names: ["c0", "c1", "c2"], opset: 13))
            }
        }

        @Test func convTransposeWithHugeOutputPadding() async {
            await #expect(processExitsWith: .success) {
                BadInputTests.HostileValues.prepare(BadInputTests.HostileValues.constantModel("ConvTranspose", [ONNXBytes.tensor("c0", dims: [1, 1, 2], floats: [1, 2]),
                                                        ONNXBytes.tensor("c1", dims: [1, 1, 1], floats: [1])],
                                      names: ["c0", "c1"], attributes: [("output_padding", .ints([Int64.max]))]))
            }
        }

        @Test func flattenOfAnEmptyTensorWithHugeDims() async {
            // ConstantOfShape [0, 2^62, 2^62] is a legal empty tensor (0 elements);
            // Flatten then multiplies 2^62 · 2^62.
            await #expect(processExitsWith: .success) {
                let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
                    nodes: [ONNXBytes.node("ConstantOfShape", name: "empty", inputs: ["s"], outputs: ["e"]),
                            ONNXBytes.node("Flatten", name: "hostile", inputs: ["e"], outputs: ["y"], attributes: [("axis", .int(1))])],
                    initializers: [ONNXBytes.tensor("s", dims: [3], dataType: 7, int64s: [0, 1 << 62, 1 << 62])],
                    inputs: [], outputs: [ONNXBytes.valueInfo("y")]))
                BadInputTests.HostileValues.prepare(bytes)
            }
        }
    }
}

@Suite("Nesting")
struct NestingTests {
    /// A model whose graphs nest `levels` deep through If-style node attributes
    /// (GraphProto → NodeProto → AttributeProto.g → GraphProto …), built inside out in
    /// linear time: the bytes are assembled reversed, each level's headers prepended.
    static func deeplyNested(levels: Int) -> [UInt8] {
        func varint(_ value: Int) -> [UInt8] {
            var v = UInt64(value), out: [UInt8] = []
            repeat { out.append(UInt8(v & 0x7F) | (v > 0x7F ? 0x80 : 0)); v >>= 7 } while v > 0
            return out
        }
        var reversed: [UInt8] = [0x12, 0x01, 0x67].reversed()  // GraphProto.name = "g"
        func prepend(_ bytes: [UInt8]) { reversed.append(contentsOf: bytes.reversed()) }
        var innerLength = 3
        for _ in 0..<levels {
            // AttributeProto { name: "a", type: GRAPH (20 = 5), g: <graph> }
            prepend(varint(innerLength)); prepend([0x32])
            prepend([0xA0, 0x01, 0x05]); prepend([0x0A, 0x01, 0x61])
            let attributeLength = innerLength + varint(innerLength).count + 1 + 6
            // NodeProto { op_type: "If", attribute: <attribute> }
            prepend(varint(attributeLength)); prepend([0x2A]); prepend([0x22, 0x02, 0x49, 0x66])
            let nodeLength = attributeLength + varint(attributeLength).count + 1 + 4
            // GraphProto { node: <node> }
            prepend(varint(nodeLength)); prepend([0x0A])
            innerLength = nodeLength + varint(nodeLength).count + 1
        }
        prepend(varint(innerLength)); prepend([0x3A])  // ModelProto.graph
        prepend([0x08, 0x08])                          // ModelProto.ir_version = 8
        return Array(reversed.reversed())
    }

    /// 50,000 levels would overflow protobuf-c's recursive decoder (a crash); the file
    /// is refused before it is handed over.
    @Test func deepNestingIsRefusedBeforeDecoding() throws {
        let bytes = Self.deeplyNested(levels: 50_000)
        let error = try #require(thrownCBAMError { _ = try ModelLoader.load(bytes: bytes, fileName: "deep.onnx") })
        #expect(error.kind == .malformedModel)
        #expect(error.description.contains("nest deeper than 32"))
    }

    @Test func shallowNestingStillLoads() throws {
        // 3 levels decode (the If op is then reported as unsupported, not as malformed).
        let model = try ModelLoader.load(bytes: Self.deeplyNested(levels: 3), fileName: "shallow.onnx")
        #expect(model.graph.nodes.first?.opType == "If")
    }
}
