import Foundation
import Testing
@testable import CBAMRuntime

@Suite("Vector math")
struct VectorMathTests {
    /// Against libm's expf over float32's whole useful range: within 3e-7 relative
    /// (about 2 ulp), and the edges exact: overflow to +∞, underflow to 0, NaN kept.
    @Test func expMatchesLibm() {
        var worst: Float = 0
        var x: Float = -87.3
        while x < 88.7 {
            let lanes = SIMD8<Float>((0..<8).map { x + Float($0) * 0.0013 })
            let got = VectorMath.exp(lanes)
            for k in 0..<8 {
                let want = Foundation.expf(lanes[k])
                worst = max(worst, abs(got[k] - want) / want)
            }
            x += 0.0171
        }
        print("VectorMath.exp: largest relative error against expf \(worst)")
        #expect(worst < 3e-7, "largest relative error \(worst)")
        let edges = VectorMath.exp(SIMD8([0, 1, -1, 100, -100, .infinity, -.infinity, .nan]))
        #expect(edges[0] == 1)
        #expect(abs(edges[1] - Float(M_E)) <= Float(M_E).ulp)
        #expect(edges[3] == .infinity && edges[5] == .infinity)
        #expect(edges[4] == 0 && edges[6] == 0)
        #expect(edges[7].isNaN)
    }

    @Test func mapCoversTheTail() {
        let source: [Float] = (0..<13).map(Float.init)
        var target = [Float](repeating: -1, count: 13)
        source.withUnsafeBufferPointer { s in
            target.withUnsafeMutableBufferPointer { t in VectorMath.map(s.baseAddress!, t.baseAddress!, 13) { $0 * 2 } }
        }
        #expect(target == source.map { $0 * 2 })
    }
}
