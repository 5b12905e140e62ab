import ArgumentParser
import CBAMRuntime
import Dispatch
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time repeated runs of a model (tools/bench.py sets the figures beside onnxruntime and OpenVINO).",
        discussion: """
            Prints the median, mean, min and max milliseconds per run, the plan's compile time and \
            peak memory, and the process's peak resident memory; JSON with --json.
            """)

    @Argument(help: "The .onnx model file.")
    var model: String

    @Argument(help: "Input files (.npy or .pb), in the order of the model's inputs.")
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
            var feeds: [String: Tensor] = [:]
            for (info, path) in zip(session.requiredInputs, inputs) {
                feeds[info.name] = try InputFiles.conform(try InputFiles.load(path), to: info, file: path).0
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
