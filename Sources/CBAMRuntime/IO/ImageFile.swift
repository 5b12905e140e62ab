import Foundation

/// A decoded image and what it was decoded from.
public struct DecodedImage: Sendable {
    /// The pixels as 8-bit RGB.
    public var image: RGBImage
    /// "PNG" or "JPEG".
    public var format: String
    /// What was converted to RGB, e.g. "palette, 8-bit, interlaced".
    public var details: String
}

/// Reads PNG and JPEG files (by their first bytes, not their names) as 8-bit RGB.
public enum ImageFile {
    /// The default pixel limit: 100 million pixels (300 MB of RGB). PIL warns at 89 million.
    public static let defaultMaxPixels = 100_000_000

    /// True when `path` ends in `.png`, `.jpg` or `.jpeg` (any case): the inputs taken as images.
    public static func isImagePath(_ path: String) -> Bool {
        let ext = (path as NSString).pathExtension.lowercased()
        return ext == "png" || ext == "jpg" || ext == "jpeg"
    }

    /// Reads and decodes `path`. Errors name the file.
    public static func read(contentsOf path: String, maxPixels: Int = defaultMaxPixels) throws -> DecodedImage {
        try withErrorContext(file: path) {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CBAMError(.io, "cannot read the file")
            }
            return try decode([UInt8](data), maxPixels: maxPixels)
        }
    }

    /// Decodes PNG (signature `89 50 4E 47`) or JPEG (`FF D8 FF`) bytes.
    public static func decode(_ bytes: [UInt8], maxPixels: Int = defaultMaxPixels) throws -> DecodedImage {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return try PNG.decode(bytes, maxPixels: maxPixels) }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return try JPEG.decode(bytes, maxPixels: maxPixels) }
        throw CBAMError(.badImage, bytes.isEmpty ? "the file is empty" : "neither a PNG nor a JPEG file (unknown first bytes)")
    }

    /// Refuses an empty image or one over `maxPixels`, before its pixels are allocated.
    static func checkSize(width: Int, height: Int, maxPixels: Int) throws {
        guard width > 0, height > 0 else {
            throw CBAMError(.badImage, "the image is \(width)×\(height); both sides must be at least 1")
        }
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, pixels <= maxPixels else {
            throw CBAMError(.badImage, "the image is \(width)×\(height) = \(overflow ? "too many" : String(pixels)) pixels, over the limit of \(maxPixels) (raise it with --max-pixels)")
        }
    }
}
