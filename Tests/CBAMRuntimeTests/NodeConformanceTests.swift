import Foundation
import Testing
@testable import CBAMRuntime

/// ONNX's own node conformance cases (tools/gen_node_tests.py writes them under
/// Fixtures/node/) run through the public Session API.
///
/// Fixtures/node_status.json records each case's expected status: "pass", or
/// "skip" (refused with an error, e.g. an element type cbam-run does not hold) or
/// "fail" (ran with wrong numbers), each with a one-line reason. A case recorded as passing must pass; a
/// case that newly passes is reported. `CBAM_RECORD_NODE_STATUS=1 swift test
/// --filter NodeConformance` rewrites the status file from the current results.
struct NodeCase: Decodable, Sendable, CustomTestStringConvertible {
    let name: String
    let op: String
    let opset: Int
    let rtol: Double
    let atol: Double
    let expanded: Bool
    var testDescription: String { name }

    static let directory = Repo.path("Tests/CBAMRuntimeTests/Fixtures/node")
    static let statusFile = Repo.path("Tests/CBAMRuntimeTests/Fixtures/node_status.json")

    static let all: [NodeCase] = {
        struct Manifest: Decodable { let cases: [NodeCase] }
        guard let data = FileManager.default.contents(atPath: directory + "/manifest.json"),
              let manifest = try? JSONDecoder().decode(Manifest.self, from: data) else { return [] }
        return manifest.cases
    }()

    struct Status: Codable, Sendable { var status: String; var reason: String }

    static let recorded: [String: Status] = {
        guard let data = FileManager.default.contents(atPath: statusFile),
              let statuses = try? JSONDecoder().decode([String: Status].self, from: data) else { return [:] }
        return statuses
    }()

    /// Runs the case: nil when every output is within ONNX's tolerance, else why not.
    func run() -> String? {
        let folder = NodeCase.directory + "/" + name
        do {
            let session = try Session(contentsOf: folder + "/model.onnx")
            let dataSet = folder + "/test_data_set_0"
            let files = try FileManager.default.contentsOfDirectory(atPath: dataSet).sorted()
            var feeds: [String: Tensor] = [:]
            let inputNames = session.model.graph.inputs.map(\.name)
            for (index, file) in files.filter({ $0.hasPrefix("input_") }).sorted(by: numericOrder).enumerated() {
                let (stored, tensor) = try ModelLoader.loadTensor(contentsOf: dataSet + "/" + file)
                let name = stored.isEmpty && index < inputNames.count ? inputNames[index] : stored
                feeds[name] = tensor
            }
            let results = try session.run(feeds)
            for (index, file) in files.filter({ $0.hasPrefix("output_") }).sorted(by: numericOrder).enumerated() {
                let (stored, expected) = try ModelLoader.loadTensor(contentsOf: dataSet + "/" + file)
                let name = stored.isEmpty ? session.outputNames[index] : stored
                guard let actual = results[name] else { return "no output \(name)" }
                let comparison = Comparison(actual: actual, expected: expected, atol: atol, rtol: rtol)
                if !comparison.passed { return "output \(name): \(comparison)" }
            }
            return nil
        } catch let error as CBAMError {
            // The reason is the message without the fixture path, so it reads the same on every machine.
            var short = error
            short.file = nil
            return short.description
        } catch {
            return "\(error)"
        }
    }
}

private func numericOrder(_ a: String, _ b: String) -> Bool {
    func number(_ s: String) -> Int { Int(s.filter(\.isNumber)) ?? 0 }
    return number(a) < number(b)
}

/// Collects results when recording, so the status file can be rewritten once at the end.
final class NodeStatusRecorder: @unchecked Sendable {
    static let shared = NodeStatusRecorder()
    private let lock = NSLock()
    private var results: [String: NodeCase.Status] = [:]

    func record(_ name: String, _ status: NodeCase.Status) {
        lock.lock(); defer { lock.unlock() }
        results[name] = status
        if results.count == NodeCase.all.count { write() }
    }

    private func write() {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let data = try? encoder.encode(results) {
            _ = FileManager.default.createFile(atPath: NodeCase.statusFile, contents: data)
        }
    }
}

@Suite("ONNX node conformance cases")
struct NodeConformanceTests {
    static let recording = ProcessInfo.processInfo.environment["CBAM_RECORD_NODE_STATUS"] == "1"

    @Test func statusFileCoversEveryCase() {
        #expect(NodeCase.all.count > 0, "no node cases found; run tools/gen_node_tests.py")
        if !Self.recording {
            let missing = NodeCase.all.filter { NodeCase.recorded[$0.name] == nil }.map(\.name)
            #expect(missing.isEmpty, "cases without a recorded status: \(missing.prefix(10))")
        }
    }

    @Test(arguments: NodeCase.all)
    func nodeCase(_ testCase: NodeCase) {
        let failure = testCase.run()
        let recorded = NodeCase.recorded[testCase.name]
        if Self.recording {
            // "fail": it ran and gave wrong numbers; "skip": cbam-run refused it with an error
            // (an element type or op variant it does not support).
            let status = failure == nil ? "pass" : failure!.hasPrefix("output ") || failure!.hasPrefix("no output") ? "fail" : "skip"
            NodeStatusRecorder.shared.record(testCase.name, .init(status: status, reason: failure ?? ""))
            return
        }
        if recorded?.status == "pass" {
            #expect(failure == nil, "\(testCase.name) is recorded as passing but failed: \(failure ?? "")")
        } else if failure == nil {
            print("node case \(testCase.name) now passes (recorded: \(recorded?.status ?? "none")); record it with CBAM_RECORD_NODE_STATUS=1")
        }
    }
}
