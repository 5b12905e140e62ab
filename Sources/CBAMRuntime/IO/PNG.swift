import CPNG
import Foundation

/// Reads and writes PNG files with libpng. The only Swift that calls libpng; its error
/// jumps stay inside the C shim (`Sources/CPNG/shim.h`).
public enum PNG {
    /// PNG bytes for the image: 8-bit RGB, not interlaced, libpng's default filters and zlib level.
    ///
    /// Throws for an empty image (PNG needs at least one pixel), sides over 2^31 − 1, or a
    /// libpng failure. A `pixels` buffer of the wrong size is repaired as
    /// ``RGBImage/init(width:height:pixels:)`` does (missing bytes black).
    public static func encode(_ image: RGBImage) throws -> [UInt8] {
        guard image.width > 0, image.height > 0 else {
            throw CBAMError(.io, "cannot encode a \(image.width)×\(image.height) image: PNG needs at least one pixel")
        }
        guard image.width <= Int(Int32.max), image.height <= Int(Int32.max) else {
            throw CBAMError(.io, "image \(image.width)×\(image.height) is larger than PNG allows (2^31-1 a side)")
        }
        var source = image
        if source.pixels.count != source.width * source.height * 3 {
            source = RGBImage(width: source.width, height: source.height, pixels: source.pixels)
        }
        let state = newState()
        defer { release(state) }
        let status = source.pixels.withUnsafeBufferPointer {
            cbam_png_encode_rgb(state, $0.baseAddress, UInt32(source.width), UInt32(source.height))
        }
        guard status == 0, let output = state.pointee.output else {
            throw CBAMError(.io, "libpng could not encode the image: \(message(state))")
        }
        return Array(UnsafeBufferPointer(start: output, count: state.pointee.output_size))
    }

    /// Encodes and writes atomically (temporary file + rename, so a reader never sees half a
    /// PNG and a failed write leaves no partial file); errors name the path.
    public static func write(_ image: RGBImage, to path: String) throws {
        let bytes = try withErrorContext(file: path) { try encode(image) }
        try FileOutput.write(bytes, to: path)
    }
}

// MARK: - Reading (libpng)

extension PNG {
    /// Decodes a PNG file's bytes to 8-bit RGB with libpng.
    ///
    /// Every PNG color type and bit depth is accepted and brought to what PIL's
    /// `Image.open(path).convert("RGB")` gives: palette images are looked up, gray is
    /// repeated into R, G and B (1, 2 and 4-bit gray scaled to 0…255), alpha (and `tRNS`
    /// transparency) is dropped, not composited, 16-bit samples keep their high byte,
    /// Adam7-interlaced images are deinterlaced. Gamma and color-profile chunks are ignored, as PIL does.
    ///
    /// The header's width × height is checked against `maxPixels` before any pixel memory is
    /// allocated. A truncated or corrupt file throws `.badImage` with libpng's message; libpng's
    /// error jumps stay inside the C shim (`Sources/CPNG/shim.h`).
    public static func decode(_ bytes: [UInt8], maxPixels: Int) throws -> DecodedImage {
        let state = newState()
        defer { release(state) }
        return try bytes.withUnsafeBufferPointer { buffer -> DecodedImage in
            state.pointee.data = buffer.baseAddress
            state.pointee.size = buffer.count
            guard cbam_png_read_header(state) == 0 else { throw CBAMError(.badImage, "not a readable PNG: \(message(state))") }
            let width = Int(state.pointee.width), height = Int(state.pointee.height)
            try ImageFile.checkSize(width: width, height: height, maxPixels: maxPixels)
            guard state.pointee.row_bytes == width * 3 else {
                throw CBAMError(.badImage, "libpng gives \(state.pointee.row_bytes) bytes a row for a \(width)-pixel-wide image, not \(width * 3)")
            }
            var pixels = [UInt8](repeating: 0, count: width * height * 3)
            let status = pixels.withUnsafeMutableBufferPointer { cbam_png_read_pixels(state, $0.baseAddress) }
            guard status == 0 else { throw CBAMError(.badImage, "cannot decode the PNG image data: \(message(state))") }
            return DecodedImage(image: RGBImage(width: width, height: height, pixels: pixels),
                                format: "PNG", details: describe(state.pointee))
        }
    }

    /// The shim's state on the heap: libpng keeps pointers to it between calls, so it must not move.
    static func newState() -> UnsafeMutablePointer<cbam_png> {
        let state = UnsafeMutablePointer<cbam_png>.allocate(capacity: 1)
        state.initialize(to: cbam_png())
        return state
    }

    static func release(_ state: UnsafeMutablePointer<cbam_png>) {
        cbam_png_release(state)
        state.deinitialize(count: 1)
        state.deallocate()
    }

    /// The message the shim's error handler left in `state`.
    static func message(_ state: UnsafeMutablePointer<cbam_png>) -> String {
        withUnsafeBytes(of: &state.pointee.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// "palette, 8-bit, interlaced": what the decoder converted from.
    static func describe(_ state: cbam_png) -> String {
        let kind: String
        switch Int32(state.color_type) {
        case PNG_COLOR_TYPE_GRAY: kind = "gray"
        case PNG_COLOR_TYPE_GRAY_ALPHA: kind = "gray + alpha"
        case PNG_COLOR_TYPE_PALETTE: kind = "palette"
        case PNG_COLOR_TYPE_RGB_ALPHA: kind = "RGBA"
        default: kind = "RGB"
        }
        return "\(kind), \(state.bit_depth)-bit" + (state.interlaced != 0 ? ", interlaced" : "")
    }
}
