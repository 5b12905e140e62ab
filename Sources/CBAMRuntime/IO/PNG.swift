import CPNG
import Foundation

/// Writes PNG files without zlib.
///
/// Layout: the 8-byte signature, then chunks `length (u32 BE) | type (4 ASCII) | data |
/// CRC-32 (u32 BE, over type and data)`: IHDR (width, height, bit depth 8, color type 2 =
/// RGB, compression 0, filter method 0, interlace 0), one or more IDAT, IEND.
/// The IDAT data is a zlib stream (RFC 1950): header `78 01`, a raw deflate stream from
/// ``Deflate`` (fixed-Huffman blocks with LZ77 back-references, stored blocks where data does
/// not compress), then the Adler-32 of the uncompressed data (u32 BE).
///
/// The uncompressed data is, per row, a filter type byte and the row's `3*width` filtered
/// bytes. Each row takes whichever of None (0), Sub (1: minus the byte 3 to the left) or
/// Up (2: minus the byte above) has the smallest sum of |byte as a signed value| (the PNG
/// spec's recommended heuristic; ties go to the lower type). On attention pictures, flat
/// colors become zeros under Sub and repeated rows under Up, which deflate then packs into
/// a few back-references: a 1000×180 bar chart takes a few KiB instead of 540 KB.
public enum PNG {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    /// IDAT chunks are split at this size; decoders concatenate them. Keeps any one chunk modest.
    static let maxIDATChunk = 1 << 20

    /// PNG bytes for the image (color type 2, bit depth 8, per-row filters None/Sub/Up, deflate-compressed).
    ///
    /// PNG forbids zero-sized images, so an empty image encodes as one black pixel;
    /// ``write(_:to:)`` refuses empty images instead.
    public static func encode(_ image: RGBImage) -> [UInt8] {
        var source = image.width > 0 && image.height > 0 ? image : RGBImage(width: 1, height: 1, fill: (0, 0, 0))
        if source.pixels.count != source.width * source.height * 3 {
            // `pixels` is settable; repair a wrong-sized buffer as the initializer would.
            source = RGBImage(width: source.width, height: source.height, pixels: source.pixels)
        }
        let raw = filteredScanlines(source)

        // zlib stream. CMF 0x78 = deflate with a 32 KiB window; FLG 0x01 makes
        // (CMF*256 + FLG) a multiple of 31 with no preset dictionary and FLEVEL 0 ("fastest"
        // compressor: greedy matching, fixed codes). Decoders ignore FLEVEL.
        var zlib: [UInt8] = [0x78, 0x01]
        zlib += Deflate.compress(raw)
        appendBigEndian(&zlib, adler32(raw))

        var png = signature
        var header = [UInt8]()
        appendBigEndian(&header, UInt32(truncatingIfNeeded: source.width))
        appendBigEndian(&header, UInt32(truncatingIfNeeded: source.height))
        header += [8, 2, 0, 0, 0]  // bit depth, color type RGB, compression, filter method, interlace
        appendChunk(&png, "IHDR", header[...])
        var start = 0
        while start < zlib.count {
            let end = Swift.min(zlib.count, start + maxIDATChunk)
            appendChunk(&png, "IDAT", zlib[start..<end])
            start = end
        }
        appendChunk(&png, "IEND", [][...])
        return png
    }

    /// The rows as PNG stores them before compression: per row a filter type byte (0 None,
    /// 1 Sub, 2 Up) and the filtered bytes, the type chosen by the minimum sum of absolute
    /// values (bytes read as signed). Filtering is mod 256; the bytes "before" the row and the
    /// row "above" the first are 0, so Up on row 0 equals None and is never chosen over it.
    /// `image.pixels` must hold exactly `3 * width * height` bytes.
    static func filteredScanlines(_ image: RGBImage) -> [UInt8] {
        let width = image.width, height = image.height
        let bpp = 3, rowBytes = 3 * width
        let pixels = image.pixels
        guard width > 0, height > 0, pixels.count == rowBytes * height else { return [] }
        var raw = [UInt8]()
        raw.reserveCapacity(height * (rowBytes + 1))
        var sub = [UInt8](repeating: 0, count: rowBytes)
        var up = [UInt8](repeating: 0, count: rowBytes)
        /// |v| of a byte read as a two's-complement signed value.
        @inline(__always) func magnitude(_ v: UInt8) -> Int { v < 128 ? Int(v) : 256 - Int(v) }
        for y in 0..<height {
            let row = y * rowBytes, above = row - rowBytes
            var noneSum = 0, subSum = 0, upSum = 0
            for i in 0..<rowBytes {
                let x = pixels[row + i]
                let left: UInt8 = i >= bpp ? pixels[row + i - bpp] : 0
                let top: UInt8 = y > 0 ? pixels[above + i] : 0
                let s = x &- left, u = x &- top
                sub[i] = s
                up[i] = u
                noneSum += magnitude(x)
                subSum += magnitude(s)
                upSum += magnitude(u)
            }
            if noneSum <= subSum && noneSum <= upSum {
                raw.append(0)
                raw.append(contentsOf: pixels[row..<(row + rowBytes)])
            } else if subSum <= upSum {
                raw.append(1)
                raw.append(contentsOf: sub)
            } else {
                raw.append(2)
                raw.append(contentsOf: up)
            }
        }
        return raw
    }

    /// Writes atomically (temporary file + rename); errors name the path.
    ///
    /// Foundation's `.atomic` option writes a temporary file next to `path` and renames it
    /// over `path`, so a reader never sees half a PNG and a failed write leaves no partial file.
    public static func write(_ image: RGBImage, to path: String) throws {
        guard image.width > 0, image.height > 0 else {
            throw CBAMError(.io, "cannot write a \(image.width)×\(image.height) image: PNG needs at least one pixel", file: path)
        }
        guard image.width <= Int(Int32.max), image.height <= Int(Int32.max) else {
            throw CBAMError(.io, "image \(image.width)×\(image.height) is larger than PNG allows (2^31-1 a side)", file: path)
        }
        do {
            try Data(encode(image)).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw CBAMError(.io, "cannot write: \(error.localizedDescription)", file: path)
        }
    }

    // MARK: - Checksums

    /// The CRC-32 table (polynomial 0xEDB88320, reflected), as in the PNG spec's sample code.
    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// CRC-32 of `bytes` (PNG chunks: over the type and data), continuing from `crc`.
    static func crc32<C: Collection>(_ bytes: C, crc: UInt32 = 0) -> UInt32 where C.Element == UInt8 {
        var c = ~crc
        for byte in bytes { c = crcTable[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }

    /// Adler-32 of `bytes` (the zlib trailer).
    static func adler32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        let modulus: UInt32 = 65521
        var a: UInt32 = 1, b: UInt32 = 0
        var pending = 0
        for byte in bytes {
            a &+= UInt32(byte)
            b &+= a
            pending += 1
            // 5552 is the largest run for which b cannot overflow a UInt32 before reducing (zlib's NMAX).
            if pending == 5552 { a %= modulus; b %= modulus; pending = 0 }
        }
        a %= modulus
        b %= modulus
        return b << 16 | a
    }

    // MARK: - Chunks

    static func appendBigEndian(_ bytes: inout [UInt8], _ value: UInt32) {
        bytes += [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    /// Appends one chunk: length, type, data, CRC over type and data.
    static func appendChunk(_ png: inout [UInt8], _ type: String, _ data: ArraySlice<UInt8>) {
        let typeBytes = Array(type.utf8)
        appendBigEndian(&png, UInt32(truncatingIfNeeded: data.count))
        png += typeBytes
        png += data
        appendBigEndian(&png, crc32(data, crc: crc32(typeBytes)))
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
        var state = cbam_png()
        defer { cbam_png_release(&state) }
        return try bytes.withUnsafeBufferPointer { buffer -> DecodedImage in
            state.data = buffer.baseAddress
            state.size = buffer.count
            guard cbam_png_read_header(&state) == 0 else { throw CBAMError(.badImage, "not a readable PNG: \(message(&state))") }
            let width = Int(state.width), height = Int(state.height)
            try ImageFile.checkSize(width: width, height: height, maxPixels: maxPixels)
            guard state.row_bytes == width * 3 else {
                throw CBAMError(.badImage, "libpng gives \(state.row_bytes) bytes a row for a \(width)-pixel-wide image, not \(width * 3)")
            }
            var pixels = [UInt8](repeating: 0, count: width * height * 3)
            let status = pixels.withUnsafeMutableBufferPointer { cbam_png_read_pixels(&state, $0.baseAddress) }
            guard status == 0 else { throw CBAMError(.badImage, "cannot decode the PNG image data: \(message(&state))") }
            return DecodedImage(image: RGBImage(width: width, height: height, pixels: pixels),
                                format: "PNG", details: describe(&state))
        }
    }

    /// The message the shim's error handler left in `state`.
    static func message(_ state: inout cbam_png) -> String {
        withUnsafeBytes(of: &state.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// "palette, 8-bit, interlaced": what the decoder converted from.
    static func describe(_ state: inout cbam_png) -> String {
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
