import Foundation

/// What the process runs on, for `--version` and benchmark headers.
public enum CPUInfo {
    /// The instruction set CVectorMath's loops (exp, sigmoid, softmax's exp, carried pools, our
    /// convolution kernels) run with on this CPU: avx512, avx2 (with FMA) or portable, picked from
    /// cpuid, and whether the environment's CBAM_MAX_ISA capped it.
    public static var vectorLoops: String {
        let best = VectorMath.InstructionSet.best, cpu = VectorMath.InstructionSet.cpu
        let cap = ProcessInfo.processInfo.environment["CBAM_MAX_ISA"]
        return best == cpu ? "\(best)" + (cap.map { ", CBAM_MAX_ISA=\($0) left it (avx2 or portable cap it)" } ?? "")
            : "\(best), capped by CBAM_MAX_ISA=\(cap ?? "") (the CPU has \(cpu))"
    }

    /// The CPU's model name from /proc/cpuinfo ("Intel(R) Xeon(R) Processor", …).
    public static var modelName: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let value = line.split(separator: ":", maxSplits: 1).last else { return "unknown" }
        return value.trimmingCharacters(in: .whitespaces)
    }
}
