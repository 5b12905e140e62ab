import CVectorMath
import Foundation

// Winograd F(2×2, 3×3) of our own for 3×3 stride-1 convolutions on small maps (the 7×7 and 14×14
// layers of ResNet-18, SE-ResNet-34 and ResNet-50): transforms in Sources/CVectorMath/winograd_conv.c,
// the 16 products per tile on the streamed kernel (streamed_conv.c). Where it applies it does 16
// multiply-adds per input channel and 2×2 outputs instead of 36, and its products keep up to 16 tiles
// in registers while reading each weight once; oneDNN's direct kernel reached 72–74 GFLOP/s on
// SE-ResNet-34's 512-channel 7×7 layers, and its Winograd kernel, built for large maps, loses there.

extension ConvCandidate {
    /// How much faster than the plan's choice our Winograd kernel must time in its step to be
    /// taken: it holds 16/9 of the weights and rounds differently from the direct kernels, so it
    /// is not worth a tie.
    static let winogradF2Margin = 1.10

    /// Our Winograd kernel for an ungrouped 2-D 3×3 convolution with stride and dilation 1:
    /// X `[N, C, H, W]` read in NHWC, W `[M, C, 3, 3]`, optional bias `[M]`, Y `[N, M, oH, oW]`
    /// written in NHWC, an optional residual lying like Y added before the activation (none or
    /// Relu). Nil where it does not apply, or for `isa` .auto on a CPU with neither AVX2 nor
    /// AVX-512 (the plain C variant exists for the tests).
    static func winogradF2(_ g: DNNLConvolution.Geometry, weights: [Float], bias: [Float]?, residual: Bool, activation: ConvActivation,
                           threads: Int, isa: VectorMath.InstructionSet = .auto) throws -> ConvCandidate? {
        guard WinogradF2Convolution.fits(g), activation == .none || activation == .relu, hasVectorVariant(isa) else { return nil }
        let kernel = try WinogradF2Convolution(g, weights: weights, bias: bias, relu: activation == .relu, isa: isa)
        return try ourKernel("winograd-f2", isa: isa, workers: threads, scratchFloats: kernel.scratchFloats(threads: threads), g) { x, y, added, scratch in
            kernel.run(x, y, residual: residual ? added : nil, scratch: scratch, threads: threads)
        }
    }
}

/// One convolution's Winograd F(2×2, 3×3) kernel: its transformed weights, packed per tile
/// position as the streamed kernel reads them, and the run (input transform, 16 products,
/// output transform), each split across the threads.
struct WinogradF2Convolution: @unchecked Sendable {
    let geometry: DNNLConvolution.Geometry
    let isa: VectorMath.InstructionSet
    /// Tiles of 2×2 output pixels per image row and column, and over the batch.
    let tilesY, tilesX, tiles: Int
    /// 16 planes of `plane` floats: G g Gᵀ at each position of the 4×4 tile (winograd_conv.c).
    let packed: AlignedBuffer
    let plane: Int
    /// max(C, M) zeros: the padding's inputs, and the residual of outputs past the map's edge.
    let zeros: AlignedBuffer
    let bias: [Float]?
    let relu: Bool

    /// True for the convolutions it computes: ungrouped 2-D 3×3, stride 1, dilation 1, nothing empty.
    static func fits(_ g: DNNLConvolution.Geometry) -> Bool {
        g.group == 1 && g.kernelHeight == 3 && g.kernelWidth == 3 && g.strideHeight == 1 && g.strideWidth == 1
            && g.dilationHeight == 1 && g.dilationWidth == 1 && g.outputHeight > 0 && g.outputWidth > 0
            && g.batch > 0 && g.channels > 0 && g.outputChannels > 0
    }

    /// Blocks of output channels in each plane of packed weights.
    var blocks: Int {
        let lanes = cbam_vm_streamed_lanes(isa.c)
        return (geometry.outputChannels + lanes - 1) / lanes
    }
    /// Scratch per run: the transformed inputs (16 · T · C), the products (16 · T · M) and per
    /// thread a sink for outputs past the map's edge (M).
    func scratchFloats(threads: Int) -> Int {
        16 * tiles * (geometry.channels + geometry.outputChannels) + Swift.max(1, threads) * geometry.outputChannels
    }

    init(_ g: DNNLConvolution.Geometry, weights: [Float], bias: [Float]?, relu: Bool, isa: VectorMath.InstructionSet) throws {
        let (m, c) = (g.outputChannels, g.channels)
        guard Self.fits(g), weights.count == m * c * 9, bias.map({ $0.count == m }) ?? true else {
            throw CBAMError(.shapeMismatch, "winograd-f2 convolution: \(weights.count) weights and \(bias?.count ?? 0) biases for W \(g.weightShape)")
        }
        let (tilesY, tilesX) = ((g.outputHeight + 1) / 2, (g.outputWidth + 1) / 2)
        // Scratch and weights are sizes: 16 · T · (C + M) floats and sinks, 16 planes of packed weights.
        let (perImage, o1) = tilesY.multipliedReportingOverflow(by: tilesX)
        let (tiles, o2) = g.batch.multipliedReportingOverflow(by: perImage)
        let (perTile, o3) = (16 * (c + m)).multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        let (_, o4) = tiles.multipliedReportingOverflow(by: perTile + m * MemoryLayout<Float>.stride)
        let plane = cbam_vm_winograd_plane(m, c, isa.c)
        let (_, o5) = plane.multipliedReportingOverflow(by: 16 * MemoryLayout<Float>.stride)
        guard !(o1 || o2 || o3 || o4 || o5) else {
            throw CBAMError(.shapeMismatch, "winograd-f2 convolution: the transformed tiles of \(g.destinationShape) overflow a size")
        }
        (geometry, self.isa, self.bias, self.relu) = (g, isa, bias, relu)
        (self.tilesY, self.tilesX, self.tiles, self.plane) = (tilesY, tilesX, tiles, plane)
        let packed = AlignedBuffer(byteCount: 16 * plane * MemoryLayout<Float>.stride)
        weights.withUnsafeBufferPointer { source in
            cbam_vm_winograd_pack_weights(source.baseAddress!, m, c, packed.pointer.assumingMemoryBound(to: Float.self), isa.c)
        }
        self.packed = packed
        zeros = AlignedBuffer(byteCount: Swift.max(c, m) * MemoryLayout<Float>.stride)
        zeros.pointer.initializeMemory(as: Float.self, repeating: 0, count: Swift.max(c, m))
    }

    /// Y `[N, oH, oW, M]` = act(conv(X) + bias + residual), X and the residual channels last.
    /// Input channels, then (position, output block) pairs, then tiles split across `threads`.
    func run(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>?,
             scratch: UnsafeMutablePointer<Float>, threads: Int) {
        let g = geometry, (c, m) = (g.channels, g.outputChannels)
        let v = scratch, products = scratch + 16 * tiles * c, sink = products + 16 * tiles * m
        let zero = UnsafePointer(zeros.pointer.assumingMemoryBound(to: Float.self))
        let weights = UnsafePointer(packed.pointer.assumingMemoryBound(to: Float.self))
        let (blocks, plane, tiles) = (self.blocks, self.plane, self.tiles)
        let workers = Swift.max(1, threads)
        Parallel.forEach(workers) { worker in
            let share = Parallel.share(worker, of: workers, count: c)
            guard !share.isEmpty else { return }
            cbam_vm_winograd_input(x, g.height, g.width, c, tilesY, tilesX, tiles, g.padTop, g.padLeft, share.lowerBound, share.upperBound,
                                   zero, v, isa.c)
        }
        Parallel.forEach(workers) { worker in
            let share = Parallel.share(worker, of: workers, count: 16 * blocks)
            var item = share.lowerBound
            while item < share.upperBound {
                let (position, first) = item.quotientAndRemainder(dividingBy: blocks)
                let end = Swift.min(blocks, first + share.upperBound - item)
                cbam_vm_streamed_conv(v + position * tiles * c, tiles, c, weights + position * plane, m, first, end, nil, nil,
                                      products + position * tiles * m, m, 0, isa.c)
                item += end - first
            }
        }
        bias.withUnsafeBufferPointerIfPresent { biasPointer in
            Parallel.forEach(workers) { worker in
                let share = Parallel.share(worker, of: workers, count: tiles)
                guard !share.isEmpty else { return }
                // A sink per worker: outputs past the edge are written there, never read.
                cbam_vm_winograd_output(products, tiles, m, tilesY, tilesX, g.outputHeight, g.outputWidth, share.lowerBound, share.upperBound,
                                        biasPointer, residual, zero, sink + worker * m, y, relu ? 1 : 0, isa.c)
            }
        }
    }
}
