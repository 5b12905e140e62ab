import Foundation
import Testing
@testable import CBAMRuntime

/// Hostile-file smoke test: thousands of corrupted copies of real zoo models (bytes
/// flipped, truncated, spliced) must each load and run or fail with a CBAMError —
/// never trap. The generator is seeded, so a failure reproduces.
@Suite("Corrupted models never crash")
struct MutationFuzzTests {
    static let models = [
        "Models/seed000_cbam_fc_k7/torchscript_op17.onnx",
        "Models/seed000_cbam_conv_k3/dynamo_op20.onnx",
        "Models/seed004_cbam/torchscript_op13.onnx",
        "Models/seed002_skconv_s2/torchscript_op17.onnx",
    ]

    @Test(arguments: models)
    func mutatedCopiesFailCleanly(_ path: String) throws {
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Repo.path(path))))
        let inputPath = Repo.path((path as NSString).deletingLastPathComponent + "/input.npy")
        let input = try NPY.read(contentsOf: inputPath)
        var random = SplitMix(state: UInt64(path.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) }))
        var loaded = 0, ran = 0
        // CBAM_FUZZ_ROUNDS raises the count for a longer local campaign; CI runs 300 per model.
        let rounds = Int(ProcessInfo.processInfo.environment["CBAM_FUZZ_ROUNDS"] ?? "") ?? 300
        for round in 0..<rounds {
            var bytes = original
            // Structure (nodes, attributes, shapes) sits outside the weight payloads; aim
            // half the flips at the 4 KiB around it so they are not all lost in raw_data.
            let structure = { (r: inout SplitMix) -> Int in
                Bool.random(using: &r) ? Int.random(in: 0..<bytes.count, using: &r)
                    : Int.random(in: max(0, bytes.count - 4096)..<bytes.count, using: &r)
            }
            switch round % 4 {
            case 0:  // flip a few bytes
                for _ in 0..<Int.random(in: 1...8, using: &random) {
                    bytes[structure(&random)] = UInt8.random(in: 0...255, using: &random)
                }
            case 1:  // truncate
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &random)))
            case 2:  // overwrite a run with a varint-looking pattern (large lengths, negative dims)
                let start = structure(&random)
                for i in start..<min(bytes.count, start + 10) { bytes[i] = 0xFF }
            default:  // duplicate a slice into another place
                let a = Int.random(in: 0..<bytes.count, using: &random), n = Int.random(in: 1...64, using: &random)
                let b = Int.random(in: 0..<bytes.count, using: &random)
                let slice = Array(bytes[a..<min(bytes.count, a + n)])
                bytes.replaceSubrange(b..<min(bytes.count, b + slice.count), with: slice)
            }
            do {
                let model = try ModelLoader.load(bytes: bytes, fileName: "mutant.onnx")
                loaded += 1
                let session = try Session(model: model, fileName: "mutant.onnx")
                if let name = session.requiredInputs.first?.name {
                    _ = try session.run([name: input])
                    ran += 1
                }
            } catch is CBAMError {
                continue
            }
        }
        print("fuzz \(path): \(rounds) mutants, \(loaded) decoded, \(ran) ran to the end, none crashed")
    }
}

extension MutationFuzzTests {
    /// The node cases are one-node models of every registered op: mutating them reaches
    /// each kernel's attribute and shape checks with values no exporter writes.
    @Test func mutatedNodeCasesFailCleanly() throws {
        let rounds = Int(ProcessInfo.processInfo.environment["CBAM_FUZZ_ROUNDS"] ?? "") ?? 300
        let perCase = max(1, rounds / 30)
        var random = SplitMix(state: 0x5EED)
        var ran = 0, total = 0
        for testCase in NodeCase.all where !testCase.expanded {
            let folder = NodeCase.directory + "/" + testCase.name
            let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: folder + "/model.onnx")))
            let dataSet = folder + "/test_data_set_0"
            let inputFiles = try FileManager.default.contentsOfDirectory(atPath: dataSet).filter { $0.hasPrefix("input_") }.sorted()
            let inputs = inputFiles.compactMap { try? ModelLoader.loadTensor(contentsOf: dataSet + "/" + $0) }
            guard !original.isEmpty else { continue }
            for _ in 0..<perCase {
                var bytes = original
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
                total += 1
                do {
                    let session = try Session(model: try ModelLoader.load(bytes: bytes, fileName: "mutant.onnx"), fileName: "mutant.onnx")
                    var feeds: [String: Tensor] = [:]
                    for (name, tensor) in inputs where !name.isEmpty { feeds[name] = tensor }
                    _ = try session.run(feeds)
                    ran += 1
                } catch is CBAMError {
                    continue
                }
            }
        }
        print("fuzz node cases: \(total) mutants, \(ran) ran to the end, none crashed")
    }
}
