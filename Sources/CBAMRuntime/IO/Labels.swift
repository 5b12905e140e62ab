import Foundation

/// Class names for the top-5 lines (`--labels FILE`): one name a line, line k naming class k.
public enum Labels {
    /// Largest labels file read (ImageNet-21k's names take about 1 MB).
    static let maxBytes = 16 << 20

    /// The names in `path`, in order. Trailing spaces and `\r` are dropped; a final empty line
    /// does not count. Refuses a missing, empty, oversized or non-UTF-8 file.
    public static func read(contentsOf path: String) throws -> [String] {
        try withErrorContext(file: path) {
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            if let size = attributes?[.size] as? Int, size > maxBytes {
                throw CBAMError(.io, "the labels file is \(size) bytes, over \(maxBytes); it should hold one class name a line")
            }
            guard let data = FileManager.default.contents(atPath: path) else { throw CBAMError(.io, "cannot read the file") }
            guard let text = String(data: data, encoding: .utf8) else { throw CBAMError(.io, "the labels file is not UTF-8 text") }
            // "\r\n" is one Character in Swift, so both line ends are named.
            var names = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map {
                String($0).trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\r")))
            }
            if names.last == "" { names.removeLast() }
            guard !names.isEmpty else { throw CBAMError(.io, "the labels file is empty; it should hold one class name a line") }
            return names
        }
    }
}
