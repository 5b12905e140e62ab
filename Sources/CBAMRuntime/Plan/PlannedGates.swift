// Planned kernels of the fused attention gates (GateFusion.swift makes the nodes).
//
// cbam::ChannelGate: inputs [x `[N, C, spatial…]`, constants of its program], outputs
// [y = x · s, s = the sigmoid map]. One pass over x takes the average and the max of
// every (n, c) plane together, the program runs on the pooled vectors in scratch
// memory, the sigmoid writes the map, and a second pass writes y.
//
// cbam::SpatialGate: inputs [x `[N, C, H, W]`, W `[1, 2, kH, kW]`, optional B `[1]`],
// outputs [y = x · s, s `[N, 1, H, W]`]. One pass over x takes the channel max and
// mean of every pixel into scratch, a direct k×k convolution and the sigmoid write
// the map, and a second pass writes y.
//
// Both read x fully before writing y at the same positions, so y may take over x's
// bytes (the planner's in-place rule for cbam ops).
//
// In a CBAM block the spatial gate may apply the channel gate's scale itself
// (``Passes/mergeChannelScaleIntoSpatialGate(_:)``): the channel gate, `apply = 0`, then only
// writes its map s_c; the spatial gate, `channel_scale = 1`, takes s_c `[N, C]` as input 3,
// takes its statistics of x · s_c and writes y = x · s_c · s.
//
// Either gate may carry a residual (``Passes/fuseGateResidual(_:)``): attribute
// `residual = 1` makes its last input R (y's shape and layout; the spatial gate's fourth,
// after an optional B) and the second pass writes
// y = x · s + R, then max(·, 0) with `activation = "Relu"`.

extension PlannedKernels {
    static func registerGates(_ table: inout [String: Builder]) {
        table[Passes.domain + "::ChannelGate"] = { try channelGate($0) }
        table[Passes.domain + "::SpatialGate"] = { try spatialGate($0) }
    }

    // MARK: - Channel gate

    private static func channelGate(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        // apply = 0: only the map; the spatial gate after it applies the scale.
        let applies = try node.int("apply", default: 1) != 0
        let x = try context.input(0, "X"), y = applies ? try context.output(0) : x, map = try context.output(1)
        guard x.type.dataType == .float, x.shape.count >= 3, y.type == x.type, map.type.dataType == .float else { return nil }
        guard let epilogue = try GateEpilogue(context, y: y), applies || !epilogue.hasResidual else { return nil }
        let planes = x.shape[0] * x.shape[1], size = x.count / Swift.max(planes, 1)
        guard planes > 0, size > 0, map.count == planes else {
            throw CBAMError(.shapeMismatch, "the gate map has \(map.count) values for \(planes) channel planes")
        }
        guard let counts = try node.ints("counts"), let code = try node.ints("program"), let pools = try node.ints("pools"),
              pools.count == 2, counts.count >= 2, counts[0] == planes, counts[1] == planes,
              counts.allSatisfy({ $0 > 0 && $0 <= 1 << 24 }) else {
            throw node.invalid("program", "is not a channel gate program for \(planes) planes")
        }
        let result = try node.int("result", default: -1)
        guard counts.indices.contains(result), counts[result] == planes else {
            throw node.invalid("result", "slot \(result) does not hold one value per channel plane")
        }
        // Slot offsets (in floats) in scratch, each a cache line apart.
        var offsets: [Int] = []
        var total = 0
        for count in counts {
            offsets.append(total)
            total += (count + 15) / 16 * 16
        }
        let program = try ChannelGateProgram.compile(code, counts: counts, offsets: offsets, threads: context.threads, constants: { index in
            guard index >= 1, let tensor = node.constant(index), tensor.dataType == .float else {
                throw node.invalid("program", "constant input \(index) is missing or not float32")
            }
            return tensor
        })
        let scratch = context.scratch(bytes: total * MemoryLayout<Float>.stride)
        let (average, maximum) = (pools[0] != 0, pools[1] != 0)
        let workers = x.count >= Parallel.minimumElements ? Swift.min(context.threads, planes) : 1
        let resultOffset = offsets[result]
        if x.layout != .plain {
            guard y.layout == x.layout, x.shape.count == 4 else { return nil }
            let blocks = ChannelBlocks(x)
            let units = blocks.units, workers = x.count >= Parallel.minimumElements ? Swift.min(context.threads, units) : 1
            return PlannedKernel(detail: "pool+mlp\(applies ? "+scale" : "")\(epilogue.detail) \(x.layout)") { memory in
                let source = UnsafePointer(x.floats(memory)), target = y.floats(memory), gate = map.floats(memory)
                let residual = epilogue.residual(memory)
                let slots = scratch.pointer(memory).assumingMemoryBound(to: Float.self)
                Parallel.forEach(workers) { worker in
                    CarriedLoops.channelStatistics(source, blocks, units: Parallel.share(worker, of: workers, count: units),
                                                   means: average ? slots + offsets[0] : nil, maxima: maximum ? slots + offsets[1] : nil)
                }
                for step in program { step(slots) }
                VectorMath.sigmoid(UnsafePointer(slots + resultOffset), gate, planes)
                guard applies else { return }
                Parallel.forEach(workers) { worker in
                    CarriedLoops.scaleChannels(source, target, gate: UnsafePointer(gate), blocks, units: Parallel.share(worker, of: workers, count: units),
                                               residual: residual, relu: epilogue.relu)
                }
            }
        }
        return PlannedKernel(detail: "pool+mlp" + (applies ? "+scale" : "") + epilogue.detail) { memory in
            let source = UnsafePointer(x.floats(memory)), target = y.floats(memory), gate = map.floats(memory)
            let residual = epilogue.residual(memory), relu = epilogue.relu
            let slots = scratch.pointer(memory).assumingMemoryBound(to: Float.self)
            let (sums, maxima) = (slots + offsets[0], slots + offsets[1])
            // Pass 1: both statistics of each plane in one read.
            Parallel.forEach(workers) { worker in
                for plane in Parallel.share(worker, of: workers, count: planes) {
                    let p = source + plane * size
                    if average && maximum {
                        let (sum, max) = sumAndMax(p, size)
                        sums[plane] = sum / Float(size)
                        maxima[plane] = max
                    } else if average {
                        sums[plane] = VectorMath.sum(p, size) / Float(size)
                    } else if maximum {
                        maxima[plane] = VectorMath.max(p, size)
                    }
                }
            }
            for step in program { step(slots) }
            VectorMath.sigmoid(UnsafePointer(slots + resultOffset), gate, planes)
            guard applies else { return }
            // Pass 2: y = x · s (+ R, Relu), one scale per plane.
            Parallel.forEach(workers) { worker in
                for plane in Parallel.share(worker, of: workers, count: planes) {
                    let offset = plane * size
                    scaleRow(source + offset, by: gate[plane], residual.map { $0 + offset }, target + offset, size, relu: relu)
                }
            }
        }
    }

    /// Σ and max of `count` floats in one read (max is NaN if any element is NaN, as VectorMath.max gives).
    @inline(__always)
    static func sumAndMax(_ p: UnsafePointer<Float>, _ count: Int) -> (Float, Float) {
        var s0 = SIMD8<Float>.zero, s1 = SIMD8<Float>.zero
        var m0 = SIMD8<Float>(repeating: -.infinity), m1 = m0
        var nan = SIMDMask<SIMD8<Int32>>(repeating: false)
        var i = 0
        while i + 16 <= count {
            let a = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
            let b = UnsafeRawPointer(p + i + 8).loadUnaligned(as: SIMD8<Float>.self)
            s0 += a
            s1 += b
            nan .|= (a .!= a) .| (b .!= b)
            m0.replace(with: a, where: a .> m0)
            m1.replace(with: b, where: b .> m1)
            i += 16
        }
        if i + 8 <= count {
            let a = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
            s0 += a
            nan .|= a .!= a
            m0.replace(with: a, where: a .> m0)
            i += 8
        }
        m0.replace(with: m1, where: m1 .> m0)
        var sum = (s0 + s1).sum(), max = m0.max(), hasNaN = any(nan)
        while i < count {
            sum += p[i]
            hasNaN = hasNaN || p[i].isNaN
            max = Swift.max(max, p[i])
            i += 1
        }
        return (sum, hasNaN ? .nan : max)
    }

    // MARK: - Spatial gate

    private static func spatialGate(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        // apply = 0 (``Passes/fuseSpatialMaps(_:)``): only the map, nothing scaled.
        let applies = try node.int("apply", default: 1) != 0
        let x = try context.input(0, "X"), y = applies ? try context.output(0) : x, map = try context.output(1)
        guard x.type.dataType == .float, x.shape.count == 4, y.type == x.type, map.type.dataType == .float,
              let weight = node.constant(1), weight.dataType == .float, let epilogue = try GateEpilogue(context, y: y),
              applies || (!epilogue.hasResidual && !epilogue.relu) else { return nil }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let pixels = h * w
        guard map.count == n * pixels, c > 0, pixels > 0 else {
            throw CBAMError(.shapeMismatch, "the gate map has \(map.count) values for \(n) × \(pixels) pixels")
        }
        guard weight.rank == 4, weight.shape[0] == 1, weight.shape[1] == 2 else {
            throw CBAMError(.shapeMismatch, "W is \(Shape.describe(weight.shape)); a spatial gate's is [1, 2, kH, kW]", field: "W")
        }
        let (kh, kw) = (weight.shape[2], weight.shape[3])
        let bias = try node.constant(2).map { try $0.floats("B") }
        if context.inputs.count > 2, context.inputs[2] != nil, bias?.count != 1 { return nil }
        // The channel gate's map, applied here (attribute channel_scale = 1): s_c `[N, C]`, plain.
        var channelScale: Operand? = nil
        if try node.int("channel_scale", default: 0) != 0 {
            guard applies else { return nil }
            guard context.inputs.count > 3, let scale = context.inputs[3], scale.type.dataType == .float, scale.count == n * c,
                  scale.layout == .plain else { return nil }
            channelScale = scale
        }
        guard let pads = try node.ints("pads"), pads.count == 4, pads.allSatisfy({ $0 >= 0 }),
              let dilations = try node.ints("dilations"), dilations.count == 2, dilations.allSatisfy({ $0 >= 1 }),
              h + pads[0] + pads[2] - dilations[0] * (kh - 1) == h, w + pads[1] + pads[3] - dilations[1] * (kw - 1) == w else {
            throw node.invalid("pads", "the window does not give an \(h)×\(w) map")
        }
        let meanFirst = try node.int("mean_first", default: 0) != 0
        let weights = UncheckedSendable(try weight.floats("W"))
        let shift = bias?.first ?? 0
        let (padTop, padLeft, dh, dw) = (pads[0], pads[1], dilations[0], dilations[1])
        // The two statistics planes, zero-padded so every tap reads in bounds: input pixel
        // (r, c) sits at (r + padTop, c + padLeft), and each row has room for whole SIMD8
        // chunks of output columns.
        let paddedWidth = (w + 7) / 8 * 8 + (kw - 1) * dw, paddedHeight = h + (kh - 1) * dh
        let plane = paddedHeight * paddedWidth
        let scratch = context.scratch(bytes: (2 * pixels + 2 * plane) * MemoryLayout<Float>.stride)
        let workers = x.count >= Parallel.minimumElements ? context.threads : 1
        let divisor = Float(c)
        let carried = x.layout != .plain
        if carried { guard y.layout == x.layout else { return nil } }
        let blocks = carried ? ChannelBlocks(x) : nil
        let detail = applies ? (channelScale == nil ? "" : "channel scale+") + "stats+conv+scale" + epilogue.detail : "stats+conv (map only)"
        return PlannedKernel(detail: detail + (carried ? " \(x.layout)" : "")) { memory in
            let source = UnsafePointer(x.floats(memory)), target = y.floats(memory), gates = map.floats(memory)
            let channelScales = channelScale.map { UnsafePointer($0.floats(memory)) }
            let residual = epilogue.residual(memory), relu = epilogue.relu
            let statistics = scratch.pointer(memory).assumingMemoryBound(to: Float.self)
            let (maxima, means, padded) = (statistics, statistics + pixels, statistics + 2 * pixels)
            // Concat order: channel 0 of W reads the first of (max, mean) as the model wrote it.
            let (first, second) = meanFirst ? (UnsafePointer(means), UnsafePointer(maxima)) : (UnsafePointer(maxima), UnsafePointer(means))
            weights.value.withUnsafeBufferPointer { wp in
                let w0 = wp.baseAddress!
                for item in 0..<n {
                    let image = source + item * c * pixels
                    let gate = gates + item * pixels
                    let scales = channelScales.map { $0 + item * c }
                    // Pass 1: channel max and mean of every pixel, the channels read in order.
                    Parallel.forEach(workers) { worker in
                        let share = Parallel.share(worker, of: workers, count: pixels)
                        guard !share.isEmpty else { return }
                        if let blocks {
                            CarriedLoops.pixelStatistics(source, blocks, item: item, pixels: share, maxima: maxima, means: means, channelScales: scales)
                        } else {
                            channelStatistics(image + share.lowerBound, channels: c, stride: pixels, count: share.count,
                                              maxima: maxima + share.lowerBound, means: means + share.lowerBound, divisor: divisor, channelScales: scales)
                        }
                    }
                    padded.update(repeating: 0, count: 2 * plane)
                    for row in 0..<h {
                        let offset = (row + padTop) * paddedWidth + padLeft
                        (padded + offset).update(from: first + row * w, count: w)
                        (padded + plane + offset).update(from: second + row * w, count: w)
                    }
                    // The k×k convolution 2 → 1 and the sigmoid, rows split across workers.
                    Parallel.forEach(workers) { worker in
                        for row in Parallel.share(worker, of: workers, count: h) {
                            spatialRow(UnsafePointer(padded) + row * paddedWidth, plane: plane, rowStride: paddedWidth, width: w,
                                       weights: w0, kh: kh, kw: kw, dh: dh, dw: dw, bias: shift, into: gate + row * w)
                        }
                    }
                    // Pass 2: y = x · s (+ R, Relu), the map applied to every channel.
                    guard applies else { continue }
                    Parallel.forEach(workers) { worker in
                        if let blocks {
                            CarriedLoops.scalePixels(source, target, gate: UnsafePointer(gate), blocks, item: item,
                                                     pixels: Parallel.share(worker, of: workers, count: pixels), residual: residual, relu: relu,
                                                     channelScales: scales)
                            return
                        }
                        for channel in Parallel.share(worker, of: workers, count: c) {
                            let offset = (item * c + channel) * pixels
                            multiplyRow(source + offset, UnsafePointer(gate), residual.map { $0 + offset }, target + offset, pixels, relu: relu,
                                        factor: scales?[channel] ?? 1)
                        }
                    }
                }
            }
        }
    }

    /// One output row of the gate: bias + Σ over both planes and all taps, then the
    /// sigmoid. `input` is the padded top-left of the row's window in plane 0; eight
    /// output columns per accumulator, all taps applied before the store.
    @inline(__always)
    static func spatialRow(_ input: UnsafePointer<Float>, plane: Int, rowStride: Int, width: Int, weights: UnsafePointer<Float>,
                           kh: Int, kw: Int, dh: Int, dw: Int, bias: Float, into output: UnsafeMutablePointer<Float>) {
        var column = 0
        while column < width {
            var sum = SIMD8<Float>(repeating: bias)
            for channel in 0..<2 {
                for i in 0..<kh {
                    let line = input + channel * plane + i * dh * rowStride + column
                    let taps = weights + (channel * kh + i) * kw
                    for j in 0..<kw {
                        sum += SIMD8<Float>(repeating: taps[j]) * UnsafeRawPointer(line + j * dw).loadUnaligned(as: SIMD8<Float>.self)
                    }
                }
            }
            let gate = 1 / (1 + VectorMath.exp(-sum))
            let valid = Swift.min(8, width - column)
            if valid == 8 {
                UnsafeMutableRawPointer(output + column).storeBytes(of: gate, as: SIMD8<Float>.self)
            } else {
                for lane in 0..<valid { output[column + lane] = gate[lane] }
            }
            column += 8
        }
    }

    /// For `count` pixels: the max and the mean over `channels` planes `stride` apart,
    /// 32 pixels at a time with the running values in registers.
    @inline(__always)
    /// With `channelScales`, the statistics of x · s_c (channel c's plane times s_c[c]).
    static func channelStatistics(_ image: UnsafePointer<Float>, channels: Int, stride: Int, count: Int,
                                  maxima: UnsafeMutablePointer<Float>, means: UnsafeMutablePointer<Float>, divisor: Float,
                                  channelScales: UnsafePointer<Float>? = nil) {
        if let channelScales {
            scaledChannelStatistics(image, channels: channels, stride: stride, count: count, maxima: maxima, means: means,
                                    divisor: divisor, channelScales: channelScales)
            return
        }
        @inline(__always) func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
        @inline(__always) func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self) }
        // NaN sticks: a NaN element replaces the max, and nothing is greater than NaN.
        @inline(__always) func larger(_ m: inout SIMD8<Float>, _ v: SIMD8<Float>) { m.replace(with: v, where: (v .> m) .| (v .!= v)) }
        let scale = SIMD8<Float>(repeating: divisor)
        var p = 0
        while p + 32 <= count {
            var (m0, m1, m2, m3) = (load(image + p), load(image + p + 8), load(image + p + 16), load(image + p + 24))
            var (s0, s1, s2, s3) = (m0, m1, m2, m3)
            var plane = image + p
            for _ in 1..<Swift.max(channels, 1) {
                plane += stride
                let (v0, v1, v2, v3) = (load(plane), load(plane + 8), load(plane + 16), load(plane + 24))
                larger(&m0, v0); larger(&m1, v1); larger(&m2, v2); larger(&m3, v3)
                s0 += v0; s1 += v1; s2 += v2; s3 += v3
            }
            store(m0, maxima + p); store(m1, maxima + p + 8); store(m2, maxima + p + 16); store(m3, maxima + p + 24)
            store(s0 / scale, means + p); store(s1 / scale, means + p + 8); store(s2 / scale, means + p + 16); store(s3 / scale, means + p + 24)
            p += 32
        }
        while p + 8 <= count {
            var m = load(image + p), s = m
            var plane = image + p
            for _ in 1..<Swift.max(channels, 1) {
                plane += stride
                let v = load(plane)
                larger(&m, v)
                s += v
            }
            store(m, maxima + p)
            store(s / scale, means + p)
            p += 8
        }
        while p < count {
            var m = image[p], s = m
            for channel in 1..<Swift.max(channels, 1) {
                let v = image[channel * stride + p]
                if v > m || v.isNaN { m = v }
                s += v
            }
            maxima[p] = m
            means[p] = s / divisor
            p += 1
        }
    }

    /// The max and mean over channels of x · s_c: each plane scaled as it is read, in the
    /// order the merged CBAM block's unfused graph multiplies (x · s_c, rounded, then reduced).
    static func scaledChannelStatistics(_ image: UnsafePointer<Float>, channels: Int, stride: Int, count: Int,
                                        maxima: UnsafeMutablePointer<Float>, means: UnsafeMutablePointer<Float>, divisor: Float,
                                        channelScales: UnsafePointer<Float>) {
        @inline(__always) func larger(_ m: inout SIMD8<Float>, _ v: SIMD8<Float>) { m.replace(with: v, where: (v .> m) .| (v .!= v)) }
        var p = 0
        while p + 8 <= count {
            var m = CarriedLoops.load(image + p) * SIMD8<Float>(repeating: channelScales[0]), s = m
            var plane = image + p
            for channel in 1..<Swift.max(channels, 1) {
                plane += stride
                let v = CarriedLoops.load(plane) * SIMD8<Float>(repeating: channelScales[channel])
                larger(&m, v)
                s += v
            }
            CarriedLoops.store(m, maxima + p)
            CarriedLoops.store(s / SIMD8<Float>(repeating: divisor), means + p)
            p += 8
        }
        while p < count {
            var m = image[p] * channelScales[0], s = m
            for channel in 1..<Swift.max(channels, 1) {
                let v = image[channel * stride + p] * channelScales[channel]
                if v > m || v.isNaN { m = v }
                s += v
            }
            maxima[p] = m
            means[p] = s / divisor
            p += 1
        }
    }

    /// `c[i] = (a[i] · factor) · b[i] (+ r[i])`, then max(·, 0) when `relu`, SIMD8: a channel
    /// scale applied first, as the unfused graph does (a factor of 1 changes nothing).
    @inline(__always)
    static func multiplyRow(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ r: UnsafePointer<Float>?, _ c: UnsafeMutablePointer<Float>,
                            _ count: Int, relu: Bool, factor: Float = 1) {
        let scale = SIMD8<Float>(repeating: factor)
        var i = 0
        while i + 8 <= count {
            let product = CarriedLoops.load(a + i) * scale * CarriedLoops.load(b + i)
            CarriedLoops.store(GateEpilogue.finish(product, r.map { $0 + i }, relu: relu), c + i)
            i += 8
        }
        while i < count {
            let v = a[i] * factor * b[i] + (r?[i] ?? 0)
            c[i] = relu ? Swift.max(v, 0) : v
            i += 1
        }
    }

    /// `y[i] = x[i] · scale (+ r[i])`, then max(·, 0) when `relu`, SIMD8.
    @inline(__always)
    static func scaleRow(_ x: UnsafePointer<Float>, by scale: Float, _ r: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>,
                         _ count: Int, relu: Bool) {
        let factor = SIMD8<Float>(repeating: scale)
        var i = 0
        while i + 8 <= count {
            CarriedLoops.store(GateEpilogue.finish(CarriedLoops.load(x + i) * factor, r.map { $0 + i }, relu: relu), y + i)
            i += 8
        }
        while i < count {
            let v = x[i] * scale + (r?[i] ?? 0)
            y[i] = relu ? Swift.max(v, 0) : v
            i += 1
        }
    }
}

extension ChannelGateProgram {
    /// Σ a[i]·b[i], sixteen lanes at a time.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
        var s0 = SIMD8<Float>.zero, s1 = SIMD8<Float>.zero
        var i = 0
        while i + 16 <= count {
            s0 += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self) * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
            s1 += UnsafeRawPointer(a + i + 8).loadUnaligned(as: SIMD8<Float>.self) * UnsafeRawPointer(b + i + 8).loadUnaligned(as: SIMD8<Float>.self)
            i += 16
        }
        if i + 8 <= count {
            s0 += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self) * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
            i += 8
        }
        var sum = (s0 + s1).sum()
        while i < count {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    /// One instruction, resolved against the scratch base: reads earlier slots, writes its own.
    typealias Step = (_ slots: UnsafeMutablePointer<Float>) -> Void

    /// Multiply-accumulates from which a linear instruction splits its outputs across threads.
    static let parallelLinearMACs = 1 << 16

    /// Checks `code` against the slot counts and the constants, and resolves every
    /// instruction to a closure over fixed offsets (nothing is allocated when it runs).
    /// `reference` runs the linear instructions on the plain Swift loop (``dot(_:_:_:)``), for
    /// the differential tests; otherwise they run on CVectorMath's loop for this CPU, their
    /// outputs split across `threads` when large.
    static func compile(_ code: [Int], counts: [Int], offsets: [Int], threads: Int = 1, reference: Bool = false,
                        constants: (Int) throws -> Tensor) throws -> [Step] {
        func invalid(_ message: String) -> CBAMError { CBAMError(.invalidAttribute, message, field: "attribute \"program\"") }
        guard code.count % width == 0 else { throw invalid("has \(code.count) values, not a multiple of \(width)") }
        var written = Set([0, 1])
        var steps: [Step] = []
        for start in stride(from: 0, to: code.count, by: width) {
            let field = Array(code[start..<(start + width)])
            guard let op = Op(rawValue: field[0]) else { throw invalid("unknown instruction \(field[0])") }
            let (out, a, b, k) = (field[1], field[2], field[3], field[4])
            guard counts.indices.contains(out), !written.contains(out) else { throw invalid("instruction writes slot \(out) twice or out of range") }
            func readable(_ slot: Int) throws -> Int {
                guard written.contains(slot) else { throw invalid("instruction reads slot \(slot) before it is written") }
                return slot
            }
            func constant(expecting count: Int) throws -> UncheckedSendable<[Float]> {
                let tensor = try constants(k)
                guard tensor.count == count else { throw invalid("constant input \(k) has \(tensor.count) values, expected \(count)") }
                return UncheckedSendable(try tensor.floats())
            }
            let outCount = counts[out], outOffset = offsets[out]
            switch op {
            case .linear:
                let source = try readable(a)
                let matrix = try constants(k)
                guard matrix.rank == 2, matrix.shape[1] > 0, counts[source] % matrix.shape[1] == 0 else { throw invalid("linear weight \(k) does not fit slot \(source)") }
                let (m, inner) = (matrix.shape[0], matrix.shape[1])
                let rows = counts[source] / inner
                guard rows * m == outCount else { throw invalid("linear output slot \(out) holds \(outCount) values, not \(rows * m)") }
                let weights = UncheckedSendable(try matrix.floats())
                let inOffset = offsets[source]
                if !reference {
                    // A wide gate's MLP (2048 × 128, 1 MB a layer) is bound by reading its weights:
                    // with two threads each streams half of them.
                    let workers = rows * m * inner >= parallelLinearMACs ? Swift.max(1, Swift.min(threads, m / 4)) : 1
                    steps.append { slots in
                        weights.value.withUnsafeBufferPointer { wp in
                            let (w, x, y) = (wp.baseAddress!, UnsafePointer(slots + inOffset), slots + outOffset)
                            Parallel.forEach(workers) { worker in
                                VectorMath.linearRows(w, m: m, inner: inner, x, rows: rows, y, outputs: Parallel.share(worker, of: workers, count: m))
                            }
                        }
                    }
                    break
                }
                steps.append { slots in
                    weights.value.withUnsafeBufferPointer { wp in
                        // Each weight row once for all the pooled rows (avg and max of every
                        // item): a wide gate's MLP (2048 × 128, 1 MB) is read from memory once,
                        // not once per row.
                        for o in 0..<m {
                            let weightRow = wp.baseAddress! + o * inner
                            for row in 0..<rows {
                                slots[outOffset + row * m + o] = dot(weightRow, UnsafePointer(slots + inOffset + row * inner), inner)
                            }
                        }
                    }
                }
            case .relu:
                let source = try readable(a)
                guard counts[source] == outCount else { throw invalid("relu changes the count") }
                let inOffset = offsets[source]
                steps.append { slots in
                    VectorMath.map(UnsafePointer(slots + inOffset), slots + outOffset, outCount) { $0.replacing(with: SIMD8<Float>.zero, where: $0 .< SIMD8<Float>.zero) }
                }
            case .add, .sub, .mul, .div:
                guard a >= 0 || b >= 0 else { throw invalid("a binary instruction needs a slot operand") }
                let left = a >= 0 ? try readable(a) : -1, right = b >= 0 ? try readable(b) : -1
                for slot in [left, right] where slot >= 0 && counts[slot] != outCount { throw invalid("operand slot \(slot) does not match slot \(out)") }
                let fixed = a < 0 || b < 0 ? try constant(expecting: outCount) : UncheckedSendable([Float]())
                let (leftOffset, rightOffset) = (left >= 0 ? offsets[left] : -1, right >= 0 ? offsets[right] : -1)
                let operation: FloatOperator = op == .add ? .add : op == .sub ? .subtract : op == .mul ? .multiply : .divide
                steps.append { slots in
                    fixed.value.withUnsafeBufferPointer { cp in
                        let first = leftOffset >= 0 ? UnsafePointer(slots + leftOffset) : cp.baseAddress!
                        let second = rightOffset >= 0 ? UnsafePointer(slots + rightOffset) : cp.baseAddress!
                        operation.fill(slots + outOffset, outCount, first, 1, second, 1)
                    }
                }
            case .conv1d:
                let source = try readable(a)
                let (length, padBegin, dilation) = (field[5], field[6], field[7])
                let taps = try constants(k)
                guard taps.rank == 1, taps.count > 0, length > 0, dilation > 0, padBegin >= 0, counts[source] % length == 0,
                      outCount % (counts[source] / length) == 0 else { throw invalid("conv1d does not fit slot \(source)") }
                let rows = counts[source] / length, outLength = outCount / rows
                let kernel = UncheckedSendable(try taps.floats())
                let inOffset = offsets[source]
                steps.append { slots in
                    kernel.value.withUnsafeBufferPointer { kp in
                        for row in 0..<rows {
                            let input = slots + inOffset + row * length, output = slots + outOffset + row * outLength
                            for o in 0..<outLength {
                                var sum: Float = 0
                                for t in 0..<kp.count {
                                    let i = o - padBegin + t * dilation
                                    if i >= 0 && i < length { sum += kp[t] * input[i] }
                                }
                                output[o] = sum
                            }
                        }
                    }
                }
            }
            written.insert(out)
        }
        return steps
    }
}

/// What a gate's second pass adds after the scale: a merged residual R (its node's last
/// input, attribute `residual = 1`) and Relu (`activation = "Relu"`).
struct GateEpilogue {
    private let operand: Operand?
    let relu: Bool

    /// Nil when R's type or layout differs from y's (the reference kernel then refuses too).
    init?(_ context: PlanContext, y: Operand) throws {
        let node = context.node
        relu = try node.string("activation", default: "") == "Relu"
        guard try node.int("residual", default: 0) == 1 else {
            operand = nil
            return
        }
        guard let residual = context.inputs.last ?? nil, residual.type == y.type, residual.layout == y.layout else { return nil }
        operand = residual
    }

    var hasResidual: Bool { operand != nil }
    var detail: String { (operand == nil ? "" : "+add") + (relu ? "+relu" : "") }

    /// R's floats in this run's memory.
    @inline(__always)
    func residual(_ memory: RunMemory) -> UnsafePointer<Float>? { operand.map { UnsafePointer($0.floats(memory)) } }

    /// `v (+ r[0..<8])`, then max(·, 0) when `relu`.
    @inline(__always)
    static func finish(_ v: SIMD8<Float>, _ r: UnsafePointer<Float>?, relu: Bool) -> SIMD8<Float> {
        var result = v
        if let r { result += CarriedLoops.load(r) }
        if relu { result.replace(with: SIMD8<Float>.zero, where: result .< SIMD8<Float>.zero) }
        return result
    }
}
