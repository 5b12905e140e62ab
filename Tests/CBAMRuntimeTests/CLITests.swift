import Foundation
import Testing
@testable import CBAMRuntime

/// The `cbam-run` binary, run as a user would: exit codes, files written, what it prints.
struct CLI {
    /// Built next to the test runner by SwiftPM (the test target depends on it).
    static let binary = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0])
        .deletingLastPathComponent().appendingPathComponent("cbam-run").path

    struct Result { let status: Int32; let stdout: String; let stderr: String }

    static func run(_ arguments: [String], environment: [String: String]? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.currentDirectoryURL = Repo.root
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read before waiting so a full pipe cannot block the child.
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: stdout, stderr: stderr)
    }

    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cbam-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

@Suite("Command line, end to end")
struct CLITests {
    static let model = "Models/seed000_cbam_fc_k7/torchscript_op17.onnx"
    static let input = "Models/seed000_cbam_fc_k7/input.npy"
    static let expected = "Models/seed000_cbam_fc_k7/output.npy"

    @Test func runWritesTheOutputPyTorchGives() throws {
        let dir = try CLI.temporaryDirectory()
        let result = try CLI.run([Self.model, Self.input, "-o", dir + "/y.npy"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("output  float32 [2, 32, 16, 16]"))
        let actual = try NPY.read(contentsOf: dir + "/y.npy")
        let reference = try NPY.read(contentsOf: Repo.path(Self.expected))
        #expect(Comparison(actual: actual, expected: reference, atol: 1e-4, rtol: 1e-4).passed)
    }

    /// libgomp's long default spin is shortened (by re-executing with GOMP_SPINCOUNT set) unless
    /// the user chose a wait setting, which is then left alone; `--version` shows what is in effect.
    @Test func theCommandShortensOpenMPSpinUnlessTheUserChoseASetting() throws {
        var environment = ProcessInfo.processInfo.environment
        environment["GOMP_SPINCOUNT"] = nil
        environment["OMP_WAIT_POLICY"] = nil
        let shortened = try CLI.run(["--version"], environment: environment)
        #expect(shortened.status == 0)
        #expect(shortened.stdout.contains("OpenMP wait: GOMP_SPINCOUNT=10000"), "\(shortened.stdout)")
        environment["OMP_WAIT_POLICY"] = "passive"
        let chosen = try CLI.run(["--version"], environment: environment)
        #expect(chosen.stdout.contains("OpenMP wait: OMP_WAIT_POLICY=passive"), "\(chosen.stdout)")
        #expect(!chosen.stdout.contains("GOMP_SPINCOUNT"))
    }

    /// CBAM_MAX_ISA caps our C loops' instruction set (as DNNL_MAX_CPU_ISA does oneDNN's), `--version`
    /// says so, and the capped variants still give PyTorch's output.
    @Test func cbamMaxISACapsTheVectorLoops() throws {
        var environment = ProcessInfo.processInfo.environment
        let cpu = VectorMath.InstructionSet.cpu
        for cap in ["portable", "avx2", "AVX2", "avx512", "avx3"] {
            environment["CBAM_MAX_ISA"] = cap
            let version = try CLI.run(["--version"], environment: environment)
            let expected: VectorMath.InstructionSet = switch cap.lowercased() {
            case "portable": .portable
            case "avx2": cpu == .avx512 ? .avx2 : cpu
            default: cpu
            }
            #expect(version.stdout.contains("vector loops: \(expected)"), "CBAM_MAX_ISA=\(cap): \(version.stdout)")
            #expect(version.stdout.contains("capped by CBAM_MAX_ISA=\(cap)") == (expected != cpu), "CBAM_MAX_ISA=\(cap): \(version.stdout)")
        }
        for cap in ["portable", "avx2"] {
            environment["CBAM_MAX_ISA"] = cap
            let dir = try CLI.temporaryDirectory()
            let result = try CLI.run([Self.model, Self.input, "-o", dir + "/y.npy"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            let actual = try NPY.read(contentsOf: dir + "/y.npy")
            let reference = try NPY.read(contentsOf: Repo.path(Self.expected))
            #expect(Comparison(actual: actual, expected: reference, atol: 1e-4, rtol: 1e-4).passed, "CBAM_MAX_ISA=\(cap)")
        }
    }

    @Test func helpExplainsTheCommands() throws {
        let result = try CLI.run(["--help"])
        #expect(result.status == 0)
        for word in ["run", "inspect", "bench", "cbam-run model.onnx"] { #expect(result.stdout.contains(word), "help lacks \(word)") }
        let run = try CLI.run(["run", "--help"])
        for flag in ["--attention", "--dump", "--check-against", "--profile", "--threads", "--output-dir"] {
            #expect(run.stdout.contains(flag), "run --help lacks \(flag)")
        }
    }

    /// `bench` without input files times seeded random inputs of the declared shape (the batch
    /// dimension, symbolic, taken as 1) and says so on standard error; JSON stays on standard
    /// output; more files than inputs is an error naming what the model takes.
    @Test func benchMakesUpInputsItIsNotGiven() throws {
        let result = try CLI.run(["bench", Self.model, "--runs", "2", "--warmup", "0", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("bench: random inputs (no files given): input float32 [1, 32, 16, 16]"), "\(result.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect((report?["runs"] as? Int) == 2 && (report?["median_ms"] as? Double).map { $0 > 0 } == true, "\(result.stdout)")
        let given = try CLI.run(["bench", Self.model, Self.input, "--runs", "2", "--warmup", "0"])
        #expect(given.status == 0 && !given.stderr.contains("random inputs"), "\(given.stderr)")
        let extra = try CLI.run(["bench", Self.model, Self.input, Self.input, "--runs", "2"])
        #expect(extra.status == 1 && extra.stderr.contains("takes 1 input(s) (input), got 2 files"), "\(extra.stderr)")
    }

    @Test func aBadModelIsOneLineAndWritesNothing() throws {
        let dir = try CLI.temporaryDirectory()
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: dir + "/bad.onnx"))
        let result = try CLI.run([dir + "/bad.onnx", Self.input, "-o", dir + "/y.npy"])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("cbam-run: error: \(dir)/bad.onnx: "))
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: dir + "/y.npy"))
    }

    /// `--memory lean|speed` both run and agree with PyTorch; another word is a usage error naming the choices.
    @Test func memoryTakesLeanOrSpeed() throws {
        let dir = try CLI.temporaryDirectory()
        for memory in ["lean", "speed"] {
            let result = try CLI.run([Self.model, Self.input, "-o", dir + "/y.npy", "--memory", memory])
            #expect(result.status == 0, "\(memory): \(result.stderr)")
            let actual = try NPY.read(contentsOf: dir + "/y.npy")
            #expect(Comparison(actual: actual, expected: try NPY.read(contentsOf: Repo.path(Self.expected)), atol: 1e-4, rtol: 1e-4).passed, "\(memory)")
        }
        let bad = try CLI.run([Self.model, Self.input, "--memory", "small"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("speed") && bad.stderr.contains("lean"), "\(bad.stderr)")
    }

    @Test func aWrongInputShapeNamesTheInput() throws {
        let dir = try CLI.temporaryDirectory()
        try NPY.write(try Tensor(shape: [2, 16, 16, 16], floats: Array(repeating: 0, count: 2 * 16 * 16 * 16)), to: dir + "/x.npy")
        let result = try CLI.run([Self.model, dir + "/x.npy", "-o", dir + "/y.npy"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("input \"input\""), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/y.npy"))
    }

    @Test func attentionWritesMapsPicturesJSONAndPage() throws {
        let dir = try CLI.temporaryDirectory()
        let result = try CLI.run([Self.model, Self.input, "--attention", dir])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONDecoder().decode(AttentionReport.self, from: try Data(contentsOf: URL(fileURLWithPath: dir + "/attention.json")))
        #expect(report.maps.map(\.kind) == ["channel", "spatial"])
        #expect(report.maps.map(\.block) == [0, 0])
        for map in report.maps {
            for file in map.files { #expect(FileManager.default.fileExists(atPath: dir + "/" + file), "missing \(file)") }
            #expect(map.files.filter { $0.hasSuffix(".png") }.count == 2, "one picture per batch item")
        }
        // The .npy holds the map as computed; it equals PyTorch's (the zoo stores the hook capture).
        let spatial = try NPY.read(contentsOf: dir + "/01_spatial.npy")
        let reference = try NPY.read(contentsOf: Repo.path("Models/seed000_cbam_fc_k7/attention/01_spatial.npy"))
        #expect(Comparison(actual: spatial, expected: reference, atol: 1e-5, rtol: 0).passed)
        let page = try String(contentsOfFile: dir + "/index.html", encoding: .utf8)
        #expect(page.components(separatedBy: "data:image/png;base64,").count - 1 == 4)
        #expect(!page.contains("src=\"http"), "the page must work offline")
    }

    @Test func dumpWritesChosenTensorsAndAnIndex() throws {
        // The spatial gate's Conv output is inside a fused step: --no-passes runs it as a node of its own.
        let dir = try CLI.temporaryDirectory()
        let result = try CLI.run([Self.model, Self.input, "--no-passes", "--dump", "*Sigmoid*", "--dump", "/spatial/fuse/Conv_output_0", "--dump-dir", dir])
        #expect(result.status == 0, "\(result.stderr)")
        struct Entry: Decodable { let tensor: String; let file: String; let shape: [Int] }
        let index = try JSONDecoder().decode([Entry].self, from: try Data(contentsOf: URL(fileURLWithPath: dir + "/index.json")))
        #expect(Set(index.map(\.tensor)) == ["/channel/gate/Sigmoid_output_0", "/spatial/fuse/Conv_output_0", "/spatial/gate/Sigmoid_output_0"])
        // With the passes, the fused gates still write (and report) their sigmoid maps, not the Conv's output.
        let fusedDir = try CLI.temporaryDirectory()
        #expect(try CLI.run([Self.model, Self.input, "--dump", "*Sigmoid*", "--dump", "/spatial/fuse/Conv_output_0", "--dump-dir", fusedDir]).status == 0)
        let fusedIndex = try JSONDecoder().decode([Entry].self, from: try Data(contentsOf: URL(fileURLWithPath: fusedDir + "/index.json")))
        #expect(Set(fusedIndex.map(\.tensor)) == ["/channel/gate/Sigmoid_output_0", "/spatial/gate/Sigmoid_output_0"])
        // Compared with onnxruntime's value of the same tensor (tools/dump_reference.py).
        let conv = try NPY.read(contentsOf: dir + "/spatial_fuse_Conv_output_0.npy")
        let reference = try NPY.read(contentsOf: Repo.path("Tests/CBAMRuntimeTests/Fixtures/reference/seed000_cbam_fc_k7_torchscript_op17/spatial_fuse_Conv_output_0.npy"))
        #expect(Comparison(actual: conv, expected: reference, atol: 1e-5, rtol: 1e-5).passed)

        let all = try CLI.temporaryDirectory()
        #expect(try CLI.run([Self.model, Self.input, "--dump-all", "--dump-dir", all]).status == 0)
        let everything = try JSONDecoder().decode([Entry].self, from: try Data(contentsOf: URL(fileURLWithPath: all + "/index.json")))
        // Every value the plan computes: what an in-process observer of the same run sees.
        #expect(everything.count == Set((try Self.observedEvents()).flatMap { $0.node.outputs.filter { !$0.isEmpty } }).count)
        // The two fused gates write their maps (each once, though both the step and its Sigmoid carry it) and the
        // block's output. The channel gate's x · s_c is not written at all: the spatial gate applies s_c as it reads x
        // (merge-channel-scale); --no-passes has it.
        #expect(Set(everything.map(\.tensor)) == ["/channel/gate/Sigmoid_output_0", "output", "/spatial/gate/Sigmoid_output_0"])
        // Without passes every node's output is there.
        let unfused = try CLI.temporaryDirectory()
        #expect(try CLI.run([Self.model, Self.input, "--no-passes", "--dump-all", "--dump-dir", unfused]).status == 0)
        #expect(try JSONDecoder().decode([Entry].self, from: try Data(contentsOf: URL(fileURLWithPath: unfused + "/index.json"))).count >= 15)
    }

    final class Recorder: RunObserver {
        var events: [NodeEvent] = []
        func nodeDidRun(_ event: NodeEvent) throws { events.append(event) }
    }

    /// The events an observer sees when the test model runs in process (the plan's steps and views;
    /// shape computations folded by the plan are not among them).
    static func observedEvents() throws -> [NodeEvent] {
        let session = try Session(contentsOf: Repo.path(model))
        let recorder = Recorder()
        _ = try session.run(positional: [try NPY.read(contentsOf: Repo.path(input))], observer: recorder)
        return recorder.events
    }

    /// The reference folder holds onnxruntime's value of every tensor (tools/dump_reference.py).
    static let referenceDir = "Tests/CBAMRuntimeTests/Fixtures/reference/seed000_cbam_fc_k7_torchscript_op17"

    @Test func checkAgainstOnnxruntimeFindsNoDivergence() throws {
        let result = try CLI.run([Self.model, Self.input, "--check-against", Self.referenceDir])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("no divergence"))
        // Each tensor once, though a fused gate step and its Sigmoid both carry the map.
        let computed = Set(try Self.observedEvents().flatMap { $0.node.outputs.filter { !$0.isEmpty } }).count
        #expect(result.stdout.contains("compared \(computed) tensor(s)"), "\(result.stdout.suffix(300))")
    }

    @Test func checkAgainstNamesTheFirstDivergentNode() throws {
        // A copy of the references with the spatial Conv's output disturbed: every tensor
        // computed from it differs too, and the Conv must be named as the first.
        let dir = try CLI.temporaryDirectory()
        for file in try FileManager.default.contentsOfDirectory(atPath: Repo.path(Self.referenceDir)) {
            try FileManager.default.copyItem(atPath: Repo.path(Self.referenceDir) + "/" + file, toPath: dir + "/" + file)
        }
        let path = dir + "/spatial_fuse_Conv_output_0.npy"
        let original = try NPY.read(contentsOf: path)
        var values = try original.floats()
        values[7] += 0.5
        try FileManager.default.removeItem(atPath: path)
        try NPY.write(try Tensor(shape: original.shape, floats: values), to: path)
        // The fused spatial gate never writes the Conv's output: compare the plan without passes.
        let result = try CLI.run([Self.model, Self.input, "--no-passes", "--check-against", dir])
        #expect(result.status == 2)
        #expect(result.stdout.contains("first divergence: node \"/spatial/fuse/Conv\" (Conv)"), "\(result.stdout.suffix(400))")
    }

    @Test func profilePrintsATableAndWritesAChromeTrace() throws {
        let dir = try CLI.temporaryDirectory()
        // --warmup runs are unobserved: the trace still holds exactly one run's nodes.
        let result = try CLI.run([Self.model, Self.input, "--profile", "--warmup", "2", "--profile-json", dir + "/trace.json"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("op type"))
        #expect(result.stdout.contains("SpatialGate"), "the fused gates are steps of the profiled plan")
        let trace = try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: dir + "/trace.json"))) as? [String: Any]
        let events = try #require(trace?["traceEvents"] as? [[String: Any]])
        #expect(events.count == (try Self.observedEvents()).count)
        #expect(events.allSatisfy { $0["ph"] as? String == "X" && $0["dur"] is Double && $0["ts"] is Double })
    }

    @Test func inspectReportsWhatPyTorchAndTheSeedReport() throws {
        let text = try CLI.run(["inspect", Self.model])
        #expect(text.status == 0)
        #expect(text.stdout.contains("attention   2 map(s) in 1 block(s)"))
        let json = try CLI.run(["inspect", "--json", "Models/seed000_cbam_fc_k7/dynamo_op20.onnx"])
        let report = try JSONDecoder().decode(InspectionReport.self, from: Data(json.stdout.utf8))
        // Seed 000's table (torchstat) and PyTorch's sum(p.numel()) both give 610 parameters:
        // two bias-free Linear layers 32→8→32 (512) and a 2→1 7×7 conv (98).
        #expect(report.parameterCount == 610)
        // The seed's table: the spatial conv costs 25,088 multiply-adds (1×16×16 outputs × 98 taps),
        // the FC layers 2 × (256 + 256) for the avg and max paths.
        #expect(report.nodes.filter { $0.opType == "Conv" }.map(\.macs) == [25_088])
        #expect(report.totalMACs == 25_088 + 1_024)
        #expect(report.inputs.first?.shape == "[batch, 32, 16, 16]")
        #expect(report.attention.map(\.shape) == ["[batch, 32]", "[batch, 1, 16, 16]"])
    }
}
