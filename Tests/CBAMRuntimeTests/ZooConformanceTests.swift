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

    static let all: [ZooEntry] = {
        struct Manifest: Decodable { let entries: [ZooEntry] }
        guard let data = FileManager.default.contents(atPath: Repo.path("Models/manifest.json")),
              let manifest = try? JSONDecoder().decode(Manifest.self, from: data) else { return [] }
        // Exports that failed in PyTorch have no file to run.
        return manifest.entries.filter { FileManager.default.fileExists(atPath: Repo.path("Models/" + $0.file)) }
    }()
}

@Suite("Model zoo: every stored export matches PyTorch")
struct ZooConformanceTests {
    @Test func manifestIsPresent() {
        #expect(ZooEntry.all.count > 0, "Models/manifest.json lists no runnable export")
    }

    @Test(arguments: ZooEntry.all)
    func matchesPyTorch(_ entry: ZooEntry) throws {
        let session = try Session(contentsOf: Repo.path("Models/" + entry.file))
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
        let results = try session.run(feeds)
        for output in entry.outputs {
            let expected = try NPY.read(contentsOf: Repo.path("Models/" + output.file))
            let actual = try #require(results[output.name], "no output named \(output.name)")
            let comparison = Comparison(actual: actual, expected: expected, atol: entry.atol, rtol: entry.rtol)
            print("zoo \(entry.name) \(output.name): max abs error \(comparison.maxAbsoluteError)")
            #expect(comparison.passed, "\(entry.name) output \(output.name): \(comparison)")
        }
    }
}
