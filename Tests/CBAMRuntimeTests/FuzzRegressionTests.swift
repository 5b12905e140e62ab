import Foundation
import Testing
@testable import CBAMRuntime

/// Replays what the libFuzzer targets (Fuzz/, tools/fuzz.sh) found, the way each target
/// runs it: every input in Fuzz/Regressions/<target>/ once crashed, hung or tripped
/// AddressSanitizer, and must now load (and run) or fail with a CBAMError. The small seed
/// corpora of the .npy and TensorProto targets are replayed too.
@Suite struct FuzzRegressionTests {
    static let root = Repo.path("Fuzz")

    static func files(_ folder: String) -> [String] {
        let path = root + "/" + folder
        return ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
            .filter { !$0.hasPrefix(".") && $0 != "README.md" }.sorted().map { path + "/" + $0 }
    }

    /// What a target does with one input; a non-CBAMError is recorded as an issue.
    static func replay(_ target: String, _ bytes: [UInt8], _ file: String) {
        do {
            switch target {
            case "fuzz-load":
                _ = try ModelLoader.load(bytes: bytes, fileName: file)
            case "fuzz-run":
                // The options of Fuzz/Sources/fuzz-run: small budgets, one thread.
                let model = try ModelLoader.load(bytes: bytes, fileName: file)
                let options = SessionOptions(threads: 1, limits: ResourceLimits(maxMemory: 64 << 20, maxMACs: 50_000_000),
                                             convolution: .im2col, timeout: 2)
                let session = try Session(model: model, fileName: file, options: options)
                _ = try session.run(try session.sampleInputs(symbolicSize: 2, maxElements: 1 << 16))
            case "fuzz-npy":
                let tensor = try NPY.decode(bytes)
                let again = try NPY.decode(NPY.encode(tensor))
                #expect(again.shape == tensor.shape && again.dataType == tensor.dataType, "\(file)")
            case "fuzz-tensorproto":
                _ = try ModelLoader.loadTensor(bytes: bytes, fileName: file)
            default:
                Issue.record("unknown fuzz target \(target)")
            }
        } catch is CBAMError {
        } catch {
            Issue.record("\(file): not a CBAMError: \(error)")
        }
    }

    static let targets = ["fuzz-load", "fuzz-run", "fuzz-npy", "fuzz-tensorproto"]

    @Test(arguments: targets)
    func regressionInputsFailCleanly(_ target: String) throws {
        let inputs = Self.files("Regressions/" + target)
        for file in inputs {
            Self.replay(target, [UInt8](try Data(contentsOf: URL(fileURLWithPath: file))), (file as NSString).lastPathComponent)
        }
        print("fuzz regressions \(target): \(inputs.count) input(s) replayed")
    }

    @Test(arguments: ["fuzz-npy", "fuzz-tensorproto"])
    func seedCorporaParseOrFailCleanly(_ target: String) throws {
        let seeds = Self.files("Corpus/" + target)
        #expect(seeds.count >= 10, "the seed corpus of \(target) is missing")
        for file in seeds {
            Self.replay(target, [UInt8](try Data(contentsOf: URL(fileURLWithPath: file))), (file as NSString).lastPathComponent)
        }
    }

    /// The sample inputs the fuzz-run target feeds: declared types and fixed dims kept,
    /// symbolic ones sized, and an input past the element budget refused before allocating.
    @Test func sampleInputsFollowTheDeclaredInputs() throws {
        let bytes = ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: [ONNXBytes.node("Identity", name: "id", inputs: ["x"], outputs: ["y"]),
                    ONNXBytes.node("Identity", name: "id2", inputs: ["i"], outputs: ["j"])],
            inputs: [ONNXBytes.valueInfo("x", dims: [.param("batch"), .value(3)]), ONNXBytes.valueInfo("i", elemType: 7, dims: [.value(4)])],
            outputs: [ONNXBytes.valueInfo("y"), ONNXBytes.valueInfo("j")]))
        let session = try Session(model: try ModelLoader.load(bytes: bytes), fileName: "m.onnx")
        let feeds = try session.sampleInputs(symbolicSize: 5)
        #expect(feeds["x"]?.shape == [5, 3] && feeds["x"]?.dataType == .float)
        #expect(feeds["i"]?.storage == .int64([0, 1, 2, 0]))
        #expect(try session.run(feeds)["j"]?.storage == .int64([0, 1, 2, 0]))
        let error = try #require(thrownCBAMError { _ = try session.sampleInputs(symbolicSize: 1000, maxElements: 2000) })
        #expect(error.kind == .resourceLimit && error.message.contains("[1000, 3] holds 3000 elements"))
    }
}
