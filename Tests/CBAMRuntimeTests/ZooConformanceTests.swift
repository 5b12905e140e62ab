import Foundation
import Testing
@testable import CBAMRuntime

/// One export in Models/manifest.json (written by tools/export_models.py).
struct ZooEntry: Decodable, Sendable, CustomTestStringConvertible {
    struct File: Decodable, Sendable { let name: String; let file: String }
    struct AttentionMap: Decodable, Sendable { let index: Int; let kind: String; let shape: [Int]; let file: String }
    let name: String
    let file: String
    let exporter: String
    let opset: Int
    let inputs: [File]
    let outputs: [File]
    let atol: Double
    let rtol: Double
    let attention: [AttentionMap]?
    let onnxruntime_status: String?

    var testDescription: String { name }

    static let all: [ZooEntry] = entries(inManifest: "Models/manifest.json")

    /// The runnable entries of a manifest in Models/ (file paths relative to Models/).
    static func entries(inManifest path: String) -> [ZooEntry] {
        struct Manifest: Decodable { let entries: [ZooEntry] }
        guard let data = FileManager.default.contents(atPath: Repo.path(path)),
              let manifest = try? JSONDecoder().decode(Manifest.self, from: data) else { return [] }
        // Exports that failed in PyTorch have no file to run.
        return manifest.entries.filter { FileManager.default.fileExists(atPath: Repo.path("Models/" + $0.file)) }
    }
}

@Suite("Model zoo: every stored export matches PyTorch")
struct ZooConformanceTests {
    @Test func manifestIsPresent() {
        #expect(ZooEntry.all.count > 0, "Models/manifest.json lists no runnable export")
    }

    /// Two threads, so the parallel paths (Conv split by batch item, elementwise and pooling
    /// split by rows) are checked against PyTorch too; the node cases run single-threaded.
    ///
    /// Differential: the optimised plan (BatchNorm folded, Conv+Add+Relu fused, in-place ops)
    /// and the plan without passes must each match PyTorch, and match each other closely.
    @Test(arguments: ZooEntry.all)
    func matchesPyTorch(_ entry: ZooEntry) throws {
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
        var outputs: [[String: Tensor]] = []
        for optimize in [true, false] {
            let session = try Session(contentsOf: Repo.path("Models/" + entry.file), options: SessionOptions(threads: 2, optimize: optimize))
            let results = try session.run(feeds)
            outputs.append(results)
            for output in entry.outputs {
                let expected = try NPY.read(contentsOf: Repo.path("Models/" + output.file))
                let actual = try #require(results[output.name], "no output named \(output.name)")
                let comparison = Comparison(actual: actual, expected: expected, atol: entry.atol, rtol: entry.rtol)
                if optimize { print("zoo \(entry.name) \(output.name): max abs error \(comparison.maxAbsoluteError)") }
                #expect(comparison.passed, "\(entry.name) output \(output.name) (passes \(optimize ? "on" : "off")): \(comparison)")
            }
        }
        for output in entry.outputs {
            let fused = try #require(outputs[0][output.name]), plain = try #require(outputs[1][output.name])
            let comparison = Comparison(actual: fused, expected: plain, atol: entry.atol, rtol: entry.rtol)
            #expect(comparison.passed, "\(entry.name) output \(output.name): fused vs unfused plan: \(comparison)")
        }
    }
}

/// Every Conv kernel (im2col + sgemm, oneDNN on plain NCHW, oneDNN in its own layout with
/// reorders) against PyTorch on one export of each zoo model: the plan normally times them and
/// keeps the fastest, so each must be right on its own.
@Suite("Conv kernels: each one matches PyTorch")
struct ConvolutionKernelTests {
    static let entries = ZooEntry.all.filter { $0.file.hasSuffix("torchscript_op17.onnx") }

    @Test(arguments: entries)
    func everyKernelMatchesPyTorch(_ entry: ZooEntry) throws {
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
        for kernel in [ConvolutionKernel.im2col, .oneDNN, .oneDNNBlocked] {
            let session = try Session(contentsOf: Repo.path("Models/" + entry.file), options: SessionOptions(threads: 2, convolution: kernel))
            let results = try session.run(feeds)
            for output in entry.outputs {
                let expected = try NPY.read(contentsOf: Repo.path("Models/" + output.file))
                let comparison = Comparison(actual: try #require(results[output.name]), expected: expected, atol: entry.atol, rtol: entry.rtol)
                #expect(comparison.passed, "\(entry.name) with \(kernel): \(comparison)")
            }
        }
    }
}

@Suite("Attention maps equal PyTorch's")
struct AttentionConformanceTests {
    static let entries = ZooEntry.all.filter { $0.attention != nil }

    /// cbam-run must find exactly the gates the PyTorch model has (count, order, kind),
    /// and each map must equal the one PyTorch's forward hooks captured.
    @Test(arguments: entries)
    func mapsMatchPyTorch(_ entry: ZooEntry) throws {
        let session = try Session(contentsOf: Repo.path("Models/" + entry.file))
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
        let (_, maps) = try session.runCapturingAttention(feeds)
        let expected = entry.attention ?? []
        #expect(maps.map(\.kind.rawValue) == expected.map(\.kind), "\(entry.name): kinds found \(maps.map(\.kind.rawValue)), PyTorch has \(expected.map(\.kind))")
        for (map, reference) in zip(maps, expected) {
            let stored = try NPY.read(contentsOf: Repo.path("Models/" + reference.file))
            // 1e-5 absolute plus 1e-4 relative: deep networks (ResNet-50 + CBAM, 16 blocks) reach
            // 1.3e-5 absolute in their last maps, float32 rounding on both sides.
            // Exporters may squeeze or unsqueeze the gate (e.g. [N,C] vs [N,C,1,1]); the values must agree element for element.
            #expect(map.tensor.count == stored.count, "\(entry.name) map \(map.index): \(Shape.describe(map.tensor.shape)) vs PyTorch \(Shape.describe(stored.shape))")
            guard map.tensor.count == stored.count else { continue }
            let comparison = Comparison(actual: try map.tensor.reshaped(stored.shape), expected: stored, atol: 1e-5, rtol: 1e-4)
            #expect(comparison.passed, "\(entry.name) map \(map.index) (\(map.kind)): \(comparison)")
        }
    }
}
