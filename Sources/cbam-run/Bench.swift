import ArgumentParser
import CBAMRuntime
import Dispatch
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time repeated runs of a model (tools/bench.py sets the figures beside onnxruntime and OpenVINO).",
        discussion: """
            Prints the median, mean, min and max milliseconds per run, the plan's compile time and \
            peak memory, and the process's peak resident memory; JSON with --json. Inputs not given \
            as files are filled with seeded random values (floats uniform in [-1, 1), integers 0) \
            of their declared shape, a symbolic dimension taken as 1; standard error says so.

            Examples:
              cbam-run bench model.onnx input.npy --threads 1
              cbam-run bench model.onnx --runs 50 --json
            """)

    @Argument(help: "The .onnx model file.")
    var model: String

    @Argument(help: "Input files (.npy or .pb), in the order of the model's inputs (default: random values of each input's declared shape).")
    var inputs: [String] = []

    @Option(help: "Timed runs.") var runs = 20
    @Option(help: "Untimed warm-up runs.") var warmup = 3
    @Flag(help: "Print the result as JSON.") var json = false
    @OptionGroup var session: SessionFlags

    func validate() throws {
        guard runs >= 1, warmup >= 0 else { throw ValidationError("--runs must be ≥ 1 and --warmup ≥ 0") }
    }

    func run() throws {
        do {
            // The process before the model: runtime libraries loaded and started (what the
            // benchmark subtracts for the Python peers is their process after importing the library).
            let startRSS = residentBytes("VmRSS:")
            let session = try Session(contentsOf: model, options: self.session.options)
            let (loadedRSS, loadPeakRSS) = (residentBytes("VmRSS:"), residentBytes("VmHWM:"))
            let required = session.requiredInputs
            guard inputs.count <= required.count else {
                throw CBAMError(.usage, "\(model) takes \(required.count) input(s) (\(required.map(\.name).joined(separator: ", "))), got \(inputs.count) files")
            }
            var feeds: [String: Tensor] = [:]
            for (info, path) in zip(required, inputs) {
                feeds[info.name] = try InputFiles.conform(try InputFiles.load(path), to: info, file: path).0
            }
            var generated: [String] = []
            for info in required.dropFirst(inputs.count) {
                let tensor = try randomInput(for: info)
                feeds[info.name] = tensor
                generated.append("\(info.name) \(info.elementType.map { "\($0)" } ?? "") \(Shape.describe(tensor.shape))")
            }
            if !generated.isEmpty {
                FileHandle.standardError.write(Data("bench: random inputs (no files given): \(generated.joined(separator: "; "))\n".utf8))
            }
            let plan = try session.prepare(feeds)
            let (compiledRSS, compilePeakRSS) = (residentBytes("VmRSS:"), residentBytes("VmHWM:"))
            for _ in 0..<warmup { _ = try session.run(feeds) }
            var times: [Double] = []
            for _ in 0..<runs {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try session.run(feeds)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            }
            times.sort()
            let median = times[times.count / 2], mean = times.reduce(0, +) / Double(times.count)
            let rss = residentBytes("VmHWM:")
            if json {
                print("{\"model\": \"\(model)\", \"runs\": \(runs), \"threads\": \(session.options.threads), \"median_ms\": \(median), \"mean_ms\": \(mean), \"min_ms\": \(times[0]), \"max_ms\": \(times[times.count - 1]), \"compile_ms\": \(plan.compileSeconds * 1000), \"plan_peak_bytes\": \(plan.peakBytes), \"weight_bytes\": \(plan.weightBytes), \"peak_rss_bytes\": \(rss), \"rss_at_start_bytes\": \(startRSS), \"rss_after_load_bytes\": \(loadedRSS), \"peak_rss_of_load_bytes\": \(loadPeakRSS), \"rss_after_compile_bytes\": \(compiledRSS), \"peak_rss_of_compile_bytes\": \(compilePeakRSS), \"steps\": \(plan.steps), \"nodes\": \(plan.nodes)}")
            } else {
                print(String(format: "%@  median %.3f ms  mean %.3f ms  min %.3f ms  max %.3f ms  (%d runs, %d threads)", model, median, mean, times[0], times[times.count - 1], runs, session.options.threads))
                print(String(format: "plan: compiled in %.2f ms, %d steps for %d nodes, peak %@ beyond %@ of weights; process peak RSS %@",
                             plan.compileSeconds * 1000, plan.steps, plan.nodes, megabytes(plan.peakBytes), megabytes(plan.weightBytes), megabytes(rss)))
            }
        } catch {
            throw fail(error)
        }
    }
}

/// Seeded random values of the input's declared shape, a symbolic or unknown dimension taken as 1:
/// floats uniform in [-1, 1) (the same every time), integers 0 and bools false (indices and masks
/// that are safe for any model). An input without a shape or of a type cbam-run does not hold is an
/// error naming it; so is a shape past 2^31 elements.
func randomInput(for info: ValueInfo) throws -> Tensor {
    guard let type = info.elementType else {
        throw CBAMError(.unsupportedType, "input \"\(info.name)\" has an element type cbam-run does not hold: give it as a file")
    }
    guard let dims = info.shape else {
        throw CBAMError(.missingInput, "input \"\(info.name)\" records no shape: give it as a file")
    }
    let shape = dims.map { dimension -> Int in
        if case .fixed(let n) = dimension { return n }
        return 1
    }
    let count = try Shape.elementCount(shape)
    guard count <= 1 << 31 else {
        throw CBAMError(.resourceLimit, "input \"\(info.name)\" \(Shape.describe(shape)) is too large to make up: give it as a file")
    }
    // A 64-bit linear congruential generator (Knuth's MMIX constants), top 24 bits as the fraction.
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    let floats = (0..<(type == .float || type == .double || type == .float16 ? count : 0)).map { _ -> Float in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24) * 2 - 1
    }
    let storage: Tensor.Storage
    switch type {
    case .float: storage = .float(floats)
    case .double: storage = .double(floats.map { Double($0) })
    case .float16: storage = .float16(floats.map { Float16($0) })
    case .int64: storage = .int64(Array(repeating: 0, count: count))
    case .int32: storage = .int32(Array(repeating: 0, count: count))
    case .int8: storage = .int8(Array(repeating: 0, count: count))
    case .uint8: storage = .uint8(Array(repeating: 0, count: count))
    case .bool: storage = .bool(Array(repeating: false, count: count))
    }
    return try Tensor(shape: shape, storage: storage)
}

/// The process's resident set size in bytes from /proc/self/status: `VmHWM:` the peak so far,
/// `VmRSS:` now. (getrusage's ru_maxrss would also count a parent's peak inherited across
/// fork, e.g. a large Python.)
func residentBytes(_ field: String) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
          let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
    return kilobytes * 1024
}

func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }
