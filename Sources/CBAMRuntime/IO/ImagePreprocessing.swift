/// Turns a decoded image into a model input the way a torchvision transform does.
///
/// The steps, in this order, are those of
/// `Compose([Grayscale(), Resize(N), CenterCrop((H, W)), ToTensor(), Normalize(mean, std)])`
/// applied to a PIL image (each step only when asked for):
///
/// 1. `gray`: PIL's `convert("L")`, `L = (19595 R + 38470 G + 7471 B + 2^15) >> 16`
///    (ITU-R 601-2 luma in 16-bit fixed point).
/// 2. `resize`: the shorter side becomes N and the longer `N * long / short` (rounded down),
///    as torchvision computes it; bilinear with antialiasing (the triangle filter widened by the
///    scale when shrinking), PIL's algorithm: a horizontal then a vertical pass, each with
///    22-bit fixed-point weights and its result rounded to 8 bits.
/// 3. `crop`: the center H × W, its top-left corner at `round((size - crop) / 2)` with Python's
///    round-half-to-even; a crop larger than the image pads it with zeros first, as torchvision does.
/// 4. bytes / 255 in float32, then `(x - mean) / std` per channel.
/// 5. `bgr`: the channels in the order B, G, R (the `imagenet` mean/std follow their colors).
///
/// The result is a `[1, C, H, W]` float32 tensor (C = 1 for gray, otherwise 3).
/// Up to the crop everything is 8-bit integer arithmetic that matches PIL's bit for bit.
public struct ImagePreprocessing: Sendable, Equatable, CustomStringConvertible {
    public enum Channels: String, Sendable, CaseIterable {
        case rgb, bgr, gray
    }

    public struct Size: Sendable, Equatable, CustomStringConvertible {
        public var height: Int
        public var width: Int
        public init(height: Int, width: Int) {
            self.height = height
            self.width = width
        }
        public var description: String { "\(height)×\(width)" }
    }

    /// torchvision's ImageNet statistics (RGB order).
    public static let imagenetMean: [Float] = [0.485, 0.456, 0.406]
    public static let imagenetStd: [Float] = [0.229, 0.224, 0.225]

    /// Largest side a resize or crop may ask for.
    public static let maxSide = 65536

    /// The shorter side after resizing; nil: no resize.
    public var resize: Int?
    /// The center crop; nil: no crop.
    public var crop: Size?
    /// Per-channel mean and std (in the output channel order; one value applies to every
    /// channel); nil: no normalisation (values stay in [0, 1]).
    public var mean: [Float]?
    public var std: [Float]?
    /// True when mean and std are the `imagenet` preset (only for the description).
    public var imagenetNormalisation: Bool
    public var channels: Channels

    public init(resize: Int? = nil, crop: Size? = nil, mean: [Float]? = nil, std: [Float]? = nil,
                channels: Channels = .rgb, imagenetNormalisation: Bool = false) {
        self.resize = resize
        self.crop = crop
        self.mean = mean
        self.std = std
        self.channels = channels
        self.imagenetNormalisation = imagenetNormalisation
    }

    /// The number of channels of the result.
    public var channelCount: Int { channels == .gray ? 1 : 3 }

    /// The ImageNet statistics in the order of `channels`.
    public static func imagenet(_ channels: Channels) -> (mean: [Float], std: [Float]) {
        channels == .bgr ? (imagenetMean.reversed(), imagenetStd.reversed()) : (imagenetMean, imagenetStd)
    }

    /// "resize the shorter side to 256 (bilinear, antialiased), center-crop 224×224, scale to [0, 1], ImageNet mean/std, RGB".
    public var description: String {
        var steps: [String] = []
        if channels == .gray { steps.append("gray (PIL's luma)") }
        if let resize { steps.append("shorter side resized to \(resize) (bilinear, antialiased)") }
        if let crop { steps.append("center crop \(crop)") }
        steps.append("scaled to [0, 1]")
        if let mean, let std {
            if imagenetNormalisation {
                steps.append("normalised with ImageNet mean/std")
            } else {
                steps.append("normalised with mean \(Self.list(mean)) std \(Self.list(std))")
            }
        }
        steps.append(channels.rawValue.uppercased())
        return steps.joined(separator: ", ")
    }

    static func list(_ values: [Float]) -> String {
        "[" + values.map { Summary.format(Double($0)) }.joined(separator: ", ") + "]"
    }

    // MARK: - Applying

    /// An 8-bit image after the gray conversion, resize and crop: `channels` bytes a pixel,
    /// row-major. This is what the network sees, before scaling and normalisation.
    public struct Pixels: Sendable, Equatable {
        public var width: Int
        public var height: Int
        public var channels: Int
        public var bytes: [UInt8]

        /// As RGB (gray repeated), for drawing.
        public var rgb: RGBImage {
            if channels == 3 { return RGBImage(width: width, height: height, pixels: bytes) }
            var out = [UInt8](repeating: 0, count: bytes.count * 3)
            for (i, v) in bytes.enumerated() {
                out[3 * i] = v
                out[3 * i + 1] = v
                out[3 * i + 2] = v
            }
            return RGBImage(width: width, height: height, pixels: out)
        }
    }

    /// Gray conversion, resize and crop of `image`. A resize or crop whose result would have
    /// more than `maxPixels` pixels is refused before it is allocated.
    public func pixels(_ image: RGBImage, maxPixels: Int = ImageFile.defaultMaxPixels) throws -> Pixels {
        try ImageFile.checkSize(width: image.width, height: image.height, maxPixels: Int.max)
        var current: Pixels
        if channels == .gray {
            var gray = [UInt8](repeating: 0, count: image.width * image.height)
            for i in 0..<gray.count {
                let r = Int(image.pixels[3 * i]), g = Int(image.pixels[3 * i + 1]), b = Int(image.pixels[3 * i + 2])
                gray[i] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
            }
            current = Pixels(width: image.width, height: image.height, channels: 1, bytes: gray)
        } else {
            current = Pixels(width: image.width, height: image.height, channels: 3, bytes: image.pixels)
        }
        if let resize {
            let size = try Self.resizedSize(width: current.width, height: current.height, shorter: resize)
            try Self.checkResult(width: size.width, height: size.height, maxPixels: maxPixels, step: "--resize \(resize)")
            current = Self.resample(current, toWidth: size.width, toHeight: size.height)
        }
        if let crop {
            try Self.checkResult(width: crop.width, height: crop.height, maxPixels: maxPixels, step: "--crop \(crop.height)x\(crop.width)")
            current = try Self.centerCrop(current, to: crop)
        }
        return current
    }

    static func checkResult(width: Int, height: Int, maxPixels: Int, step: String) throws {
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, pixels <= maxPixels else {
            throw CBAMError(.usage, "\(step) makes a \(width)×\(height) image, over the limit of \(maxPixels) pixels (--max-pixels)")
        }
    }

    /// The model input for `image`: `[1, C, H, W]` float32.
    public func tensor(_ image: RGBImage) throws -> Tensor {
        try tensor(from: try pixels(image))
    }

    /// Scales the 8-bit pixels to [0, 1], normalises, and lays them out as `[1, C, H, W]`.
    public func tensor(from pixels: Pixels) throws -> Tensor {
        let c = pixels.channels, plane = pixels.width * pixels.height
        let means = try Self.perChannel(mean, count: c, fill: 0, what: "--mean")
        let stds = try Self.perChannel(std, count: c, fill: 1, what: "--std")
        var out = [Float](repeating: 0, count: c * plane)
        for channel in 0..<c {
            // BGR: output channel 0 reads the image's blue (2), and so on.
            let source = channels == .bgr ? c - 1 - channel : channel
            let m = means[channel], s = stds[channel]
            let normalise = mean != nil || std != nil
            for i in 0..<plane {
                let x = Float(pixels.bytes[i * c + source]) / 255
                out[channel * plane + i] = normalise ? (x - m) / s : x
            }
        }
        return try Tensor(shape: [1, c, pixels.height, pixels.width], floats: out)
    }

    /// `values` for `count` channels: nil → `fill`; one value → repeated; else exactly `count`.
    static func perChannel(_ values: [Float]?, count: Int, fill: Float, what: String) throws -> [Float] {
        guard let values else { return [Float](repeating: fill, count: count) }
        if values.count == 1 { return [Float](repeating: values[0], count: count) }
        guard values.count == count else {
            throw CBAMError(.usage, "\(what) has \(values.count) values but the image has \(count) channel(s)")
        }
        return values
    }

    // MARK: - Steps

    /// torchvision's `Resize(N)` size rule: the shorter side becomes `shorter`, the longer
    /// `shorter * long / short` rounded down (Python's `int(shorter * long / short)`, which is
    /// the exact floor for sizes this small).
    public static func resizedSize(width: Int, height: Int, shorter: Int) throws -> (width: Int, height: Int) {
        guard shorter >= 1, shorter <= maxSide else {
            throw CBAMError(.usage, "--resize must be between 1 and \(maxSide), not \(shorter)")
        }
        let short = Swift.min(width, height), long = Swift.max(width, height)
        let (product, overflow) = shorter.multipliedReportingOverflow(by: long)
        guard !overflow, short > 0, product / short <= maxSide else {
            throw CBAMError(.usage, "resizing a \(width)×\(height) image to \(shorter) on its shorter side makes the longer side over \(maxSide)")
        }
        let newLong = Swift.max(1, product / short)
        return width <= height ? (shorter, newLong) : (newLong, shorter)
    }

    /// One output position's input window and 22-bit fixed-point weights.
    struct Taps {
        var first: Int
        var weights: [Int]
    }

    /// PIL's bilinear weights for resampling `inSize` samples to `outSize` (`precompute_coeffs`
    /// and `normalize_coeffs_8bpc` in Pillow's Resample.c, written from its description): output
    /// `o` is centered on input coordinate `c = (o + 0.5) * scale`; when shrinking the triangle
    /// filter is widened by `scale` (that is the antialiasing); the window is
    /// `[trunc(c - support + 0.5), trunc(c + support + 0.5))` clipped to the input, the weights
    /// are normalised to sum 1, then rounded to multiples of 2^-22 (half away from zero).
    static func taps(inSize: Int, outSize: Int) -> [Taps] {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = Swift.max(scale, 1)
        let support = filterScale  // the triangle's support is 1
        return (0..<outSize).map { o in
            let center = (Double(o) + 0.5) * scale
            let first = Swift.max(0, Int(center - support + 0.5))
            let end = Swift.min(inSize, Int(center + support + 0.5))
            var weights: [Double] = []
            var total = 0.0
            for x in first..<Swift.max(first, end) {
                let w = Swift.max(0, 1 - abs((Double(x) - center + 0.5) / filterScale))
                weights.append(w)
                total += w
            }
            let fixed = weights.map { w -> Int in
                let v = (total != 0 ? w / total : w) * Double(1 << 22)
                return v >= 0 ? Int(v + 0.5) : Int(v - 0.5)
            }
            return Taps(first: first, weights: fixed)
        }
    }

    /// One 8-bit sample from fixed-point weights: round (add 2^21), drop 22 bits, clamp to 0…255.
    @inline(__always) static func fixedToByte(_ sum: Int) -> UInt8 {
        let v = (sum + (1 << 21)) >> 22
        return UInt8(Swift.min(255, Swift.max(0, v)))
    }

    /// Antialiased bilinear resampling as PIL does it: horizontal pass (when the width changes),
    /// then vertical (when the height changes), each rounded to 8 bits.
    static func resample(_ image: Pixels, toWidth: Int, toHeight: Int) -> Pixels {
        var current = image
        if toWidth != current.width {
            // Row y, output column x reads input columns first, first + 1, … of row y.
            let w = current.width
            current = pass(current, outWidth: toWidth, outHeight: current.height,
                           taps: taps(inSize: w, outSize: toWidth),
                           start: { y, first, c in (y * w + first) * c }, step: current.channels,
                           output: { y, x in y * toWidth + x }, lines: current.height)
        }
        if toHeight != current.height {
            // Output row y, column x reads rows first, first + 1, … of column x.
            let w = current.width
            current = pass(current, outWidth: w, outHeight: toHeight,
                           taps: taps(inSize: current.height, outSize: toHeight),
                           start: { x, first, c in (first * w + x) * c }, step: w * current.channels,
                           output: { x, y in y * w + x }, lines: w)
        }
        return current
    }

    /// One resampling pass along lines of the image (rows or columns). For line `l` and output
    /// position `o`, the source samples start at `start(l, first, channels)` and are `step` bytes
    /// apart; the result goes to pixel `output(l, o)`. The weights are non-negative and sum to
    /// about 2^22, so a sum stays below 256 × 2^22 whatever the number of taps.
    static func pass(_ image: Pixels, outWidth: Int, outHeight: Int, taps: [Taps],
                     start: (Int, Int, Int) -> Int, step: Int, output: (Int, Int) -> Int, lines: Int) -> Pixels {
        let c = image.channels
        var out = [UInt8](repeating: 0, count: outWidth * outHeight * c)
        image.bytes.withUnsafeBufferPointer { source in
            out.withUnsafeMutableBufferPointer { target in
                for tap in taps.indices {
                    let first = taps[tap].first
                    taps[tap].weights.withUnsafeBufferPointer { weights in
                        for line in 0..<lines {
                            let base = start(line, first, c)
                            let destination = output(line, tap) * c
                            for ch in 0..<c {
                                var sum = 0
                                var at = base + ch
                                for w in weights {
                                    sum += Int(source[at]) * w
                                    at += step
                                }
                                target[destination + ch] = fixedToByte(sum)
                            }
                        }
                    }
                }
            }
        }
        return Pixels(width: outWidth, height: outHeight, channels: c, bytes: out)
    }

    /// Python's `int(round(d / 2.0))` for d ≥ 0: halves go to the even neighbour.
    static func halfRoundedToEven(_ d: Int) -> Int {
        let k = d / 2
        return d % 2 == 0 || k % 2 == 0 ? k : k + 1
    }

    /// torchvision's `center_crop`: pad with zeros when the crop is larger (left/top get
    /// `(crop - size) // 2`), then take the window at `round((size - crop) / 2)`.
    static func centerCrop(_ image: Pixels, to crop: Size) throws -> Pixels {
        guard crop.height >= 1, crop.width >= 1, crop.height <= maxSide, crop.width <= maxSide else {
            throw CBAMError(.usage, "--crop must be between 1 and \(maxSide) a side, not \(crop)")
        }
        let padLeft = crop.width > image.width ? (crop.width - image.width) / 2 : 0
        let padTop = crop.height > image.height ? (crop.height - image.height) / 2 : 0
        let paddedWidth = Swift.max(image.width, crop.width), paddedHeight = Swift.max(image.height, crop.height)
        let left = halfRoundedToEven(paddedWidth - crop.width) - padLeft
        let top = halfRoundedToEven(paddedHeight - crop.height) - padTop
        let c = image.channels
        var out = [UInt8](repeating: 0, count: crop.width * crop.height * c)
        for y in 0..<crop.height {
            let sy = y + top
            guard sy >= 0, sy < image.height else { continue }
            for x in 0..<crop.width {
                let sx = x + left
                guard sx >= 0, sx < image.width else { continue }
                for ch in 0..<c { out[(y * crop.width + x) * c + ch] = image.bytes[(sy * image.width + sx) * c + ch] }
            }
        }
        return Pixels(width: crop.width, height: crop.height, channels: c, bytes: out)
    }
}

// MARK: - Defaults from the model's input

extension ImagePreprocessing {
    /// What the user asked for; nil fields take the defaults of ``resolve(_:for:)``.
    public struct Request: Sendable, Equatable {
        public var resize: Int?
        public var crop: Size?
        /// `[Float]` values, or nil; `imagenet` is resolved by the caller with ``imagenet(_:)``.
        public var mean: [Float]?
        public var std: [Float]?
        public var meanIsImagenet = false
        public var stdIsImagenet = false
        public var channels: Channels?
        public init(resize: Int? = nil, crop: Size? = nil, mean: [Float]? = nil, std: [Float]? = nil,
                    meanIsImagenet: Bool = false, stdIsImagenet: Bool = false, channels: Channels? = nil) {
            self.resize = resize
            self.crop = crop
            self.mean = mean
            self.std = std
            self.meanIsImagenet = meanIsImagenet
            self.stdIsImagenet = stdIsImagenet
            self.channels = channels
        }
    }

    /// The preprocessing for an input declared as `info`, and whether ImageNet defaults were used.
    ///
    /// When the input is `[N, 3, H, W]` float32 with fixed H and W (an ImageNet-style
    /// classifier), steps not asked for take torchvision's evaluation transform: resize the
    /// shorter side to `min(H, W) * 256 / 224` (rounded down; 256 for 224), center-crop H × W,
    /// ImageNet mean/std. Otherwise a step not asked for is not done (values stay in [0, 1]).
    /// Channels default to gray for a 1-channel input, RGB otherwise. A mean without a std
    /// (or the reverse) uses std 1 (mean 0).
    public static func resolve(_ request: Request, for info: ValueInfo) throws -> (ImagePreprocessing, usedDefaults: Bool) {
        let dims = info.shape ?? []
        func fixed(_ i: Int) -> Int? {
            guard i < dims.count, case .fixed(let n) = dims[i] else { return nil }
            return n
        }
        if let type = info.elementType, type != .float {
            throw CBAMError(.typeMismatch, "input \"\(info.name)\" is \(type), but images become float32 tensors")
        }
        if info.shape != nil, dims.count != 4 {
            throw CBAMError(.shapeMismatch, "input \"\(info.name)\" is \(info.shapeDescription), but an image becomes [1, C, H, W]")
        }
        let modelChannels = fixed(1)
        let channels = request.channels ?? (modelChannels == 1 ? .gray : .rgb)
        let count = channels == .gray ? 1 : 3
        if let modelChannels, modelChannels != count {
            throw CBAMError(.shapeMismatch, "input \"\(info.name)\" \(info.shapeDescription) takes \(modelChannels) channel(s) but --channels \(channels.rawValue) gives \(count)")
        }
        let standard = modelChannels == 3 && fixed(2) != nil && fixed(3) != nil
        var result = ImagePreprocessing(channels: channels)
        var usedDefaults = false
        result.resize = request.resize
        result.crop = request.crop
        if standard, let h = fixed(2), let w = fixed(3) {
            if result.resize == nil {
                result.resize = Swift.max(1, Swift.min(h, w) * 256 / 224)
                usedDefaults = true
            }
            if result.crop == nil {
                result.crop = Size(height: h, width: w)
                usedDefaults = true
            }
        }
        let preset = imagenet(channels)
        var mean = request.meanIsImagenet ? preset.mean : request.mean
        var std = request.stdIsImagenet ? preset.std : request.std
        if channels == .gray && (request.meanIsImagenet || request.stdIsImagenet) {
            throw CBAMError(.usage, "the imagenet mean/std are for 3 channels, not gray")
        }
        if mean == nil && std == nil && standard {
            mean = preset.mean
            std = preset.std
            usedDefaults = true
        }
        if mean != nil || std != nil {
            mean = mean ?? [0]
            std = std ?? [1]
        }
        for s in std ?? [] where !(s > 0) || !s.isFinite {
            throw CBAMError(.usage, "--std values must be positive, not \(s)")
        }
        for m in mean ?? [] where !m.isFinite {
            throw CBAMError(.usage, "--mean values must be finite, not \(m)")
        }
        result.mean = mean
        result.std = std
        result.imagenetNormalisation = mean == preset.mean && std == preset.std
        return (result, usedDefaults)
    }
}
