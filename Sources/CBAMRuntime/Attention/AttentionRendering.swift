/// Pictures of attention maps: spatial maps as heat maps, channel maps as bar charts.
///
/// Attention gates end in a sigmoid, so by default every value is shown on the FIXED scale
/// [0, 1]: the same color means the same weight in every block and every model, and a gate
/// that is "all 0.5" looks flat instead of being stretched into noise (`--map-scale per-map`
/// asks for the stretch instead).
public enum AttentionRendering {
    /// Largest picture side we agree to draw; larger requests are almost certainly a
    /// mistake (a wrong axis taken as a size) and would need gigabytes of pixels.
    static let maxSide = 4096

    static let background: (UInt8, UInt8, UInt8) = (255, 255, 255)
    static let ink: (UInt8, UInt8, UInt8) = (60, 60, 60)
    static let gridColor: (UInt8, UInt8, UInt8) = (215, 215, 215)

    // MARK: - Color map

    /// matplotlib's viridis (``viridis``, its exact 256-entry table) at t in [0, 1], as
    /// `matplotlib.colormaps["viridis"](t, bytes=True)` gives it: entry `floor(t * 256)` (t = 1
    /// takes the last), below 0 the first and above 1 the last, each component `× 255` truncated
    /// to a byte. NaN gives the first color (matplotlib's "bad" color is transparent; a heat map
    /// has no transparency). Dark purple → blue → teal → green → yellow, luminance rising
    /// monotonically, so maps stay readable in grayscale and for color-blind readers.
    public static func color(_ t: Float) -> (UInt8, UInt8, UInt8) {
        let entry: Int
        if t.isNaN || t < 0 {
            entry = 0
        } else if t >= 1 {
            entry = viridis.count - 1
        } else {
            entry = Swift.min(viridis.count - 1, Int(t * Float(viridis.count)))
        }
        let c = viridis[entry]
        return (UInt8(c.0 * 255), UInt8(c.1 * 255), UInt8(c.2 * 255))
    }

    /// A value in [0, 255] (clamped, rounded; NaN → 0) as a byte.
    static func byte(_ v: Float) -> UInt8 {
        guard !v.isNaN else { return 0 }
        return UInt8(Swift.min(255, Swift.max(0, v.rounded())))
    }

    // MARK: - Heat map

    /// Where each part of a ``heatmap(_:height:width:size:overlay:)`` picture sits.
    ///
    /// `[margin] panel 0 [gap] panel 1 [gap] panel 2 [barGap] scale bar [tick] [labels] [margin]`,
    /// the panels (input, heat map, blend; or the heat map alone) `panelWidth × panelHeight`
    /// with their top-left corners at (`panelX(i)`, `margin`). The scale bar is at least
    /// ``minBarHeight`` tall so its three labels never overlap, even for a 7×7 map.
    struct HeatmapLayout {
        static let margin = 6
        static let gap = 6
        static let barGap = 12
        static let barWidth = 14
        static let tickLength = 4
        static let minBarHeight = 48

        let panelWidth: Int
        let panelHeight: Int
        let panelCount: Int
        /// The scale bar's labels, top to bottom (the range's high end, middle, low end).
        var labels: [String] = ["1", "0.5", "0"]
        /// Index of the heat map panel (1 with an overlay: it sits between the input and the blend).
        var heatPanel: Int { panelCount == 3 ? 1 : 0 }
        var panelY: Int { Self.margin }
        func panelX(_ i: Int) -> Int { Self.margin + i * (panelWidth + Self.gap) }
        var barX: Int { panelX(panelCount) - Self.gap + Self.barGap }
        var barY: Int { Self.margin }
        var barHeight: Int { Swift.max(panelHeight, Self.minBarHeight) }
        /// Labels keep a 4 px gap from the ticks; closer, "-0.5" reads as a negative number.
        var labelX: Int { barX + Self.barWidth + Self.tickLength + 4 }
        var width: Int { labelX + labels.map { PixelFont.width($0, scale: 2) }.reduce(PixelFont.width("0.5", scale: 2), Swift.max) + Self.margin }
        var height: Int { 2 * Self.margin + barHeight }
        /// The bar row showing value `t` (1 at the top).
        func barRow(_ t: Float) -> Int { barY + Int(((1 - t) * Float(barHeight - 1)).rounded()) }
    }

    /// A spatial attention map as a heat map. `map` is one item's [height, width] values (row-major).
    ///
    /// Values are shown on a FIXED scale [0, 1] (they are sigmoid outputs), not min-max stretched.
    /// If `size` is given the map is resized to it with bilinear interpolation (align_corners = false,
    /// like PyTorch's default; no antialiasing when shrinking). If `overlay` is given (the network
    /// input for this batch item, [channels, height, width] floats, channels 1 or 3, min-max
    /// normalised per image for display), the picture is side by side: the input image, the heat
    /// map, and the blend (50% heat map over a grayscale version of the image); the panels take
    /// `size`, or the overlay's own size when `size` is nil (a blend needs one size). A vertical
    /// color scale bar with ticks and labels at 0, 0.5 and 1 is always appended on the right.
    /// Layout: ``HeatmapLayout``. Throws on empty or mismatched shapes and on sides above 4096.
    ///
    /// `photo`, when given, takes the overlay's place with its own 8-bit colors (no min-max
    /// stretch): the picture the network was fed before scaling and normalisation.
    /// `range` is the value shown as the color map's ends (default the fixed [0, 1]); a
    /// per-map stretch passes the map's own min and max, and the scale bar is labelled with them.
    public static func heatmap(_ map: [Float], height: Int, width: Int, size: (height: Int, width: Int)?,
                               overlay: (channels: Int, height: Int, width: Int, values: [Float])?,
                               photo: RGBImage? = nil, range: (low: Float, high: Float) = (0, 1)) throws -> RGBImage {
        try checkPlane(height: height, width: width, count: map.count, what: "attention map")
        guard range.low.isFinite, range.high.isFinite, range.low < range.high else {
            throw CBAMError(.invalidShape, "the color scale's range \(range.low)…\(range.high) is empty or not finite")
        }
        var overlay = overlay
        var displayReady = false
        if let photo {
            try checkPlane(height: photo.height, width: photo.width, count: photo.pixels.count / 3, what: "photo")
            // Planar [3, H, W] in [0, 1]: the form the overlay path resizes.
            let plane = photo.width * photo.height
            var values = [Float](repeating: 0, count: 3 * plane)
            for i in 0..<plane {
                for c in 0..<3 { values[c * plane + i] = Float(photo.pixels[3 * i + c]) / 255 }
            }
            overlay = (3, photo.height, photo.width, values)
            displayReady = true
        }
        var panelHeight = height, panelWidth = width
        if let overlay {
            panelHeight = overlay.height
            panelWidth = overlay.width
        }
        if let size {
            panelHeight = size.height
            panelWidth = size.width
        }
        guard panelHeight > 0, panelWidth > 0, panelHeight <= maxSide, panelWidth <= maxSide else {
            throw CBAMError(.invalidShape, "heat map size \(panelHeight)×\(panelWidth) is out of range (1…\(maxSide) a side)")
        }

        // The overlay's RGB planes in [0, 1], resized to the panel size.
        var overlayRGB: [[Float]]? = nil
        if let overlay {
            guard overlay.channels == 1 || overlay.channels == 3 else {
                throw CBAMError(.shapeMismatch, "the overlay image must have 1 or 3 channels, not \(overlay.channels)")
            }
            guard overlay.height > 0, overlay.width > 0 else {
                throw CBAMError(.invalidShape, "the overlay image has size \(overlay.height)×\(overlay.width); both sides must be at least 1")
            }
            let (plane, overflow1) = overlay.height.multipliedReportingOverflow(by: overlay.width)
            let (needed, overflow2) = plane.multipliedReportingOverflow(by: overlay.channels)
            guard !overflow1, !overflow2, overlay.values.count == needed else {
                throw CBAMError(.shapeMismatch, "the overlay image holds \(overlay.values.count) values but shape [\(overlay.channels), \(overlay.height), \(overlay.width)] needs \(overflow1 || overflow2 ? "more" : String(needed))")
            }
            let normalized = displayReady ? overlay.values : normalizeForDisplay(overlay.values)
            var planes: [[Float]] = []
            for c in 0..<overlay.channels {
                let channel = Array(normalized[(c * plane)..<((c + 1) * plane)])
                planes.append(bilinear(channel, height: overlay.height, width: overlay.width,
                                       toHeight: panelHeight, toWidth: panelWidth))
            }
            overlayRGB = planes.count == 1 ? [planes[0], planes[0], planes[0]] : planes
        }

        var values = bilinear(map, height: height, width: width, toHeight: panelHeight, toWidth: panelWidth)
        var layout = HeatmapLayout(panelWidth: panelWidth, panelHeight: panelHeight, panelCount: overlayRGB == nil ? 1 : 3)
        if range != (0, 1) {
            let span = range.high - range.low
            values = values.map { ($0 - range.low) / span }
            layout.labels = [range.high, (range.low + range.high) / 2, range.low].map(scaleLabel)
        }
        var image = RGBImage(width: layout.width, height: layout.height, fill: background)

        for y in 0..<panelHeight {
            for x in 0..<panelWidth {
                let i = y * panelWidth + x
                let heat = color(values[i])
                image.set(x: layout.panelX(layout.heatPanel) + x, y: layout.panelY + y, heat)
                guard let rgb = overlayRGB else { continue }
                let r = rgb[0][i], g = rgb[1][i], b = rgb[2][i]
                image.set(x: layout.panelX(0) + x, y: layout.panelY + y, (byte(r * 255), byte(g * 255), byte(b * 255)))
                // Rec. 601 luma: the usual weights for a quick grayscale.
                let gray = (0.299 * r + 0.587 * g + 0.114 * b) * 255
                image.set(x: layout.panelX(2) + x, y: layout.panelY + y,
                          (byte(0.5 * Float(heat.0) + 0.5 * gray), byte(0.5 * Float(heat.1) + 0.5 * gray),
                           byte(0.5 * Float(heat.2) + 0.5 * gray)))
            }
        }
        drawScaleBar(&image, layout)
        return image
    }

    /// The vertical color scale: 1 at the top, 0 at the bottom, ticks and labels at 0, 0.5, 1.
    static func drawScaleBar(_ image: inout RGBImage, _ layout: HeatmapLayout) {
        let h = layout.barHeight
        for row in 0..<h {
            let t = h > 1 ? 1 - Float(row) / Float(h - 1) : 1
            image.fill(x: layout.barX, y: layout.barY + row, width: HeatmapLayout.barWidth, height: 1, color(t))
        }
        for (t, label) in zip([Float(1), 0.5, 0], layout.labels) {
            let row = layout.barRow(t)
            image.fill(x: layout.barX + HeatmapLayout.barWidth, y: row, width: HeatmapLayout.tickLength, height: 1, ink)
            let top = Swift.min(image.height - PixelFont.height(scale: 2), Swift.max(0, row - PixelFont.height(scale: 2) / 2))
            PixelFont.draw(label, into: &image, x: layout.labelX, y: top, scale: 2, color: ink)
        }
    }

    /// A scale-bar label with three significant digits ("0.432", "0.000123", "12.5"); the pixel
    /// font has no exponent, so values below 1e-4 or from 1e3 up are written out ("0.0000", "1234").
    static func scaleLabel(_ v: Float) -> String {
        let text = String(format: "%.3g", Double(v))
        guard text.contains("e") else { return text }
        return String(format: abs(v) < 1 ? "%.4f" : "%.0f", Double(v))
    }

    /// Checks a [height, width] plane against its buffer size.
    static func checkPlane(height: Int, width: Int, count: Int, what: String) throws {
        guard height > 0, width > 0 else {
            throw CBAMError(.invalidShape, "\(what) has size \(height)×\(width); both sides must be at least 1")
        }
        let (needed, overflow) = height.multipliedReportingOverflow(by: width)
        guard !overflow, needed == count else {
            throw CBAMError(.shapeMismatch, "\(what) holds \(count) values but \(height)×\(width) needs \(overflow ? "more" : String(needed))")
        }
    }

    /// Min-max normalisation to [0, 1] over the finite values (non-finite → 0); a constant image becomes 0.5.
    static func normalizeForDisplay(_ values: [Float]) -> [Float] {
        var lo = Float.infinity, hi = -Float.infinity
        for v in values where v.isFinite {
            lo = Swift.min(lo, v)
            hi = Swift.max(hi, v)
        }
        guard lo < hi else { return values.map { $0.isFinite ? 0.5 : 0 } }
        let scale = 1 / (hi - lo)
        return values.map { $0.isFinite ? ($0 - lo) * scale : 0 }
    }

    /// Bilinear resize of a row-major [height, width] plane, align_corners = false (half-pixel
    /// centers, as PyTorch's `interpolate(mode="bilinear")` by default): output pixel `o` samples
    /// input coordinate `(o + 0.5) * in/out - 0.5`, clamped below at 0, between the two nearest
    /// input pixels (the upper one clamped to the last row/column). The caller has checked the sizes.
    static func bilinear(_ values: [Float], height: Int, width: Int, toHeight: Int, toWidth: Int) -> [Float] {
        if height == toHeight && width == toWidth { return values }
        func taps(_ inSize: Int, _ outSize: Int) -> [(Int, Int, Float)] {
            let scale = Float(inSize) / Float(outSize)
            return (0..<outSize).map { o in
                let source = Swift.max(0, (Float(o) + 0.5) * scale - 0.5)
                let i0 = Swift.min(inSize - 1, Int(source))
                let i1 = Swift.min(inSize - 1, i0 + 1)
                return (i0, i1, source - Float(i0))
            }
        }
        let rows = taps(height, toHeight), cols = taps(width, toWidth)
        var out = [Float](repeating: 0, count: toHeight * toWidth)
        for (y, (r0, r1, fy)) in rows.enumerated() {
            for (x, (c0, c1, fx)) in cols.enumerated() {
                let top = values[r0 * width + c0] * (1 - fx) + values[r0 * width + c1] * fx
                let bottom = values[r1 * width + c0] * (1 - fx) + values[r1 * width + c1] * fx
                out[y * toWidth + x] = top * (1 - fy) + bottom * fy
            }
        }
        return out
    }

    // MARK: - Channel bars

    /// Where each part of a ``channelBars(_:)`` picture sits.
    ///
    /// Left to right: labels (0, 0.5, 1, right-aligned), ticks, the axis line, then the plot:
    /// `bars` bars of `barWidth` px (the last column of each left blank when bars are ≥ 4 px,
    /// so neighbours stay apart). Bar `i` covers columns `plotX + i*barWidth …` and rows
    /// `[baselineY - h, baselineY)` with `h = round(value * plotHeight)`; the baseline is row `baselineY`.
    struct ChannelBarsLayout {
        static let margin = 4
        static let topMargin = 10
        static let plotHeight = 160
        static let rightMargin = 8
        static let minWidth = 256
        static let maxWidth = 1024
        static let maxBarWidth = 32
        static var labelWidth: Int { PixelFont.width("0.5", scale: 2) }
        /// Labels, a 4 px gap (so "-0.5" cannot read as negative), 4 px ticks, then the axis.
        static var axisX: Int { margin + labelWidth + 4 + 4 }
        static var plotX: Int { axisX + 1 }
        /// How many bars fit in a `maxWidth` image at 1 px each.
        static var capacity: Int { maxWidth - plotX - rightMargin }

        /// Channels averaged into one bar (1 unless there are more channels than ``capacity``).
        let group: Int
        let bars: Int
        let barWidth: Int
        init(channels: Int) {
            group = (channels + Self.capacity - 1) / Self.capacity
            bars = (channels + group - 1) / group
            barWidth = Swift.min(Self.maxBarWidth, Swift.max(1, Self.capacity / bars))
        }
        var drawnBarWidth: Int { barWidth >= 4 ? barWidth - 1 : barWidth }
        var plotWidth: Int { bars * barWidth }
        var baselineY: Int { Self.topMargin + Self.plotHeight }
        var width: Int { Swift.max(Self.minWidth, Self.plotX + plotWidth + Self.rightMargin) }
        var height: Int { baselineY + 1 + Self.topMargin }
        func barX(_ i: Int) -> Int { Self.plotX + i * barWidth }
        /// Pixel height of a bar for `value` (clamped to [0, 1]; NaN → 0).
        static func barHeight(_ value: Float) -> Int { Int((clamp(value) * Float(plotHeight)).rounded()) }
    }

    /// A value clamped to [0, 1], NaN → 0.
    static func clamp(_ v: Float) -> Float { v.isNaN ? 0 : Swift.min(1, Swift.max(0, v)) }

    /// A channel attention map (C values in [0,1], one batch item) as a bar chart: one bar per
    /// channel, bar height ∝ value on a fixed [0,1] axis, bar color from `color(value)`, a baseline
    /// and a light grid line at 0.5; the image is 256 to 1024 px wide with bars at least 1 px.
    ///
    /// When C exceeds the bars that fit at 1 px (``ChannelBarsLayout/capacity``, 985: the axis
    /// labels take the rest of the 1024 px), adjacent channels are averaged into one bar, each
    /// value first clamped to [0, 1] (NaN → 0). Layout: ``ChannelBarsLayout``.
    public static func channelBars(_ values: [Float]) throws -> RGBImage {
        guard !values.isEmpty else { throw CBAMError(.invalidShape, "a channel attention map needs at least one value") }
        let layout = ChannelBarsLayout(channels: values.count)
        var bars: [Float] = []
        bars.reserveCapacity(layout.bars)
        for start in stride(from: 0, to: values.count, by: layout.group) {
            let end = Swift.min(values.count, start + layout.group)
            var sum: Float = 0
            for v in values[start..<end] { sum += clamp(v) }
            bars.append(sum / Float(end - start))
        }

        var image = RGBImage(width: layout.width, height: layout.height, fill: background)
        let plotTop = ChannelBarsLayout.topMargin
        // Grid at 0.5 first, so bars that reach above it cover it.
        let gridY = layout.baselineY - ChannelBarsLayout.barHeight(0.5)
        image.fill(x: ChannelBarsLayout.plotX, y: gridY, width: layout.plotWidth, height: 1, gridColor)
        for (i, value) in bars.enumerated() {
            let h = ChannelBarsLayout.barHeight(value)
            image.fill(x: layout.barX(i), y: layout.baselineY - h, width: layout.drawnBarWidth, height: h, color(value))
        }
        // Axis, baseline, ticks and labels.
        image.fill(x: ChannelBarsLayout.axisX, y: plotTop, width: 1, height: layout.baselineY - plotTop + 1, ink)
        image.fill(x: ChannelBarsLayout.axisX, y: layout.baselineY, width: layout.plotWidth + 1, height: 1, ink)
        for (t, label) in [(Float(1), "1"), (0.5, "0.5"), (0, "0")] {
            let row = layout.baselineY - ChannelBarsLayout.barHeight(t)
            image.fill(x: ChannelBarsLayout.axisX - 4, y: row, width: 4, height: 1, ink)
            let textWidth = PixelFont.width(label, scale: 2)
            let x = ChannelBarsLayout.margin + ChannelBarsLayout.labelWidth - textWidth
            PixelFont.draw(label, into: &image, x: x, y: row - PixelFont.height(scale: 2) / 2, scale: 2, color: ink)
        }
        return image
    }
}

/// A tiny bitmap font for axis labels: the digits 0-9, '-' and '.', 3×5 pixels
/// ('.' is 1 column wide so "0.5" stays compact), drawn at an integer scale with
/// one (scaled) column between glyphs. Other characters are skipped.
enum PixelFont {
    /// Rows top to bottom; '1' is a lit pixel.
    static let glyphs: [Character: [String]] = [
        "0": ["111", "101", "101", "101", "111"],
        "1": ["010", "110", "010", "010", "111"],
        "2": ["111", "001", "111", "100", "111"],
        "3": ["111", "001", "111", "001", "111"],
        "4": ["101", "101", "111", "001", "001"],
        "5": ["111", "100", "111", "001", "111"],
        "6": ["111", "100", "111", "101", "111"],
        "7": ["111", "001", "001", "001", "001"],
        "8": ["111", "101", "111", "101", "111"],
        "9": ["111", "101", "111", "001", "111"],
        ".": ["0", "0", "0", "0", "1"],
        "-": ["000", "000", "111", "000", "000"],
    ]

    static func height(scale: Int) -> Int { 5 * scale }

    /// Width in pixels of `text` drawn at `scale`.
    static func width(_ text: String, scale: Int) -> Int {
        let columns = text.compactMap { glyphs[$0]?.first?.count }
        guard !columns.isEmpty else { return 0 }
        return (columns.reduce(0, +) + columns.count - 1) * scale
    }

    /// Draws `text` with its top-left corner at (x, y), clipped to the image.
    static func draw(_ text: String, into image: inout RGBImage, x: Int, y: Int, scale: Int, color: (UInt8, UInt8, UInt8)) {
        var cursor = x
        for character in text {
            guard let rows = glyphs[character] else { continue }
            for (r, row) in rows.enumerated() {
                for (c, bit) in row.enumerated() where bit == "1" {
                    image.fill(x: cursor + c * scale, y: y + r * scale, width: scale, height: scale, color)
                }
            }
            cursor += ((rows.first?.count ?? 0) + 1) * scale
        }
    }
}
