import Foundation

/// One-line numeric summaries of tensors, for the CLI and reports.
public enum Summary {
    /// `min -0.12  max 3.4  mean 0.56` (NaN counted separately when present).
    public static func line(_ tensor: Tensor) -> String {
        let values = tensor.doubles()
        guard !values.isEmpty else { return "(empty)" }
        let finite = values.filter { !$0.isNaN }
        let nanNote = finite.count < values.count ? "  NaN \(values.count - finite.count)" : ""
        guard let low = finite.min(), let high = finite.max() else { return "all NaN" }
        let mean = finite.reduce(0, +) / Double(finite.count)
        return "min \(format(low))  max \(format(high))  mean \(format(mean))\(nanNote)"
    }

    /// The `k` largest entries of each row of a `[N, classes]` tensor, as (index, score).
    public static func topK(_ tensor: Tensor, k: Int = 5) -> [[(index: Int, score: Double)]] {
        guard tensor.rank == 2, tensor.shape[1] > 0 else { return [] }
        let values = tensor.doubles(), classes = tensor.shape[1]
        return (0..<tensor.shape[0]).map { row in
            let slice = values[(row * classes)..<((row + 1) * classes)]
            return slice.enumerated()
                .sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }
                .prefix(k)
                .map { (index: $0.offset, score: $0.element) }
        }
    }

    /// Compact number formatting: 6 significant digits.
    public static func format(_ value: Double) -> String {
        String(format: "%.6g", value)
    }
}
