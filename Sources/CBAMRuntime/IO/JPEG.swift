import CJPEG

/// Reads JPEG files with libjpeg-turbo. The only Swift that calls libjpeg.
public enum JPEG {
    /// Decodes a JPEG file's bytes to 8-bit RGB.
    ///
    /// libjpeg-turbo's defaults are kept (accurate integer IDCT, smooth chroma upsampling),
    /// which is what PIL and torchvision's `decode_jpeg` use, so the pixels match theirs.
    /// Grayscale JPEGs are repeated into R, G and B. CMYK and YCCK JPEGs are refused (turning
    /// them into RGB needs the file's color profile). EXIF orientation is not applied, as
    /// neither PIL's `Image.open` nor torchvision's `decode_jpeg` applies it by default.
    ///
    /// The header's width × height is checked against `maxPixels` before decoding starts
    /// (libjpeg allocates its buffers then). A file that ends early throws `.badImage`
    /// instead of being padded with gray; libjpeg's errors never exit the process or unwind
    /// Swift (`Sources/CJPEG/shim.h`).
    public static func decode(_ bytes: [UInt8], maxPixels: Int) throws -> DecodedImage {
        // libjpeg's state holds a jmp_buf; it must not move while in use, so it lives on the heap.
        let state = UnsafeMutablePointer<cbam_jpeg>.allocate(capacity: 1)
        state.initialize(to: cbam_jpeg())
        defer {
            cbam_jpeg_release(state)
            state.deinitialize(count: 1)
            state.deallocate()
        }
        return try bytes.withUnsafeBufferPointer { buffer -> DecodedImage in
            guard cbam_jpeg_read_header(state, buffer.baseAddress, UInt(buffer.count)) == 0 else {
                throw CBAMError(.badImage, "not a readable JPEG: \(message(state))")
            }
            let space = state.pointee.color_space
            if space == JCS_CMYK || space == JCS_YCCK {
                throw CBAMError(.badImage, "CMYK JPEGs are not supported (converting CMYK to RGB needs the file's color profile); save it as RGB")
            }
            guard space == JCS_GRAYSCALE || space == JCS_YCbCr || space == JCS_RGB else {
                throw CBAMError(.badImage, "JPEG color space \(space.rawValue) with \(state.pointee.components) components is not supported (gray, YCbCr and RGB are)")
            }
            let width = Int(state.pointee.width), height = Int(state.pointee.height)
            try ImageFile.checkSize(width: width, height: height, maxPixels: maxPixels)
            var pixels = [UInt8](repeating: 0, count: width * height * 3)
            let status = pixels.withUnsafeMutableBufferPointer { cbam_jpeg_read_pixels(state, $0.baseAddress) }
            guard status == 0 else { throw CBAMError(.badImage, "cannot decode the JPEG image data: \(message(state))") }
            return DecodedImage(image: RGBImage(width: width, height: height, pixels: pixels), format: "JPEG",
                                details: space == JCS_GRAYSCALE ? "gray" : "color")
        }
    }

    static func message(_ state: UnsafeMutablePointer<cbam_jpeg>) -> String {
        withUnsafeBytes(of: &state.pointee.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
