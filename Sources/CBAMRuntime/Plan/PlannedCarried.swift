import CVectorMath

// The loops of the ops that run on values carried in a convolution kernel's layout
// (``LayoutPass``): the CBAM gates' two passes and the global pools, on a 4-D
// `[N, C, H, W]` tensor in channel blocks of `b` (nChw8c, nChw16c, or NHWC as one
// block of all C channels). Each (item, block) is `pixels` rows of `b` floats, one row
// per pixel: per-channel statistics run down the rows with `b` lanes in registers,
// per-pixel statistics across the blocks of one pixel. C is a multiple of 8 (the pass
// carries nothing else), so every row is whole SIMD8 vectors.
//
// The plan runs the gates' loops in CVectorMath (one body per instruction set, picked by
// cpuid: Swift compiles for baseline x86-64, where SIMD8 is two SSE halves); the Swift
// loops here are the reference they are tested against (`isa: nil`).

/// Where the blocks of a carried tensor are.
struct ChannelBlocks {
    let items: Int, channels: Int, pixels: Int
    /// Channels per block, and blocks per item.
    let block: Int, blocks: Int

    init(_ operand: Operand) {
        let shape = operand.shape
        items = shape[0]
        channels = shape[1]
        pixels = shape[2] * shape[3]
        block = operand.layout.block(channels: channels)
        blocks = channels / block
    }

    /// Offset of block `blockIndex` of `item` (its first row).
    @inline(__always)
    func offset(item: Int, block blockIndex: Int) -> Int { (item * blocks + blockIndex) * pixels * block }

    /// Work units for per-channel passes: (item, block, 8·k lanes) so that NHWC, one block
    /// of all channels, still splits across workers. Lanes per unit: up to 64.
    var laneChunk: Int { Swift.min(block, 64) }
    var unitsPerBlock: Int { (block + laneChunk - 1) / laneChunk }
    var units: Int { items * blocks * unitsPerBlock }

    /// Unit `unit`'s lanes: the offset of its first lane in pixel 0, that lane's channel in plain
    /// `[N, C]` order (where the per-channel results go and the gate's scales are), and how many.
    @inline(__always)
    func lanes(of unit: Int) -> (offset: Int, channel: Int, count: Int) {
        let lane0 = (unit % unitsPerBlock) * laneChunk
        let blockIndex = (unit / unitsPerBlock) % blocks, item = unit / (unitsPerBlock * blocks)
        return (offset(item: item, block: blockIndex) + lane0, item * channels + blockIndex * block + lane0, Swift.min(laneChunk, block - lane0))
    }
}

enum CarriedLoops {
    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
    @inline(__always) static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// Per-channel mean and/or max over the pixels, for the channels of `units` (see
    /// ``ChannelBlocks/units``), written in plain `[N, C]` order. NaN sticks in the max.
    /// With an `isa`, CVectorMath's loop for it (the same sums, bit for bit); nil runs the Swift
    /// loop below, the reference the differential tests hold it to.
    ///
    /// Pixels outer, the unit's lanes (up to 64: eight vectors) inner, the running sums and
    /// maxima in a small stack buffer: each pixel's lanes are read in one contiguous run, so
    /// a unit reads its part of the tensor once, in order (lanes outer read it in 16-lane
    /// strips, one strided pass each). A NaN makes its channel's sum NaN; only those
    /// channels are read again to decide their max.
    static func channelStatistics(_ x: UnsafePointer<Float>, _ geometry: ChannelBlocks, units: Range<Int>,
                                  means: UnsafeMutablePointer<Float>?, maxima: UnsafeMutablePointer<Float>?,
                                  isa: VectorMath.InstructionSet? = .auto) {
        let (b, pixels) = (geometry.block, geometry.pixels)
        if let isa {
            for unit in units {
                let lanes = geometry.lanes(of: unit)
                cbam_vm_channel_stats(x + lanes.offset, pixels, b, lanes.count, means.map { $0 + lanes.channel }, maxima.map { $0 + lanes.channel }, isa.c)
            }
            return
        }
        let count = SIMD8<Float>(repeating: Float(pixels))
        withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 16) { buffer in
            let sums = buffer.baseAddress!, largest = sums + 8
            for unit in units {
                let lanes = geometry.lanes(of: unit)
                let (base, firstChannel, vectors) = (x + lanes.offset, lanes.channel, lanes.count / 8)
                for v in 0..<vectors {
                    sums[v] = .zero
                    largest[v] = SIMD8<Float>(repeating: -.infinity)
                }
                var row = base
                for _ in 0..<pixels {
                    for v in 0..<vectors {
                        let a = load(row + 8 * v)
                        sums[v] += a
                        largest[v].replace(with: a, where: a .> largest[v])
                    }
                    row += b
                }
                for v in 0..<vectors {
                    if let means { store(sums[v] / count, means + firstChannel + 8 * v) }
                    guard let maxima else { continue }
                    var m = largest[v]
                    for lane in 0..<8 where sums[v][lane].isNaN {
                        var p = base + 8 * v + lane
                        for _ in 0..<pixels {
                            if p.pointee.isNaN { m[lane] = .nan; break }
                            p += b
                        }
                    }
                    store(m, maxima + firstChannel + 8 * v)
                }
            }
        }
    }

    /// `y = x · s[n, c] (+ r)` (then Relu): each row of block (item, block) times the gate's
    /// values for that block's channels; `residual` lies like x and y. With an `isa`, CVectorMath's
    /// loop (the same values, bit for bit); nil runs the Swift loop below, the reference.
    static func scaleChannels(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>,
                              _ geometry: ChannelBlocks, units: Range<Int>, residual: UnsafePointer<Float>? = nil, relu: Bool = false,
                              isa: VectorMath.InstructionSet? = .auto) {
        let (b, pixels) = (geometry.block, geometry.pixels)
        for unit in units {
            let lanes = geometry.lanes(of: unit)
            let (at, scales) = (lanes.offset, gate + lanes.channel)
            if let isa {
                cbam_vm_scale_channels(x + at, y + at, residual.map { $0 + at }, pixels, b, lanes.count, scales, relu ? 1 : 0, isa.c)
                continue
            }
            for p in 0..<pixels {
                let (source, target, added) = (x + at + p * b, y + at + p * b, residual.map { $0 + at + p * b })
                var lane = 0
                while lane < lanes.count {
                    store(GateEpilogue.finish(load(source + lane) * load(scales + lane), added.map { $0 + lane }, relu: relu), target + lane)
                    lane += 8
                }
            }
        }
    }

    /// The max and the mean over all channels of each pixel in `pixels` of `item`, into plain `[H·W]` planes.
    /// With `channelScales` (this item's `[C]`), those of x · s_c. With an `isa`, CVectorMath's loop
    /// (its sums in another order); nil runs the Swift loop below, the reference.
    static func pixelStatistics(_ x: UnsafePointer<Float>, _ geometry: ChannelBlocks, item: Int, pixels range: Range<Int>,
                                maxima: UnsafeMutablePointer<Float>, means: UnsafeMutablePointer<Float>,
                                channelScales: UnsafePointer<Float>? = nil, isa: VectorMath.InstructionSet? = .auto) {
        let b = geometry.block
        if let isa {
            cbam_vm_pixel_stats(x + geometry.offset(item: item, block: 0), geometry.pixels, b, geometry.blocks, range.lowerBound, range.upperBound,
                                channelScales, maxima, means, isa.c)
            return
        }
        let stride = geometry.pixels * b
        let divisor = Float(geometry.channels)
        for p in range {
            var s = SIMD8<Float>.zero, m = SIMD8<Float>(repeating: -.infinity)
            var nan = SIMDMask<SIMD8<Int32>>(repeating: false)
            var blockStart = x + geometry.offset(item: item, block: 0) + p * b
            for blockIndex in 0..<geometry.blocks {
                var lane = 0
                while lane < b {
                    var v = load(blockStart + lane)
                    if let channelScales { v *= load(channelScales + blockIndex * b + lane) }
                    s += v
                    nan .|= v .!= v
                    m.replace(with: v, where: v .> m)
                    lane += 8
                }
                blockStart += stride
            }
            maxima[p] = any(nan) ? .nan : m.max()
            means[p] = s.sum() / divisor
        }
    }

    /// `y = x · s[n, p] (+ r)` (then Relu): every channel of each pixel in `pixels` of `item`
    /// times the pixel's gate value; `residual` lies like x and y.
    /// With `channelScales` (this item's `[C]`), `y = (x · s_c[c]) · s[n, p]`. With an `isa`,
    /// CVectorMath's loop (the same values, bit for bit); nil runs the Swift loop below, the reference.
    static func scalePixels(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>,
                            _ geometry: ChannelBlocks, item: Int, pixels range: Range<Int>, residual: UnsafePointer<Float>? = nil, relu: Bool = false,
                            channelScales: UnsafePointer<Float>? = nil, isa: VectorMath.InstructionSet? = .auto) {
        let b = geometry.block
        if let isa {
            let offset = geometry.offset(item: item, block: 0)
            cbam_vm_scale_pixels(x + offset, y + offset, residual.map { $0 + offset }, geometry.pixels, b, geometry.blocks,
                                 range.lowerBound, range.upperBound, gate, channelScales, relu ? 1 : 0, isa.c)
            return
        }
        for blockIndex in 0..<geometry.blocks {
            let offset = geometry.offset(item: item, block: blockIndex)
            let blockScales = channelScales.map { $0 + blockIndex * b }
            for p in range {
                let scale = SIMD8<Float>(repeating: gate[p])
                let (source, target, added) = (x + offset + p * b, y + offset + p * b, residual.map { $0 + offset + p * b })
                var lane = 0
                if let blockScales {
                    while lane < b {
                        store(GateEpilogue.finish(load(source + lane) * load(blockScales + lane) * scale, added.map { $0 + lane }, relu: relu), target + lane)
                        lane += 8
                    }
                    continue
                }
                while lane < b {
                    store(GateEpilogue.finish(load(source + lane) * scale, added.map { $0 + lane }, relu: relu), target + lane)
                    lane += 8
                }
            }
        }
    }

    /// MaxPool or AveragePool over one block: `[H·W, b]` rows in, `[oH·oW, b]` rows out, the
    /// window's taps from `loop` (the plain kernel's geometry). NaN sticks in the max.
    static func pool(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, block b: Int, _ loop: Pool2DLoop, average: Bool) {
        let includePad: Bool
        if case .average(let countPad) = loop.mode { includePad = countPad } else { includePad = false }
        for oy in 0..<loop.oh {
            let rows = loop.rows[oy]
            for ox in 0..<loop.ow {
                let columns = loop.columns[ox]
                let out = y + (oy * loop.ow + ox) * b
                let divisor = includePad ? loop.paddedRows[oy] * loop.paddedColumns[ox] : rows.count * columns.count
                var lane = 0
                while lane < b {
                    var acc = SIMD8<Float>(repeating: average ? 0 : -.infinity)
                    for i in rows.first..<(rows.first + rows.count) {
                        let iy = oy * loop.sh - loop.padTop + i * loop.dh
                        for j in columns.first..<(columns.first + columns.count) {
                            let ix = ox * loop.sw - loop.padLeft + j * loop.dw
                            let v = load(x + (iy * loop.w + ix) * b + lane)
                            if average { acc += v } else { acc.replace(with: v, where: (v .> acc) .| (v .!= v)) }
                        }
                    }
                    if average { acc = divisor > 0 ? acc / SIMD8<Float>(repeating: Float(divisor)) : .zero }
                    store(acc, out + lane)
                    lane += 8
                }
            }
        }
    }
}
