import Foundation

/// Every file cbam-run writes goes through here: written to a temporary file and
/// renamed, so a failure never leaves a partial file behind.
public enum FileOutput {
    public static func write(_ bytes: [UInt8], to path: String) throws {
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw CBAMError(.io, "cannot write: \(error.localizedDescription)", file: path)
        }
    }
}
