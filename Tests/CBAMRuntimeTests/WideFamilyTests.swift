import Foundation
import Testing
@testable import CBAMRuntime

let wideExportFolder = ProcessInfo.processInfo.environment["CBAM_TIMM_WIDE"].flatMap { $0.isEmpty ? nil : $0 }

/// Issue 15's whole list of families (ConvNeXt … torchvision's ConvNeXt), each exported both
/// ways by `tools/export_timm.py --wide` into a folder outside git. `make test-wide` makes the
/// exports and runs this suite with CBAM_TIMM_WIDE naming that folder; without the variable
/// the suite is skipped, and with it a missing or empty export fails.
///
/// Each export must give PyTorch's output within 1e-4 × max |output|; `--attention`'s capture
/// must find as many gates and softmaxes as PyTorch's forward pass called sigmoid and
/// softmax, and its self-attention tensors must equal the expected ones within 1e-5 (PyTorch's,
/// or onnxruntime's where timm computes the softmax inline: see the entry's attention_source).
@Suite("Wide families: issue 15's whole list against PyTorch", .enabled(if: wideExportFolder != nil))
struct WideFamilyTests {
    static let folder = wideExportFolder
    /// Paths in the manifest are relative to the folder above the export.
    static let base = URL(fileURLWithPath: folder ?? "").deletingLastPathComponent().path
    static let entries = folder.map { ZooEntry.entries(manifest: $0 + "/manifest.json", base: base) } ?? []

    struct Manifest: Decodable {
        struct Failure: Decodable { let name: String; let exporter: String; let error: String }
        let families: [String]
        let failures: [Failure]
    }

    @Test func everyFamilyHasAnExport() throws {
        let path = (Self.folder ?? "") + "/manifest.json"
        let data = try #require(FileManager.default.contents(atPath: path), "no \(path): run make test-wide")
        let manifest = try JSONDecoder().decode(Manifest.self, from: data)
        #expect(!manifest.families.isEmpty, "\(path) lists no family")
        for family in manifest.families {
            #expect(Self.entries.contains { $0.name.hasPrefix(family + "/") }, "\(family): no export to run")
        }
        for failure in manifest.failures { print("wide \(failure.name)/\(failure.exporter): PyTorch's exporter failed: \(failure.error)") }
    }

    @Test(arguments: entries)
    func matchesPyTorchAndFindsEveryMap(_ entry: ZooEntry) throws {
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Self.base + "/" + input.file) }
        let session = try Session(contentsOf: Self.base + "/" + entry.file, options: SessionOptions(threads: 2))
        let (outputs, maps) = try session.runCapturingAttention(feeds)
        var line = "wide \(entry.name):"
        for output in entry.outputs {
            let expected = try NPY.read(contentsOf: Self.base + "/" + output.file)
            let actual = try #require(outputs[output.name], "no output named \(output.name)")
            let comparison = Comparison(actual: actual, expected: expected, atol: entry.atol, rtol: entry.rtol)
            line += " max abs error \(comparison.maxAbsoluteError) (bound \(entry.atol)) \(comparison.passed ? "pass" : "FAIL");"
            #expect(comparison.passed, "\(entry.name) output \(output.name): \(comparison)")
        }
        let selfAttention = maps.filter { $0.kind == .selfAttention }
        let gates = maps.count - selfAttention.count
        let expectedGates = try #require(entry.expected_gates), expectedSoftmaxes = try #require(entry.expected_self_attention)
        #expect(gates == expectedGates, "\(entry.name): \(gates) gate(s) found, PyTorch called sigmoid \(expectedGates) time(s)")
        #expect(selfAttention.count == expectedSoftmaxes,
                "\(entry.name): \(selfAttention.count) self-attention map(s) found, PyTorch called softmax \(expectedSoftmaxes) time(s)")
        let references = entry.attention ?? []
        #expect(references.count == expectedSoftmaxes, "\(entry.name): \(references.count) expected tensor(s) stored for \(expectedSoftmaxes) softmax(es)")
        var worst = 0.0
        for (map, reference) in zip(selfAttention, references) {
            let comparison = Comparison(actual: map.tensor, expected: try NPY.read(contentsOf: Self.base + "/" + reference.file), atol: 1e-5, rtol: 0)
            worst = max(worst, comparison.shapeProblem == nil ? comparison.maxAbsoluteError : .infinity)
            #expect(comparison.passed, "\(entry.name) self-attention map \(reference.index) (\(map.gate.node.name)): \(comparison)")
        }
        line += " gates \(gates)/\(expectedGates); self-attention \(selfAttention.count)/\(expectedSoftmaxes);"
        line += references.isEmpty ? " no attention tensor" : " max attention error \(worst)"
        print(line)
    }
}
