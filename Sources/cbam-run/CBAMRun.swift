import ArgumentParser
import CBAMRuntime
import Foundation

@main
struct CBAMRun: ParsableCommand {
    static func main() {
        tuneAllocator()
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
              cbam-run inspect model.onnx
            """,
        subcommands: [Run.self, Inspect.self, Bench.self],
        defaultSubcommand: Run.self)
}

/// Flags shared by the subcommands that build a session.
struct SessionFlags: ParsableArguments {
    @Option(name: .long, help: "Threads for Conv, Gemm and MatMul (default: all cores).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 || threads > 256 {
            throw ValidationError("--threads must be between 1 and 256")
        }
    }

    var options: SessionOptions {
        SessionOptions(threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
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
