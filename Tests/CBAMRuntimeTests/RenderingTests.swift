import Foundation
import Testing
@testable import CBAMRuntime

// PNG encoding (checked by an independent decoder below), the color map, heat maps,
// channel bar charts and the HTML report. Expected values are worked out in comments.

/// All rendering tests (`swift test --filter RenderingTests`).
@Suite struct RenderingTests {}

// MARK: - A minimal PNG decoder, written independently of PNG.swift

/// CRC-32 bit by bit (no table), so a table bug in PNG.swift cannot cancel out.
fileprivate func referenceCRC32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = (crc >> 1) ^ (crc & 1 == 1 ? 0xEDB8_8320 : 0) }
    }
    return ~crc
}

/// Adler-32 straight from RFC 1950 (reducing every byte).
fileprivate func referenceAdler32(_ bytes: [UInt8]) -> UInt32 {
    var a: UInt32 = 1, b: UInt32 = 0
    for byte in bytes {
        a = (a + UInt32(byte)) % 65521
        b = (b + a) % 65521
    }
    return b << 16 | a
}

fileprivate struct DecodeFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// One deflate block as the reference inflater met it.
struct InflatedBlock: Equatable {
    /// BTYPE: 0 stored, 1 fixed Huffman.
    var type: Int
    /// Bytes the block decompressed to.
    var length: Int
}

/// A small inflater (RFC 1951) written independently of Deflate.swift: stored and fixed-Huffman
/// blocks only (dynamic blocks are a failure: the encoder is documented not to write them).
/// Fixed codes are decoded bit by bit from their ranges (§3.2.6), not from a table; every
/// read is bounds-checked and every malformed input throws. Returns the output and the blocks,
/// and the number of input bytes used (the stream ends at the byte after the final block).
func referenceInflate(_ input: [UInt8]) throws -> (output: [UInt8], blocks: [InflatedBlock], used: Int) {
    var byte = 0, bit = 0
    func readBit() throws -> Int {
        guard byte < input.count else { throw DecodeFailure("deflate stream ends early") }
        let b = Int(input[byte] >> UInt8(bit)) & 1
        bit += 1
        if bit == 8 { bit = 0; byte += 1 }
        return b
    }
    /// `n` bits, least significant first (header fields, extra bits).
    func readBits(_ n: Int) throws -> Int {
        var v = 0
        for i in 0..<n { v |= try readBit() << i }
        return v
    }
    /// `n` more bits of a Huffman code, most significant first.
    func extend(_ code: Int, _ n: Int) throws -> Int {
        var c = code
        for _ in 0..<n { c = c << 1 | (try readBit()) }
        return c
    }
    func fixedSymbol() throws -> Int {
        let c7 = try extend(0, 7)
        if c7 <= 0b0010111 { return 256 + c7 }                  // 7-bit codes: 256…279
        let c8 = try extend(c7, 1)
        if c8 >= 0b00110000 && c8 <= 0b10111111 { return c8 - 0b00110000 }        // 0…143
        if c8 >= 0b11000000 && c8 <= 0b11000111 { return 280 + c8 - 0b11000000 }  // 280…287
        let c9 = try extend(c8, 1)
        guard c9 >= 0b110010000 else { throw DecodeFailure("bad fixed code \(c9)") }
        return 144 + c9 - 0b110010000                           // 144…255
    }
    let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    let distanceBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
                        4097, 6145, 8193, 12289, 16385, 24577]
    let distanceExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    var out: [UInt8] = []
    var blocks: [InflatedBlock] = []
    var final = false
    while !final {
        final = try readBit() == 1
        let type = try readBits(2)
        let before = out.count
        switch type {
        case 0:
            if bit != 0 { bit = 0; byte += 1 }
            guard byte + 4 <= input.count else { throw DecodeFailure("truncated stored block header") }
            let len = Int(input[byte]) | Int(input[byte + 1]) << 8
            let nlen = Int(input[byte + 2]) | Int(input[byte + 3]) << 8
            guard len ^ 0xFFFF == nlen else { throw DecodeFailure("NLEN is not the complement of LEN") }
            byte += 4
            guard byte + len <= input.count else { throw DecodeFailure("stored block overruns the stream") }
            out += input[byte..<(byte + len)]
            byte += len
        case 1:
            while true {
                let symbol = try fixedSymbol()
                if symbol < 256 { out.append(UInt8(symbol)); continue }
                if symbol == 256 { break }
                let l = symbol - 257
                guard l < 29 else { throw DecodeFailure("length symbol \(symbol) is reserved") }
                let length = lengthBase[l] + (try readBits(lengthExtra[l]))
                let d = try extend(0, 5)
                guard d < 30 else { throw DecodeFailure("distance code \(d) is reserved") }
                let distance = distanceBase[d] + (try readBits(distanceExtra[d]))
                guard distance <= out.count, distance <= 32768 else {
                    throw DecodeFailure("distance \(distance) reaches before the start (\(out.count) bytes out)")
                }
                for _ in 0..<length { out.append(out[out.count - distance]) }
            }
        default:
            throw DecodeFailure("block type \(type) (only stored and fixed Huffman are expected)")
        }
        blocks.append(InflatedBlock(type: type, length: out.count - before))
    }
    return (out, blocks, bit == 0 ? byte : byte + 1)
}

struct DecodedPNG {
    var width: Int
    var height: Int
    var bitDepth: UInt8
    var colorType: UInt8
    var compression: UInt8
    var filter: UInt8
    var interlace: UInt8
    var chunkTypes: [String]
    var blocks: [InflatedBlock]  // the deflate blocks of the IDAT stream
    var filters: [UInt8]         // the filter type of each row
    var idatBytes: Int           // the zlib stream's size
    var image: RGBImage
}

/// Parses chunks (checking every CRC), inflates the zlib stream (stored and fixed-Huffman
/// blocks, checking the header and the Adler-32), and undoes filter types 0–4 (PNG spec §9).
/// Anything else is a failure: this decoder only has to read what PNG.encode writes.
func decodePNG(_ png: [UInt8]) throws -> DecodedPNG {
    func u32(_ at: Int) throws -> UInt32 {
        guard at >= 0, at + 4 <= png.count else { throw DecodeFailure("truncated at \(at)") }
        return UInt32(png[at]) << 24 | UInt32(png[at + 1]) << 16 | UInt32(png[at + 2]) << 8 | UInt32(png[at + 3])
    }
    guard Array(png.prefix(8)) == [137, 80, 78, 71, 13, 10, 26, 10] else { throw DecodeFailure("bad signature") }
    var at = 8
    var types: [String] = []
    var ihdr: [UInt8] = []
    var idat: [UInt8] = []
    while at < png.count {
        let length = Int(try u32(at))
        guard at + 12 + length <= png.count else { throw DecodeFailure("chunk overruns the file") }
        let typeBytes = Array(png[(at + 4)..<(at + 8)])
        let data = Array(png[(at + 8)..<(at + 8 + length)])
        let crc = try u32(at + 8 + length)
        guard crc == referenceCRC32(typeBytes + data) else { throw DecodeFailure("CRC mismatch") }
        let type = String(decoding: typeBytes, as: UTF8.self)
        types.append(type)
        if type == "IHDR" { ihdr = data }
        if type == "IDAT" { idat += data }
        at += 12 + length
    }
    guard ihdr.count == 13 else { throw DecodeFailure("IHDR is \(ihdr.count) bytes") }
    let width = Int(UInt32(ihdr[0]) << 24 | UInt32(ihdr[1]) << 16 | UInt32(ihdr[2]) << 8 | UInt32(ihdr[3]))
    let height = Int(UInt32(ihdr[4]) << 24 | UInt32(ihdr[5]) << 16 | UInt32(ihdr[6]) << 8 | UInt32(ihdr[7]))

    // zlib: header (deflate, no preset dictionary, check bits), deflate stream, Adler-32.
    guard idat.count >= 6, idat[0] == 0x78, (Int(idat[0]) << 8 | Int(idat[1])) % 31 == 0, idat[1] & 0x20 == 0 else {
        throw DecodeFailure("bad zlib header")
    }
    let (raw, blocks, used) = try referenceInflate(Array(idat[2...]))
    let p = 2 + used
    guard p + 4 == idat.count else { throw DecodeFailure("expected exactly the Adler-32 after the last block") }
    let adler = UInt32(idat[p]) << 24 | UInt32(idat[p + 1]) << 16 | UInt32(idat[p + 2]) << 8 | UInt32(idat[p + 3])
    guard adler == referenceAdler32(raw) else { throw DecodeFailure("Adler-32 mismatch") }

    // Unfilter, 3 bytes per pixel; bytes left of the row and above the first row are 0.
    let stride = 1 + 3 * width, bpp = 3
    guard raw.count == height * stride else { throw DecodeFailure("\(raw.count) bytes for \(height) rows of \(stride)") }
    var pixels: [UInt8] = []
    var filters: [UInt8] = []
    var previous = [UInt8](repeating: 0, count: 3 * width)
    for y in 0..<height {
        let filter = raw[y * stride]
        filters.append(filter)
        var row = Array(raw[(y * stride + 1)..<((y + 1) * stride)])
        for i in 0..<row.count {
            let a = i >= bpp ? Int(row[i - bpp]) : 0, b = Int(previous[i]), c = i >= bpp ? Int(previous[i - bpp]) : 0
            let predictor: Int
            switch filter {
            case 0: predictor = 0
            case 1: predictor = a
            case 2: predictor = b
            case 3: predictor = (a + b) / 2
            case 4:
                let estimate = a + b - c
                let pa = abs(estimate - a), pb = abs(estimate - b), pc = abs(estimate - c)
                predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c
            default: throw DecodeFailure("row \(y) uses filter \(filter)")
            }
            row[i] = UInt8(truncatingIfNeeded: Int(row[i]) + predictor)
        }
        pixels += row
        previous = row
    }
    return DecodedPNG(width: width, height: height, bitDepth: ihdr[8], colorType: ihdr[9], compression: ihdr[10],
                      filter: ihdr[11], interlace: ihdr[12], chunkTypes: types, blocks: blocks, filters: filters,
                      idatBytes: idat.count, image: RGBImage(width: width, height: height, pixels: pixels))
}

/// A deterministic test picture: every byte depends on x, y and the channel.
fileprivate func testImage(width: Int, height: Int) -> RGBImage {
    var pixels: [UInt8] = []
    for y in 0..<height {
        for x in 0..<width {
            pixels += [UInt8((x * 7 + y) & 0xFF), UInt8((y * 13 + x * 3) & 0xFF), UInt8((x ^ y) & 0xFF)]
        }
    }
    return RGBImage(width: width, height: height, pixels: pixels)
}

/// Whether two colors differ by at most `tolerance` in every channel.
fileprivate func close(_ a: (UInt8, UInt8, UInt8)?, _ b: (UInt8, UInt8, UInt8), tolerance: Int = 1) -> Bool {
    guard let a else { return false }
    return abs(Int(a.0) - Int(b.0)) <= tolerance && abs(Int(a.1) - Int(b.1)) <= tolerance && abs(Int(a.2) - Int(b.2)) <= tolerance
}

fileprivate func same(_ a: (UInt8, UInt8, UInt8)?, _ b: (UInt8, UInt8, UInt8)) -> Bool { close(a, b, tolerance: 0) }

// MARK: - PNG

extension RenderingTests {
    @Test func checksumsMatchKnownValues() {
        // The CRC of an empty IEND chunk is in every PNG file: AE 42 60 82.
        #expect(PNG.crc32(Array("IEND".utf8)) == 0xAE42_6082)
        // RFC 1950's usual example: Adler-32("Wikipedia") = 0x11E60398.
        #expect(PNG.adler32(Array("Wikipedia".utf8)) == 0x11E6_0398)
        let long = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        #expect(PNG.crc32(long) == referenceCRC32(long))
        #expect(PNG.adler32(long) == referenceAdler32(long))
    }

    @Test func encodesASmallImageThatDecodesBack() throws {
        let image = testImage(width: 5, height: 3)
        let png = PNG.encode(image)
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let decoded = try decodePNG(png)
        #expect(decoded.chunkTypes == ["IHDR", "IDAT", "IEND"])
        #expect(decoded.width == 5 && decoded.height == 3)
        #expect(decoded.bitDepth == 8 && decoded.colorType == 2)
        #expect(decoded.compression == 0 && decoded.filter == 0 && decoded.interlace == 0)
        #expect(decoded.blocks.count == 1 && decoded.blocks[0].length == 3 * (1 + 15))  // 3 rows of filter byte + 5*3 bytes
        #expect(decoded.image == image)
    }

    @Test func noiseSplitsIntoStoredBlocksOfAtMost65535Bytes() throws {
        // 300×250 of noise: 250 rows of 901 bytes = 225,250 bytes, which fixed Huffman codes
        // would enlarge (≈ 8.4 bits a byte) → stored blocks of 65535, 65535, 65535, 28645.
        let image = RGBImage(width: 300, height: 250, pixels: deflateTestNoise(count: 300 * 250 * 3, seed: 1))
        let decoded = try decodePNG(PNG.encode(image))
        #expect(decoded.blocks == [65535, 65535, 65535, 28645].map { InflatedBlock(type: 0, length: $0) })
        #expect(decoded.image == image)
    }

    @Test func imagesLargerThanOneIDATChunkStillDecode() throws {
        // 400 rows of 3073 bytes of noise ≈ 1.2 MB, more than one 1 MiB IDAT chunk holds.
        let image = RGBImage(width: 1024, height: 400, pixels: deflateTestNoise(count: 1024 * 400 * 3, seed: 2))
        let decoded = try decodePNG(PNG.encode(image))
        #expect(decoded.chunkTypes.filter { $0 == "IDAT" }.count == 2)
        #expect(decoded.image == image)
    }

    @Test func rowFiltersFollowTheMinimumSumOfAbsoluteValues() throws {
        // All black: every filter gives zeros; ties go to None.
        let black = try decodePNG(PNG.encode(RGBImage(width: 9, height: 4, fill: (0, 0, 0))))
        #expect(black.filters == [0, 0, 0, 0])
        // All white: row 0 None sums 27 × |−1| = 27, Sub only 3 (the first pixel); later rows Up = 0.
        let white = try decodePNG(PNG.encode(RGBImage(width: 9, height: 4, fill: (255, 255, 255))))
        #expect(white.filters == [1, 2, 2, 2])
        #expect(white.image == RGBImage(width: 9, height: 4, fill: (255, 255, 255)))
        // Each row one color, far from the row above: Sub (3 × |value|) beats Up (27 × |jump|).
        var stripes = RGBImage(width: 9, height: 4, fill: (0, 0, 0))
        for (y, v) in [UInt8(10), 100, 20, 90].enumerated() { stripes.fill(x: 0, y: y, width: 9, height: 1, (v, v, v)) }
        let decodedStripes = try decodePNG(PNG.encode(stripes))
        #expect(decodedStripes.filters == [1, 1, 1, 1])
        #expect(decodedStripes.image == stripes)
        // Noise-free gradient rows mixed with noise still round-trip, whatever filters are picked.
        let mixed = RGBImage(width: 40, height: 30, pixels: (0..<(40 * 30 * 3)).map { i in
            i % 7 == 0 ? UInt8(truncatingIfNeeded: (i &* 2_654_435_761) >> 13) : UInt8(truncatingIfNeeded: i / 120)
        })
        #expect(try decodePNG(PNG.encode(mixed)).image == mixed)
    }

    @Test func renderedPicturesCompressAndDecodeBack() throws {
        let bars = try AttentionRendering.channelBars((0..<512).map { Float(0.5 + 0.45 * sin(Double($0) * 0.37)) })
        let decodedBars = try decodePNG(PNG.encode(bars))
        #expect(decodedBars.image == bars)
        #expect(decodedBars.blocks.allSatisfy { $0.type == 1 })
        #expect(decodedBars.idatBytes * 20 < bars.pixels.count, "\(decodedBars.idatBytes) bytes for \(bars.pixels.count) of pixels")

        var map = [Float](repeating: 0, count: 14 * 14)
        for i in 0..<map.count { map[i] = Float(i % 14 + i / 14) / 26 }
        let overlay = (channels: 3, height: 64, width: 64, values: (0..<(3 * 64 * 64)).map { Float(($0 * 37) % 101) })
        let heat = try AttentionRendering.heatmap(map, height: 14, width: 14, size: (height: 64, width: 64), overlay: overlay)
        let decodedHeat = try decodePNG(PNG.encode(heat))
        #expect(decodedHeat.image == heat)
        #expect(decodedHeat.idatBytes < heat.pixels.count)
    }

    @Test func aWrongSizedPixelBufferIsRepairedNotTrapped() throws {
        var image = RGBImage(width: 3, height: 2, fill: (1, 2, 3))
        image.pixels.removeLast(4)  // `pixels` is public and settable
        let decoded = try decodePNG(PNG.encode(image))
        #expect(decoded.width == 3 && decoded.height == 2)
        #expect(decoded.image.pixels == Array(image.pixels) + [0, 0, 0, 0])
    }

    @Test func emptyImagesEncodeAsOneBlackPixelButAreNotWritten() throws {
        let decoded = try decodePNG(PNG.encode(RGBImage(width: 0, height: 4, pixels: [])))
        #expect(decoded.width == 1 && decoded.height == 1 && decoded.image.pixels == [0, 0, 0])
        #expect(throws: CBAMError.self) { try PNG.write(RGBImage(width: 0, height: 0, pixels: []), to: "/tmp/never.png") }
    }

    @Test func imageInitializerRepairsTheBufferSize() {
        #expect(RGBImage(width: 2, height: 1, pixels: [1, 2, 3]).pixels == [1, 2, 3, 0, 0, 0])
        #expect(RGBImage(width: 1, height: 1, pixels: [1, 2, 3, 4]).pixels == [1, 2, 3])
        #expect(RGBImage(width: -3, height: 2, pixels: [1]).pixels.isEmpty)
        let filled = RGBImage(width: 2, height: 2, fill: (9, 8, 7))
        #expect(filled.pixels == [9, 8, 7, 9, 8, 7, 9, 8, 7, 9, 8, 7])
        #expect(filled.pixel(x: 2, y: 0) == nil)
    }

    @Test func writesAtomicallyAndNamesThePathOnFailure() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cbam-png-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.png").path
        let image = testImage(width: 4, height: 4)
        try PNG.write(image, to: path)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(try decodePNG(bytes).image == image)
        // Nothing but the PNG is left in the folder (no temporary file).
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["a.png"])

        let bad = dir.appendingPathComponent("missing/folder/b.png").path
        do {
            try PNG.write(image, to: bad)
            Issue.record("writing into a missing folder should fail")
        } catch let error as CBAMError {
            #expect(error.kind == .io)
            #expect(error.file == bad)
            #expect(error.description.contains(bad))
        }
    }
}

// MARK: - Color map

extension RenderingTests {
    @Test func colorMapEndsAndNaN() {
        #expect(same(AttentionRendering.color(0), (68, 1, 84)))       // viridis' dark purple
        #expect(same(AttentionRendering.color(1), (253, 231, 37)))    // viridis' yellow
        #expect(same(AttentionRendering.color(.nan), (68, 1, 84)))
        #expect(same(AttentionRendering.color(-5), (68, 1, 84)))
        #expect(same(AttentionRendering.color(7), (253, 231, 37)))
        #expect(same(AttentionRendering.color(.infinity), (253, 231, 37)))
        #expect(same(AttentionRendering.color(0.5), (33, 145, 140)))  // the middle control point
    }

    @Test func colorMapLuminanceRises() {
        func luma(_ c: (UInt8, UInt8, UInt8)) -> Double { 0.2126 * Double(c.0) + 0.7152 * Double(c.1) + 0.0722 * Double(c.2) }
        var previous = -1.0
        for step in 0...200 {
            let l = luma(AttentionRendering.color(Float(step) / 200))
            // Roughly increasing: rounding may wobble by a fraction of a level.
            #expect(l >= previous - 0.5, "luminance falls at t = \(Double(step) / 200)")
            previous = Swift.max(previous, l)
        }
        #expect(luma(AttentionRendering.color(1)) - luma(AttentionRendering.color(0)) > 180)
    }
}

// MARK: - Heat maps

extension RenderingTests {
    typealias Layout = AttentionRendering.HeatmapLayout

    @Test func heatmapSizeWithoutUpscaling() throws {
        let image = try AttentionRendering.heatmap([Float](repeating: 0.3, count: 7 * 9), height: 7, width: 9, size: nil, overlay: nil)
        let layout = Layout(panelWidth: 9, panelHeight: 7, panelCount: 1)
        #expect(image.width == layout.width && image.height == layout.height)
        // A 7-row map still gets a scale bar tall enough for its labels.
        #expect(image.height == 2 * Layout.margin + Layout.minBarHeight)
        #expect(image.width > 9 + 2 * Layout.margin)
    }

    @Test func heatmapSizeWithUpscaling() throws {
        let image = try AttentionRendering.heatmap([0.1, 0.9, 0.4, 0.6], height: 2, width: 2, size: (height: 64, width: 80), overlay: nil)
        let layout = Layout(panelWidth: 80, panelHeight: 64, panelCount: 1)
        #expect(image.width == layout.width && image.height == 2 * Layout.margin + 64)
    }

    @Test func heatmapWithOverlayHasThreePanels() throws {
        let overlay = (channels: 3, height: 16, width: 12, values: (0..<(3 * 16 * 12)).map { Float($0) })
        // Without a size the panels take the overlay's size.
        let a = try AttentionRendering.heatmap([Float](repeating: 0.5, count: 4 * 3), height: 4, width: 3, size: nil, overlay: overlay)
        let la = Layout(panelWidth: 12, panelHeight: 16, panelCount: 3)
        #expect(a.width == la.width && a.height == la.height)
        // With a size the overlay is resized too.
        let b = try AttentionRendering.heatmap([Float](repeating: 0.5, count: 4 * 3), height: 4, width: 3,
                                               size: (height: 60, width: 50), overlay: overlay)
        let lb = Layout(panelWidth: 50, panelHeight: 60, panelCount: 3)
        #expect(b.width == lb.width && b.height == lb.height)
        #expect(lb.width == Layout.margin + 3 * 50 + 2 * Layout.gap + Layout.barGap + Layout.barWidth + Layout.tickLength + 4
            + PixelFont.width("0.5", scale: 2) + Layout.margin)
    }

    @Test func constantHalfMapIsOneColorEverywhereInTheMapArea() throws {
        let image = try AttentionRendering.heatmap([Float](repeating: 0.5, count: 5 * 5), height: 5, width: 5,
                                                   size: (height: 37, width: 23), overlay: nil)
        let layout = Layout(panelWidth: 23, panelHeight: 37, panelCount: 1)
        let expected = AttentionRendering.color(0.5)
        var wrong = 0
        for y in 0..<37 {
            for x in 0..<23 where !same(image.pixel(x: layout.panelX(0) + x, y: layout.panelY + y), expected) { wrong += 1 }
        }
        #expect(wrong == 0)
        // …and the map area is exactly that: the margin around it is background.
        #expect(same(image.pixel(x: layout.panelX(0) - 1, y: layout.panelY), (255, 255, 255)))
        #expect(same(image.pixel(x: layout.panelX(0) + 23, y: layout.panelY), (255, 255, 255)))
        #expect(same(image.pixel(x: layout.panelX(0), y: layout.panelY + 37), (255, 255, 255)))
    }

    @Test func bilinearUpscalingMatchesHandValues() throws {
        // 2×2 → 4×4 with align_corners = false: output o samples input (o + 0.5)/2 - 0.5
        // = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (upper tap clamped), i.e. weights of the
        // second row/column 0, 0.25, 0.75, 1. For [[0, 1], [2, 3]] the value is wx + 2*wy.
        let out = AttentionRendering.bilinear([0, 1, 2, 3], height: 2, width: 2, toHeight: 4, toWidth: 4)
        let expected: [Float] = [0.0, 0.25, 0.75, 1.0,
                                 0.5, 0.75, 1.25, 1.5,
                                 1.5, 1.75, 2.25, 2.5,
                                 2.0, 2.25, 2.75, 3.0]
        #expect(out == expected)

        // The same through heatmap: [[0, 0.2], [0.4, 0.6]] → 0.2*wx + 0.4*wy.
        let image = try AttentionRendering.heatmap([0, 0.2, 0.4, 0.6], height: 2, width: 2, size: (height: 4, width: 4), overlay: nil)
        let layout = Layout(panelWidth: 4, panelHeight: 4, panelCount: 1)
        let w: [Float] = [0, 0.25, 0.75, 1]
        for y in 0..<4 {
            for x in 0..<4 {
                let value = 0.2 * w[x] + 0.4 * w[y]
                #expect(close(image.pixel(x: layout.panelX(0) + x, y: layout.panelY + y), AttentionRendering.color(value)),
                        "pixel (\(x), \(y)) should show \(value)")
            }
        }
    }

    @Test func overlayPanelsShowInputHeatAndBlend() throws {
        // A constant input normalises to 0.5 gray: input panel 127.5 → 128; blend = (heat + 127.5) / 2.
        let overlay = (channels: 1, height: 2, width: 2, values: [Float](repeating: 3, count: 4))
        let image = try AttentionRendering.heatmap([1, 1, 1, 1], height: 2, width: 2, size: nil, overlay: overlay)
        let layout = Layout(panelWidth: 2, panelHeight: 2, panelCount: 3)
        let heat = AttentionRendering.color(1)  // (253, 231, 37)
        #expect(same(image.pixel(x: layout.panelX(0), y: layout.panelY), (128, 128, 128)))
        #expect(same(image.pixel(x: layout.panelX(1), y: layout.panelY), heat))
        #expect(same(image.pixel(x: layout.panelX(2) + 1, y: layout.panelY + 1), (190, 179, 82)))  // (253+127.5)/2 = 190.25, (231+127.5)/2 = 179.25, (37+127.5)/2 = 82.25

        // An RGB input is min-max normalised over the whole image: red 0→255 shows as pure red.
        let rgb = (channels: 3, height: 1, width: 2, values: [Float]([-1, 1, -1, -1, -1, -1]))
        let image2 = try AttentionRendering.heatmap([0, 0], height: 1, width: 2, size: nil, overlay: rgb)
        let layout2 = Layout(panelWidth: 2, panelHeight: 1, panelCount: 3)
        #expect(same(image2.pixel(x: layout2.panelX(0), y: layout2.panelY), (0, 0, 0)))
        #expect(same(image2.pixel(x: layout2.panelX(0) + 1, y: layout2.panelY), (255, 0, 0)))
    }

    @Test func scaleBarRunsFromOneAtTheTopToZeroAtTheBottom() throws {
        let image = try AttentionRendering.heatmap([0.2], height: 1, width: 1, size: (height: 100, width: 100), overlay: nil)
        let layout = Layout(panelWidth: 100, panelHeight: 100, panelCount: 1)
        #expect(same(image.pixel(x: layout.barX + 3, y: layout.barY), AttentionRendering.color(1)))
        #expect(same(image.pixel(x: layout.barX + 3, y: layout.barY + layout.barHeight - 1), AttentionRendering.color(0)))
        #expect(close(image.pixel(x: layout.barX + 3, y: layout.barRow(0.5)), AttentionRendering.color(0.5), tolerance: 2))
        // Tick marks at 0, 0.5 and 1.
        for t: Float in [0, 0.5, 1] {
            #expect(same(image.pixel(x: layout.barX + Layout.barWidth + 1, y: layout.barRow(t)), AttentionRendering.ink))
        }
    }

    @Test func heatmapRejectsBadShapes() {
        #expect(throws: CBAMError.self) { try AttentionRendering.heatmap([0, 1, 2], height: 2, width: 2, size: nil, overlay: nil) }
        #expect(throws: CBAMError.self) { try AttentionRendering.heatmap([], height: 0, width: 0, size: nil, overlay: nil) }
        #expect(throws: CBAMError.self) { try AttentionRendering.heatmap([0], height: 1, width: 1, size: (height: 0, width: 4), overlay: nil) }
        #expect(throws: CBAMError.self) { try AttentionRendering.heatmap([0], height: 1, width: 1, size: (height: 5000, width: 4), overlay: nil) }
        #expect(throws: CBAMError.self) {
            try AttentionRendering.heatmap([0], height: 1, width: 1, size: nil, overlay: (channels: 2, height: 1, width: 1, values: [0, 0]))
        }
        #expect(throws: CBAMError.self) {
            try AttentionRendering.heatmap([0], height: 1, width: 1, size: nil, overlay: (channels: 3, height: 2, width: 2, values: [0]))
        }
        #expect(throws: CBAMError.self) {
            try AttentionRendering.heatmap([0], height: Int.max, width: 2, size: nil, overlay: nil)
        }
    }
}

// MARK: - Channel bars

extension RenderingTests {
    typealias Bars = AttentionRendering.ChannelBarsLayout

    @Test func channelBarWidthStaysWithinBounds() throws {
        for channels in [1, 3, 8, 16, 64, 256, 512, 984, 985, 986, 1024, 2048, 5000, 100_000] {
            let image = try AttentionRendering.channelBars([Float](repeating: 0.5, count: channels))
            let layout = Bars(channels: channels)
            #expect(image.width >= 256 && image.width <= 1024, "C = \(channels): width \(image.width)")
            #expect(image.width == layout.width && image.height == layout.height)
            #expect(layout.barWidth >= 1)
            #expect(layout.bars * layout.group >= channels && (layout.bars - 1) * layout.group < channels)
            #expect(Bars.plotX + layout.plotWidth <= image.width)
        }
        #expect(Bars(channels: 1024).group == 2)
        #expect(Bars(channels: 64).group == 1)
    }

    @Test func channelBarHeightsFollowTheFixedAxis() throws {
        let image = try AttentionRendering.channelBars([0, 0.5, 1])
        let layout = Bars(channels: 3)
        // Pixels of the bar's own color in its first column, above the baseline.
        func barPixels(_ i: Int, _ value: Float) -> Int {
            (Bars.topMargin..<layout.baselineY).filter {
                same(image.pixel(x: layout.barX(i), y: $0), AttentionRendering.color(value))
            }.count
        }
        #expect(barPixels(0, 0) == 0)
        #expect(barPixels(1, 0.5) == Bars.plotHeight / 2)
        #expect(barPixels(2, 1) == Bars.plotHeight)
        // The 0.5 bar's top sits on the grid row; above it the grid line shows.
        #expect(same(image.pixel(x: layout.barX(1), y: layout.baselineY - Bars.plotHeight / 2), AttentionRendering.color(0.5)))
        #expect(same(image.pixel(x: layout.barX(0), y: layout.baselineY - Bars.plotHeight / 2), AttentionRendering.gridColor))
        // Baseline under every bar.
        #expect(same(image.pixel(x: layout.barX(2), y: layout.baselineY), AttentionRendering.ink))
    }

    @Test func wideLayersAverageAdjacentChannels() throws {
        // 1970 channels → groups of 2; alternating 0, 1 averages to 0.5 in every bar.
        let values = (0..<1970).map { Float($0 % 2) }
        let image = try AttentionRendering.channelBars(values)
        let layout = Bars(channels: 1970)
        #expect(layout.group == 2 && layout.bars == 985 && layout.barWidth == 1)
        for i in [0, 500, 984] {
            let height = (Bars.topMargin..<layout.baselineY).filter {
                same(image.pixel(x: layout.barX(i), y: $0), AttentionRendering.color(0.5))
            }.count
            #expect(height == Bars.plotHeight / 2)
        }
    }

    @Test func channelBarsRejectAnEmptyMap() {
        #expect(throws: CBAMError.self) { try AttentionRendering.channelBars([]) }
    }
}

// MARK: - HTML report

extension RenderingTests {
    fileprivate static func sampleReport() -> AttentionReport {
        AttentionReport(model: "/models/tricky<&>.onnx", input: "in\"put\".npy", batch: 1, maps: [
            AttentionMapRecord(index: 0, block: 0, kind: "channel", tensor: "/layer1/ca/<Sigmoid>_output_0", node: "node&1\"",
                               opType: "Sigmoid", shape: [1, 64, 1, 1], min: 0.1, max: 0.9, mean: 0.5,
                               files: ["00_channel.npy", "00_channel.png"]),
            AttentionMapRecord(index: 1, block: 0, kind: "spatial", tensor: "sa'out", node: "<script>alert(1)</script>",
                               opType: "Sigmoid", shape: [1, 1, 56, 56], min: 0, max: 1, mean: 0.25,
                               files: ["01_spatial.npy", "01_spatial.png"]),
            AttentionMapRecord(index: 2, block: 1, kind: "channel", tensor: "b1", node: "n2",
                               opType: "Sigmoid", shape: [1, 128], min: .nan, max: 1, mean: 0.5,
                               files: ["02_channel.npy", "02_channel.png"]),
        ])
    }

    @Test func htmlEscapesNamesAndEmbedsImages() throws {
        let pngs = ["00_channel.png": PNG.encode(testImage(width: 3, height: 2)),
                    "01_spatial.png": PNG.encode(testImage(width: 2, height: 2))]
        // 02_channel.png is deliberately missing.
        let html = HTMLReport.render(Self.sampleReport(), images: pngs)
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.contains("<title>Attention maps — tricky&lt;&amp;&gt;.onnx</title>"))
        #expect(html.contains("/layer1/ca/&lt;Sigmoid&gt;_output_0"))
        #expect(html.contains("node&amp;1&quot;"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(!html.contains("<script"))
        #expect(!html.contains("<Sigmoid>"))
        #expect(html.contains("sa&#39;out"))
        #expect(html.contains("in&quot;put&quot;.npy"))
        #expect(html.contains("Block 0") && html.contains("Block 1"))
        #expect(html.contains("[1, 64, 1, 1]") && html.contains("0.1000 / 0.9000 / 0.5000"))
        #expect(html.contains("NaN / 1.0000"))
        #expect(html.contains("02_channel.png</code> not available"))

        // Exactly the two PNGs given, embedded byte for byte.
        let marker = "data:image/png;base64,"
        #expect(html.components(separatedBy: marker).count - 1 == 2)
        let first = try #require(html.range(of: marker))
        let rest = html[first.upperBound...]
        let base64 = String(rest.prefix { $0 != "\"" })
        #expect(Data(base64Encoded: base64).map { [UInt8]($0) } == pngs["00_channel.png"])
        // No external resources.
        #expect(!html.contains("http://") && !html.contains("https://") && !html.contains("src=\"/"))
    }

    @Test func htmlForAnEmptyReportSaysSo() {
        let html = HTMLReport.render(AttentionReport(model: "m.onnx", input: nil, batch: 2, maps: []), images: [:])
        #expect(html.contains("No attention maps"))
        #expect(!html.contains("data:image/png"))
    }
}

// MARK: - Sample pictures for a person to look at

extension RenderingTests {
    /// Writes a heat map with overlay, a bar chart and an index.html to `$CBAM_RENDER_SAMPLES`
    /// (skipped unless set): `CBAM_RENDER_SAMPLES=/tmp swift test --filter RenderingTests`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["CBAM_RENDER_SAMPLES"] != nil))
    func writeSamples() throws {
        let dir = try #require(ProcessInfo.processInfo.environment["CBAM_RENDER_SAMPLES"])
        // A synthetic 3×224×224 "photo": a sky gradient, a dark disc (the object) on green.
        let side = 224
        var input = [Float](repeating: 0, count: 3 * side * side)
        for y in 0..<side {
            for x in 0..<side {
                let dx = Float(x - 140), dy = Float(y - 120)
                let inDisc = dx * dx + dy * dy < 45 * 45
                let sky = y < 110
                let rgb: (Float, Float, Float) = inDisc ? (0.55, 0.25, 0.15) : sky ? (0.4, 0.6, 1.0 - Float(y) / 300) : (0.2, 0.55, 0.2)
                input[y * side + x] = rgb.0 * 2 - 1  // a normalised input in [-1, 1]
                input[side * side + y * side + x] = rgb.1 * 2 - 1
                input[2 * side * side + y * side + x] = rgb.2 * 2 - 1
            }
        }
        // A 14×14 spatial map peaking on the disc.
        var map = [Float](repeating: 0, count: 14 * 14)
        for y in 0..<14 {
            for x in 0..<14 {
                let dx = (Float(x) + 0.5) * 16 - 140, dy = (Float(y) + 0.5) * 16 - 120
                let z = 3 - (dx * dx + dy * dy) / 1200
                map[y * 14 + x] = 1 / (1 + exp(-z))
            }
        }
        let heat = try AttentionRendering.heatmap(map, height: 14, width: 14, size: (height: side, width: side),
                                                  overlay: (channels: 3, height: side, width: side, values: input))
        try PNG.write(heat, to: dir + "/sample_spatial.png")
        let small = try AttentionRendering.heatmap(map, height: 14, width: 14, size: nil, overlay: nil)
        try PNG.write(small, to: dir + "/sample_spatial_small.png")
        let channels = (0..<256).map { i in Float(0.5 + 0.45 * sin(Double(i) * 0.37) * cos(Double(i) * 0.05)) }
        let bars = try AttentionRendering.channelBars(channels)
        try PNG.write(bars, to: dir + "/sample_channel.png")
        let wide = try AttentionRendering.channelBars((0..<2048).map { i in Float(i % 97) / 96 })
        try PNG.write(wide, to: dir + "/sample_channel_wide.png")

        let report = AttentionReport(model: "/models/resnet18_cbam.onnx", input: "cat.npy", batch: 1, maps: [
            AttentionMapRecord(index: 0, block: 0, kind: "channel", tensor: "/layer1/0/cbam/ChannelGate/Sigmoid_output_0",
                               node: "/layer1/0/cbam/ChannelGate/Sigmoid", opType: "Sigmoid", shape: [1, 256, 1, 1],
                               min: 0.05, max: 0.95, mean: 0.5, files: ["00_channel.npy", "00_channel.png"]),
            AttentionMapRecord(index: 1, block: 0, kind: "spatial", tensor: "/layer1/0/cbam/SpatialGate/<Sigmoid>_output_0",
                               node: "/layer1/0/cbam/SpatialGate/Sigmoid", opType: "Sigmoid", shape: [1, 1, 14, 14],
                               min: 0.05, max: 0.95, mean: 0.3, files: ["01_spatial.npy", "01_spatial.png"]),
            AttentionMapRecord(index: 2, block: 1, kind: "channel", tensor: "/layer4/1/cbam/ChannelGate/Sigmoid_output_0",
                               node: "/layer4/1/cbam/ChannelGate/Sigmoid", opType: "Sigmoid", shape: [1, 2048, 1, 1],
                               min: 0, max: 1, mean: 0.5, files: ["02_channel.npy", "02_channel.png"]),
            AttentionMapRecord(index: 3, block: 1, kind: "spatial", tensor: "/layer4/1/cbam/SpatialGate/Sigmoid_output_0",
                               node: "/layer4/1/cbam/SpatialGate/Sigmoid", opType: "Sigmoid", shape: [1, 1, 14, 14],
                               min: 0.05, max: 0.95, mean: 0.3, files: ["03_spatial.npy", "03_spatial.png"]),
        ])
        let html = HTMLReport.render(report, images: ["00_channel.png": PNG.encode(bars), "01_spatial.png": PNG.encode(heat),
                                                      "02_channel.png": PNG.encode(wide), "03_spatial.png": PNG.encode(small)])
        try html.write(toFile: dir + "/index.html", atomically: true, encoding: .utf8)
    }
}
