import Foundation
import Testing
@testable import CBAMRuntime

/// Our Winograd F(2×2, 3×3) kernel (Sources/CVectorMath/winograd_conv.c on the streamed kernel's
/// products) against the reference convolution (im2col + sgemm, then the post-ops), every variant.
@Suite struct WinogradF2Tests {
    /// Random 3×3 stride-1 geometries (odd and even maps, so tiles hang over the edge; padding 0–2
    /// and uneven; channels off the 8- and 16-lane blocks; tiles off the streamed kernel's column
    /// tiles) with and without bias, residual and Relu: each variant's output against the
    /// reference, on one and two threads.
    @Test(arguments: [VectorMath.InstructionSet.portable, .avx2, .avx512])
    func winogradKernelMatchesTheReference(_ isa: VectorMath.InstructionSet) throws {
        var random = SplitMix(state: 0x3A9F)
        var worst: Float = 0, cases = 0
        for index in 0..<20 {
            func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }
            let (top, left) = index % 5 == 4 ? (2, 0) : (int(0...1), int(0...1))
            let (bottom, right) = index % 5 == 4 ? (0, 1) : (top, left)
            let g = DNNLConvolution.Geometry(batch: int(1...2), channels: [3, 16, 21, 64][int(0...3)], height: int(3...12), width: int(3...12),
                                             outputChannels: [5, 16, 24, 40, 37][int(0...4)], kernelHeight: 3, kernelWidth: 3,
                                             padTop: top, padLeft: left, padBottom: bottom, padRight: right)
            guard g.outputHeight > 0, g.outputWidth > 0 else { continue }
            cases += 1
            let postOps: [DNNLPostOp] = [[], [.relu], [.sum], [.sum, .relu]][index % 4]
            worst = max(worst, try StreamedConvolutionTests.compareWithReference(g, postOps: postOps, withBias: index % 2 == 0,
                                                                                 "\(isa) case \(index)", &random) { w, b in
                let kernel = try WinogradF2Convolution(g, weights: w, bias: b, relu: postOps.contains(.relu), isa: isa)
                return StreamedConvolutionTests.ChannelsLastKernel(scratchFloats: { kernel.scratchFloats(threads: $0) }) { x, y, r, scratch, threads in
                    kernel.run(x, y, residual: r, scratch: scratch, threads: threads)
                }
            })
        }
        print("winograd-f2 \(isa) (\(isa.resolved)): \(cases) of 20 geometries, max rel \(worst)")
        #expect(cases >= 16)
    }

    /// A NaN input reaches exactly the outputs whose windows hold it (a NaN in a tile's padding
    /// positions would spread to the whole tile), and Relu keeps it.
    @Test(arguments: [VectorMath.InstructionSet.portable, .avx2, .avx512])
    func reluKeepsNaN(_ isa: VectorMath.InstructionSet) throws {
        // 1 channel, 5×5, pad 1, all weights 1: output (y, x) sums the 3×3 window around (y, x).
        let g = DNNLConvolution.Geometry(batch: 1, channels: 1, height: 5, width: 5, outputChannels: 1, kernelHeight: 3, kernelWidth: 3,
                                         padTop: 1, padLeft: 1, padBottom: 1, padRight: 1)
        var x = [Float](repeating: -1, count: 25)
        x[0] = .nan  // corner (0, 0): in the windows of outputs (0, 0), (0, 1), (1, 0), (1, 1)
        let kernel = try WinogradF2Convolution(g, weights: [Float](repeating: 1, count: 9), bias: nil, relu: true, isa: isa)
        var y = [Float](repeating: 42, count: 25)
        var scratch = [Float](repeating: .nan, count: kernel.scratchFloats(threads: 1))
        kernel.run(x, &y, residual: nil, scratch: &scratch, threads: 1)
        for oy in 0..<5 {
            for ox in 0..<5 {
                let value = y[oy * 5 + ox]
                if oy < 2 && ox < 2 {
                    #expect(value.isNaN, "\(isa): output (\(oy), \(ox)) = \(value)")
                } else {
                    #expect(value == 0, "\(isa): output (\(oy), \(ox)) = \(value), a sum of −1s after Relu")
                }
            }
        }
    }

    /// Built only for ungrouped 3×3 stride-1 undilated convolutions with None or Relu; sizes past Int.max throw.
    @Test func winogradKernelIsOfferedWhereItApplies() throws {
        func candidate(_ g: DNNLConvolution.Geometry, activation: ConvActivation = .relu) throws -> ConvCandidate? {
            try ConvCandidate.winogradF2(g, weights: [Float](repeating: 0.01, count: g.weightShape.reduce(1, *)), bias: nil, residual: false,
                                         activation: activation, threads: 1, isa: .avx2)
        }
        func geometry(kernel: Int = 3, stride: Int = 1, dilation: Int = 1, group: Int = 1) -> DNNLConvolution.Geometry {
            DNNLConvolution.Geometry(batch: 1, channels: 64, height: 7, width: 7, outputChannels: 64, kernelHeight: kernel, kernelWidth: kernel,
                                     strideHeight: stride, strideWidth: stride, dilationHeight: dilation, dilationWidth: dilation,
                                     padTop: 1, padLeft: 1, padBottom: 1, padRight: 1, group: group)
        }
        #expect(try candidate(geometry()) != nil, "3×3 stride 1")
        #expect(try candidate(geometry(kernel: 1)) == nil, "1×1")
        #expect(try candidate(geometry(stride: 2)) == nil, "stride 2")
        #expect(try candidate(geometry(dilation: 2)) == nil, "dilation 2")
        #expect(try candidate(geometry(group: 2)) == nil, "grouped")
        #expect(try candidate(geometry(), activation: .gelu(tanh: false)) == nil, "Gelu")

        let huge = DNNLConvolution.Geometry(batch: Int.max / 4, channels: 1, height: 4, width: 4, outputChannels: 1, kernelHeight: 3, kernelWidth: 3)
        #expect(throws: CBAMError.self, "tiles past Int.max") { try WinogradF2Convolution(huge, weights: [Float](repeating: 1, count: 9), bias: nil, relu: false, isa: .auto) }
    }

    /// In a plan: `lean` never builds our kernel (its weights are 16/9 of the layer's), forcing it
    /// (`CBAM_CONV=winograd-f2`) takes it on the 3×3 Conv, and the forced plan's output matches the
    /// unoptimised reference plan's.
    @Test func leanPlansLeaveItOutAndForcedPlansMatchTheReference() throws {
        var random = SplitMix(state: 0x1EA9)
        let run = try StreamedConvolutionTests.convReluRunner(c: 64, m: 64, size: 7, attributes: ["pads": .ints([1, 1, 1, 1])], &random)
        for threads in [1, 2] {
            let lean = try run(SessionOptions(threads: threads, convolution: .fastest, memory: .lean))
            #expect(!lean.kernels.contains { $0.contains("winograd-f2") }, "lean, \(threads) thread(s): \(lean.kernels)")
            let forced = try run(SessionOptions(threads: threads, convolution: .winogradF2, memory: .lean))
            #expect(forced.kernels.contains { $0.hasPrefix("winograd-f2") }, "forced, \(threads) thread(s): \(forced.kernels)")
            let reference = try run(SessionOptions(threads: threads, optimize: false, convolution: .im2col))
            _ = OneDNNTests.compare(forced.y, reference.y, "forced against im2col, \(threads) thread(s)")
        }
    }
}
