/// Reads model inputs from files: `.npy` arrays or ONNX `TensorProto` `.pb` files.
public enum InputFiles {
    /// Loads `path` (by extension: `.pb` is a TensorProto, anything else `.npy`).
    public static func load(_ path: String) throws -> Tensor {
        if path.hasSuffix(".pb") { return try ModelLoader.loadTensor(contentsOf: path).tensor }
        return try NPY.read(contentsOf: path)
    }

    /// Converts `tensor` to the element type `info` declares, when numpy's defaults
    /// (float64 from `np.random.rand`, int64 from `np.arange`) differ from the model's.
    /// Returns the tensor and a one-line note when it converted; refuses lossy
    /// conversions to integer types.
    public static func conform(_ tensor: Tensor, to info: ValueInfo, file: String) throws -> (Tensor, note: String?) {
        guard let target = info.elementType, target != tensor.dataType else { return (tensor, nil) }
        let convertible: Bool
        switch (tensor.dataType, target) {
        case (.double, .float), (.int64, .float), (.int32, .float), (.uint8, .float), (.int8, .float), (.bool, .float),
             (.float, .double), (.int64, .double), (.int32, .double),
             (.int32, .int64), (.uint8, .int64), (.int8, .int64),
             (.float, .float16), (.double, .float16):
            convertible = true
        default:
            convertible = false
        }
        guard convertible else {
            throw CBAMError(.typeMismatch, "input \"\(info.name)\" must be \(target) but the file holds \(tensor.dataType)", file: file)
        }
        let converted = try cast(tensor, to: target)
        return (converted, "note: \(file): converted \(tensor.dataType) to \(target) for input \"\(info.name)\"")
    }
}
