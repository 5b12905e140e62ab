import Foundation
import Testing
@testable import CBAMRuntime

// PNG encoding (read back with libpng), the color map, heat maps,
// channel bar charts and the HTML report. Expected values are worked out in comments.

/// All rendering tests (`swift test --filter RenderingTests`).
@Suite struct RenderingTests {}

// MARK: - PNG bytes read back with libpng

/// What a PNG file's IHDR says, read from the bytes (signature, then IHDR as the first chunk).
struct PNGHeader: Equatable {
    var width: Int
    var height: Int
    var bitDepth: UInt8
    var colorType: UInt8
    var interlace: UInt8
}

fileprivate struct DecodeFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func pngHeader(_ png: [UInt8]) throws -> PNGHeader {
    guard png.count >= 33, Array(png.prefix(8)) == [137, 80, 78, 71, 13, 10, 26, 10],
          Array(png[12..<16]) == Array("IHDR".utf8) else { throw DecodeFailure("no PNG signature and IHDR") }
    func u32(_ at: Int) -> Int { Int(png[at]) << 24 | Int(png[at + 1]) << 16 | Int(png[at + 2]) << 8 | Int(png[at + 3]) }
    return PNGHeader(width: u32(16), height: u32(20), bitDepth: png[24], colorType: png[25], interlace: png[28])
}

/// The pixels of PNG bytes, decoded by libpng through the input decoder.
func decodedPixels(_ png: [UInt8]) throws -> RGBImage {
    try PNG.decode(png, maxPixels: ImageFile.defaultMaxPixels).image
}

/// Bytes of noise (SplitMix64), which no compressor can shrink.
func noiseBytes(count: Int, seed: UInt64) -> [UInt8] {
    var generator = SplitMix(state: seed)
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
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
    @Test func encodesASmallImageThatDecodesBack() throws {
        let image = testImage(width: 5, height: 3)
        let png = try PNG.encode(image)
        #expect(try pngHeader(png) == PNGHeader(width: 5, height: 3, bitDepth: 8, colorType: 2, interlace: 0))
        #expect(try decodedPixels(png) == image)
    }

    @Test func noiseAndLargeImagesDecodeBack() throws {
        let noise = RGBImage(width: 300, height: 250, pixels: noiseBytes(count: 300 * 250 * 3, seed: 1))
        #expect(try decodedPixels(PNG.encode(noise)) == noise)
        let large = RGBImage(width: 1024, height: 400, pixels: noiseBytes(count: 1024 * 400 * 3, seed: 2))
        #expect(try decodedPixels(PNG.encode(large)) == large)
        for fill: (UInt8, UInt8, UInt8) in [(0, 0, 0), (255, 255, 255)] {
            let flat = RGBImage(width: 9, height: 4, fill: fill)
            #expect(try decodedPixels(PNG.encode(flat)) == flat)
        }
    }

    @Test func renderedPicturesCompressAndDecodeBack() throws {
        let bars = try AttentionRendering.channelBars((0..<512).map { Float(0.5 + 0.45 * sin(Double($0) * 0.37)) })
        let barsPNG = try PNG.encode(bars)
        #expect(try decodedPixels(barsPNG) == bars)
        #expect(barsPNG.count * 20 < bars.pixels.count, "\(barsPNG.count) bytes for \(bars.pixels.count) of pixels")

        var map = [Float](repeating: 0, count: 14 * 14)
        for i in 0..<map.count { map[i] = Float(i % 14 + i / 14) / 26 }
        let overlay = (channels: 3, height: 64, width: 64, values: (0..<(3 * 64 * 64)).map { Float(($0 * 37) % 101) })
        let heat = try AttentionRendering.heatmap(map, height: 14, width: 14, size: (height: 64, width: 64), overlay: overlay)
        let heatPNG = try PNG.encode(heat)
        #expect(try decodedPixels(heatPNG) == heat)
        #expect(heatPNG.count < heat.pixels.count)
    }

    @Test func aWrongSizedPixelBufferIsRepairedNotTrapped() throws {
        var image = RGBImage(width: 3, height: 2, fill: (1, 2, 3))
        image.pixels.removeLast(4)  // `pixels` is public and settable
        let decoded = try decodedPixels(PNG.encode(image))
        #expect(decoded.width == 3 && decoded.height == 2)
        #expect(decoded.pixels == Array(image.pixels) + [0, 0, 0, 0])
    }

    @Test func emptyImagesAreRefused() throws {
        #expect(throws: CBAMError.self) { try PNG.encode(RGBImage(width: 0, height: 4, pixels: [])) }
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
        #expect(try decodedPixels(bytes) == image)
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
        // matplotlib.colormaps["viridis"](t, bytes=True) at 0, 1 and 0.5.
        #expect(same(AttentionRendering.color(0), (68, 1, 84)))       // viridis' dark purple
        #expect(same(AttentionRendering.color(1), (253, 231, 36)))    // viridis' yellow
        #expect(same(AttentionRendering.color(.nan), (68, 1, 84)))
        #expect(same(AttentionRendering.color(-5), (68, 1, 84)))
        #expect(same(AttentionRendering.color(7), (253, 231, 36)))
        #expect(same(AttentionRendering.color(.infinity), (253, 231, 36)))
        #expect(same(AttentionRendering.color(0.5), (32, 144, 140)))
    }

    /// Every case of Fixtures/viridis_matplotlib.json (tools/gen_viridis.py): matplotlib's own
    /// `colormaps["viridis"](t, bytes=True)` for t from -0.1 to 1.1 and at every entry boundary.
    @Test func colorMapIsMatplotlibsViridis() throws {
        struct Fixture: Decodable {
            struct Case: Decodable { var t: Double; var rgb: [UInt8] }
            var cases: [Case]
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: Repo.path("Tests/CBAMRuntimeTests/Fixtures/viridis_matplotlib.json")))
        let fixture = try JSONDecoder().decode(Fixture.self, from: data)
        #expect(fixture.cases.count > 400)
        #expect(AttentionRendering.viridis.count == 256)
        for c in fixture.cases {
            let color = AttentionRendering.color(Float(c.t))
            #expect([color.0, color.1, color.2] == c.rgb, "t = \(c.t)")
        }
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
        let heat = AttentionRendering.color(1)  // (253, 231, 36)
        #expect(same(image.pixel(x: layout.panelX(0), y: layout.panelY), (128, 128, 128)))
        #expect(same(image.pixel(x: layout.panelX(1), y: layout.panelY), heat))
        #expect(same(image.pixel(x: layout.panelX(2) + 1, y: layout.panelY + 1), (190, 179, 82)))  // (253+127.5)/2 = 190.25, (231+127.5)/2 = 179.25, (36+127.5)/2 = 81.75

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
        let pngs = ["00_channel.png": try PNG.encode(testImage(width: 3, height: 2)),
                    "01_spatial.png": try PNG.encode(testImage(width: 2, height: 2))]
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
        let html = HTMLReport.render(report, images: ["00_channel.png": try PNG.encode(bars), "01_spatial.png": try PNG.encode(heat),
                                                      "02_channel.png": try PNG.encode(wide), "03_spatial.png": try PNG.encode(small)])
        try html.write(toFile: dir + "/index.html", atomically: true, encoding: .utf8)
    }
}
