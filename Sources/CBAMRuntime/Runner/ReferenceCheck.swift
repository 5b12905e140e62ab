import Foundation

/// Compares every node output with a reference `.npy` of the same (file-safe) name in
/// a folder (`--check-against DIR`, made by tools/dump_reference.py from onnxruntime
/// or PyTorch) and finds the first node whose output diverges beyond tolerance.
public final class ReferenceCheck: RunObserver {
    public struct Result: Sendable {
        public let tensor: String
        public let node: String
        public let opType: String
        /// nil when shapes or element types differ (see ``problem``).
        public let maxAbsoluteError: Double?
        public let problem: String?
        public let withinTolerance: Bool
    }

    public let directory: String
    public let atol: Double
    public let rtol: Double
    public private(set) var results: [Result] = []
    private let available: Set<String>

    public init(directory: String, atol: Double = 1e-4, rtol: Double = 1e-4) throws {
        self.directory = directory
        self.atol = atol
        self.rtol = rtol
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            throw CBAMError(.io, "cannot read the reference folder", file: directory)
        }
        available = Set(files.filter { $0.hasSuffix(".npy") })
    }

    /// Tensors already handled: a fused step and the inner node it reports may both carry one.
    private var compared = Set<String>()

    public func nodeDidRun(_ event: NodeEvent) throws {
        for (name, tensor) in zip(event.node.outputs, event.outputs) where !name.isEmpty && compared.insert(name).inserted {
            let file = FileNames.safe(name) + ".npy"
            guard available.contains(file) else { continue }
            let reference = try NPY.read(contentsOf: (directory as NSString).appendingPathComponent(file))
            results.append(compare(name, event.node, tensor, reference))
        }
    }

    func compare(_ name: String, _ node: Node, _ actual: Tensor, _ expected: Tensor) -> Result {
        guard actual.shape == expected.shape else {
            return Result(tensor: name, node: node.ref.name, opType: node.opType, maxAbsoluteError: nil,
                          problem: "shape \(Shape.describe(actual.shape)) but the reference has \(Shape.describe(expected.shape))", withinTolerance: false)
        }
        var worst = 0.0, within = true
        for (a, e) in zip(actual.doubles(), expected.doubles()) {
            if a.isNaN != e.isNaN { within = false; worst = .infinity; continue }
            if a.isNaN { continue }
            let difference = a == e ? 0 : abs(a - e)  // equal infinities differ by 0, not NaN
            worst = max(worst, difference.isNaN ? .infinity : difference)
            if difference > atol + rtol * abs(e) { within = false }
        }
        return Result(tensor: name, node: node.ref.name, opType: node.opType, maxAbsoluteError: worst, problem: nil, withinTolerance: within)
    }

    /// The first result (in execution order) outside tolerance.
    public var firstDivergence: Result? { results.first { !$0.withinTolerance } }

    public func report() -> String {
        var lines = results.map { r in
            let figure = r.maxAbsoluteError.map { String(format: "%.3g", $0) } ?? "-"
            return "\(r.withinTolerance ? "ok  " : "DIFF")  \(figure.padding(toLength: 10, withPad: " ", startingAt: 0))  \(r.tensor)  (\(r.opType) \"\(r.node)\")\(r.problem.map { ": " + $0 } ?? "")"
        }
        lines.append("compared \(results.count) tensor(s) with \(directory) (atol \(atol), rtol \(rtol))")
        if let first = firstDivergence {
            lines.append("first divergence: node \"\(first.node)\" (\(first.opType)), output \"\(first.tensor)\"")
        } else if !results.isEmpty {
            lines.append("no divergence")
        }
        return lines.joined(separator: "\n")
    }
}
