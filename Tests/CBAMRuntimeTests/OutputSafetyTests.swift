import Foundation
import Testing
@testable import CBAMRuntime

/// Outputs that are never half-written, destinations refused before anything runs,
/// signals that leave no temporary file, and runs stopped by a timeout or a token.
@Suite struct OutputSafetyTests {
    let directory: String

    init() throws { directory = try CLI.temporaryDirectory() }

    func contents() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: directory).sorted() }

    /// y = Sigmoid(Sigmoid(…(x))): `length` nodes on x float [1, elements]; slow in proportion.
    static func sigmoidChain(length: Int, elements: Int) -> [UInt8] {
        let nodes = (0..<length).map { i in
            ONNXBytes.node("Sigmoid", name: "sigmoid_\(i)", inputs: [i == 0 ? "x" : "t\(i - 1)"], outputs: [i == length - 1 ? "y" : "t\(i)"])
        }
        return ONNXBytes.model(graph: ONNXBytes.graph(
            nodes: nodes, inputs: [ONNXBytes.valueInfo("x", dims: [.value(1), .value(Int64(elements))])], outputs: [ONNXBytes.valueInfo("y")]))
    }

    /// Writes a sigmoid chain and its input into the test's folder.
    func slowModel(length: Int = 100, elements: Int = 1 << 18) throws -> (model: String, input: String) {
        let model = directory + "/slow.onnx", input = directory + "/x.npy"
        try Data(Self.sigmoidChain(length: length, elements: elements)).write(to: URL(fileURLWithPath: model))
        try NPY.write(Tensor.float([1, elements], [Float](repeating: 0.5, count: elements)), to: input)
        return (model, input)
    }

    // MARK: - FileOutput

    @Test func aWriteLeavesOnlyTheFinishedFile() throws {
        let path = directory + "/a.npy"
        try FileOutput.write([1, 2, 3], to: path)
        try FileOutput.write([4, 5], to: path)  // replaces it whole
        #expect(try contents() == ["a.npy"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data([4, 5]))
    }

    @Test func aFailedWriteLeavesNothing() throws {
        let error = try #require(thrownCBAMError { try FileOutput.write([1], to: directory + "/missing/a.npy") })
        #expect(error.kind == .io)
        #expect(error.description.contains("missing/a.npy"))
        #expect(try contents().isEmpty)
    }

    @Test func aFolderADanglingSymlinkAndAProtectedFileAreRefused() throws {
        try FileManager.default.createDirectory(atPath: directory + "/folder", withIntermediateDirectories: false)
        let folder = try #require(thrownCBAMError { try FileOutput.write([1], to: directory + "/folder") })
        #expect(folder.kind == .usage && folder.message.contains("is a folder"))

        try FileManager.default.createSymbolicLink(atPath: directory + "/dangling", withDestinationPath: directory + "/nowhere")
        let dangling = try #require(thrownCBAMError { try FileOutput.write([1], to: directory + "/dangling") })
        #expect(dangling.message.contains("dangling"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/nowhere"))

        // A protected input is refused however it is reached: its path, a symlink, another spelling.
        try Data([9]).write(to: URL(fileURLWithPath: directory + "/input.npy"))
        try FileManager.default.createSymbolicLink(atPath: directory + "/alias.npy", withDestinationPath: directory + "/input.npy")
        FileOutput.protect([directory + "/input.npy"])
        for path in [directory + "/input.npy", directory + "/alias.npy", directory + "/folder/../input.npy"] {
            let error = try #require(thrownCBAMError { try FileOutput.write([1], to: path) })
            #expect(error.message.contains("is the input"), "\(path)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory + "/input.npy")) == Data([9]))
    }

    // MARK: - Cancellation and timeouts in the library

    /// Cancels its token when the run reaches step `at`.
    final class CancelAt: RunObserver {
        let token: CancellationToken, at: Int
        var seen = 0
        init(_ token: CancellationToken, at: Int) { self.token = token; self.at = at }
        func nodeDidRun(_ event: NodeEvent) throws {
            seen += 1
            if event.index == at { token.cancel() }
        }
    }

    @Test func aCancelledTokenStopsTheRunBeforeItsNextStep() throws {
        let model = try ModelLoader.load(bytes: Self.sigmoidChain(length: 10, elements: 4))
        let token = CancellationToken()
        let session = try Session(model: model, fileName: "chain.onnx", options: SessionOptions(optimize: false, cancellation: token))
        let x = Tensor.float([1, 4], [0, 1, 2, 3])
        #expect(try session.run(["x": x])["y"] != nil)  // not cancelled: runs

        let observer = CancelAt(token, at: 3)
        let error = try #require(thrownCBAMError { _ = try session.run(["x": x], observer: observer) })
        #expect(error.kind == .cancelled)
        #expect(error.description == "chain.onnx: the run was cancelled after 4 of 10 steps")
        #expect(observer.seen == 4)
        // And every later run stops before its first step.
        #expect(thrownCBAMError { _ = try session.run(["x": x]) }?.message.contains("after 0 of 10 steps") == true)
    }

    /// Sleeps in the observer of one step, so the run passes any short deadline there.
    final class Slow: RunObserver {
        func nodeDidRun(_ event: NodeEvent) throws { if event.index == 1 { Thread.sleep(forTimeInterval: 0.2) } }
    }

    @Test func aTimeoutStopsTheRunBetweenSteps() throws {
        let model = try ModelLoader.load(bytes: Self.sigmoidChain(length: 10, elements: 4))
        let x = Tensor.float([1, 4], [0, 1, 2, 3])
        let limited = try Session(model: model, fileName: "chain.onnx", options: SessionOptions(optimize: false, timeout: 0.1))
        let error = try #require(thrownCBAMError { _ = try limited.run(["x": x], observer: Slow()) })
        #expect(error.kind == .cancelled)
        #expect(error.message.contains("time limit of 0.1 s and was stopped after 2 of 10 steps"), "\(error)")
        // A generous timeout changes nothing; each run has its own deadline.
        let generous = try Session(model: model, fileName: "chain.onnx", options: SessionOptions(optimize: false, timeout: 60))
        #expect(try generous.run(["x": x], observer: Slow())["y"] != nil)
        #expect(try generous.run(["x": x])["y"] != nil)
    }

    // MARK: - The command line

    @Test func outputsThatWouldDestroyAnInputOrCannotBeFilesAreRefusedBeforeRunning() throws {
        let (model, input) = try slowModel(length: 2, elements: 8)
        let before = try Data(contentsOf: URL(fileURLWithPath: input))
        try FileManager.default.createDirectory(atPath: directory + "/folder", withIntermediateDirectories: false)
        try FileManager.default.createSymbolicLink(atPath: directory + "/dangling", withDestinationPath: directory + "/nowhere")
        try FileManager.default.createSymbolicLink(atPath: directory + "/alias.npy", withDestinationPath: input)
        let cases: [([String], String)] = [
            (["-o", input], "is the input"),
            (["-o", directory + "/alias.npy"], "is the input"),
            (["-o", model], "is the input"),
            (["-o", directory + "/folder"], "is a folder"),
            (["-o", directory + "/dangling"], "dangling"),
            (["-o", directory + "/no/such/y.npy"], "does not exist"),
            (["--profile-json", input], "is the input"),
            (["--output-dir", input], "is not a folder"),
            (["--attention", directory + "/dangling"], "dangling"),
        ]
        for (flags, message) in cases {
            let result = try CLI.run([model, input] + flags)
            #expect(result.status == 1, "\(flags)")
            #expect(result.stderr.contains(message), "\(flags): \(result.stderr)")
            #expect(result.stdout.isEmpty, "\(flags) ran: \(result.stdout)")
        }
        // --output-dir over a folder holding an input named like the output: refused too.
        try FileManager.default.copyItem(atPath: input, toPath: directory + "/y.npy")
        let result = try CLI.run([model, "--input", "x=\(directory)/y.npy", "--output-dir", directory])
        #expect(result.status == 1 && result.stderr.contains("is the input"), "\(result.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: input)) == before)
        #expect(try contents() == ["alias.npy", "dangling", "folder", "slow.onnx", "x.npy", "y.npy"])
    }

    @Test func timeoutStopsASlowRunWithAClearError() throws {
        // 100 steps over 16 MB each: bound by memory traffic (≥ 0.3 s), not by how fast Sigmoid is.
        let (model, input) = try slowModel(elements: 1 << 22)
        let started = Date()
        let result = try CLI.run([model, input, "-o", directory + "/y.npy", "--timeout", "0.05"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("took longer than its time limit of 0.05 s"), "\(result.stderr)")
        #expect(result.stderr.contains("--timeout"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/y.npy"))
        #expect(Date().timeIntervalSince(started) < 60)
        #expect(try CLI.run([model, input, "--timeout", "0"]).stderr.contains("--timeout takes a positive number"))
    }

    /// Runs cbam-run, sends `signal` once `ready` says so (or after `seconds`), and returns how it ended.
    func interrupt(_ arguments: [String], environment: [String: String] = [:], signal: Int32,
                   when ready: () -> Bool) throws -> (reason: Process.TerminationReason, status: Int32) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLI.binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while !ready() && process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        return (process.terminationReason, process.terminationStatus)
    }

    @Test func aSignalWhileAnOutputIsBeingWrittenLeavesNoFile() throws {
        let (model, input) = try slowModel(length: 2, elements: 8)
        let out = directory + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        for signal in [SIGTERM, SIGINT] {
            // The pause holds the finished temporary file in place until the signal comes.
            let ended = try interrupt([model, input, "-o", out + "/y.npy"], environment: ["CBAM_TEST_PAUSE_BEFORE_RENAME": "30"],
                                      signal: signal) { ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).contains { $0.hasSuffix(".cbam-tmp") } }
            #expect(ended.reason == .uncaughtSignal && ended.status == signal, "\(ended)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: out).isEmpty)
        }
    }

    @Test func aSignalDuringASlowRunLeavesNoFile() throws {
        let (model, input) = try slowModel()
        let started = Date()
        // Warm-up runs without end keep the process busy however fast the chain runs on this CPU.
        let ended = try interrupt([model, input, "-o", directory + "/y.npy", "--profile-json", directory + "/trace.json", "--warmup", "10000"],
                                  signal: SIGINT) {
            Date().timeIntervalSince(started) > 1
        }
        #expect(ended.reason == .uncaughtSignal && ended.status == SIGINT, "\(ended)")
        #expect(try contents() == ["slow.onnx", "x.npy"])
    }
}
