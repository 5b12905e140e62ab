import CVectorMath
import Foundation
import Testing
@testable import CBAMRuntime

/// Our grouped kernel (Sources/CVectorMath/grouped_conv.c) against the reference convolution
/// (im2col + sgemm per group, then the post-ops), every variant, and where the plan takes it.
@Suite struct GroupedConvolutionTests {
    /// Random grouped geometries for each group width the variant takes (1 depthwise, 2, 4, 8,
    /// 16 and 32 where they fit: narrow groups rotated in registers, wide ones as products):
    /// 1×1, 3×3, 3×1 and 5×5 windows, strides and dilations 1–2, uneven padding 0–2, maps from
    /// 1×1, one to three vectors of channels, batches 1–2, with and without bias, residual and
    /// Relu; each output against the reference on one and two threads.
    @Test(arguments: [VectorMath.InstructionSet.portable, .avx2, .avx512])
    func groupedKernelMatchesTheReference(_ isa: VectorMath.InstructionSet) throws {
        var random = SplitMix(state: 0x6A0F)
        let lanes = cbam_vm_grouped_lanes(isa.c)
        var worst: Float = 0, cases = 0, widths = Set<Int>()
        for index in 0..<36 {
            func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }
            let width = [1, 2, 4, 8, 16, 32][index % 6]
            // A whole number of vectors, holding at least two groups.
            let vector = Swift.max(width, lanes)
            let channels = vector * int(1...3) * (vector == width ? 2 : 1)
            let (kh, kw) = [(3, 3), (1, 1), (3, 1), (5, 5)][int(0...3)]
            let (top, left, bottom, right) = (int(0...2), int(0...2), int(0...2), int(0...2))
            let g = DNNLConvolution.Geometry(batch: int(1...2), channels: channels, height: int(1...9), width: int(1...11),
                                             outputChannels: channels, kernelHeight: kh, kernelWidth: kw,
                                             strideHeight: int(1...2), strideWidth: int(1...2), dilationHeight: int(1...2), dilationWidth: int(1...2),
                                             padTop: top, padLeft: left, padBottom: bottom, padRight: right, group: channels / width)
            // The dilated window fits the padded input (ONNX's shape rule), and the variant takes the geometry.
            guard g.height + top + bottom >= (kh - 1) * g.dilationHeight + 1, g.width + left + right >= (kw - 1) * g.dilationWidth + 1,
                  GroupedConvolution.fits(g, isa: isa) else { continue }
            cases += 1
            widths.insert(width)
            let postOps: [DNNLPostOp] = [[], [.relu], [.sum], [.sum, .relu]][index % 4]
            worst = max(worst, try StreamedConvolutionTests.compareWithReference(g, postOps: postOps, withBias: index % 3 != 0,
                                                                                 "\(isa) case \(index)", &random) { w, b in
                let kernel = try GroupedConvolution(g, weights: w, bias: b, relu: postOps.contains(.relu), isa: isa)
                return StreamedConvolutionTests.ChannelsLastKernel(scratchFloats: { _ in 0 }) { x, y, r, _, threads in
                    kernel.run(x, y, residual: r, threads: threads)
                }
            })
        }
        print("grouped \(isa) (\(isa.resolved)): \(cases) of 36 geometries, widths \(widths.sorted()), max rel \(worst)")
        #expect(cases >= 20)
        // Every width the variant takes was tried: 16 and 32 are wide groups on 8 lanes, 16 a narrow one on 16.
        #expect(widths == Set([1, 2, 4, 8, 16, 32]), "\(isa): widths \(widths.sorted())")
    }

    /// A NaN input reaches exactly its group's outputs whose windows hold it, and Relu keeps it.
    @Test(arguments: [VectorMath.InstructionSet.portable, .avx2, .avx512], [4, 16])
    func reluKeepsNaNInItsGroup(_ isa: VectorMath.InstructionSet, _ width: Int) throws {
        // Groups of `width`, 4×4 map, 3×3 window, pad 1, all weights 1 and inputs −1: every output
        // is a sum of −1s (0 after Relu) except where the window holds the NaN.
        let channels = 2 * Swift.max(width, cbam_vm_grouped_lanes(isa.c))
        let g = DNNLConvolution.Geometry(batch: 1, channels: channels, height: 4, width: 4, outputChannels: channels, kernelHeight: 3,
                                         kernelWidth: 3, padTop: 1, padLeft: 1, padBottom: 1, padRight: 1, group: channels / width)
        let nanChannel = width + 1, nanGroup = nanChannel / width  // the second group
        var x = [Float](repeating: -1, count: 16 * channels)
        x[(0 * 4 + 0) * channels + nanChannel] = .nan  // pixel (0, 0): in the windows of outputs (0…1, 0…1)
        let kernel = try GroupedConvolution(g, weights: [Float](repeating: 1, count: channels * width * 9), bias: nil, relu: true, isa: isa)
        var y = [Float](repeating: 42, count: 16 * channels)
        kernel.run(x, &y, residual: nil, threads: 1)
        for pixel in 0..<16 {
            let (oy, ox) = pixel.quotientAndRemainder(dividingBy: 4)
            for c in 0..<channels {
                let value = y[pixel * channels + c]
                if oy < 2 && ox < 2 && c / width == nanGroup {
                    #expect(value.isNaN, "\(isa), width \(width): output (\(oy), \(ox)) channel \(c) = \(value)")
                } else {
                    #expect(value == 0, "\(isa), width \(width): output (\(oy), \(ox)) channel \(c) = \(value)")
                }
            }
        }
    }

    /// Built only for grouped convolutions with as many outputs as inputs per group, a width the
    /// variant takes and channels a whole number of vectors, with None or Relu; taken untimed only
    /// for wide groups with AVX-512.
    @Test func groupedKernelIsOfferedWhereItApplies() throws {
        func geometry(channels: Int = 128, outputs: Int = 128, group: Int = 32) -> DNNLConvolution.Geometry {
            DNNLConvolution.Geometry(batch: 1, channels: channels, height: 7, width: 7, outputChannels: outputs, kernelHeight: 3, kernelWidth: 3,
                                     padTop: 1, padLeft: 1, padBottom: 1, padRight: 1, group: group)
        }
        func candidate(_ g: DNNLConvolution.Geometry, activation: ConvActivation = .relu) throws -> ConvCandidate? {
            try ConvCandidate.grouped(g, weights: [Float](repeating: 0.01, count: g.weightShape.reduce(1, *)), bias: nil, residual: false,
                                      activation: activation, threads: 1, isa: .avx2)
        }
        #expect(try candidate(geometry()) != nil, "ResNeXt's 32 groups of 4")
        #expect(try candidate(geometry(channels: 1024, outputs: 1024)) != nil, "32 groups of 32")
        #expect(try candidate(geometry(group: 128)) != nil, "depthwise")
        #expect(try candidate(geometry(group: 1)) == nil, "ungrouped")
        #expect(try candidate(geometry(channels: 96)) == nil, "groups of 3")
        #expect(try candidate(geometry(channels: 36, outputs: 36, group: 9)) == nil, "36 channels, not a whole number of 8-lane vectors")
        #expect(try candidate(geometry(outputs: 256)) == nil, "8 outputs per group of 4 inputs")
        #expect(try candidate(geometry(), activation: .gelu(tanh: false)) == nil, "Gelu")

        let huge = DNNLConvolution.Geometry(batch: Int.max / 4, channels: 16, height: 4, width: 4, outputChannels: 16, kernelHeight: 1,
                                            kernelWidth: 1, group: 4)
        #expect(!GroupedConvolution.fits(huge, isa: .avx2), "outputs past Int.max")

        let avx512 = VectorMath.InstructionSet.best == .avx512
        #expect(ConvCandidate.prefersGrouped(geometry(channels: 512, outputs: 512), isa: .avx512) == avx512, "groups of 16")
        #expect(!ConvCandidate.prefersGrouped(geometry(), isa: .avx512), "groups of 4 are timed")
        #expect(!ConvCandidate.prefersGrouped(geometry(channels: 1024, outputs: 1024), isa: .avx2), "the AVX2 variant is timed")
    }

    /// In a plan: forcing it (`CBAM_CONV=grouped`) takes it on the grouped Conv, and the forced
    /// plan's output matches the unoptimised reference plan's.
    @Test func forcedPlansMatchTheReference() throws {
        var random = SplitMix(state: 0x9B0C)
        let run = try StreamedConvolutionTests.convReluRunner(c: 64, m: 64, size: 9, group: 16, attributes: [
            "pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2]), "group": .int(16)], &random)
        for threads in [1, 2] {
            let forced = try run(SessionOptions(threads: threads, convolution: .grouped))
            #expect(forced.kernels.contains { $0.hasPrefix("grouped") }, "forced, \(threads) thread(s): \(forced.kernels)")
            let reference = try run(SessionOptions(threads: threads, optimize: false, convolution: .im2col))
            _ = OneDNNTests.compare(forced.y, reference.y, "forced against im2col, \(threads) thread(s)")
        }
    }
}
