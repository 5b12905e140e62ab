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

/// An image file made into a model input.
public struct ImageInput: Sendable {
    public var tensor: Tensor
    /// The 8-bit pixels the tensor was made from (after gray, resize and crop): what the
    /// network sees, for drawing attention maps over.
    public var pixels: ImagePreprocessing.Pixels
    public var decoded: DecodedImage
    public var preprocessing: ImagePreprocessing
    public var usedDefaults: Bool

    /// One line saying exactly what was done, e.g.
    /// `image: cat.jpg (JPEG 500×375, color) → shorter side resized to 256 (bilinear, antialiased),
    /// center crop 224×224, scaled to [0, 1], normalised with ImageNet mean/std, RGB → [1, 3, 224, 224]`.
    public func summary(path: String) -> String {
        "image: \(path) (\(decoded.format) \(decoded.image.width)×\(decoded.image.height), \(decoded.details)) → "
            + preprocessing.description + " → " + Shape.describe(tensor.shape)
            + (usedDefaults ? " (torchvision's ImageNet evaluation defaults for this input; see --resize, --crop, --mean, --std)" : "")
    }
}

extension InputFiles {
    /// Decodes a PNG or JPEG and preprocesses it for the input `info` (see
    /// ``ImagePreprocessing/resolve(_:for:)``). Errors name the file.
    public static func loadImage(_ path: String, for info: ValueInfo, request: ImagePreprocessing.Request,
                                 maxPixels: Int = ImageFile.defaultMaxPixels) throws -> ImageInput {
        let decoded = try ImageFile.read(contentsOf: path, maxPixels: maxPixels)
        return try withErrorContext(file: path) {
            let (preprocessing, usedDefaults) = try ImagePreprocessing.resolve(request, for: info)
            let pixels = try preprocessing.pixels(decoded.image, maxPixels: maxPixels)
            if let dims = info.shape, dims.count == 4 {
                for (axis, got, what) in [(2, pixels.height, "height"), (3, pixels.width, "width")] {
                    if case .fixed(let want) = dims[axis], want != got {
                        throw CBAMError(.shapeMismatch, "input \"\(info.name)\" \(info.shapeDescription) needs \(what) \(want) but the image gives \(pixels.height)×\(pixels.width) after preprocessing (\(preprocessing)); use --crop HxW")
                    }
                }
            }
            let tensor = try preprocessing.tensor(from: pixels)
            return ImageInput(tensor: tensor, pixels: pixels, decoded: decoded, preprocessing: preprocessing, usedDefaults: usedDefaults)
        }
    }
}
