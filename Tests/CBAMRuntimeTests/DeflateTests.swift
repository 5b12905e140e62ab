import Foundation
import Testing
@testable import CBAMRuntime

// Deflate.compress, checked by round trips through the independent `referenceInflate`
// (RenderingTests.swift), by the block types it chose, and by output sizes.

/// Deflate tests (`swift test --filter DeflateTests`).
@Suite struct DeflateTests {}

/// Deterministic pseudo-random bytes (SplitMix64): incompressible for practical purposes.
func deflateTestNoise(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var out: [UInt8] = []
    out.reserveCapacity(count)
    while out.count < count {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        for k in 0..<8 where out.count < count { out.append(UInt8(truncatingIfNeeded: z >> (8 * UInt64(k)))) }
    }
    return out
}

extension DeflateTests {
    /// Compresses, inflates with the reference inflater, checks the round trip and that the
    /// whole stream was used; returns the compressed bytes and the blocks.
    fileprivate func roundTrip(_ data: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> (compressed: [UInt8], blocks: [InflatedBlock]) {
        let compressed = Deflate.compress(data)
        let (output, blocks, used) = try referenceInflate(compressed)
        #expect(output == data, "round trip of \(data.count) bytes", sourceLocation: sourceLocation)
        #expect(used == compressed.count, "trailing bytes after the final block", sourceLocation: sourceLocation)
        // Blocks never hold more than a stored block can.
        #expect(blocks.allSatisfy { $0.length <= 65535 }, sourceLocation: sourceLocation)
        return (compressed, blocks)
    }

    @Test func emptyInputIsOneEmptyFixedBlock() throws {
        let (compressed, blocks) = try roundTrip([])
        // BFINAL=1, BTYPE=01, then the 7-bit end-of-block code 0000000: bits 1,1,0 + 7 zeros → 03 00.
        #expect(compressed == [0x03, 0x00])
        #expect(blocks == [InflatedBlock(type: 1, length: 0)])
    }

    @Test func singleBytes() throws {
        for byte: UInt8 in [0, 1, 143, 144, 200, 255] {
            let (compressed, blocks) = try roundTrip([byte])
            #expect(blocks.count == 1 && blocks[0].type == 1)
            #expect(compressed.count <= 3)  // 3 + 8/9 + 7 bits
        }
        // Byte 0: header bits 1 (BFINAL), 1 0 (BTYPE = 01), its code 00110000, end of block 0000000,
        // packed LSB first: 0b01100011, 0, 0 — the same as python3's
        // zlib.compressobj(6, zlib.DEFLATED, -15) gives for b"\0".
        #expect(Deflate.compress([0]) == [0x63, 0x00, 0x00])
    }

    @Test func noiseFallsBackToStoredBlocks() throws {
        let data = deflateTestNoise(count: 150_000, seed: 7)
        let (compressed, blocks) = try roundTrip(data)
        #expect(blocks == [65535, 65535, 18930].map { InflatedBlock(type: 0, length: $0) })
        #expect(compressed.count == data.count + 3 * 5)  // 5 bytes of header per stored block
    }

    @Test func longRunsShrinkToAlmostNothing() throws {
        for byte: UInt8 in [0, 0xFF] {
            let data = [UInt8](repeating: byte, count: 300_000)
            let (compressed, blocks) = try roundTrip(data)
            #expect(blocks.allSatisfy { $0.type == 1 })
            // ≈ 300000/258 back-references of 8 + 0 + 5 bits (length 258, distance 1) ≈ 2.4 KB.
            #expect(compressed.count < 2_600, "\(compressed.count) bytes")
        }
        // Runs of every length around the interesting boundaries, separated by other bytes.
        var mixed: [UInt8] = []
        for length in [1, 2, 3, 4, 10, 11, 18, 19, 130, 257, 258, 259, 260, 516, 517, 1000] {
            mixed += [UInt8(truncatingIfNeeded: length), 0xA5] + [UInt8](repeating: UInt8(truncatingIfNeeded: length * 3), count: length)
        }
        _ = try roundTrip(mixed)
    }

    @Test func repeatedRowsCostAboutOneRow() throws {
        let row = deflateTestNoise(count: 3001, seed: 3)
        var data: [UInt8] = []
        for _ in 0..<60 { data += row }  // 180 KB: the first row is noise, the rest copies
        let (compressed, blocks) = try roundTrip(data)
        #expect(blocks.count == 3)
        // The first row costs ≈ 3001 × 8.4 bits ≈ 3.2 KB; each later row ≈ 12 references of ≈ 26 bits.
        #expect(compressed.count < 6_000, "\(compressed.count) bytes")
    }

    @Test func mixedDataOf100KB() throws {
        var data: [UInt8] = []
        let text = Array("attention gates end in a sigmoid; the same color means the same weight. ".utf8)
        var seed: UInt64 = 11
        while data.count < 100_000 {
            seed += 1
            switch seed % 5 {
            case 0: data += text
            case 1: data += deflateTestNoise(count: Int(seed % 700), seed: seed)
            case 2: data += [UInt8](repeating: UInt8(seed % 256), count: Int(seed * 37 % 400))
            case 3: // a copy from far back: distances up to and beyond the 32 KiB window
                let distance = Swift.min(data.count, Int(seed * 7919 % 40_000) + 1)
                let length = Int(seed * 31 % 300) + 1
                for _ in 0..<length { data.append(data[data.count - distance]) }
            default: data += (0..<Int(seed % 512)).map { UInt8(truncatingIfNeeded: $0 / 3) }
            }
        }
        let (compressed, blocks) = try roundTrip(data)
        #expect(blocks.map(\.length).reduce(0, +) == data.count)
        #expect(compressed.count < data.count)
    }

    @Test func everyLengthAndFarDistances() throws {
        // A noise prefix, then copies of every length 3…258 from distances up to 32000 back:
        // exercises every length symbol and extra-bit count and most distance codes.
        var data = deflateTestNoise(count: 33_000, seed: 5)
        for length in 3...258 {
            let distance = 1 + (length * 127) % 32_000
            for _ in 0..<length { data.append(data[data.count - distance]) }  // may overlap itself, as LZ77 does
            data += deflateTestNoise(count: 4, seed: UInt64(length))  // break the copy
        }
        _ = try roundTrip(data)
        // Data that matches only at distances beyond the window still round-trips (as literals).
        let block = deflateTestNoise(count: 40_000, seed: 9)
        _ = try roundTrip(block + block)
    }

    @Test func flatBarChartPNGIsSmall() throws {
        // 1000×180, white, 99 flat bars of 9 px + 1 px gap, a gray grid line and a dark baseline.
        var image = RGBImage(width: 1000, height: 180, fill: (255, 255, 255))
        image.fill(x: 0, y: 90, width: 1000, height: 1, AttentionRendering.gridColor)
        for i in 0..<99 {
            let value = Float(0.5 + 0.45 * sin(Double(i) * 0.37))
            let h = Int(value * 160)
            image.fill(x: 10 + 10 * i, y: 170 - h, width: 9, height: h, AttentionRendering.color(value))
        }
        image.fill(x: 0, y: 170, width: 1000, height: 1, AttentionRendering.ink)
        let png = PNG.encode(image)
        #expect(png.count < 30_000, "\(png.count) bytes (raw pixels: \(image.pixels.count))")
        #expect(try decodePNG(png).image == image)

        // A real channel chart of 985 one-pixel bars (1024×181, every column its own color).
        let bars = try AttentionRendering.channelBars((0..<985).map { Float(0.5 + 0.45 * sin(Double($0) * 0.37)) })
        let barsPNG = PNG.encode(bars)
        #expect(barsPNG.count < 30_000, "\(barsPNG.count) bytes (raw pixels: \(bars.pixels.count))")
        #expect(try decodePNG(barsPNG).image == bars)
    }
}
