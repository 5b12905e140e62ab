import Foundation

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
///
/// The pixel at column `x`, row `y` (row 0 at the top) is
/// `pixels[3*(y*width + x) ..< 3*(y*width + x) + 3]` = (red, green, blue).
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `width * height * 3` bytes (see ``init(width:height:pixels:)`` for how other sizes are fixed up).
    public var pixels: [UInt8]

    /// An image from a pixel buffer.
    ///
    /// Negative sizes count as 0. The buffer is made to hold exactly `width*height*3`
    /// bytes: missing bytes are black, extra bytes are dropped. This initializer is not
    /// throwing (callers build images from sizes they computed), so it repairs rather than traps.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        let w = Swift.max(0, width), h = Swift.max(0, height)
        let (area, overflow1) = w.multipliedReportingOverflow(by: h)
        let (needed, overflow2) = area.multipliedReportingOverflow(by: 3)
        if overflow1 || overflow2 {
            // No buffer can hold that; keep an empty image rather than trapping.
            self.width = 0
            self.height = 0
            self.pixels = []
            return
        }
        self.width = w
        self.height = h
        if pixels.count == needed {
            self.pixels = pixels
        } else if pixels.count > needed {
            self.pixels = Array(pixels[0..<needed])
        } else {
            self.pixels = pixels + [UInt8](repeating: 0, count: needed - pixels.count)
        }
    }

    /// An image of one color. Sizes as in ``init(width:height:pixels:)``.
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8)) {
        let w = Swift.max(0, width), h = Swift.max(0, height)
        let (area, overflow1) = w.multipliedReportingOverflow(by: h)
        let (_, overflow2) = area.multipliedReportingOverflow(by: 3)
        guard !overflow1, !overflow2 else {
            self.init(width: 0, height: 0, pixels: [])
            return
        }
        var buffer = [UInt8](repeating: 0, count: area * 3)
        for i in 0..<area {
            buffer[3 * i] = fill.0
            buffer[3 * i + 1] = fill.1
            buffer[3 * i + 2] = fill.2
        }
        self.init(width: w, height: h, pixels: buffer)
    }

    /// The pixel at (x, y), or nil outside the image.
    public func pixel(x: Int, y: Int) -> (UInt8, UInt8, UInt8)? {
        guard x >= 0, y >= 0, x < width, y < height else { return nil }
        let o = 3 * (y * width + x)
        return (pixels[o], pixels[o + 1], pixels[o + 2])
    }

    /// Sets the pixel at (x, y); points outside the image are ignored (drawing clips).
    mutating func set(x: Int, y: Int, _ color: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let o = 3 * (y * width + x)
        pixels[o] = color.0
        pixels[o + 1] = color.1
        pixels[o + 2] = color.2
    }

    /// Fills the rectangle [x, x+w) × [y, y+h), clipped to the image.
    mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ color: (UInt8, UInt8, UInt8)) {
        let x0 = Swift.max(0, x), y0 = Swift.max(0, y)
        let x1 = Swift.min(width, x + Swift.max(0, w)), y1 = Swift.min(height, y + Swift.max(0, h))
        guard x0 < x1, y0 < y1 else { return }
        for row in y0..<y1 {
            for col in x0..<x1 { set(x: col, y: row, color) }
        }
    }

    /// Copies `image` with its top-left corner at (x, y), clipped to this image.
    mutating func draw(_ image: RGBImage, x: Int, y: Int) {
        for row in 0..<image.height {
            for col in 0..<image.width {
                if let p = image.pixel(x: col, y: row) { set(x: x + col, y: y + row, p) }
            }
        }
    }
}

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

    /// Writes through ``FileOutput`` (temporary file + rename); errors name the path.
    public static func write(_ image: RGBImage, to path: String) throws {
        guard image.width > 0, image.height > 0 else {
            throw CBAMError(.io, "cannot write a \(image.width)×\(image.height) image: PNG needs at least one pixel", file: path)
        }
        guard image.width <= Int(Int32.max), image.height <= Int(Int32.max) else {
            throw CBAMError(.io, "image \(image.width)×\(image.height) is larger than PNG allows (2^31-1 a side)", file: path)
        }
        try FileOutput.write(encode(image), to: path)
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
