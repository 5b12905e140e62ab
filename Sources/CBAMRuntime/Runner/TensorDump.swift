import Foundation

/// Writes chosen intermediate tensors to `.npy` files as the run produces them
/// (`--dump NAME`, `--dump-all`), under file-system-safe names, and records the
/// mapping in `index.json` (file → tensor name, node, shape).
public final class TensorDump: RunObserver {
    public struct Entry: Codable, Sendable {
        public let tensor: String
        public let file: String
        public let node: String
        public let opType: String
        public let shape: [Int]
        public let dtype: String
    }

    public let directory: String
    let patterns: [String]
    let everything: Bool
    public private(set) var entries: [Entry] = []
    private var usedFiles: Set<String> = []

    /// `patterns` are tensor names with `*` and `?` wildcards; `everything` dumps every node output.
    public init(directory: String, patterns: [String], everything: Bool) throws {
        self.directory = directory
        self.patterns = patterns
        self.everything = everything
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CBAMError(.io, "cannot create the dump folder: \(error.localizedDescription)", file: directory)
        }
    }

    /// Tensors already handled: a fused step and the inner node it reports may both carry one.
    private var dumped = Set<String>()

    public func nodeDidRun(_ event: NodeEvent) throws {
        for (name, tensor) in zip(event.node.outputs, event.outputs) where !name.isEmpty && dumped.insert(name).inserted {
            guard everything || patterns.contains(where: { Glob.matches($0, name) }) else { continue }
            var file = FileNames.safe(name) + ".npy"
            var suffix = 2
            while usedFiles.contains(file) { file = FileNames.safe(name) + "_\(suffix).npy"; suffix += 1 }
            usedFiles.insert(file)
            try NPY.write(tensor, to: (directory as NSString).appendingPathComponent(file))
            entries.append(Entry(tensor: name, file: file, node: event.node.ref.name, opType: event.node.opType,
                                 shape: tensor.shape, dtype: tensor.dataType.description))
        }
    }

    /// Writes `index.json`; call after the run.
    public func writeIndex() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let path = (directory as NSString).appendingPathComponent("index.json")
        try FileOutput.write(Array(try encoder.encode(entries)), to: path)
    }
}

/// Shell-style wildcards: `*` any run of characters, `?` one character.
public enum Glob {
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern), t = Array(text)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count, p[pi] == "?" || p[pi] == t[ti] {
                pi += 1; ti += 1
            } else if pi < p.count, p[pi] == "*" {
                star = pi; mark = ti; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}
