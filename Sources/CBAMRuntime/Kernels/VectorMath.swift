import CVectorMath

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

    /// Σ p[i]² over `count` floats, eight lanes at a time.
    @inline(__always)
    static func sumOfSquares(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
        var lanes = SIMD8<Float>.zero
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
            lanes += v * v
            i += 8
        }
        var total = lanes.sum()
        while i < count { total += p[i] * p[i]; i += 1 }
        return total
    }

    /// target[i] += source[i]² for `count` floats.
    @inline(__always)
    static func addSquares(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, _ count: Int) {
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(source + i).loadUnaligned(as: SIMD8<Float>.self)
            let t = UnsafeRawPointer(target + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(target + i).storeBytes(of: t + v * v, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count { target[i] += source[i] * source[i]; i += 1 }
    }

    /// max p[0..<count] (−∞ for none); NaN if any element is NaN, as the ONNX reference gives.
    @inline(__always)
    static func max(_ p: UnsafePointer<Float>, _ count: Int) -> Float { extremum(p, count, largest: true) }

    /// min p[0..<count] (+∞ for none); NaN if any element is NaN.
    @inline(__always)
    static func min(_ p: UnsafePointer<Float>, _ count: Int) -> Float { extremum(p, count, largest: false) }

    @inline(__always)
    private static func extremum(_ p: UnsafePointer<Float>, _ count: Int, largest: Bool) -> Float {
        var lanes = SIMD8<Float>(repeating: largest ? -.infinity : .infinity)
        // Compare-and-select and a sticky NaN mask: both stay in vector registers
        // (pointwiseMax and a per-iteration any() did not).
        var nanLanes = SIMDMask<SIMD8<Int32>>(repeating: false)
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
            nanLanes .|= v .!= v
            lanes.replace(with: v, where: largest ? v .> lanes : v .< lanes)
            i += 8
        }
        var best = largest ? lanes.max() : lanes.min()
        var nan = any(nanLanes)
        while i < count { nan = nan || p[i].isNaN; best = largest ? Swift.max(best, p[i]) : Swift.min(best, p[i]); i += 1 }
        return nan ? .nan : best
    }
}

extension VectorMath {
    /// eˣ for eight lanes: Cody–Waite range reduction x = n·ln2 + r, a degree-5 polynomial
    /// for eʳ on |r| ≤ ln2/2 (the Cephes `expf` coefficients, ≤ 2 ulp), then a 2ⁿ scale
    /// built in the exponent bits. Inputs past float32's range give +∞ or 0 (results
    /// below 2⁻¹²⁶ are flushed to 0), NaN stays NaN.
    @inline(__always)
    static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let high: Float = 88.72283, low: Float = -87.33654
        // Clamp with compare-and-select: `clamped` goes through a generic call per vector.
        var v = x
        v.replace(with: SIMD8(repeating: high), where: v .> high)
        v.replace(with: SIMD8(repeating: low), where: v .< low)
        // n = round(v·log2 e) by the float "shifter" trick: adding 1.5·2²³ leaves the rounded
        // integer in the low mantissa bits (bit pattern 0x4B40_0000 + n), so neither the
        // rounding nor the integer conversion is a per-lane library call.
        let shifter: Float = 12_582_912
        let shifted = v * 1.44269504088896341 + shifter
        let n = shifted - shifter
        v = v - n * 0.693359375 - n * -2.12194440e-4
        let z = v * v
        var p = SIMD8<Float>(repeating: 1.9875691500e-4)
        p = p * v + 1.3981999507e-3
        p = p * v + 8.3334519073e-3
        p = p * v + 4.1665795894e-2
        p = p * v + 1.6666665459e-1
        p = p * v + 5.0000001201e-1
        p = p * z + v + 1
        // 2ⁿ as two factors 2^(n/2) · 2^(n − n/2): n reaches 128 and −126 at the ends of the
        // range, where one factor's exponent field would overflow or hit the denormals.
        let whole = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let half = whole &>> 1, rest = whole &- half
        func power(_ e: SIMD8<Int32>) -> SIMD8<Float> { unsafeBitCast((e &+ 127) &<< 23, to: SIMD8<Float>.self) }
        var result = p * power(half) * power(rest)
        result.replace(with: .infinity, where: x .> high)
        result.replace(with: 0, where: x .< low)
        result.replace(with: x, where: x .!= x)  // NaN
        return result
    }

    /// Applies `lanes` eight floats at a time over `count` values, the tail through a padded vector.
    @inline(__always)
    static func map(_ source: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>, _ count: Int,
                    _ lanes: (SIMD8<Float>) -> SIMD8<Float>) {
        var i = 0
        while i + 8 <= count {
            UnsafeMutableRawPointer(target + i).storeBytes(of: lanes(UnsafeRawPointer(source + i).loadUnaligned(as: SIMD8<Float>.self)), as: SIMD8<Float>.self)
            i += 8
        }
        if i < count {
            var tail = SIMD8<Float>()
            for k in 0..<(count - i) { tail[k] = source[i + k] }
            let mapped = lanes(tail)
            for k in 0..<(count - i) { target[i + k] = mapped[k] }
        }
    }
}

// The hot transcendental loops run in CVectorMath: one C body per instruction set, chosen from
// cpuid at run time, since Swift here compiles for baseline x86-64 (the SIMD8 `exp` above took
// 2.9 ns per value as SSE2 code; AVX-512 takes a tenth of that). The SIMD8 `exp` stays as the
// reference the C variants are tested against (VectorMathTests).
extension VectorMath {
    /// The instruction set of the C loops: `.auto` is the best the CPU has; forcing one the CPU
    /// lacks falls back to the best it has.
    enum InstructionSet: CaseIterable, Sendable {
        case auto, portable, avx2, avx512

        var c: cbam_vm_isa {
            switch self {
            case .auto: CBAM_VM_AUTO
            case .portable: CBAM_VM_PORTABLE
            case .avx2: CBAM_VM_AVX2
            case .avx512: CBAM_VM_AVX512
            }
        }

        /// What `.auto` resolves to on this CPU.
        static var best: InstructionSet { InstructionSet(cbam_vm_best_isa()) }
        /// The best the CPU has, whatever CBAM_MAX_ISA says.
        static var cpu: InstructionSet { InstructionSet(cbam_vm_cpu_isa()) }

        /// What this variant runs as on this CPU (`.auto`, or a set the CPU lacks, as the best it has).
        var resolved: InstructionSet { InstructionSet(cbam_vm_resolve(c)) }

        /// The resolved variant's name in kernel names (`streamed:avx512`, `winograd-f2:c`).
        var kernelName: String {
            switch resolved {
            case .avx512: "avx512"
            case .avx2: "avx2"
            default: "c"
            }
        }

        private init(_ isa: cbam_vm_isa) {
            switch isa {
            case CBAM_VM_AVX512: self = .avx512
            case CBAM_VM_AVX2: self = .avx2
            default: self = .portable
            }
        }
    }

    /// target[i] = e^source[i] for i < count (target may equal source).
    @inline(__always)
    static func exp(_ source: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>, _ count: Int, isa: InstructionSet = .auto) {
        cbam_vm_exp(source, target, count, isa.c)
    }

    /// target[i] = 1 / (1 + e^−source[i]) for i < count (target may equal source).
    @inline(__always)
    static func sigmoid(_ source: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>, _ count: Int, isa: InstructionSet = .auto) {
        cbam_vm_sigmoid(source, target, count, isa.c)
    }

    /// x[i] = x[i] · sigmoid(x[i]) for i < count (SiLU), as the planned Sigmoid and Mul steps
    /// compute it: the sigmoid of a block of 256 into a stack buffer, then the products.
    static func silu(_ x: UnsafeMutablePointer<Float>, _ count: Int, isa: InstructionSet = .auto) {
        let block = 256
        withUnsafeTemporaryAllocation(of: Float.self, capacity: block) { buffer in
            let gate = buffer.baseAddress!
            var start = 0
            while start < count {
                let n = Swift.min(block, count - start)
                sigmoid(x + start, gate, n, isa: isa)
                for i in 0..<n { x[start + i] *= gate[i] }
                start += n
            }
        }
    }

    /// target[i] = Gelu(source[i] + bias[i]) for i < count (no bias: nil), the erf or the tanh
    /// form, within 1e-6 · max(1, |x|) of ``gelu(_:tanh:)`` (target may equal source).
    @inline(__always)
    static func gelu(_ source: UnsafePointer<Float>, bias: UnsafePointer<Float>?, _ target: UnsafeMutablePointer<Float>, _ count: Int,
                     tanh: Bool, isa: InstructionSet = .auto) {
        cbam_vm_gelu(source, bias, target, count, tanh ? 1 : 0, isa.c)
    }

    /// target[i] = e^(source[i] − shift[i·shiftStep]), shiftStep 0 or 1 (softmax's numerator).
    @inline(__always)
    static func expShifted(_ source: UnsafePointer<Float>, shift: UnsafePointer<Float>, shiftStep: Int,
                           _ target: UnsafeMutablePointer<Float>, _ count: Int, isa: InstructionSet = .auto) {
        cbam_vm_exp_shifted(source, shift, shiftStep, target, count, isa.c)
    }

    /// y[r·m + o] = Σₖ w[o·inner + k] · x[r·inner + k] for r < rows and o in `outputs`: W `[m, inner]`
    /// applied to `rows` vectors at once, each weight row read once for all of them.
    @inline(__always)
    static func linearRows(_ w: UnsafePointer<Float>, m: Int, inner: Int, _ x: UnsafePointer<Float>, rows: Int,
                           _ y: UnsafeMutablePointer<Float>, outputs: Range<Int>, isa: InstructionSet = .auto) {
        cbam_vm_linear_rows(w, m, inner, x, rows, y, outputs.lowerBound, outputs.upperBound, isa.c)
    }
}

/// A ``Pool2DLoop`` as CVectorMath's C geometry, its tap tables allocated once and kept for the
/// plan's life (the run closure only passes pointers; several workers read them at once).
final class CarriedPoolGeometry: @unchecked Sendable {
    private let tables: UnsafeMutablePointer<Int32>
    private let geometry: UnsafeMutablePointer<cbam_vm_pool2d_geometry>
    let average: Bool

    /// Nil for an Lp pool, or a figure past Int32 (the plain loops take those).
    init?(_ loop: Pool2DLoop) {
        let includePad: Bool
        switch loop.mode {
        case .max: (average, includePad) = (false, false)
        case .average(let countPad): (average, includePad) = (true, countPad)
        case .lp: return nil
        }
        let columns = [loop.rows.map(\.first), loop.rows.map(\.count), loop.columns.map(\.first), loop.columns.map(\.count),
                       loop.paddedRows, loop.paddedColumns]
        let scalars = [loop.h, loop.w, loop.oh, loop.ow, loop.sh, loop.sw, loop.dh, loop.dw, loop.padTop, loop.padLeft]
        guard (columns.joined() + scalars).allSatisfy({ Int32(exactly: $0) != nil }) else { return nil }
        tables = .allocate(capacity: Swift.max(columns.reduce(0) { $0 + $1.count }, 1))
        var starts: [UnsafeMutablePointer<Int32>] = []
        var cursor = tables
        for column in columns {
            starts.append(cursor)
            for (k, value) in column.enumerated() { cursor[k] = Int32(value) }
            cursor += column.count
        }
        let s = scalars.map { Int32($0) }
        geometry = .allocate(capacity: 1)
        geometry.initialize(to: cbam_vm_pool2d_geometry(
            h: s[0], w: s[1], oh: s[2], ow: s[3], sh: s[4], sw: s[5], dh: s[6], dw: s[7], pad_top: s[8], pad_left: s[9],
            row_first: starts[0], row_count: starts[1], column_first: starts[2], column_count: starts[3],
            divisor_rows: includePad ? starts[4] : nil, divisor_columns: includePad ? starts[5] : nil))
    }

    deinit {
        tables.deallocate()
        geometry.deallocate()
    }

    /// Pools output rows `rows` of one channels-last block (`block` channels per pixel row).
    @inline(__always)
    func run(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, block: Int, rows: Range<Int>,
             isa: VectorMath.InstructionSet = .auto) {
        cbam_vm_pool2d(x, y, block, geometry, Int32(rows.lowerBound), Int32(rows.upperBound), average ? 1 : 0, isa.c)
    }
}
