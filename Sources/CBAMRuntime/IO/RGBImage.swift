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
