import ArgumentParser
import CBAMRuntime
import Foundation

/// How `.png`/`.jpg` inputs become tensors (torchvision's transforms; see ImagePreprocessing).
struct ImageFlags: ParsableArguments {
    @Option(name: .customLong("resize"), help: ArgumentHelp(
        "Resize images so the shorter side is N (bilinear, antialiased, as torchvision's Resize(N)).", valueName: "N"))
    var resize: Int?

    @Option(name: .customLong("crop"), help: ArgumentHelp("Center-crop images to H×W (or N for N×N).", valueName: "HxW"))
    var crop: String?

    @Option(name: .customLong("mean"), help: ArgumentHelp(
        "Per-channel mean subtracted after scaling to [0, 1]: 'imagenet' or values like 0.5,0.5,0.5.", valueName: "VALUES"))
    var mean: String?

    @Option(name: .customLong("std"), help: ArgumentHelp(
        "Per-channel std divided by after the mean: 'imagenet' or values like 0.5,0.5,0.5.", valueName: "VALUES"))
    var std: String?

    @Option(name: .customLong("channels"), help: ArgumentHelp("Channel order of image inputs: rgb, bgr or gray.", valueName: "rgb|bgr|gray"))
    var channels: String?

    @Option(name: .customLong("max-pixels"), help: ArgumentHelp(
        "Refuse images with more pixels than this before decoding them (default 100000000).", valueName: "N"))
    var maxPixels: Int = ImageFile.defaultMaxPixels

    /// True when any preprocessing flag was given (they only apply to image inputs).
    var anyGiven: Bool { resize != nil || crop != nil || mean != nil || std != nil || channels != nil }

    func validate() throws {
        _ = try request()
        if maxPixels < 1 { throw ValidationError("--max-pixels must be at least 1") }
    }

    /// The flags as a preprocessing request, or a usage error naming the flag.
    func request() throws -> ImagePreprocessing.Request {
        var request = ImagePreprocessing.Request()
        if let resize {
            guard resize >= 1, resize <= ImagePreprocessing.maxSide else {
                throw ValidationError("--resize must be between 1 and \(ImagePreprocessing.maxSide)")
            }
            request.resize = resize
        }
        if let crop { request.crop = try Self.parseCrop(crop) }
        if let mean {
            if mean.lowercased() == "imagenet" { request.meanIsImagenet = true } else { request.mean = try Self.parseValues(mean, flag: "--mean") }
        }
        if let std {
            if std.lowercased() == "imagenet" { request.stdIsImagenet = true } else { request.std = try Self.parseValues(std, flag: "--std") }
        }
        if let channels {
            guard let value = ImagePreprocessing.Channels(rawValue: channels.lowercased()) else {
                throw ValidationError("--channels takes rgb, bgr or gray (got '\(channels)')")
            }
            request.channels = value
        }
        return request
    }

    /// "224x224", "224×224" or "224" → a size.
    static func parseCrop(_ text: String) throws -> ImagePreprocessing.Size {
        let parts = text.lowercased().split(whereSeparator: { $0 == "x" || $0 == "×" }).map(String.init)
        let numbers = parts.compactMap { Int($0) }
        guard (parts.count == 1 || parts.count == 2), numbers.count == parts.count,
              numbers.allSatisfy({ $0 >= 1 && $0 <= ImagePreprocessing.maxSide }) else {
            throw ValidationError("--crop takes HxW such as 224x224, or one size N, each 1…\(ImagePreprocessing.maxSide) (got '\(text)')")
        }
        return ImagePreprocessing.Size(height: numbers[0], width: numbers.last!)
    }

    /// "0.5,0.5,0.5" → values (finite; one or three).
    static func parseValues(_ text: String, flag: String) throws -> [Float] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let values = parts.compactMap { Float($0) }
        guard !parts.isEmpty, values.count == parts.count, values.allSatisfy(\.isFinite) else {
            throw ValidationError("\(flag) takes 'imagenet' or comma-separated numbers such as 0.5,0.5,0.5 (got '\(text)')")
        }
        return values
    }
}
