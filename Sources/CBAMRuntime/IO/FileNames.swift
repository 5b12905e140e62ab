/// Turns tensor names (which may hold `/`, `:` or `.` from exporters, e.g.
/// `/layer1/cbam/Sigmoid_output_0`) into names safe for any file system.
public enum FileNames {
    public static func safe(_ name: String) -> String {
        var result = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
        while result.hasPrefix(".") || result.hasPrefix("_") { result.removeFirst() }
        if result.isEmpty { result = "tensor" }
        return String(result.prefix(200))
    }
}
