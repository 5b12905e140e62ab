import COpenBLAS
import Foundation

/// What the process runs on, for `--version` and benchmark headers.
public enum CPUInfo {
    /// The CPU's model name from /proc/cpuinfo ("Intel(R) Xeon(R) Processor", …).
    public static var modelName: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let value = line.split(separator: ":", maxSplits: 1).last else { return "unknown" }
        return value.trimmingCharacters(in: .whitespaces)
    }

    /// The kernel set OpenBLAS chose, with a warning when it is the generic fallback it takes
    /// on CPUs newer than its table (Debian 12's 0.3.21 runs "Prescott" SSE3 kernels on
    /// recent Xeons; oneDNN is unaffected).
    public static var openBLASCore: String {
        let core = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
        let generic = ["prescott", "core2", "katmai", "generic"].contains(core.lowercased())
        return generic ? "core \(core) — a generic fallback: this OpenBLAS does not know this CPU" : "core \(core)"
    }
}
