/// Shape arithmetic that never traps: products and indices are checked, and a
/// shape that would overflow `Int` or has a negative dimension is an error.
public enum Shape {
    /// The largest element count cbam-run accepts for one tensor (2^40): well past any
    /// real model, low enough that byte sizes of every element type fit in `Int`.
    public static let maxElementCount = 1 << 40

    /// The number of elements of `shape` (1 for a scalar); throws on a negative
    /// dimension or a product past ``maxElementCount``.
    public static func elementCount(_ shape: [Int]) throws -> Int {
        var product = 1
        for dim in shape {
            guard dim >= 0 else {
                throw CBAMError(.invalidShape, "shape \(describe(shape)) has a negative dimension")
            }
            let (next, overflow) = product.multipliedReportingOverflow(by: dim)
            guard !overflow, next <= maxElementCount else {
                throw CBAMError(.invalidShape, "shape \(describe(shape)) has more than 2^40 elements")
            }
            product = next
        }
        return product
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
