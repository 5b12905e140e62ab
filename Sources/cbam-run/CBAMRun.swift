import ArgumentParser
import CBAMRuntime
import Foundation

@main
struct CBAMRun: ParsableCommand {
    static func main() {
        shortenOpenMPSpin()
        tuneAllocator()
        FileOutput.removeTemporaryFilesOnSignal()
        if let pause = ProcessInfo.processInfo.environment["CBAM_TEST_PAUSE_BEFORE_RENAME"].flatMap(Double.init) {
            FileOutput.pauseBeforeRename = pause
        }
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "cbam-run",
        abstract: "Run ONNX attention CNNs (CBAM, SE, ECA, SK, ResNeSt) exported from PyTorch, on the CPU.",
        discussion: """
            Examples:
              cbam-run Models/seed000_cbam_fc_k7/torchscript_op17.onnx Models/seed000_cbam_fc_k7/input.npy -o y.npy
              cbam-run model.onnx --input x=image.npy --output-dir out/
              cbam-run model.onnx photo.jpg --attention out/
              cbam-run batch model.onnx photos/ --output-dir results/ --attention
              cbam-run inspect model.onnx
            """,
        version: CBAMRun.versionText,
        subcommands: [Run.self, Inspect.self, Bench.self, Batch.self],
        defaultSubcommand: Run.self)
}

extension CBAMRun {
    /// `cbam-run --version`: the version, the CPU, and what the math libraries run on it.
    static var versionText: String {
        """
        cbam-run 0.3.0
        cpu: \(CPUInfo.modelName)
        oneDNN \(OneDNN.version): kernels for \(OneDNN.isaName) (chosen from the CPU's feature bits)
        sgemm: oneDNN's (im2col candidate for small convolutions, Gemm, MatMul); no OpenBLAS
        vector loops: \(CPUInfo.vectorLoops) (exp, sigmoid, softmax, carried pools, our convolution kernels; picked from cpuid)
        OpenMP wait: \(openMPWaitSettings)
        """
    }
}

/// Flags shared by the subcommands that build a session.
struct SessionFlags: ParsableArguments {
    @Option(name: .long, help: "Threads for every kernel that splits its work (default: all cores).")
    var threads: Int?

    @Option(name: .customLong("max-memory"), help: ArgumentHelp(
        "Refuse a plan whose intermediate and folded memory exceeds SIZE (bytes, or with K, M, G, T; default: what the machine can give).",
        valueName: "SIZE"))
    var maxMemory: String?

    @Option(name: .customLong("max-macs"), help: ArgumentHelp(
        "Refuse a plan that needs more than N multiply-accumulates per run (e.g. 1e11; default: unlimited).", valueName: "N"))
    var maxMACs: String?

    @Option(name: .customLong("timeout"), help: ArgumentHelp(
        "Stop a run that takes longer than SECONDS (checked between steps; compiling a new plan counts) with an error (default: no limit).",
        valueName: "SECONDS"))
    var timeout: Double?

    @Flag(name: .customLong("no-passes"), help: "Run every node as the file has it: no BatchNorm folding, fusion or in-place ops (for comparing).")
    var noPasses = false

    @Option(name: .customLong("memory"), help: ArgumentHelp(
        "speed: take faster kernels that hold more memory (Winograd's transformed weights and scratch); lean: hold one copy of the weights, the arena and scratch that fits it (peak about 1.3× the weights on ResNet-50 + CBAM). Default: CBAM_MEMORY, else speed.",
        valueName: "speed|lean"))
    var memory: MemoryPreference?

    func validate() throws {
        if let threads, threads < 1 || threads > 256 {
            throw ValidationError("--threads must be between 1 and 256")
        }
        if let timeout, !(timeout > 0 && timeout.isFinite) {
            throw ValidationError("--timeout takes a positive number of seconds such as 30 or 0.5")
        }
        _ = try limits()
    }

    /// The limits the flags give, or a usage error naming the flag.
    func limits() throws -> ResourceLimits {
        var limits = ResourceLimits()
        if let maxMemory {
            guard let bytes = Self.parseSize(maxMemory) else {
                throw ValidationError("--max-memory takes a size such as 8G, 512M or 1000000 (got '\(maxMemory)')")
            }
            limits.maxMemory = bytes
        }
        if let maxMACs {
            guard let value = Double(maxMACs), value >= 0, value.isFinite else {
                throw ValidationError("--max-macs takes a non-negative number such as 1e11 (got '\(maxMACs)')")
            }
            limits.maxMACs = value >= Double(Int.max) ? .max : Int(value)
        }
        return limits
    }

    /// "8G", "512M", "1.5G", "100000" → bytes (binary units); nil when it is not a size.
    static func parseSize(_ text: String) -> Int? {
        let units: [Character: Double] = ["K": 1024, "M": 1024 * 1024, "G": 1024 * 1024 * 1024, "T": 1024.0 * 1024 * 1024 * 1024]
        var number = text.uppercased()
        if number.hasSuffix("IB") { number.removeLast(2) } else if number.hasSuffix("B") { number.removeLast() }
        var scale = 1.0
        if let last = number.last, let unit = units[last] { scale = unit; number.removeLast() }
        guard let value = Double(number), value >= 0, value.isFinite else { return nil }
        let bytes = value * scale
        return bytes >= Double(Int.max) ? .max : Int(bytes)
    }

    var options: SessionOptions {
        SessionOptions(threads: threads ?? ProcessInfo.processInfo.activeProcessorCount,
                       limits: (try? limits()) ?? ResourceLimits(), optimize: !noPasses, memory: memory ?? .fromEnvironment, timeout: timeout)
    }
}

/// Prints a cbam-run error as one line on standard error and exits non-zero.
func fail(_ error: Error) -> ExitCode {
    let text = (error as? CBAMError)?.description ?? "\(error)"
    FileHandle.standardError.write(Data("cbam-run: error: \(text)\n".utf8))
    return ExitCode(1)
}

func note(_ text: String) {
    FileHandle.standardError.write(Data("\(text)\n".utf8))
}

/// Shortens libgomp's spin. After each parallel region libgomp's idle threads spin for
/// 300,000 iterations before sleeping: fast on an idle machine, ruinous when another
/// process holds a core, because a spinning thread then waits out whole scheduler slices
/// for a partner that is not running. Measured (SE-ResNet-34, batch 2, 2 threads, a fuzzer
/// busy on one of the 2 cores): 520 ms per run by default, 136 ms with GOMP_SPINCOUNT=10000,
/// 117 ms with OMP_WAIT_POLICY=passive (1 thread: 108 ms). libgomp reads these settings once,
/// when it is loaded, before `main`; so unless the user set either, the command re-executes
/// itself once with GOMP_SPINCOUNT=10000 (a short spin that keeps most of spinning's gain
/// on a quiet machine). The library (C API, Python) leaves the process's settings alone.
func shortenOpenMPSpin() {
    #if os(Linux)
    let environment = ProcessInfo.processInfo.environment
    guard environment["GOMP_SPINCOUNT"] == nil, environment["OMP_WAIT_POLICY"] == nil else { return }
    setenv("GOMP_SPINCOUNT", "10000", 1)
    _ = execv("/proc/self/exe", CommandLine.unsafeArgv)
    // exec failed (no /proc): carry on with libgomp's defaults.
    unsetenv("GOMP_SPINCOUNT")
    #endif
}

/// libgomp's wait settings in effect, for `--version`.
var openMPWaitSettings: String {
    let environment = ProcessInfo.processInfo.environment
    let set = ["GOMP_SPINCOUNT", "OMP_WAIT_POLICY"].compactMap { key in environment[key].map { "\(key)=\($0)" } }
    return set.isEmpty ? "libgomp's default spin" : set.joined(separator: " ")
}

/// Keeps large tensor buffers on the heap between runs. glibc's defaults hand buffers
/// over 128 KiB back to the kernel when freed, so every run page-faults its
/// intermediates in again; with these limits a repeated run reuses the same memory.
func tuneAllocator() {
    #if os(Linux)
    let mmapThreshold: Int32 = -3, trimThreshold: Int32 = -1  // M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (malloc.h)
    _ = glibcMallopt(mmapThreshold, 256 << 20)
    _ = glibcMallopt(trimThreshold, 512 << 20)
    #endif
}

#if os(Linux)
/// glibc's mallopt; the Glibc module does not export malloc.h.
@_silgen_name("mallopt") func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

extension MemoryPreference: ExpressibleByArgument {}
