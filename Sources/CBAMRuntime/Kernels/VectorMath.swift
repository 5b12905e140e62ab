/// Reductions over contiguous float32 runs, written with SIMD accumulators because
/// the compiler may not reorder a float sum into vector lanes on its own.
enum VectorMath {
    /// Σ p[0..<count], eight lanes at a time.
    @inline(__always)
    static func sum(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
        var lanes = SIMD8<Float>.zero
        var i = 0
        while i + 8 <= count {
            lanes += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
            i += 8
        }
        var total = lanes.sum()
        while i < count { total += p[i]; i += 1 }
        return total
    }

    /// max p[0..<count] (−∞ for none); NaN if any element is NaN, as the ONNX reference gives.
    @inline(__always)
    static func max(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
        var lanes = SIMD8<Float>(repeating: -.infinity)
        // Compare-and-select and a sticky NaN mask: both stay in vector registers
        // (pointwiseMax and a per-iteration any() did not).
        var nanLanes = SIMDMask<SIMD8<Int32>>(repeating: false)
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
            nanLanes .|= v .!= v
            lanes.replace(with: v, where: v .> lanes)
            i += 8
        }
        var best = lanes.max()
        var nan = any(nanLanes)
        while i < count { nan = nan || p[i].isNaN; best = Swift.max(best, p[i]); i += 1 }
        return nan ? .nan : best
    }
}
