import Foundation

/// What the process runs on, for `--version` and benchmark headers.
public enum CPUInfo {
    /// The instruction set CVectorMath's loops (exp, sigmoid, softmax's exp, carried pools) run
    /// with on this CPU: avx512, avx2 (with FMA) or portable, picked from cpuid.
    public static var vectorLoops: String { "\(VectorMath.InstructionSet.best)" }

    /// The CPU's model name from /proc/cpuinfo ("Intel(R) Xeon(R) Processor", …).
    public static var modelName: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let value = line.split(separator: ":", maxSplits: 1).last else { return "unknown" }
        return value.trimmingCharacters(in: .whitespaces)
    }
}
