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

    /// The carried (channels-last) window pools of CVectorMath, each instruction set, against the
    /// Swift loop they replaced (``CarriedLoops/pool``) on random geometries: kernel, stride,
    /// dilation, pads, ceil mode, count_include_pad, channel counts that leave vector tails, NaN
    /// inputs, and a split into row bands.
    @Test(arguments: VectorMath.InstructionSet.allCases)
    func carriedPoolsMatchTheSwiftLoop(_ isa: VectorMath.InstructionSet) throws {
        var rng = SplitMix(state: 42)
        for trial in 0..<60 {
            let (k, s, d) = (1 + rng.next(3), 1 + rng.next(2), 1 + rng.next(1))
            let pad = rng.next(k - 1)
            let (h, w) = ((k - 1) * d + 1 + rng.next(9), (k - 1) * d + 1 + rng.next(9))
            let average = trial % 2 == 1
            var attributes: [String: Attribute] = ["kernel_shape": .ints([k, k]), "strides": .ints([s, s]), "dilations": .ints([d, d]),
                                                   "pads": .ints([pad, pad, pad, pad]), "ceil_mode": .int(rng.next(1))]
            if average { attributes["dilations"] = nil }
            let node = Node(opType: average ? "AveragePool" : "MaxPool", inputs: ["x"], outputs: ["y"], attributes: attributes)
            let geometry = try SpatialGeometry(NodeContext(node: node, opset: 19), kernel: nil)
            let countPad = rng.next(1) == 1
            let loop = try Pool2DLoop(geometry: geometry, mode: average ? .average(countIncludePad: countPad) : .max, height: h, width: w)
            // The Swift loop takes whole SIMD8 rows; the C loops any width (tested below on a tail).
            let block = [8, 16, 24, 64, 72, 136][trial % 6]
            var x = (0..<(h * w * block)).map { _ in Float(rng.next(2000)) / 100 - 10 }
            if trial % 5 == 0 { x[rng.next(x.count - 1)] = .nan }
            let count = loop.oh * loop.ow * block
            var want = [Float](repeating: 0, count: count), got = [Float](repeating: -7, count: count)
            x.withUnsafeBufferPointer { xp in
                want.withUnsafeMutableBufferPointer { CarriedLoops.pool(xp.baseAddress!, $0.baseAddress!, block: block, loop, average: average) }
                let pool = CarriedPoolGeometry(loop)!
                got.withUnsafeMutableBufferPointer { yp in
                    let half = loop.oh / 2
                    pool.run(xp.baseAddress!, yp.baseAddress!, block: block, rows: 0..<half, isa: isa)
                    pool.run(xp.baseAddress!, yp.baseAddress!, block: block, rows: half..<loop.oh, isa: isa)
                }
            }
            for i in 0..<count where !(want[i] == got[i] || (want[i].isNaN && got[i].isNaN) || abs(want[i] - got[i]) <= 1e-6 * abs(want[i])) {
                Issue.record("\(isa) trial \(trial) (k \(k) s \(s) d \(d) pad \(pad) \(h)×\(w), \(average ? "average" : "max"), block \(block)): element \(i) \(got[i]) vs \(want[i])")
                break
            }
        }
        // A channel count that is not a multiple of 8 (a tail in every variant), against a direct computation.
        let (h, w, block) = (5, 4, 11)
        let x = (0..<(h * w * block)).map { Float(($0 * 7919) % 101) }
        let node = Node(opType: "MaxPool", inputs: ["x"], outputs: ["y"], attributes: ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])])
        let loop = try Pool2DLoop(geometry: try SpatialGeometry(NodeContext(node: node, opset: 19), kernel: nil), mode: .max, height: h, width: w)
        var got = [Float](repeating: 0, count: loop.oh * loop.ow * block)
        CarriedPoolGeometry(loop)!.run(x, &got, block: block, rows: 0..<loop.oh, isa: isa)
        for oy in 0..<loop.oh { for ox in 0..<loop.ow { for c in 0..<block {
            let want = [(0, 0), (0, 1), (1, 0), (1, 1)].map { x[((2 * oy + $0.0) * w + 2 * ox + $0.1) * block + c] }.max()!
            #expect(got[(oy * loop.ow + ox) * block + c] == want)
        } } }
    }

    /// The channel gate's fully connected layers on CVectorMath (each instruction set) against
    /// the Swift loop of the reference program (``ChannelGateProgram/dot(_:_:_:)``), on random
    /// sizes: widths with and without a vector tail, one to five rows, output ranges that start
    /// and end off the groups of four, as the threads split them.
    @Test(arguments: VectorMath.InstructionSet.allCases)
    func linearRowsMatchTheSwiftLoop(_ isa: VectorMath.InstructionSet) throws {
        var rng = SplitMix(state: 77)
        for trial in 0..<80 {
            let m = 1 + rng.next(40), inner = [1, 7, 16, 33, 64, 128, 250, 2048][trial % 8] + rng.next(2)
            let rows = 1 + rng.next(4)
            let w = (0..<(m * inner)).map { _ in Float(rng.next(2000)) / 1000 - 1 }
            let x = (0..<(rows * inner)).map { _ in Float(rng.next(2000)) / 1000 - 1 }
            var want = [Float](repeating: 0, count: rows * m), got = [Float](repeating: .nan, count: rows * m)
            let split = rng.next(m)
            w.withUnsafeBufferPointer { wp in
                x.withUnsafeBufferPointer { xp in
                    for o in 0..<m { for r in 0..<rows {
                        want[r * m + o] = ChannelGateProgram.dot(wp.baseAddress! + o * inner, xp.baseAddress! + r * inner, inner)
                    } }
                    got.withUnsafeMutableBufferPointer { yp in
                        for outputs in [0..<split, split..<m] {
                            VectorMath.linearRows(wp.baseAddress!, m: m, inner: inner, xp.baseAddress!, rows: rows, yp.baseAddress!, outputs: outputs, isa: isa)
                        }
                    }
                }
            }
            // Sums of up to 2048 products of values in [-1, 1], added in another order.
            for i in want.indices where !(abs(want[i] - got[i]) <= 2e-5 * Float(inner).squareRoot()) {
                Issue.record("\(isa) trial \(trial) (m \(m), inner \(inner), rows \(rows), split at \(split)): element \(i) \(got[i]) vs \(want[i])")
                break
            }
        }
    }

    /// A gate program's linear instructions, as planned (CVectorMath, outputs split over two
    /// threads when large) and on the reference loop, give the same slots: a 2048 → 128 → 2048
    /// MLP (ResNet-50's last CBAM blocks) on the average and max vectors of two items.
    @Test func gateProgramLinearStepsMatchTheReference() throws {
        var rng = SplitMix(state: 91)
        let (c, hidden, items) = (2048, 128, 2)
        let first = Tensor.float([hidden, c], (0..<(hidden * c)).map { _ in Float(rng.next(2000)) / 1000 - 1 })
        let second = Tensor.float([c, hidden], (0..<(hidden * c)).map { _ in Float(rng.next(2000)) / 1000 - 1 })
        // Slots 0 and 1 (average, max: [items, c] each) in, 2 = first layer of both, 3 = second.
        let code = [0, 2, 0, -1, 1, 0, 0, 0, 0, 3, 2, -1, 2, 0, 0, 0]
        let counts = [items * c, items * c, items * hidden, items * c]
        var offsets: [Int] = [], total = 0
        for count in counts { offsets.append(total); total += count }
        let pooled = (0..<(items * c)).map { _ in Float(rng.next(2000)) / 1000 - 1 }
        func run(reference: Bool) throws -> [Float] {
            let steps = try ChannelGateProgram.compile(code, counts: counts, offsets: offsets, threads: 2, reference: reference,
                                                       constants: { $0 == 1 ? first : second })
            var slots = [Float](repeating: .nan, count: total)
            for i in 0..<(items * c) { slots[i] = pooled[i] }
            slots.withUnsafeMutableBufferPointer { p in for step in steps { step(p.baseAddress!) } }
            return Array(slots[offsets[3]...])
        }
        let (planned, reference) = (try run(reference: false), try run(reference: true))
        #expect(planned.count == items * c && !planned.contains { $0.isNaN })
        let worst = zip(planned, reference).map { abs($0 - $1) / Swift.max(1, abs($1)) }.max() ?? .infinity
        #expect(worst < 1e-4, "largest relative difference \(worst)")
    }

    /// The CBAM gates' passes over carried tensors on CVectorMath (each instruction set) against
    /// the Swift loops (CarriedLoops with `isa: nil`), on random geometries in every carried layout
    /// (NHWC, nChw16c, nChw8c), channel counts that leave 8-lane tails, one or two items, NaNs,
    /// channel scales, residuals and Relu: the channel statistics and both gates' scaling passes bit for bit,
    /// the per-pixel statistics within rounding (their sums are added in another order).
    @Test(arguments: VectorMath.InstructionSet.allCases)
    func carriedGatePassesMatchTheSwiftLoops(_ isa: VectorMath.InstructionSet) throws {
        var rng = SplitMix(state: 123)
        func same(_ a: Float, _ b: Float) -> Bool { a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN) }
        for trial in 0..<48 {
            let layout = [Layout.channelsLast, .channelBlocked(16), .channelBlocked(8)][trial % 3]
            let channels = 8 * (1 + rng.next(trial % 2 == 0 ? 4 : 40)), items = 1 + rng.next(1)
            let (h, w) = (1 + rng.next(9), 1 + rng.next(9))
            guard layout.fits([items, channels, h, w]) else { continue }
            let operand = Operand(type: ValueType(.float, [items, channels, h, w]), address: .arena(0), layout: layout)
            let blocks = ChannelBlocks(operand)
            let count = items * channels * h * w
            var x = (0..<count).map { _ in Float(rng.next(4000)) / 1000 - 2 }
            if trial % 4 == 1 { x[rng.next(count - 1)] = .nan }
            let residual = (0..<count).map { _ in Float(rng.next(2000)) / 1000 - 1 }
            let scales = (0..<(items * channels)).map { _ in Float(rng.next(1000)) / 1000 }
            let gate = (0..<(items * h * w)).map { _ in Float(rng.next(1000)) / 1000 }
            let (useScales, useResidual, relu) = (trial % 2 == 0, trial % 3 != 2, trial % 5 < 3)
            x.withUnsafeBufferPointer { xp in scales.withUnsafeBufferPointer { sp in residual.withUnsafeBufferPointer { rp in
                // The channel gate's statistics over every unit, split where a worker would split them.
                var (meansC, maximaC, meansS, maximaS) = ([Float](repeating: 0, count: items * channels), [Float](repeating: 0, count: items * channels),
                                                          [Float](repeating: 0, count: items * channels), [Float](repeating: 0, count: items * channels))
                let cut = rng.next(blocks.units)
                for units in [0..<cut, cut..<blocks.units] {
                    CarriedLoops.channelStatistics(xp.baseAddress!, blocks, units: units, means: &meansC, maxima: &maximaC, isa: isa)
                    CarriedLoops.channelStatistics(xp.baseAddress!, blocks, units: units, means: &meansS, maxima: &maximaS, isa: nil)
                }
                for i in meansC.indices where !same(meansC[i], meansS[i]) || !same(maximaC[i], maximaS[i]) {
                    Issue.record("\(isa) trial \(trial) \(layout) C \(channels) \(h)×\(w): channel \(i) mean \(meansC[i]) vs \(meansS[i]), max \(maximaC[i]) vs \(maximaS[i])")
                    break
                }
                // The channel gate's second pass, the scales as its map.
                var (scaledC, scaledS) = ([Float](repeating: 7, count: count), [Float](repeating: 7, count: count))
                for units in [0..<cut, cut..<blocks.units] {
                    CarriedLoops.scaleChannels(xp.baseAddress!, &scaledC, gate: sp.baseAddress!, blocks, units: units,
                                               residual: useResidual ? rp.baseAddress! : nil, relu: relu, isa: isa)
                    CarriedLoops.scaleChannels(xp.baseAddress!, &scaledS, gate: sp.baseAddress!, blocks, units: units,
                                               residual: useResidual ? rp.baseAddress! : nil, relu: relu, isa: nil)
                }
                for i in scaledC.indices where !same(scaledC[i], scaledS[i]) {
                    Issue.record("\(isa) trial \(trial) \(layout) C \(channels), relu \(relu): scaled channel element \(i) \(scaledC[i]) vs \(scaledS[i])")
                    break
                }
                for item in 0..<items {
                    let pixels = h * w, split = rng.next(pixels)
                    let itemScales = useScales ? sp.baseAddress! + item * channels : nil
                    var (maxC, meanC, maxS, meanS) = ([Float](repeating: 0, count: pixels), [Float](repeating: 0, count: pixels),
                                                      [Float](repeating: 0, count: pixels), [Float](repeating: 0, count: pixels))
                    for range in [0..<split, split..<pixels] {
                        CarriedLoops.pixelStatistics(xp.baseAddress!, blocks, item: item, pixels: range, maxima: &maxC, means: &meanC, channelScales: itemScales, isa: isa)
                        CarriedLoops.pixelStatistics(xp.baseAddress!, blocks, item: item, pixels: range, maxima: &maxS, means: &meanS, channelScales: itemScales, isa: nil)
                    }
                    for p in 0..<pixels where !same(maxC[p], maxS[p]) || !(same(meanC[p], meanS[p]) || abs(meanC[p] - meanS[p]) <= 1e-5) {
                        Issue.record("\(isa) trial \(trial) \(layout) C \(channels): pixel \(p) max \(maxC[p]) vs \(maxS[p]), mean \(meanC[p]) vs \(meanS[p])")
                        break
                    }
                    var (yC, yS) = ([Float](repeating: 7, count: count), [Float](repeating: 7, count: count))
                    gate.withUnsafeBufferPointer { gp in
                        let r = useResidual ? rp.baseAddress! : nil
                        for range in [0..<split, split..<pixels] {
                            CarriedLoops.scalePixels(xp.baseAddress!, &yC, gate: gp.baseAddress! + item * pixels, blocks, item: item, pixels: range,
                                                     residual: r, relu: relu, channelScales: itemScales, isa: isa)
                            CarriedLoops.scalePixels(xp.baseAddress!, &yS, gate: gp.baseAddress! + item * pixels, blocks, item: item, pixels: range,
                                                     residual: r, relu: relu, channelScales: itemScales, isa: nil)
                        }
                    }
                    for i in yC.indices where !same(yC[i], yS[i]) {
                        Issue.record("\(isa) trial \(trial) \(layout) C \(channels), relu \(relu): element \(i) \(yC[i]) vs \(yS[i])")
                        break
                    }
                }
            } } }
        }
    }
}

private extension SplitMix {
    /// A value in 0...upper.
    mutating func next(_ upper: Int) -> Int { upper <= 0 ? 0 : Int.random(in: 0...upper, using: &self) }
}
