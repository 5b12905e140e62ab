import Foundation
import Testing
@testable import CBAMRuntime

/// The modern families of issue 15 (ConvNeXt, ConvNeXt-V2, PoolFormer v1/v2, EfficientNet with
/// GroupNorm / LayerNorm, ViT, CoAtNet), small random-weight exports written by
/// tools/export_timm.py into Models/timm/: each must give PyTorch's output within
/// 1e-4 × max |output| (the manifest's atol), with the optimised plan and without passes.
@Suite("Modern families: every stored timm export matches PyTorch")
struct ModernFamilyTests {
    static let entries = ZooEntry.entries(inManifest: "Models/timm/manifest.json")

    @Test func manifestIsPresent() {
        #expect(Self.entries.count >= 10, "Models/timm/manifest.json lists \(Self.entries.count) runnable exports; run tools/export_timm.py")
    }

    @Test(arguments: entries)
    func matchesPyTorch(_ entry: ZooEntry) throws {
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
        for optimize in [true, false] {
            let session = try Session(contentsOf: Repo.path("Models/" + entry.file), options: SessionOptions(threads: 2, optimize: optimize))
            let results = try session.run(feeds)
            for output in entry.outputs {
                let expected = try NPY.read(contentsOf: Repo.path("Models/" + output.file))
                let actual = try #require(results[output.name], "no output named \(output.name)")
                let comparison = Comparison(actual: actual, expected: expected, atol: entry.atol, rtol: entry.rtol)
                if optimize { print("timm \(entry.name) \(output.name): max abs error \(comparison.maxAbsoluteError) (bound \(entry.atol))") }
                #expect(comparison.passed, "\(entry.name) output \(output.name) (passes \(optimize ? "on" : "off")): \(comparison)")
            }
        }
    }
}

extension ModernFamilyTests {
    /// `--attention` finds every self-attention softmax of the stored exports, with PyTorch's
    /// values (the inputs of timm's attn_drop modules) within 1e-5.
    @Test(arguments: entries.filter { !($0.attention ?? []).isEmpty })
    func selfAttentionMapsMatchPyTorch(_ entry: ZooEntry) throws {
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
        let session = try Session(contentsOf: Repo.path("Models/" + entry.file), options: SessionOptions(threads: 2))
        let maps = try session.runCapturingAttention(feeds).maps.filter { $0.kind == .selfAttention }
        let expected = entry.attention ?? []
        #expect(maps.count == expected.count, "\(entry.name): \(maps.count) self-attention maps, PyTorch has \(expected.count)")
        for (map, reference) in zip(maps, expected) {
            let values = try NPY.read(contentsOf: Repo.path("Models/" + reference.file))
            let comparison = Comparison(actual: map.tensor, expected: values, atol: 1e-5, rtol: 0)
            #expect(comparison.passed, "\(entry.name) self-attention map \(reference.index): \(comparison)")
        }
    }
}

@Suite("Self-attention detection")
struct SelfAttentionDetectionTests {
    static func graph(_ nodes: [Node], outputs: [String]) -> Graph {
        Graph(nodes: nodes, initializers: [:], inputs: [ValueInfo(name: "q"), ValueInfo(name: "k"), ValueInfo(name: "v")],
              outputs: outputs.map { ValueInfo(name: $0) })
    }

    @Test func softmaxWeightingValuesThroughAMatMulIsSelfAttention() {
        // scores = q·k; attn = softmax(scores); out = Transpose(attn) · v: the values are MatMul input 1.
        let nodes = [Node(name: "scores", opType: "MatMul", inputs: ["q", "k"], outputs: ["s"]),
                     Node(name: "softmax", opType: "Softmax", inputs: ["s"], outputs: ["a"]),
                     Node(name: "t", opType: "Transpose", inputs: ["a"], outputs: ["at"]),
                     Node(name: "weighted", opType: "MatMul", inputs: ["at", "v"], outputs: ["y"])]
        let gates = AttentionDetector.gates(in: Self.graph(nodes, outputs: ["y"]))
        #expect(gates.count == 1)
        #expect(gates.first?.selfAttention == true)
        #expect(gates.first?.mul?.name == "weighted")
        #expect(gates.first?.featureInputIndex == 1)
    }

    @Test func gcnetContextPoolingHasTheValuesFirst() {
        // GCNet: context = x · softmax(mask): the values are MatMul input 0.
        let nodes = [Node(name: "softmax", opType: "Softmax", inputs: ["k"], outputs: ["a"]),
                     Node(name: "pool", opType: "MatMul", inputs: ["v", "a"], outputs: ["y"])]
        let gates = AttentionDetector.gates(in: Self.graph(nodes, outputs: ["y"]))
        #expect(gates.map(\.selfAttention) == [true])
        #expect(gates.first?.featureInputIndex == 0)
    }

    @Test func aSigmoidIntoAMatMulAndAClassifierSoftmaxAreNot() {
        let nodes = [Node(name: "sigmoid", opType: "Sigmoid", inputs: ["q"], outputs: ["g"]),
                     Node(name: "mm", opType: "MatMul", inputs: ["g", "v"], outputs: ["y"]),
                     Node(name: "classifier", opType: "Softmax", inputs: ["k"], outputs: ["p"])]
        // The classifier's Softmax reaches a graph output: kept as a returned map (filtered at run
        // time by rank), never as self-attention.
        let gates = AttentionDetector.gates(in: Self.graph(nodes, outputs: ["y", "p"]))
        #expect(gates.allSatisfy { !$0.selfAttention })
        #expect(!gates.contains { $0.node.name == "sigmoid" })
    }

    @Test func summaryAveragesOverHeadsAndQueriesOnASquareGrid() {
        // [1, 2 heads, 1 query, 4 keys]: (1, 0, 0, 0) and (0, 0, 0.5, 0.5) → mean (0.5, 0, 0.25, 0.25) on 2×2.
        let tensor = Tensor.float([1, 2, 1, 4], [1, 0, 0, 0, 0, 0, 0.5, 0.5])
        let summary = AttentionExport.selfAttentionSummary(tensor, values: try! tensor.floats(), batch: 1)
        #expect(summary.side == 2)
        #expect(summary.values == [0.5, 0, 0.25, 0.25])
        // 5 keys: a class token and 2×2; the token is left out of the grid (ViT's layout).
        let token = Tensor.float([1, 1, 1, 5], [0.6, 0.1, 0.1, 0.1, 0.1])
        let withToken = AttentionExport.selfAttentionSummary(token, values: try! token.floats(), batch: 1)
        #expect(withToken.side == 2 && withToken.values == [0.1, 0.1, 0.1, 0.1] && withToken.note?.contains("class token") == true)
        // 6 keys (no grid, with or without a token) and windows folded into the batch axis stay raw, with a note.
        let six = Tensor.float([1, 1, 1, 6], [Float](repeating: 1 / 6, count: 6))
        #expect(AttentionExport.selfAttentionSummary(six, values: try! six.floats(), batch: 1).side == nil)
        #expect(AttentionExport.selfAttentionSummary(tensor, values: try! tensor.floats(), batch: 2).note?.contains("windows") == true)
        // BoTNet's [N·heads, positions, positions] with N = 2, 2 heads, 4 positions on 2×2: item 0's heads
        // (rows of 0.25, and all on key 3) average to (1/8, 1/8, 1/8, 5/8); item 1's (all on key 0, and rows
        // of 0.25) to (5/8, 1/8, 1/8, 1/8). Rank 4, or queries ≠ keys (HaloNet's blocks), stay raw.
        var botnet = [Float](repeating: 0.25, count: 64)
        for row in 0..<4 {
            botnet[(16 + row * 4)..<(20 + row * 4)] = [0, 0, 0, 1]
            botnet[(32 + row * 4)..<(36 + row * 4)] = [1, 0, 0, 0]
        }
        let folded = AttentionExport.selfAttentionSummary(.float([4, 4, 4], botnet), values: botnet, batch: 2)
        #expect(folded.side == 2 && folded.batch == 2 && folded.note?.contains("heads") == true)
        #expect(folded.values == [0.125, 0.125, 0.125, 0.625, 0.625, 0.125, 0.125, 0.125])
        #expect(AttentionExport.selfAttentionSummary(.float([4, 1, 4, 4], botnet), values: botnet, batch: 2).side == nil)
        let halo = [Float](repeating: 0.25, count: 32)
        #expect(AttentionExport.selfAttentionSummary(.float([4, 2, 4], halo), values: halo, batch: 2).side == nil)
        // GCNet's context mask [N, 1, H·W, 1]: the map itself on the grid.
        let mask = Tensor.float([1, 1, 4, 1], [0.1, 0.2, 0.3, 0.4])
        let context = AttentionExport.selfAttentionSummary(mask, values: try! mask.floats(), batch: 1)
        #expect(context.side == 2)
        #expect(context.values == [0.1, 0.2, 0.3, 0.4])
    }

    @Test func queryMapIsOneRowAveragedOverHeads() throws {
        // [1, 2 heads, 4 queries, 4 keys] on a 2×2 grid: query (0, 1) is row 1 of each head,
        // (0, 1, 0, 0) and (0, 0, 1, 0) → (0, ½, ½, 0). Queries that are not the keys: no map.
        var values = [Float](repeating: 0, count: 32)
        values[0 * 16 + 1 * 4 + 1] = 1
        values[1 * 16 + 1 * 4 + 2] = 1
        let tensor = Tensor.float([1, 2, 4, 4], values)
        #expect(try AttentionExport.selfAttentionQuery(tensor, values: values, batch: 1, side: 2, cell: (0, 1)) == [0, 0.5, 0.5, 0])
        let cross = Tensor.float([1, 1, 3, 4], [Float](repeating: 0.25, count: 12))
        #expect(try AttentionExport.selfAttentionQuery(cross, values: try cross.floats(), batch: 1, side: 2, cell: (0, 0)) == nil)
        let outside = thrownCBAMError { _ = try AttentionExport.selfAttentionQuery(tensor, values: values, batch: 1, side: 2, cell: (2, 0)) }
        #expect(outside?.kind == .usage)
    }
}

/// Single-node cases for the variants of issue 15's ops that onnx's node cases do not reach
/// (GroupNormalization-18, LayerNormalization on an inner axis, CumSum on an inner axis, …),
/// written with onnxruntime's outputs by tools/gen_ort_cases.py into Fixtures/ort/.
struct OnnxRuntimeCase: Decodable, Sendable, CustomTestStringConvertible {
    let name: String
    let op: String
    let opset: Int
    let inputs: [String]
    let outputs: [String]
    let reference: String
    var testDescription: String { name }

    static let directory = "Tests/CBAMRuntimeTests/Fixtures/ort"
    static let all: [OnnxRuntimeCase] = {
        struct Manifest: Decodable { let cases: [OnnxRuntimeCase] }
        guard let data = FileManager.default.contents(atPath: Repo.path(directory + "/manifest.json")),
              let manifest = try? JSONDecoder().decode(Manifest.self, from: data) else { return [] }
        return manifest.cases
    }()
}

@Suite("Op variants checked against onnxruntime")
struct OnnxRuntimeCaseTests {
    @Test func casesArePresent() { #expect(OnnxRuntimeCase.all.count >= 15, "run tools/gen_ort_cases.py") }

    @Test(arguments: OnnxRuntimeCase.all)
    func matchesOnnxRuntime(_ testCase: OnnxRuntimeCase) throws {
        let folder = Repo.path(OnnxRuntimeCase.directory + "/" + testCase.name)
        var feeds: [String: Tensor] = [:]
        for name in testCase.inputs { feeds[name] = try NPY.read(contentsOf: folder + "/input_\(name).npy") }
        for threads in [1, 2] {
            let results = try Session(contentsOf: folder + "/model.onnx", options: SessionOptions(threads: threads)).run(feeds)
            for name in testCase.outputs {
                let expected = try NPY.read(contentsOf: folder + "/output_\(name).npy")
                let actual = try #require(results[name], "no output \(name)")
                let comparison = Comparison(actual: actual, expected: expected, atol: 1e-5, rtol: 1e-5)
                #expect(comparison.passed, "\(testCase.name) output \(name) vs \(testCase.reference): \(comparison)")
            }
        }
    }
}

@Suite("Gate fusion on token tensors")
struct TokenGateTests {
    /// MobileViT multiplies rank-3 token tensors by a sigmoid: the spatial-gate matcher used to
    /// index axis 3 of them and trap while planning.
    @Test func sigmoidGateOnARankThreeFeatureRuns() throws {
        let nodes = [Node(name: "gate", opType: "Sigmoid", inputs: ["g"], outputs: ["s"]),
                     Node(name: "scale", opType: "Mul", inputs: ["x", "s"], outputs: ["y"])]
        let graph = Graph(nodes: nodes, inputs: [ValueInfo(name: "x"), ValueInfo(name: "g")], outputs: [ValueInfo(name: "y")])
        let session = try Session(model: Model(opsetImports: ["": 17], graph: graph))
        // x [1, 3, 2] = 1…6, g [1, 1, 2] = (0, 0): every value halved.
        let y = try #require(try session.run(["x": .float([1, 3, 2], [1, 2, 3, 4, 5, 6]), "g": .float([1, 1, 2], [0, 0])])["y"])
        #expect(y.storage == .float([0.5, 1, 1.5, 2, 2.5, 3]))
    }
}
