import Foundation

/// Times every node of a run (an observer that asks the runner for timing).
///
/// ``table()`` gives per-op-type and per-node totals; ``chromeTrace()`` the JSON
/// that chrome://tracing and Perfetto open, with one complete ("X") event per node,
/// as onnxruntime's profiler writes.
public final class Profiler: RunObserver {
    public struct Record: Sendable {
        public let node: String
        public let opType: String
        public let seconds: Double
        public let startNanoseconds: UInt64
        public let outputShapes: [[Int]]
        /// Multiply-accumulates of the step (Conv, Gemm, MatMul), from the plan.
        public let macs: Int
        /// The model's nodes the step stands for (more than one where the plan fused them).
        public let replaced: [String]
        /// How the step computed (the kernel the plan chose).
        public let kernel: String

        /// Billions of floating-point operations per second (2 per multiply-accumulate).
        public var gflops: Double? { macs > 0 && seconds > 0 ? 2 * Double(macs) / seconds / 1e9 : nil }
    }

    public private(set) var records: [Record] = []
    public var wantsTiming: Bool { true }

    public init() {}

    public func nodeDidRun(_ event: NodeEvent) throws {
        records.append(Record(node: event.node.ref.name, opType: event.node.opType, seconds: event.seconds ?? 0,
                              startNanoseconds: event.startNanoseconds ?? 0, outputShapes: event.outputs.map(\.shape),
                              macs: event.macs, replaced: event.replaced.map(\.ref.name), kernel: event.kernel))
    }

    public var totalSeconds: Double { records.reduce(0) { $0 + $1.seconds } }

    /// Per-op-type totals (time, share, calls), then the `topNodes` slowest nodes.
    public func table(topNodes: Int = 15) -> String {
        let total = max(totalSeconds, 1e-12)
        var byOp: [String: (seconds: Double, calls: Int)] = [:]
        for record in records {
            byOp[record.opType, default: (0, 0)].seconds += record.seconds
            byOp[record.opType, default: (0, 0)].calls += 1
        }
        var lines = ["op type                    total ms    share   calls"]
        for (op, entry) in byOp.sorted(by: { $0.value.seconds > $1.value.seconds }) {
            lines.append(pad(op, 24) + String(format: " %10.3f %7.1f%% %7d", entry.seconds * 1000, 100 * entry.seconds / total, entry.calls))
        }
        lines.append(pad("total", 24) + String(format: " %10.3f %7.1f%% %7d", totalSeconds * 1000, 100.0, records.count))
        lines.append("")
        lines.append("slowest nodes              ms    share  op               GFLOP/s  output shape         kernel")
        for record in records.sorted(by: { $0.seconds > $1.seconds }).prefix(topNodes) {
            let shape = record.outputShapes.first.map(Shape.describe) ?? ""
            let rate = record.gflops.map { String(format: "%7.1f", $0) } ?? "       "
            lines.append(pad(String(record.node.suffix(24)), 24) + String(format: " %8.3f %7.1f%%  ", record.seconds * 1000, 100 * record.seconds / total)
                         + pad(record.opType, 16) + " " + rate + "  " + pad(shape, 20) + " " + record.kernel)
        }
        let fused = records.filter { $0.replaced.count > 1 }
        if !fused.isEmpty {
            lines.append("")
            lines.append("\(fused.count) step(s) stand for several of the model's nodes (fused by the plan); their names are joined with \"+\".")
        }
        return lines.joined(separator: "\n")
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    /// Chrome trace JSON (Trace Event Format): times in microseconds from the first node.
    public func chromeTrace() throws -> Data {
        let origin = records.map(\.startNanoseconds).min() ?? 0
        let events: [[String: Any]] = records.map { record in
            ["name": record.node, "cat": "Node", "ph": "X", "pid": 1, "tid": 1,
             "ts": Double(record.startNanoseconds - origin) / 1000, "dur": record.seconds * 1e6,
             "args": ["op_name": record.opType, "output_shape": record.outputShapes.map(Shape.describe).joined(separator: " "),
                      "macs": record.macs, "gflops": record.gflops ?? 0, "nodes": record.replaced, "kernel": record.kernel]]
        }
        return try JSONSerialization.data(withJSONObject: ["traceEvents": events, "displayTimeUnit": "ms"], options: [.prettyPrinted])
    }
}
