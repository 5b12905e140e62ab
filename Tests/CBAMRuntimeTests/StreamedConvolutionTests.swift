import CVectorMath
import Foundation
import Testing
@testable import CBAMRuntime

/// The streamed kernel (Sources/CVectorMath/streamed_conv.c) against the reference convolution
/// (im2col + sgemm, then the post-ops), every variant, and where the plan takes it.
@Suite struct StreamedConvolutionTests {
    /// NCHW → NHWC for `[n, c, h, w]`.
    static func channelsLast(_ x: [Float], _ n: Int, _ c: Int, _ h: Int, _ w: Int) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        for i in 0..<n { for ci in 0..<c { for p in 0..<(h * w) { y[(i * h * w + p) * c + ci] = x[(i * c + ci) * h * w + p] } } }
        return y
    }

    /// NHWC → NCHW for `[n, c, h, w]`.
    static func channelsFirst(_ x: [Float], _ n: Int, _ c: Int, _ h: Int, _ w: Int) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        for i in 0..<n { for ci in 0..<c { for p in 0..<(h * w) { y[(i * c + ci) * h * w + p] = x[(i * h * w + p) * c + ci] } } }
        return y
    }

    /// A kernel on channels-last operands, as the differential tests run it: scratch floats for a
    /// thread count, and run(x, y, residual, scratch, threads).
    struct ChannelsLastKernel {
        let scratchFloats: (Int) -> Int
        let run: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>?, UnsafeMutablePointer<Float>, Int) -> Void
    }

    /// A model of one Conv (random W `[m, c/group, 3, 3]` and B, `attributes` besides the 3×3
    /// window) and a Relu on a random X `[1, c, size, size]`, and a runner that plans and runs it
    /// with the given options: the plan's step kernels and Y.
    static func convReluRunner(c: Int, m: Int, size: Int, group: Int = 1, attributes: [String: Attribute], _ random: inout SplitMix)
        throws -> (SessionOptions) throws -> (kernels: [String], y: [Float]) {
        let w = OneDNNTests.values(m * (c / group) * 9, &random), b = OneDNNTests.values(m, &random)
        let x = try Tensor(shape: [1, c, size, size], floats: OneDNNTests.values(c * size * size, &random))
        let model = Model(graph: Graph(
            nodes: [Node(name: "conv", opType: "Conv", inputs: ["x", "W", "B"], outputs: ["c"],
                         attributes: attributes.merging(["kernel_shape": .ints([3, 3])]) { given, _ in given }),
                    Node(name: "relu", opType: "Relu", inputs: ["c"], outputs: ["y"])],
            initializers: ["W": try Tensor(shape: [m, c / group, 3, 3], floats: w), "B": try Tensor(shape: [m], floats: b)],
            inputs: [ValueInfo(name: "x", shape: x.shape.map { .fixed($0) })], outputs: [ValueInfo(name: "y")]))
        return { options in
            let session = try Session(model: model, options: options)
            let plan = try session.plan(for: ["x": x])
            return (plan.steps.map(\.kernel.detail), try #require(try session.run(["x": x])["y"]).floats())
        }
    }

    /// One random case against the reference convolution (im2col + sgemm, then the post-ops):
    /// random X and W, a bias when `withBias`, a residual when `postOps` sums; `build(W, B)` makes the
    /// kernel, which runs on one and two threads into NaN-filled outputs and scratch, each output
    /// compared with the reference. Returns the worst relative error.
    static func compareWithReference(_ g: DNNLConvolution.Geometry, postOps: [DNNLPostOp], withBias: Bool, _ label: String,
                                     _ random: inout SplitMix, build: ([Float], [Float]?) throws -> ChannelsLastKernel) throws -> Float {
        let x = OneDNNTests.values(g.sourceShape.reduce(1, *), &random), w = OneDNNTests.values(g.weightShape.reduce(1, *), &random)
        let b = withBias ? OneDNNTests.values(g.outputChannels, &random) : nil
        let residual = postOps.contains(.sum) ? OneDNNTests.values(g.destinationShape.reduce(1, *), &random) : nil
        let expected = try OneDNNTests.referenceConv(g, oneD: false, x: x, w: w, b: b, residual: residual, postOps: postOps)
        let kernel = try build(w, b)
        let (n, m, oh, ow) = (g.batch, g.outputChannels, g.outputHeight, g.outputWidth)
        let xLast = channelsLast(x, n, g.channels, g.height, g.width)
        let rLast = residual.map { channelsLast($0, n, m, oh, ow) }
        var worst: Float = 0
        for threads in [1, 2] {
            var y = [Float](repeating: .nan, count: expected.count), scratch = [Float](repeating: .nan, count: kernel.scratchFloats(threads))
            xLast.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    scratch.withUnsafeMutableBufferPointer { sp in
                        if let rLast {
                            rLast.withUnsafeBufferPointer { rp in kernel.run(xp.baseAddress!, yp.baseAddress!, rp.baseAddress!, sp.baseAddress!, threads) }
                        } else {
                            kernel.run(xp.baseAddress!, yp.baseAddress!, nil, sp.baseAddress!, threads)
                        }
                    }
                }
            }
            let actual = channelsFirst(y, n, m, oh, ow)
            worst = max(worst, OneDNNTests.compare(actual, expected, "\(label), \(threads) thread(s): \(g) bias \(b != nil) \(postOps)").rel)
        }
        return worst
    }

    /// Random geometries (1×1, 3×3, 1×3, strides, dilations, padding, output channels off the
    /// 8- and 16-lane blocks, pixels off the tiles) with and without bias, residual and Relu: each
    /// variant's output against the reference, on one and two threads.
    @Test(arguments: [VectorMath.InstructionSet.portable, .avx2, .avx512])
    func streamedKernelMatchesTheReference(_ isa: VectorMath.InstructionSet) throws {
        var random = SplitMix(state: 0x57E4)
        var worst: Float = 0, cases = 0
        for index in 0..<24 {
            func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }
            let (kh, kw) = [(1, 1), (3, 3), (1, 3)][index % 3]
            let pad = index % 3 == 0 ? 0 : int(0...1)
            let g = DNNLConvolution.Geometry(batch: int(1...3), channels: [3, 16, 21, 64][int(0...3)], height: int(2...7), width: int(2...7),
                                             outputChannels: [5, 16, 24, 40, 37][int(0...4)], kernelHeight: kh, kernelWidth: kw,
                                             strideHeight: int(1...2), strideWidth: int(1...2), dilationHeight: int(1...2), dilationWidth: 1,
                                             padTop: pad, padLeft: pad, padBottom: pad, padRight: pad)
            guard g.height + 2 * pad >= (kh - 1) * g.dilationHeight + 1, g.width + 2 * pad >= kw else { continue }  // the window fits
            cases += 1
            let postOps: [DNNLPostOp] = [[], [.relu], [.sum], [.sum, .relu]][index % 4]
            worst = max(worst, try Self.compareWithReference(g, postOps: postOps, withBias: index % 2 == 0, "\(isa) case \(index)", &random) { w, b in
                let kernel = try StreamedConvolution(g, weights: w, bias: b, relu: postOps.contains(.relu), isa: isa)
                return ChannelsLastKernel(scratchFloats: { _ in kernel.columnFloats }) { x, y, r, columns, threads in
                    kernel.run(x, y, residual: r, columns: columns, threads: threads)
                }
            })
        }
        print("streamed \(isa) (\(isa.resolved)): \(cases) of 24 geometries, max rel \(worst)")
        #expect(cases >= 16)
    }

    /// One tap of a tile unfolded (the 16 × 16 transposes of the AVX-512 variant, the channels past
    /// the last 16 and the other widths element by element): target[ci·width + q] is input channel ci
    /// of pixel q, 0 for a pixel whose tap lies in the padding (a nil row).
    @Test(arguments: [VectorMath.InstructionSet.portable, .avx2, .avx512])
    func unfoldedTapIsTheTransposedRows(_ isa: VectorMath.InstructionSet) throws {
        for (width, c) in [(16, 16), (16, 64), (16, 37), (13, 48), (1, 5), (16, 7)] {
            // Channel ci of pixel q is 1000·q + ci + 1; pixels 3 and 9 lie in the padding.
            let rows = (0..<width).map { q in (0..<c).map { Float(1000 * q + $0 + 1) } }
            let pointers = rows.map { row -> UnsafeMutablePointer<Float> in
                let p = UnsafeMutablePointer<Float>.allocate(capacity: c)
                p.initialize(from: row, count: c)
                return p
            }
            defer { pointers.forEach { $0.deallocate() } }
            let rowPointers: [UnsafePointer<Float>?] = pointers.enumerated().map { q, p in q == 3 || q == 9 ? nil : UnsafePointer(p) }
            var target = [Float](repeating: .nan, count: c * width + 3)
            rowPointers.withUnsafeBufferPointer { r in cbam_vm_streamed_unfold_tap(r.baseAddress, width, c, &target, isa.c) }
            for ci in 0..<c {
                for q in 0..<width {
                    let expected: Float = q == 3 || q == 9 ? 0 : Float(1000 * q + ci + 1)
                    #expect(target[ci * width + q] == expected, "\(isa) width \(width), c \(c): channel \(ci) of pixel \(q)")
                }
            }
            #expect(target[(c * width)...].allSatisfy { $0.isNaN }, "\(isa) width \(width), c \(c): nothing written past the tap")
        }
    }

    /// The kernel keeps a NaN through Relu, as the other Relu paths do, and writes no channel past M.
    @Test(arguments: [VectorMath.InstructionSet.portable, .avx2, .avx512])
    func reluKeepsNaNAndTheLastBlockStopsAtM(_ isa: VectorMath.InstructionSet) throws {
        let g = DNNLConvolution.Geometry(batch: 1, channels: 2, height: 1, width: 3, outputChannels: 3, kernelHeight: 1, kernelWidth: 1)
        // y[o] = x[0]·(o + 1) − x[1]: pixel 0 gives −2, −1, 0 (0 after Relu), pixel 1 NaN, pixel 2 1, 2, 3.
        let w: [Float] = [1, -1, 2, -1, 3, -1]
        let x: [Float] = [1, 3, .nan, 1, 1, 0]  // channels last: pixel p is x[2p], x[2p + 1]
        let kernel = try StreamedConvolution(g, weights: w, bias: nil, relu: true, isa: isa)
        var y = [Float](repeating: 42, count: 3 * 3 + 5)  // 5 guard floats past the output
        var columns = [Float](repeating: 0, count: kernel.columnFloats)
        kernel.run(x, &y, residual: nil, columns: &columns, threads: 1)
        #expect(y[0] == 0 && y[1] == 0 && y[2] == 0, "\(isa): pixel 0 \(Array(y[0..<3]))")
        #expect(y[3].isNaN && y[4].isNaN && y[5].isNaN, "\(isa): pixel 1 \(Array(y[3..<6]))")
        #expect(y[6..<9] == [1, 2, 3], "\(isa): pixel 2 \(Array(y[6..<9]))")
        #expect(y[9...].allSatisfy { $0 == 42 }, "\(isa): wrote past the output: \(Array(y[9...]))")
    }

    /// A classifier head's Gemm on the streamed kernel (forced here; AVX-512 takes it untimed for
    /// more than 2 MB of weights): B stored either way, C per column (`[n]` or `[1, n]`) scaled by
    /// beta, or none, batches 1–3, against the same model planned with sgemm; and the plan's step
    /// names the kernel.
    @Test func gemmHeadMatchesSgemm() throws {
        var random = SplitMix(state: 0x6E11)
        let (k, n) = (37, 45)
        for (index, (transB, cShape)) in [(true, [n]), (false, [1, n]), (true, nil), (false, [n])].enumerated() {
            let m = index % 3 + 1
            let b = try Tensor(shape: transB ? [n, k] : [k, n], floats: OneDNNTests.values(n * k, &random))
            var initializers = ["B": b]
            if let cShape { initializers["C"] = try Tensor(shape: cShape, floats: OneDNNTests.values(n, &random)) }
            let model = Model(graph: Graph(
                nodes: [Node(name: "head", opType: "Gemm", inputs: ["a", "B"] + (cShape == nil ? [] : ["C"]), outputs: ["y"],
                             attributes: ["transB": .int(transB ? 1 : 0), "beta": .float(0.5)])],
                initializers: initializers, inputs: [ValueInfo(name: "a", shape: [.fixed(m), .fixed(k)])], outputs: [ValueInfo(name: "y")]))
            let a = try Tensor(shape: [m, k], floats: OneDNNTests.values(m * k, &random))
            try expectStreamedMatchesSgemm(model, a: a, "Gemm case \(index) (transB \(transB), C \(cShape ?? []), m \(m))")
        }
    }

    /// Runs `model` (one input "a", one output "y") forced onto the streamed kernel and onto sgemm,
    /// 1 and 2 threads: each plan must name its kernel, and the outputs agree.
    func expectStreamedMatchesSgemm(_ model: Model, a: Tensor, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        func run(_ options: SessionOptions) throws -> (kernels: [String], y: [Float]) {
            let session = try Session(model: model, options: options)
            return (try session.plan(for: ["a": a]).steps.map(\.kernel.detail), try #require(try session.run(["a": a])["y"]).floats())
        }
        for threads in [1, 2] {
            let streamed = try run(SessionOptions(threads: threads, convolution: .streamed))
            #expect(streamed.kernels.contains { $0.hasPrefix("streamed") }, "\(label): \(streamed.kernels)", sourceLocation: sourceLocation)
            let sgemm = try run(SessionOptions(threads: threads, convolution: .im2col))
            #expect(sgemm.kernels.allSatisfy { !$0.hasPrefix("streamed") }, "\(label): \(sgemm.kernels)", sourceLocation: sourceLocation)
            _ = OneDNNTests.compare(streamed.y, sgemm.y, "\(label), \(threads) thread(s)")
        }
    }

    /// A head written as MatMul (`[…, m, k]` · a constant `[k, n]`, EfficientViT's classifier) takes the
    /// streamed kernel too: a stack of rows, batches 1–3, 1 and 2 threads, against sgemm.
    @Test func matmulHeadMatchesSgemm() throws {
        var random = SplitMix(state: 0x3A7)
        let (k, n) = (29, 51)
        for (index, aShape) in [[1, k], [3, k], [2, 2, k]].enumerated() {
            let b = try Tensor(shape: [k, n], floats: OneDNNTests.values(n * k, &random))
            let model = Model(graph: Graph(
                nodes: [Node(name: "head", opType: "MatMul", inputs: ["a", "B"], outputs: ["y"])],
                initializers: ["B": b], inputs: [ValueInfo(name: "a", shape: aShape.map { .fixed($0) })], outputs: [ValueInfo(name: "y")]))
            let a = try Tensor(shape: aShape, floats: OneDNNTests.values(aShape.reduce(1, *), &random))
            try expectStreamedMatchesSgemm(model, a: a, "MatMul case \(index) (A \(aShape))")
        }
    }

    /// The plan builds the kernel only for ungrouped convolutions with at most 32 output pixels (128
    /// for a 1×1 convolution) and at least 2 MB of weights (unless forced), and takes the AVX-512
    /// variant untimed.
    @Test func streamedKernelIsOfferedWhereItPays() throws {
        func geometry(batch: Int = 1, channels: Int = 512, size: Int, outputs: Int = 512, kernel: Int = 3, group: Int = 1) -> DNNLConvolution.Geometry {
            DNNLConvolution.Geometry(batch: batch, channels: channels, height: size, width: size, outputChannels: outputs, kernelHeight: kernel,
                                     kernelWidth: kernel, padTop: kernel / 2, padLeft: kernel / 2, padBottom: kernel / 2, padRight: kernel / 2, group: group)
        }
        func candidate(_ g: DNNLConvolution.Geometry, activation: ConvActivation = .relu, forced: Bool = false) throws -> ConvCandidate? {
            try ConvCandidate.streamed(g, weights: [Float](repeating: 0.01, count: g.weightShape.reduce(1, *)), bias: nil, residual: false,
                                       activation: activation, threads: 1, forced: forced, isa: .avx2)
        }
        #expect(try candidate(geometry(size: 4)) != nil, "VGG's 4×4 layer")
        #expect(try candidate(geometry(size: 2)) != nil, "VGG's 2×2 layer")
        #expect(try candidate(geometry(channels: 1024, size: 4, outputs: 2048, kernel: 1)) != nil, "ResNeXt's last 1×1 layers at batch 1")
        #expect(try candidate(geometry(batch: 2, size: 4)) != nil, "32 pixels over the batch: VGG's 4×4 layer at batch 2")
        #expect(try candidate(geometry(batch: 3, size: 4)) == nil, "48 pixels over the batch")
        #expect(try candidate(geometry(size: 7)) == nil, "49 pixels")
        #expect(try candidate(geometry(channels: 512, size: 7, outputs: 1024, kernel: 1)) != nil, "ResNeXt's 7×7 1×1 layers: 49 pixels, 2 MB")
        #expect(try candidate(geometry(batch: 2, channels: 512, size: 8, outputs: 1024, kernel: 1)) != nil, "128 pixels of a 1×1 layer")
        #expect(try candidate(geometry(batch: 3, channels: 512, size: 7, outputs: 1024, kernel: 1)) == nil, "147 pixels of a 1×1 layer")
        #expect(try candidate(geometry(channels: 512, size: 7, outputs: 1023, kernel: 1)) == nil, "a 1×1 layer under 2 MB")
        #expect(try candidate(geometry(channels: 256, size: 4, outputs: 256)) != nil, "2.4 MB of weights")
        #expect(try candidate(geometry(channels: 128, size: 4, outputs: 256)) == nil, "1.1 MB of weights")
        #expect(try candidate(geometry(size: 4, group: 32)) == nil, "grouped")
        #expect(try candidate(geometry(size: 4), activation: .gelu(tanh: false)) == nil, "Gelu")
        #expect(try candidate(geometry(channels: 16, size: 12, outputs: 8), forced: true) != nil, "forced")

        let huge = DNNLConvolution.Geometry(batch: Int.max / 4, channels: 1, height: 4, width: 4, outputChannels: 1, kernelHeight: 1, kernelWidth: 1)
        #expect(throws: CBAMError.self, "columns past Int.max") { try StreamedConvolution(huge, weights: [1], bias: nil, relu: false, isa: .auto) }

        #expect(ConvCandidate.prefersStreamed(isa: .avx512) == (VectorMath.InstructionSet.best == .avx512))
        #expect(!ConvCandidate.prefersStreamed(isa: .avx2), "the AVX2 variant is timed")
    }
}
