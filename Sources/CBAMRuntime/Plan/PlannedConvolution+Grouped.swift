import CVectorMath
import Foundation

// Our kernel for grouped convolutions with narrow groups (Sources/CVectorMath/grouped_conv.c):
// ResNeXt's 3×3 layers (32 groups of 4, 8, 16 and 32 channels), SK and ResNeSt's grouped branches,
// depthwise layers. A group does only its width's multiply-adds per output and tap, too few for a
// matrix kernel; oneDNN's jit kernel ran ResNeXt-50's 4-channel groups at 27–34 GFLOP/s on one
// core of a 117 GFLOP/s peak (AMD EPYC, AVX-512). Here one vector of output channels is computed
// from the same vector of inputs, rotated within each group in registers; a group as wide as a
// vector or wider is a small matrix product with the inputs broadcast.

extension ConvCandidate {
    /// How much faster than the plan's choice our grouped kernel must time in its step to be
    /// taken, so that two processes agree when their timings differ a little.
    static let groupedMargin = 1.05

    /// True where our grouped kernel, once built, is taken without timing: groups a whole number
    /// of vectors wide (ResNeXt-50's 16- and 32-channel groups) with the AVX-512 variant (the one
    /// measured; the others are timed). Timing misleads here as it does for the streamed kernel:
    /// the plan times with the weights in cache, where oneDNN's kernel ties (ResNeXt-50's layer3,
    /// batch 1, one thread: 0.053 ms against 0.058), while a run reads each layer's weights from
    /// memory, which this kernel asks for a vector ahead (in the network: layer3 0.069–0.074 ms
    /// against 0.083–0.108, layer4 0.117–0.147 against 0.157–0.189; AMD EPYC, Zen 4).
    static func prefersGrouped(_ g: DNNLConvolution.Geometry, isa: VectorMath.InstructionSet = .auto) -> Bool {
        let lanes = cbam_vm_grouped_lanes(isa.c)
        return isa.resolved == .avx512 && g.group > 0 && (g.channels / g.group) % lanes == 0
    }

    /// Our grouped kernel for a 2-D convolution whose groups have as many outputs as inputs, a
    /// width dividing the vector lanes (1, 2, 4, 8, and 16 with AVX-512) or a multiple of them,
    /// and channels a whole number of vectors: X `[N, C, H, W]` read in NHWC, W `[C, C/group, kH, kW]`, optional bias
    /// `[C]`, Y `[N, C, oH, oW]` written in NHWC, an optional residual lying like Y added before
    /// the activation (none or Relu). Nil where it does not apply, or for `isa` .auto on a CPU
    /// with neither AVX2 nor AVX-512 (the plain C variant exists for the tests).
    static func grouped(_ g: DNNLConvolution.Geometry, weights: [Float], bias: [Float]?, residual: Bool, activation: ConvActivation,
                        threads: Int, isa: VectorMath.InstructionSet = .auto) throws -> ConvCandidate? {
        guard GroupedConvolution.fits(g, isa: isa), activation == .none || activation == .relu, hasVectorVariant(isa) else { return nil }
        let kernel = try GroupedConvolution(g, weights: weights, bias: bias, relu: activation == .relu, isa: isa)
        let workers = Swift.max(1, Swift.min(threads, kernel.items))
        return try ourKernel("grouped", isa: isa, workers: workers, scratchFloats: 0, g) { x, y, added, _ in
            kernel.run(x, y, residual: residual ? added : nil, threads: workers)
        }
    }
}

/// One grouped convolution's kernel: its weights packed in vectors of output channels, each
/// weight rotated within its group as the C kernel reads it, and the run split by work items.
struct GroupedConvolution: @unchecked Sendable {
    let geometry: DNNLConvolution.Geometry
    let isa: VectorMath.InstructionSet
    /// Channels per group (inputs and outputs alike).
    let groupWidth: Int
    /// `C · groupWidth · kH · kW` floats: W packed as grouped_conv.c describes.
    let packed: AlignedBuffer
    /// max(lanes, groupWidth) zeros, read for taps in the padding.
    let zeros: AlignedBuffer
    let bias: [Float]?
    let relu: Bool

    /// Work items, the unit the threads split: N · oH output rows times C / lanes vectors of channels.
    var items: Int { cbam_vm_grouped_items(geometry.batch, geometry.outputHeight, geometry.channels, isa.c) }

    /// True for the convolutions it computes: grouped, as many outputs as inputs per group, the
    /// group width and channel count `isa`'s variant takes, nothing empty, and X and Y of
    /// a tensor's size at most (so the C kernel's offsets are sizes).
    static func fits(_ g: DNNLConvolution.Geometry, isa: VectorMath.InstructionSet) -> Bool {
        guard g.group > 1, g.channels == g.outputChannels, g.channels % g.group == 0, g.batch > 0, g.outputHeight > 0, g.outputWidth > 0,
              g.kernelHeight > 0, g.kernelWidth > 0, cbam_vm_grouped_fits(g.channels, g.channels / g.group, isa.c) != 0 else { return false }
        return (try? Shape.elementCount(g.sourceShape)) != nil && (try? Shape.elementCount(g.destinationShape)) != nil
    }

    init(_ g: DNNLConvolution.Geometry, weights: [Float], bias: [Float]?, relu: Bool, isa: VectorMath.InstructionSet) throws {
        guard Self.fits(g, isa: isa) else {
            throw CBAMError(.shapeMismatch, "grouped convolution: W \(g.weightShape) in \(g.group) groups does not fit the \(isa.kernelName) kernel")
        }
        let (c, width, taps) = (g.channels, g.channels / g.group, g.kernelHeight * g.kernelWidth)
        // The packed weights are as many floats as W.
        guard let count = try? Shape.elementCount(g.weightShape), weights.count == count, bias.map({ $0.count == c }) ?? true else {
            throw CBAMError(.shapeMismatch, "grouped convolution: \(weights.count) weights and \(bias?.count ?? 0) biases for W \(g.weightShape)")
        }
        (geometry, self.isa, groupWidth, self.bias, self.relu) = (g, isa, width, bias, relu)
        let packed = AlignedBuffer(byteCount: weights.count * MemoryLayout<Float>.stride)
        weights.withUnsafeBufferPointer { source in
            cbam_vm_grouped_pack_weights(source.baseAddress!, c, width, taps, packed.pointer.assumingMemoryBound(to: Float.self), isa.c)
        }
        self.packed = packed
        let zeroCount = Swift.max(cbam_vm_grouped_lanes(isa.c), width)
        zeros = AlignedBuffer(byteCount: zeroCount * MemoryLayout<Float>.stride)
        zeros.pointer.initializeMemory(as: Float.self, repeating: 0, count: zeroCount)
    }

    /// Y `[N, oH, oW, C]` = act(conv(X) + bias + residual), X and the residual channels last; the
    /// work items (an output row × a vector of channels) split across `threads` workers.
    func run(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>?, threads: Int) {
        let g = geometry, items = self.items
        let weights = UnsafePointer(packed.pointer.assumingMemoryBound(to: Float.self))
        let zero = UnsafePointer(zeros.pointer.assumingMemoryBound(to: Float.self))
        bias.withUnsafeBufferPointerIfPresent { biasPointer in
            Parallel.forEach(threads) { worker in
                let share = Parallel.share(worker, of: threads, count: items)
                guard !share.isEmpty else { return }
                cbam_vm_grouped_conv(x, g.batch, g.height, g.width, g.channels, groupWidth, g.kernelHeight, g.kernelWidth, g.strideHeight, g.strideWidth,
                                     g.dilationHeight, g.dilationWidth, g.padTop, g.padLeft, g.outputHeight, g.outputWidth, weights, zero,
                                     share.lowerBound, share.upperBound, biasPointer, residual, y, relu ? 1 : 0, isa.c)
            }
        }
    }
}
