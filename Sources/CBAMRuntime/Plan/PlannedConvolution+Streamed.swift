import CVectorMath
import Foundation

// The streamed kernel: a convolution over few output pixels with many weights (VGG's 512-channel
// 3×3 layers on 4×4 and 2×2 maps, the last stage's 1×1 convolutions at batch 1) as one pass over
// its weights, asking for them far enough ahead (Sources/CVectorMath/streamed_conv.c). oneDNN's
// direct kernels read such weights at about half of what a core streams here, so these layers,
// which do only 4–16 multiply-adds per weight, wait on memory.

extension ConvCandidate {
    /// Output pixels over the batch up to which the streamed kernel is built: two tiles (16 pixels
    /// each on AVX-512), the second reading each block's weights from L2. Up to 16 the weights, not
    /// the multiplications, bound the time; at 32 it computes at the core's peak while reading
    /// them once (ResNeXt-50's last 1×1 layers at batch 2, one thread, AMD EPYC: 7.3–7.6 ms for
    /// the six against 8.3 in the batch-folded GEMM; VGG's 4×4 layers at batch 2: 107–110 GFLOP/s).
    /// On the Intel Xeon, before the kernel asked for lines 16 KB ahead, 32 pixels tied the folded
    /// GEMM (2.0–2.2 against 1.9–2.0 ms). At 49 (ResNet-50's and SE-ResNet-34's 7×7 layers at
    /// batch 1) it gained nothing (whole networks 0.999 and 0.986 of the time before), and while the
    /// plan times it, its packed copy of the weights lies beside oneDNN's (ResNet-50 + CBAM's peak
    /// memory at batch 1 rose by about 10 MB).
    static let streamedMaximumPixels = 32

    /// The same for 1×1 convolutions, whose columns are the input itself cut into tiles: up to
    /// eight tiles, each after the first reading the block's weights from L2, where oneDNN's 1×1
    /// kernel stays near 106 GFLOP/s. ResNeXt-50 on the AMD EPYC, one thread: its 7×7 layers at
    /// batch 1 (49 pixels) 0.45–0.48 ms against 0.48–0.53 in oneDNN, at batch 2 (98) 0.90–0.96
    /// against 0.95–1.03; the whole network at batch 1 23.4–23.6 ms against 23.8–23.9, at batch 2
    /// 45.6–46.1 against 46.8–47.0 (before it, 32 for all). At 196 pixels (ResNeXt-50's 14×14
    /// layers) it lost (100–109 GFLOP/s against 104–112), as it did on 3×3 layers at 49 pixels,
    /// where oneDNN's and our Winograd kernels do fewer multiplications (ResNet-18 + CBAM
    /// 23.9–24.4 → 26.2–26.8 ms).
    static let streamedMaximumPointwisePixels = 128

    /// ``streamedMaximumPointwisePixels`` for a 1×1 convolution, else ``streamedMaximumPixels``.
    static func streamedMaximumPixels(_ g: DNNLConvolution.Geometry) -> Int {
        g.kernelHeight == 1 && g.kernelWidth == 1 ? streamedMaximumPointwisePixels : streamedMaximumPixels
    }

    /// Weight bytes from which it is built for a convolution: a core's L2 (2 MB here); under it the
    /// direct kernels' reads hit the cache. (ResNeXt-50's 512 ↔ 1024-channel 1×1 layers have exactly
    /// 2 MB; a Gemm head still needs more than this, see `PlannedKernels.streamedGemm`.)
    static let streamedMinimumWeightBytes = 2 << 20

    /// How much faster than the plan's choice the streamed kernel must time in its step (reorders
    /// included) to be taken where it is timed, so that two processes agree when their timings
    /// differ a little.
    static let streamedMargin = 1.10

    /// True where the streamed kernel, once built, is taken without timing: with the AVX-512
    /// variant (the one measured; the others are timed). Timing misleads here: the plan times
    /// with the weights still in the cache from the attempt before, where oneDNN's kernel is as
    /// fast, while a run reads each layer's weights from memory. VGG-19's 4×4 layers at batch 1
    /// took 0.77–0.81 ms streamed against 1.32–1.41 ms in oneDNN's kernel, the 2×2 ones 0.65
    /// against 0.84–0.88 (one thread, in the network), and the timed plan had kept oneDNN's kernel.
    static func prefersStreamed(isa: VectorMath.InstructionSet = .auto) -> Bool {
        isa.resolved == .avx512
    }

    /// The streamed kernel for an ungrouped 2-D convolution over at most ``streamedMaximumPixels(_:)``
    /// output pixels with at least ``streamedMinimumWeightBytes`` of weights: X `[N, C, H, W]`
    /// read in NHWC, W `[M, C, kH, kW]`, optional bias `[M]`, Y `[N, M, oH, oW]` written in NHWC,
    /// an optional residual lying like Y added before the activation (none or Relu). Nil where it
    /// does not apply, or for `isa` .auto on a CPU with neither AVX2 nor AVX-512 (the plain C
    /// variant exists for the tests, not to be timed against oneDNN). `forced` (`CBAM_CONV=streamed`,
    /// the tests) builds it for every ungrouped 2-D convolution, whatever its pixels and weights.
    static func streamed(_ g: DNNLConvolution.Geometry, weights: [Float], bias: [Float]?, residual: Bool, activation: ConvActivation,
                         threads: Int, forced: Bool = false, isa: VectorMath.InstructionSet = .auto) throws -> ConvCandidate? {
        guard g.group == 1, activation == .none || activation == .relu, forced || hasVectorVariant(isa) else { return nil }
        let pixels = g.batch.multipliedReportingOverflow(by: g.outputHeight * g.outputWidth)
        guard forced || !pixels.overflow && pixels.partialValue <= streamedMaximumPixels(g)
                && weights.count * MemoryLayout<Float>.stride >= streamedMinimumWeightBytes else { return nil }
        let kernel = try StreamedConvolution(g, weights: weights, bias: bias, relu: activation == .relu, isa: isa)
        let workers = Swift.max(1, Swift.min(threads, kernel.blocks))
        return try ourKernel("streamed", isa: isa, workers: workers, scratchFloats: kernel.columnFloats, g) { x, y, added, scratch in
            kernel.run(x, y, residual: residual ? added : nil, columns: scratch, threads: workers)
        }
    }

    /// True when `isa` names a variant, or .auto finds AVX2 or AVX-512 on this CPU: our kernels'
    /// plain C variants exist for the tests, not to be timed against oneDNN.
    static func hasVectorVariant(_ isa: VectorMath.InstructionSet) -> Bool {
        isa != .auto || VectorMath.InstructionSet.best != .portable
    }

    /// A candidate for one of our C kernels on channels-last operands (streamed, winograd-f2):
    /// named `kind:isa` (" 1T" on one worker), X and Y in NHWC, its own copy of the weights, and
    /// `scratchFloats` floats of scratch handed to `run(x, y, residual, scratch)`.
    static func ourKernel(_ kind: String, isa: VectorMath.InstructionSet, workers: Int, scratchFloats: Int, _ g: DNNLConvolution.Geometry,
                          run: @escaping (UnsafePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>?, UnsafeMutablePointer<Float>) -> Void)
        throws -> ConvCandidate {
        ConvCandidate(name: "\(kind):\(isa.kernelName)" + (workers > 1 ? "" : " 1T"), scratchBytes: scratchFloats * MemoryLayout<Float>.stride,
                      source: try .channelsLast(g.sourceShape), destination: try .channelsLast(g.destinationShape), copiesWeights: true) { x, y, added, scratch in
            run(x, y, added, scratch.assumingMemoryBound(to: Float.self))
        }
    }
}

/// One convolution's streamed kernel: its weights packed in blocks of output channels, the way
/// the C kernel reads them, and the unfolding of channels-last inputs into its tiled columns.
struct StreamedConvolution: @unchecked Sendable {
    let geometry: DNNLConvolution.Geometry
    let isa: VectorMath.InstructionSet
    /// Output channels per packed block and pixels per column tile of `isa`'s variant.
    let lanes, tile: Int
    /// `[blocks, k, lanes]`: packed[(b·k + j)·lanes + l] = W[b·lanes + l, ci, ky, kx] with
    /// j = (ky·kW + kx)·C + ci, zero past the last channel.
    let packed: AlignedBuffer
    let bias: [Float]?
    let relu: Bool

    /// Unfolded inputs per output pixel: C·kH·kW.
    var k: Int { geometry.channels * geometry.kernelHeight * geometry.kernelWidth }
    /// Output pixels over the batch: N·oH·oW.
    var pixels: Int { geometry.batch * geometry.outputHeight * geometry.outputWidth }
    var blocks: Int { (geometry.outputChannels + lanes - 1) / lanes }
    var columnFloats: Int { pixels * k }

    init(_ g: DNNLConvolution.Geometry, weights: [Float], bias: [Float]?, relu: Bool, isa: VectorMath.InstructionSet) throws {
        let shape = g.weightShape, outputs = g.outputChannels
        guard g.group == 1, weights.count == shape.reduce(1, *), bias.map({ $0.count == outputs }) ?? true else {
            throw CBAMError(.shapeMismatch, "streamed convolution: \(weights.count) weights and \(bias?.count ?? 0) biases for W \(shape)")
        }
        // The unfolded columns, pixels × C·kH·kW floats, must be a size (forced, any convolution gets here).
        let (perImage, o1) = g.outputHeight.multipliedReportingOverflow(by: g.outputWidth)
        let (allPixels, o2) = g.batch.multipliedReportingOverflow(by: perImage)
        let (columnCount, o3) = allPixels.multipliedReportingOverflow(by: shape.dropFirst().reduce(1, *))
        let (_, o4) = columnCount.multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        guard !(o1 || o2 || o3 || o4) else {
            throw CBAMError(.shapeMismatch, "streamed convolution: the unfolded inputs of \(g.destinationShape) overflow a size")
        }
        (geometry, self.isa, self.bias, self.relu) = (g, isa, bias, relu)
        let (lanes, tile) = (cbam_vm_streamed_lanes(isa.c), cbam_vm_streamed_tile(isa.c))
        (self.lanes, self.tile) = (lanes, tile)
        let (m, c, kh, kw) = (g.outputChannels, g.channels, g.kernelHeight, g.kernelWidth)
        let (k, blocks) = (c * kh * kw, (m + lanes - 1) / lanes)
        packed = AlignedBuffer(byteCount: blocks * k * lanes * MemoryLayout<Float>.stride)
        let target = packed.pointer.assumingMemoryBound(to: Float.self)
        target.initialize(repeating: 0, count: blocks * k * lanes)
        weights.withUnsafeBufferPointer { source in
            for o in 0..<m {
                let (block, lane) = o.quotientAndRemainder(dividingBy: lanes)
                for ci in 0..<c {
                    for ky in 0..<kh {
                        for kx in 0..<kw {
                            let j = (ky * kw + kx) * c + ci
                            target[(block * k + j) * lanes + lane] = source[((o * c + ci) * kh + ky) * kw + kx]
                        }
                    }
                }
            }
        }
    }

    /// X `[N, H, W, C]` (channels last) into the tiled columns: tile t (`width` pixels from
    /// `start`, as `cbam_vm_streamed_tile_range` cuts them) starts at start·k and holds input j of
    /// its pixel q at j·width + q; taps in the padding are zero. Written in column order, a tap's
    /// channels for all the tile's pixels at a time, so that the writes run through memory once
    /// (pixel by pixel, each write went to another cache line, and unfolding cost as much as the
    /// multiplications), in C (`cbam_vm_streamed_unfold_tap`, 16 × 16 transposes with AVX-512): a
    /// loop here over the channels took about as long as ResNeXt-50's 1×1 layers' own work on 49
    /// pixels took beyond the kernel's alone.
    func unfold(_ x: UnsafePointer<Float>, into columns: UnsafeMutablePointer<Float>) {
        let g = geometry, (c, h, w) = (g.channels, g.height, g.width), k = self.k
        // Per pixel of a tile: its image's first input row, and its window's top-left input position.
        withUnsafeTemporaryAllocation(of: (image: UnsafePointer<Float>, y: Int, x: Int).self, capacity: tile) { corners in
            withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: tile) { rows in
                for t in 0..<cbam_vm_streamed_tile_count(pixels, isa.c) {
                    var (start, width) = (0, 0)
                    cbam_vm_streamed_tile_range(pixels, t, isa.c, &start, &width)
                    for q in 0..<width {
                        let (image, rest) = (start + q).quotientAndRemainder(dividingBy: g.outputHeight * g.outputWidth)
                        let (oy, ox) = rest.quotientAndRemainder(dividingBy: g.outputWidth)
                        corners[q] = (x + image * h * w * c, oy * g.strideHeight - g.padTop, ox * g.strideWidth - g.padLeft)
                    }
                    for ky in 0..<g.kernelHeight {
                        for kx in 0..<g.kernelWidth {
                            // Each pixel's input row for this tap, nil in the padding.
                            for q in 0..<width {
                                let (iy, ix) = (corners[q].y + ky * g.dilationHeight, corners[q].x + kx * g.dilationWidth)
                                rows[q] = iy >= 0 && iy < h && ix >= 0 && ix < w ? corners[q].image + (iy * w + ix) * c : nil
                            }
                            cbam_vm_streamed_unfold_tap(rows.baseAddress, width, c, columns + start * k + (ky * g.kernelWidth + kx) * c * width,
                                                        isa.c)
                        }
                    }
                }
            }
        }
    }

    /// Y `[N, oH, oW, M]` = act(conv(X) + bias + residual), X and the residual channels last; the
    /// output blocks split across `threads` workers, each reading only its blocks' weights.
    func run(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>?,
             columns: UnsafeMutablePointer<Float>, threads: Int) {
        unfold(x, into: columns)
        let weights = UnsafePointer(packed.pointer.assumingMemoryBound(to: Float.self))
        bias.withUnsafeBufferPointerIfPresent { biasPointer in
            Parallel.forEach(threads) { worker in
                let share = Parallel.share(worker, of: threads, count: blocks)
                guard !share.isEmpty else { return }
                let m = geometry.outputChannels
                cbam_vm_streamed_conv(columns, pixels, k, weights, m, share.lowerBound, share.upperBound, biasPointer, residual, y, m,
                                      relu ? 1 : 0, isa.c)
            }
        }
    }
}

extension Optional where Wrapped == [Float] {
    /// Calls `body` with the array's base address, or nil when there is no array.
    func withUnsafeBufferPointerIfPresent<R>(_ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        guard let array = self else { return try body(nil) }
        return try array.withUnsafeBufferPointer { try body($0.baseAddress) }
    }
}
