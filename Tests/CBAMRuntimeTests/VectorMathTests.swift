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

    /// Every CPU-dispatched C variant (plain C, AVX2+FMA, AVX-512F, each the CPU has) against
    /// libm over float32's useful range, on lengths that leave every tail size, and the edges
    /// exact; and each against the Swift SIMD8 reference within 2 ulp-sized relative steps.
    @Test(arguments: VectorMath.InstructionSet.allCases)
    func dispatchedLoopsMatchLibmAndTheReference(_ isa: VectorMath.InstructionSet) {
        var inputs: [Float] = stride(from: Float(-87.3), to: 88.7, by: 0.0171).map { $0 }
        inputs += [0, 1, -1, 100, -100, .infinity, -.infinity, .nan, 88.72, -87.33, 1e-30, -1e-30]
        for length in [inputs.count, 1, 7, 15, 16, 17, 33] {
            let x = Array(inputs.prefix(length))
            var e = [Float](repeating: -1, count: length), s = e, shifted = e
            VectorMath.exp(x, &e, length, isa: isa)
            VectorMath.sigmoid(x, &s, length, isa: isa)
            var shift: Float = 0.5
            VectorMath.expShifted(x, shift: &shift, shiftStep: 0, &shifted, length, isa: isa)
            for (k, value) in x.enumerated() {
                if value.isNaN {
                    #expect(e[k].isNaN && s[k].isNaN && shifted[k].isNaN, "\(isa) at \(value)")
                    continue
                }
                let reference = VectorMath.exp(SIMD8(repeating: value))[0]
                #expect(Self.close(e[k], Foundation.expf(value)), "\(isa) exp(\(value)) = \(e[k]), expf \(Foundation.expf(value))")
                #expect(Self.close(e[k], reference), "\(isa) exp(\(value)) = \(e[k]), reference \(reference)")
                let sigmoid = 1 / (1 + Foundation.expf(-value))
                #expect(Self.close(s[k], sigmoid), "\(isa) sigmoid(\(value)) = \(s[k]), want \(sigmoid)")
                #expect(Self.close(shifted[k], Foundation.expf(value - 0.5)), "\(isa) exp(\(value) − 0.5) = \(shifted[k])")
            }
        }
        // A per-element shift, and in place.
        var row: [Float] = (0..<19).map { Float($0) * 0.25 - 2 }
        let shifts: [Float] = (0..<19).map { Float($0) * 0.1 }
        let want = zip(row, shifts).map { Foundation.expf($0 - $1) }
        row.withUnsafeMutableBufferPointer { r in
            VectorMath.expShifted(r.baseAddress!, shift: shifts, shiftStep: 1, r.baseAddress!, 19, isa: isa)
        }
        for k in 0..<19 { #expect(Self.close(row[k], want[k])) }
    }

    /// Within 3e-7 relative (about 2 ulp); +∞ only as +∞; below 4× the smallest normal float
    /// (where the loops flush to 0 and libm keeps denormals) any value that small.
    static func close(_ got: Float, _ want: Float) -> Bool {
        if want.isInfinite { return got == want }
        if want < Float.leastNormalMagnitude * 4 { return got < Float.leastNormalMagnitude * 4 && got >= 0 }
        return abs(got - want) <= 3e-7 * want
    }
}
