/// Shape arithmetic that never traps: products and indices are checked, and a
/// shape that would overflow `Int` or has a negative dimension is an error.
public enum Shape {
    /// The largest element count cbam-run accepts for one tensor: 2^30 (4 GiB of float32).
    /// A full-size ResNet-50 at batch 256 peaks near 2^28; the bound keeps a hostile
    /// shape (a ConstantOfShape of 2^39, a Tile of huge repeats) from allocating the
    /// machine away, and keeps every size product far from `Int` overflow.
    public static let maxElementCount = 1 << 30

    /// The number of elements of `shape` (1 for a scalar); throws on a negative
    /// dimension or a product past ``maxElementCount``.
    ///
    /// Zero-sized dimensions count as 1 in the bound, so `[0, 2^62, 2^62]` is refused
    /// too: any product of a checked shape's dimensions, or of a sub-range of them, then
    /// fits in `Int`, and kernels may multiply dimensions freely.
    public static func elementCount(_ shape: [Int]) throws -> Int {
        var bound = 1
        var hasZero = false
        for dim in shape {
            guard dim >= 0 else {
                throw CBAMError(.invalidShape, "shape \(describe(shape)) has a negative dimension")
            }
            if dim == 0 { hasZero = true; continue }
            let (next, overflow) = bound.multipliedReportingOverflow(by: dim)
            guard !overflow, next <= maxElementCount else {
                throw CBAMError(.invalidShape, "shape \(describe(shape)) has more than 2^30 elements (cbam-run's limit for one tensor)")
            }
            bound = next
        }
        return hasZero ? 0 : bound
    }

    /// `a * b` for sizes, or an error instead of an overflow trap.
    public static func multiply(_ a: Int, _ b: Int) throws -> Int {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow, product <= maxElementCount, product >= -maxElementCount else {
            throw CBAMError(.invalidShape, "size \(a) × \(b) is past 2^30")
        }
        return product
    }

    /// The sum of sizes (split sizes, padded extents), or an error instead of an overflow trap.
    public static func sum(_ values: [Int]) throws -> Int {
        var total = 0
        for value in values {
            let (next, overflow) = total.addingReportingOverflow(value)
            guard !overflow, next <= maxElementCount, next >= -maxElementCount else {
                throw CBAMError(.invalidShape, "sizes \(values) add up past 2^30")
            }
            total = next
        }
        return total
    }

    /// Row-major strides of `shape` (in elements). Assumes a shape already checked by ``elementCount(_:)``.
    public static func strides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var stride = 1
        for axis in shape.indices.reversed() {
            strides[axis] = stride
            stride &*= max(shape[axis], 1)
        }
        return strides
    }

    /// Resolves an ONNX axis (negative counts from the end) against `rank`.
    public static func normalizeAxis(_ axis: Int, rank: Int, what: String = "axis") throws -> Int {
        let resolved = axis < 0 ? axis + rank : axis
        guard resolved >= 0, resolved < rank else {
            throw CBAMError(.invalidAttribute, "\(what) \(axis) is out of range for rank \(rank)")
        }
        return resolved
    }

    /// The numpy-style broadcast of two shapes (dimensions aligned from the right;
    /// each pair equal or one of them 1).
    public static func broadcast(_ a: [Int], _ b: [Int]) throws -> [Int] {
        let rank = max(a.count, b.count)
        var result = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            if da == db || db == 1 {
                result[i] = da
            } else if da == 1 {
                result[i] = db
            } else {
                throw CBAMError(.shapeMismatch, "shapes \(describe(a)) and \(describe(b)) do not broadcast")
            }
        }
        return result
    }

    /// `[2, 3, 4]` style, for messages.
    public static func describe(_ shape: [Int]) -> String {
        "[" + shape.map(String.init).joined(separator: ", ") + "]"
    }
}
