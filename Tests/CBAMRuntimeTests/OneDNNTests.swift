import Foundation
import Synchronization
import Testing
@testable import CBAMRuntime

// oneDNN kernels checked against cbam-run's reference kernels (ConvKernel,
// ConvTransposeKernel, BLAS) on seeded random shapes, plus the refusal paths.
// `swift test --filter OneDNN`.

@Suite struct OneDNNTests {
    typealias Random = SplitMix

    // MARK: Helpers

    static func values(_ count: Int, _ random: inout Random) -> [Float] {
        (0..<count).map { _ in Float.random(in: -1...1, using: &random) }
    }

    /// Largest |a − e| and largest |a − e| / max(1, |e|); fails past `tolerance` on the latter.
    static func compare(_ actual: [Float], _ expected: [Float], tolerance: Float = 1e-4, _ label: @autoclosure () -> String,
                        sourceLocation: SourceLocation = #_sourceLocation) -> (abs: Float, rel: Float) {
        #expect(actual.count == expected.count, "\(label()): count", sourceLocation: sourceLocation)
        var worstAbs: Float = 0, worstRel: Float = 0
        for (a, e) in zip(actual, expected) {
            let d = abs(a - e)
            worstAbs = max(worstAbs, d)
            worstRel = max(worstRel, d / max(1, abs(e)))
        }
        #expect(worstRel <= tolerance, "\(label()): max abs \(worstAbs), max rel \(worstRel)", sourceLocation: sourceLocation)
        return (worstAbs, worstRel)
    }

    /// The reference Conv (im2col + sgemm) on the same geometry, then the post-ops in Swift.
    static func referenceConv(_ g: DNNLConvolution.Geometry, oneD: Bool, x: [Float], w: [Float], b: [Float]?,
                              residual: [Float]?, postOps: [DNNLPostOp]) throws -> [Float] {
        let spatial: (Int, Int) -> [Int] = { h, w in oneD ? [w] : [h, w] }
        var attributes: [String: Attribute] = [
            "kernel_shape": .ints(spatial(g.kernelHeight, g.kernelWidth)),
            "strides": .ints(spatial(g.strideHeight, g.strideWidth)),
            "dilations": .ints(spatial(g.dilationHeight, g.dilationWidth)),
            "pads": .ints(oneD ? [g.padLeft, g.padRight] : [g.padTop, g.padLeft, g.padBottom, g.padRight]),
        ]
        if g.group != 1 { attributes["group"] = .int(g.group) }
        let xShape = oneD ? [g.batch, g.channels, g.width] : g.sourceShape
        let wShape = oneD ? [g.outputChannels, g.channels / g.group, g.kernelWidth] : g.weightShape
        let weight = try Tensor(shape: wShape, floats: w)
        let bias = try b.map { try Tensor(shape: [g.outputChannels], floats: $0) }
        let node = Node(opType: "Conv", inputs: ["x", "w", b == nil ? "" : "b"], outputs: ["y"], attributes: attributes)
        let kernel = try ConvKernel(NodeContext(node: node, opset: 17, constants: [nil, weight, bias]))
        var y = try kernel.run(x: Tensor(shape: xShape, floats: x), w: weight, b: bias).floats("Y")
        for op in postOps {
            switch op {
            case .relu: for i in y.indices { y[i] = max(0, y[i]) }
            case .sum: for i in y.indices { y[i] += residual![i] }
            case .geluErf: for i in y.indices { y[i] = gelu(y[i], tanh: false) }
            case .geluTanh: for i in y.indices { y[i] = gelu(y[i], tanh: true) }
            case .hardSwish: for i in y.indices { y[i] *= max(0, min(1, y[i] / 6 + 0.5)) }
            case .silu: for i in y.indices { y[i] /= 1 + exp(-y[i]) }
            }
        }
        return y
    }

    /// One random convolution from `kind` (0–9 cycle through the families the brief lists).
    static func randomGeometry(_ kind: Int, _ r: inout Random) -> (DNNLConvolution.Geometry, oneD: Bool) {
        func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &r) }
        let batch = int(1...3)
        switch kind {
        case 0:  // 1×1 pointwise
            return (.init(batch: batch, channels: int(1...48), height: int(1...12), width: int(1...12),
                          outputChannels: int(1...48), kernelHeight: 1, kernelWidth: 1), false)
        case 1:  // 3×3 pad 1, maybe stride 2
            let s = int(1...2)
            return (.init(batch: batch, channels: int(1...32), height: int(3...14), width: int(3...14), outputChannels: int(1...32),
                          kernelHeight: 3, kernelWidth: 3, strideHeight: s, strideWidth: s,
                          padTop: 1, padLeft: 1, padBottom: 1, padRight: 1), false)
        case 2:  // 7×7 stride 2 pad 3 (a stem)
            return (.init(batch: batch, channels: int(1...4), height: int(7...20), width: int(7...20), outputChannels: int(4...16),
                          kernelHeight: 7, kernelWidth: 7, strideHeight: 2, strideWidth: 2,
                          padTop: 3, padLeft: 3, padBottom: 3, padRight: 3), false)
        case 3:  // strided 1×1 (a downsampling shortcut) or strided odd kernel
            let k = [1, 3, 5][int(0...2)], s = int(2...3)
            return (.init(batch: batch, channels: int(1...24), height: int(k...15), width: int(k...15), outputChannels: int(1...24),
                          kernelHeight: k, kernelWidth: k, strideHeight: s, strideWidth: int(1...3)), false)
        case 4:  // dilated
            let d = int(2...3)
            return (.init(batch: batch, channels: int(1...16), height: int(7...14), width: int(7...14), outputChannels: int(1...16),
                          kernelHeight: 3, kernelWidth: 3, dilationHeight: d, dilationWidth: int(1...3),
                          padTop: d, padLeft: d, padBottom: d, padRight: d), false)
        case 5:  // grouped: ResNeXt's 32 groups, or a few
            let groups = [32, 2, 4, 8][int(0...3)]
            let cg = int(1...4), mg = int(1...4)
            return (.init(batch: batch, channels: groups * cg, height: int(3...10), width: int(3...10), outputChannels: groups * mg,
                          kernelHeight: 3, kernelWidth: 3, strideHeight: int(1...2), strideWidth: int(1...2),
                          padTop: 1, padLeft: 1, padBottom: 1, padRight: 1, group: groups), false)
        case 6:  // depthwise 3×3 or 5×5 (MobileNet, SK)
            let c = int(1...48), k = [3, 5][int(0...1)], s = int(1...2)
            return (.init(batch: batch, channels: c, height: int(k...14), width: int(k...14), outputChannels: c,
                          kernelHeight: k, kernelWidth: k, strideHeight: s, strideWidth: s,
                          padTop: k / 2, padLeft: k / 2, padBottom: k / 2, padRight: k / 2, group: c), false)
        case 7:  // 1-D (ECA-style or temporal)
            let k = [1, 3, 5, 7][int(0...3)]
            return (.oneDimensional(batch: batch, channels: int(1...16), width: int(k...40), outputChannels: int(1...16), kernel: k,
                                    stride: int(1...2), dilation: int(1...2), padBegin: k / 2, padEnd: k / 2), true)
        case 8:  // odd sizes, non-square kernels (CBAM's 2→1 7×7 spatial attention among them)
            let kh = int(1...7), kw = int(1...7)
            return (.init(batch: batch, channels: [2, 3, 5, 7][int(0...3)], height: int(kh...13), width: int(kw...13),
                          outputChannels: [1, 3, 5][int(0...2)], kernelHeight: kh, kernelWidth: kw,
                          padTop: kh / 2, padLeft: kw / 2, padBottom: kh / 2, padRight: kw / 2), false)
        default:  // asymmetric pads (SAME_UPPER / SAME_LOWER shapes, TF exports)
            let k = int(2...5)
            return (.init(batch: batch, channels: int(1...16), height: int(k...12), width: int(k...12), outputChannels: int(1...16),
                          kernelHeight: k, kernelWidth: k, strideHeight: int(1...2), strideWidth: int(1...2),
                          padTop: int(0...2), padLeft: int(0...2), padBottom: int(0...2), padRight: int(0...2)), false)
        }
    }

    static let families = ["1x1", "3x3", "7x7s2", "strided", "dilated", "grouped", "depthwise", "1-D", "odd", "asym-pad"]

    static let postOpChoices: [[DNNLPostOp]] = [[], [.relu], [.sum], [.sum, .relu], [.relu, .sum], [.geluErf], [.sum, .geluTanh], [.hardSwish], [.sum, .hardSwish], [.silu], [.sum, .silu]]

    // MARK: Convolution

    @Test func libraryInfo() {
        #expect(OneDNN.version.hasPrefix("2.") || OneDNN.version.hasPrefix("3."), "\(OneDNN.versionDetails)")
        #expect(!OneDNN.isaName.isEmpty)
    }

    /// 200 seeded random convolutions against ConvKernel: every family, batch 1–3, with and
    /// without bias, every post-op order, plain and primitive-chosen layouts, 1 and 2 threads.
    @Test func convolutionMatchesReference() throws {
        // ONEDNN_TEST_SEED / ONEDNN_TEST_CASES widen the sweep by hand (e.g. 5000 cases).
        let environment = ProcessInfo.processInfo.environment
        var random = Random(state: environment["ONEDNN_TEST_SEED"].flatMap { UInt64($0) } ?? 0x0DD_C0DE)
        let caseCount = environment["ONEDNN_TEST_CASES"].flatMap { Int($0) } ?? 200
        var worstAbs: Float = 0, worstRel: Float = 0
        var implementations: [String: Int] = [:]
        for index in 0..<caseCount {
            let (g, oneD) = Self.randomGeometry(index % 10, &random)
            let hasBias = Bool.random(using: &random)
            let postOps = Self.postOpChoices[Int.random(in: 0..<Self.postOpChoices.count, using: &random)]
            // Every family gets each layout: plain NCHW, the primitive's choice, and given NHWC.
            let layout: DNNLActivationLayout = switch index % 3 {
            case 0: .plain
            case 1: .chosenByPrimitive
            default: .given(source: try .channelsLast(g.sourceShape), destination: try .channelsLast(g.destinationShape))
            }
            let threads = Int.random(in: 1...2, using: &random)
            let x = Self.values(g.sourceShape.reduce(1, *), &random)
            let w = Self.values(g.weightShape.reduce(1, *), &random)
            let b = hasBias ? Self.values(g.outputChannels, &random) : nil
            let outCount = g.destinationShape.reduce(1, *)
            let residual = postOps.contains(.sum) ? Self.values(outCount, &random) : nil
            let label = "case \(index): \(g) bias \(hasBias) \(postOps) \(layout) threads \(threads)"

            if ProcessInfo.processInfo.environment["ONEDNN_TEST_TRACE"] != nil { FileHandle.standardError.write(Data((label + "\n").utf8)) }
            let expected = try Self.referenceConv(g, oneD: oneD, x: x, w: w, b: b, residual: residual, postOps: postOps)
            let conv = try DNNLConvolution(geometry: g, weights: w, bias: b, postOps: postOps, layout: layout, threads: threads)
            let layoutName = switch layout { case .plain: "nchw"; case .chosenByPrimitive: "chosen"; case .given: "nhwc" }
            implementations["\(Self.families[index % 10]) \(layoutName): \(conv.implementation)", default: 0] += 1
            var actual = [Float](repeating: 0, count: outCount)
            if layout == .plain {
                #expect(conv.source.isPlain && conv.destination.isPlain, "\(label)")
                if let residual { actual = residual }
                try conv.execute(source: x, destination: &actual, threads: threads)
            } else {
                // Into the primitive's layouts and back out again.
                let toSource = try DNNLReorder(from: .plain(g.sourceShape), to: conv.source)
                let toDestination = try DNNLReorder(from: .plain(g.destinationShape), to: conv.destination)
                let fromDestination = try DNNLReorder(from: conv.destination, to: .plain(g.destinationShape))
                var xBlocked = [Float](repeating: 0, count: conv.source.elementCount)
                var yBlocked = [Float](repeating: 0, count: conv.destination.elementCount)
                try toSource.execute(source: x, destination: &xBlocked, threads: threads)
                if let residual { try toDestination.execute(source: residual, destination: &yBlocked, threads: threads) }
                try conv.execute(source: xBlocked, destination: &yBlocked, threads: threads)
                try fromDestination.execute(source: yBlocked, destination: &actual, threads: threads)
            }
            let (a, r) = Self.compare(actual, expected, label)
            worstAbs = max(worstAbs, a)
            worstRel = max(worstRel, r)
        }
        print("OneDNN conv differential: \(caseCount) cases, max abs \(worstAbs), max rel \(worstRel); implementations:")
        for (key, count) in implementations.sorted(by: { $0.key < $1.key }) { print("  \(key) ×\(count)") }
    }

    /// Winograd (`CBAM_CONV=winograd`) against ConvKernel on 30 seeded random 3×3 stride-1
    /// convolutions, batch 1 (F(2×2, 3×3)) and 2–3 (F(4×4, 3×3)), every post-op order. On a
    /// CPU without oneDNN's AVX-512 Winograd kernels each must be refused with an error instead.
    @Test func winogradMatchesReference() throws {
        var random = Random(state: 0x3E3)
        let available = OneDNN.isaName.hasPrefix("avx512_core")
        var implementations: Set<String> = []
        var worstRel: Float = 0
        for index in 0..<30 {
            func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }
            let g = DNNLConvolution.Geometry(batch: index % 3 + 1, channels: [3, 16, 32, 64][index % 4], height: int(4...30),
                                             width: int(4...30), outputChannels: [16, 8, 32, 48][int(0...3)], kernelHeight: 3, kernelWidth: 3,
                                             padTop: 1, padLeft: 1, padBottom: 1, padRight: 1)
            let postOps = Self.postOpChoices[index % 5]
            let x = Self.values(g.sourceShape.reduce(1, *), &random), w = Self.values(g.weightShape.reduce(1, *), &random)
            let b = index % 2 == 0 ? Self.values(g.outputChannels, &random) : nil
            let residual = postOps.contains(.sum) ? Self.values(g.destinationShape.reduce(1, *), &random) : nil
            let label = "case \(index): \(g) bias \(b != nil) \(postOps)"
            let built = Result { try DNNLConvolution(geometry: g, weights: w, bias: b, postOps: postOps, layout: .chosenByPrimitive,
                                                     threads: 1 + index % 2, algorithm: .winograd) }
            guard available else {
                if case .success(let conv) = built { Issue.record("\(label): Winograd built on \(OneDNN.isaName): \(conv.implementation)") }
                continue
            }
            let conv = try built.get()
            implementations.insert(conv.implementation)
            #expect(conv.implementation.contains("wino"), "\(label): \(conv.implementation)")
            let expected = try Self.referenceConv(g, oneD: false, x: x, w: w, b: b, residual: residual, postOps: postOps)
            let toSource = try DNNLReorder(from: .plain(g.sourceShape), to: conv.source)
            let toDestination = try DNNLReorder(from: .plain(g.destinationShape), to: conv.destination)
            let fromDestination = try DNNLReorder(from: conv.destination, to: .plain(g.destinationShape))
            var xBlocked = [Float](repeating: 0, count: conv.source.elementCount)
            var yBlocked = [Float](repeating: 0, count: conv.destination.elementCount)
            var actual = [Float](repeating: 0, count: g.destinationShape.reduce(1, *))
            try toSource.execute(source: x, destination: &xBlocked)
            if let residual { try toDestination.execute(source: residual, destination: &yBlocked) }
            try conv.execute(source: xBlocked, destination: &yBlocked, threads: 1 + index % 2)
            try fromDestination.execute(source: yBlocked, destination: &actual)
            worstRel = max(worstRel, Self.compare(actual, expected, label).rel)
        }
        let strided = DNNLConvolution.Geometry(batch: 1, channels: 16, height: 9, width: 9, outputChannels: 16, kernelHeight: 3, kernelWidth: 3,
                                               strideHeight: 2, strideWidth: 2, padTop: 1, padLeft: 1, padBottom: 1, padRight: 1)
        #expect(throws: CBAMError.self) {
            try DNNLConvolution(geometry: strided, weights: [Float](repeating: 0, count: 16 * 16 * 9), layout: .chosenByPrimitive, algorithm: .winograd)
        }
        print("OneDNN Winograd differential: 30 cases, max rel \(worstRel); implementations \(implementations.sorted())")
    }

    /// oneDNN 2.6.3's brgconv crashes on a top pad as tall as the kernel with sum + ReLU
    /// (tools/onednn-repro): DNNLConvolution must pick another kernel, in every layout.
    @Test func brgconvPadCrashIsAvoided() throws {
        var random = Random(state: 7)
        let g = DNNLConvolution.Geometry(batch: 1, channels: 2, height: 5, width: 9, outputChannels: 10, kernelHeight: 2, kernelWidth: 2,
                                         strideWidth: 2, padTop: 2, padLeft: 1, padBottom: 1, padRight: 1)
        let x = Self.values(g.sourceShape.reduce(1, *), &random), w = Self.values(g.weightShape.reduce(1, *), &random)
        let residual = Self.values(g.destinationShape.reduce(1, *), &random)
        let expected = try Self.referenceConv(g, oneD: false, x: x, w: w, b: nil, residual: residual, postOps: [.sum, .relu])
        for layout in [DNNLActivationLayout.plain, .chosenByPrimitive,
                       .given(source: try .channelsLast(g.sourceShape), destination: try .channelsLast(g.destinationShape))] {
            let conv = try DNNLConvolution(geometry: g, weights: w, postOps: [.sum, .relu], layout: layout)
            #expect(!conv.implementation.hasPrefix("brgconv"))
            let toSource = try DNNLReorder(from: .plain(g.sourceShape), to: conv.source)
            let toDestination = try DNNLReorder(from: .plain(g.destinationShape), to: conv.destination)
            let back = try DNNLReorder(from: conv.destination, to: .plain(g.destinationShape))
            var xl = [Float](repeating: 0, count: conv.source.elementCount), yl = [Float](repeating: 0, count: conv.destination.elementCount)
            var y = [Float](repeating: 0, count: residual.count)
            try toSource.execute(source: x, destination: &xl)
            try toDestination.execute(source: residual, destination: &yl)
            try conv.execute(source: xl, destination: &yl)
            try back.execute(source: yl, destination: &y)
            _ = Self.compare(y, expected, "\(layout) \(conv.implementation)")
        }
    }

    /// One instance run concurrently from several threads, with different thread counts, gives the same output.
    @Test func concurrentExecutesAgree() throws {
        var random = Random(state: 42)
        let g = DNNLConvolution.Geometry(batch: 2, channels: 16, height: 12, width: 12, outputChannels: 24,
                                         kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1, padBottom: 1, padRight: 1)
        let x = Self.values(g.sourceShape.reduce(1, *), &random), w = Self.values(g.weightShape.reduce(1, *), &random)
        let conv = try DNNLConvolution(geometry: g, weights: w, postOps: [.relu])
        let count = g.destinationShape.reduce(1, *)
        var expected = [Float](repeating: 0, count: count)
        try conv.execute(source: x, destination: &expected)
        let results = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * 8)
        defer { results.deallocate() }
        let failures = Mutex<[String]>([])
        let shared = UncheckedSendable((conv, x, results))
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            let (conv, x, results) = shared.value
            do {
                for _ in 0..<5 {
                    try conv.execute(source: x, destination: results.baseAddress! + i * count, threads: 1 + i % 2)
                }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        // execute sets OpenMP's count on the calling thread only for its own duration.
        let before = OneDNN.threadsOnThisThread
        try conv.execute(source: x, destination: &expected, threads: before == 2 ? 1 : 2)
        #expect(OneDNN.threadsOnThisThread == before)
        for i in 0..<8 {
            _ = Self.compare(Array(results[(i * count)..<((i + 1) * count)]), expected, tolerance: 1e-5, "worker \(i)")
        }
    }

    /// libgomp keeps OpenMP's thread count per thread: two threads that set different counts
    /// at the same time each read back their own, so sessions with different counts coexist.
    @Test func openMPThreadCountIsPerThread() {
        // A class holding the results under a lock: ThreadSanitizer flags a stack Mutex captured by
        // the concurrent closure as a Swift access race (both threads "modify" the capture).
        let seen = UncheckedBox([Int: Int]())
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            OneDNN.withThreads(i + 1) {
                usleep(50_000)  // both threads are inside withThreads now
                let count = OneDNN.threadsOnThisThread
                seen.lock.withLock { seen.value[i + 1] = count }
            }
        }
        #expect(seen.lock.withLock { seen.value } == [1: 1, 2: 2])
    }

    // MARK: Refusals

    @Test func badGeometryIsRefused() throws {
        let w = [Float](repeating: 1, count: 1 << 12)
        let base = DNNLConvolution.Geometry(batch: 1, channels: 4, height: 8, width: 8, outputChannels: 4,
                                            kernelHeight: 3, kernelWidth: 3)
        var cases: [(String, DNNLConvolution.Geometry)] = []
        var g = base; g.channels = 0; cases.append(("no channels", g))
        g = base; g.batch = -1; cases.append(("negative batch", g))
        g = base; g.group = 3; cases.append(("group does not divide", g))
        g = base; g.group = 0; cases.append(("group 0", g))
        g = base; g.strideHeight = 0; cases.append(("stride 0", g))
        g = base; g.dilationWidth = 0; cases.append(("dilation 0", g))
        g = base; g.padLeft = -2; cases.append(("negative pad", g))
        g = base; g.kernelHeight = 11; cases.append(("kernel larger than input", g))
        g = base; g.height = 1 << 40; g.width = 1 << 40; cases.append(("overflowing size", g))
        for (label, geometry) in cases {
            let error = thrownCBAMError { _ = try DNNLConvolution(geometry: geometry, weights: w) }
            #expect(error != nil, "\(label)")
        }
        // Weights or bias of the wrong size.
        #expect(thrownCBAMError { _ = try DNNLConvolution(geometry: base, weights: [1, 2, 3]) }?.kind == .shapeMismatch)
        #expect(thrownCBAMError { _ = try DNNLConvolution(geometry: base, weights: Array(w.prefix(144)), bias: [1]) }?.kind == .shapeMismatch)
        // A reorder between different dims.
        #expect(thrownCBAMError { _ = try DNNLReorder(from: .plain([1, 2, 3, 4]), to: .plain([1, 2, 4, 3])) }?.kind == .shapeMismatch)
        // A deconvolution whose output size the input cannot produce.
        let dg = DNNLDeconvolution.Geometry(batch: 1, channels: 4, height: 4, width: 4, outputChannels: 4,
                                            kernelHeight: 3, kernelWidth: 3, outputHeight: 0, outputWidth: 6)
        #expect(thrownCBAMError { _ = try DNNLDeconvolution(geometry: dg, weights: w) } != nil)
        // A matmul with an empty dimension.
        #expect(thrownCBAMError { _ = try DNNLMatMul(m: 0, n: 4, k: 4) } != nil)
    }

    @Test func blockedLayoutsAreNamed() throws {
        let g = DNNLConvolution.Geometry(batch: 1, channels: 64, height: 14, width: 14, outputChannels: 64,
                                         kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1, padBottom: 1, padRight: 1)
        let w = [Float](repeating: 0.01, count: g.weightShape.reduce(1, *))
        let plain = try DNNLConvolution(geometry: g, weights: w)
        #expect(plain.source.description == "nchw" && plain.destination.description == "nchw")
        let chosen = try DNNLConvolution(geometry: g, weights: w, layout: .chosenByPrimitive)
        let blocked = try DNNLConvolution(geometry: g, weights: w, layout: .given(source: .channelsBlocked(g.sourceShape, block: 16),
                                                                                 destination: .channelsBlocked(g.destinationShape, block: 16)))
        #expect(blocked.source.description == "nChw16c" && blocked.destination.description == "nChw16c")
        #expect(try DNNLLayout.channelsLast([1, 3, 4, 5]).description == "nhwc")
        // A given layout must match the geometry.
        #expect(thrownCBAMError { _ = try DNNLConvolution(geometry: g, weights: w, layout: .given(source: .plain([1, 2, 3, 4]), destination: .plain(g.destinationShape))) }?.kind == .shapeMismatch)
        print("OneDNN layouts for 64→64 3×3 on \(OneDNN.isaName): src \(chosen.source), dst \(chosen.destination), weights \(chosen.weights.tag), impl \(chosen.implementation); plain impl \(plain.implementation); nChw16c impl \(blocked.implementation)")
        #expect(chosen.source.elementCount >= g.sourceShape.reduce(1, *))
    }

    // MARK: Deconvolution

    @Test func deconvolutionMatchesReference() throws {
        let environment = ProcessInfo.processInfo.environment
        var random = Random(state: environment["ONEDNN_TEST_SEED"].flatMap { UInt64($0) } ?? 0xDEC0)
        var worstRel: Float = 0
        for index in 0..<(environment["ONEDNN_TEST_CASES"].flatMap { Int($0) } ?? 40) {
            func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }
            let group = [1, 1, 2, 4][int(0...3)]
            let k = int(1...4), s = int(1...3), d = index % 5 == 4 ? 2 : 1
            let padB = int(0...(k - 1)), padE = int(0...(k - 1))
            let outputPadding = int(0...(s - 1))
            let (c, m, h, wIn, n) = (group * int(1...6), group * int(1...6), int(1...7), int(1...7), int(1...2))
            let ext = (k - 1) * d + 1
            let oh = s * (h - 1) + outputPadding + ext - padB - padE
            let ow = s * (wIn - 1) + outputPadding + ext - padB - padE
            guard oh >= 1, ow >= 1 else { continue }
            let g = DNNLDeconvolution.Geometry(batch: n, channels: c, height: h, width: wIn, outputChannels: m,
                                               kernelHeight: k, kernelWidth: k, strideHeight: s, strideWidth: s,
                                               dilationHeight: d, dilationWidth: d, padTop: padB, padLeft: padB,
                                               outputHeight: oh, outputWidth: ow, group: group)
            let x = Self.values(g.sourceShape.reduce(1, *), &random), w = Self.values(g.weightShape.reduce(1, *), &random)
            let b = Bool.random(using: &random) ? Self.values(m, &random) : nil
            let relu = Bool.random(using: &random)
            var attributes: [String: Attribute] = ["kernel_shape": .ints([k, k]), "strides": .ints([s, s]), "dilations": .ints([d, d]),
                                                   "pads": .ints([padB, padB, padE, padE]), "output_padding": .ints([outputPadding, outputPadding])]
            if group != 1 { attributes["group"] = .int(group) }
            let weight = try Tensor(shape: g.weightShape, floats: w)
            let bias = try b.map { try Tensor(shape: [m], floats: $0) }
            let node = Node(opType: "ConvTranspose", inputs: ["x", "w", b == nil ? "" : "b"], outputs: ["y"], attributes: attributes)
            let reference = try ConvTransposeKernel(NodeContext(node: node, opset: 17, constants: [nil, weight, bias]))
            var expected = try reference.run(x: Tensor(shape: g.sourceShape, floats: x), w: weight, b: bias).floats("Y")
            if relu { for i in expected.indices { expected[i] = max(0, expected[i]) } }
            let label = "deconv case \(index): \(g) output_padding \(outputPadding) bias \(b != nil) relu \(relu)"
            let deconv: DNNLDeconvolution
            do {
                deconv = try DNNLDeconvolution(geometry: g, weights: w, bias: b, postOps: relu ? [.relu] : [])
            } catch {
                Issue.record("\(label): \(error)")
                continue
            }
            var actual = [Float](repeating: 0, count: g.destinationShape.reduce(1, *))
            try deconv.execute(source: x, destination: &actual, threads: 1 + index % 2)
            worstRel = max(worstRel, Self.compare(actual, expected, label).rel)
            // The same in the layouts the primitive picks (blocked), through reorders.
            let blocked = try DNNLDeconvolution(geometry: g, weights: w, bias: b, postOps: relu ? [.relu] : [], layout: .chosenByPrimitive)
            let inward = try DNNLReorder(from: try .plain(g.sourceShape), to: blocked.source)
            let outward = try DNNLReorder(from: blocked.destination, to: try .plain(g.destinationShape))
            var blockedX = [Float](repeating: 0, count: blocked.source.elementCount)
            var blockedY = [Float](repeating: 0, count: blocked.destination.elementCount)
            var throughBlocked = [Float](repeating: 0, count: actual.count)
            try inward.execute(source: x, destination: &blockedX, threads: 1)
            try blocked.execute(source: blockedX, destination: &blockedY, threads: 1 + index % 2)
            try outward.execute(source: blockedY, destination: &throughBlocked, threads: 1)
            worstRel = max(worstRel, Self.compare(throughBlocked, expected, label + " (\(blocked.implementation), \(blocked.source.tag))").rel)
        }
        print("OneDNN deconv differential: max rel \(worstRel)")
    }

    // MARK: MatMul

    @Test func matMulMatchesReference() throws {
        let environment = ProcessInfo.processInfo.environment
        var random = Random(state: environment["ONEDNN_TEST_SEED"].flatMap { UInt64($0) } ?? 0x3A7)
        var worstRel: Float = 0
        for index in 0..<(environment["ONEDNN_TEST_CASES"].flatMap { Int($0) } ?? 60) {
            func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }
            let (m, n, k) = (int(1...40), int(1...40), int(1...64))
            let batch = index % 3 == 0 ? int(2...3) : 1
            let transA = Bool.random(using: &random), transB = Bool.random(using: &random)
            let broadcastA = batch > 1 && index % 2 == 0, broadcastB = batch > 1 && !broadcastA && Bool.random(using: &random)
            let constantB = batch == 1 && Bool.random(using: &random)
            let hasBias = Bool.random(using: &random), relu = index % 4 == 1
            let aCount = (broadcastA ? 1 : batch) * m * k, bCount = (broadcastB ? 1 : batch) * k * n
            let a = Self.values(aCount, &random), b = Self.values(bCount, &random)
            let bias = hasBias ? Self.values(n, &random) : nil
            // Reference: per batch item, sgemm with the same transposes.
            var expected = [Float](repeating: 0, count: batch * m * n)
            for item in 0..<batch {
                a.withUnsafeBufferPointer { ap in
                    b.withUnsafeBufferPointer { bp in
                        expected.withUnsafeMutableBufferPointer { cp in
                            BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k,
                                       a: ap.baseAddress! + (broadcastA ? 0 : item * m * k), lda: transA ? m : k,
                                       b: bp.baseAddress! + (broadcastB ? 0 : item * k * n), ldb: transB ? k : n,
                                       c: cp.baseAddress! + item * m * n, ldc: n)
                        }
                    }
                }
            }
            for i in expected.indices {
                if let bias { expected[i] += bias[i % n] }
                if relu { expected[i] = max(0, expected[i]) }
            }
            let label = "matmul case \(index): m \(m) n \(n) k \(k) batch \(batch) transA \(transA) transB \(transB) broadcast \(broadcastA)/\(broadcastB) constantB \(constantB)"
            let matmul = try b.withUnsafeBufferPointer { bp in
                try DNNLMatMul(m: m, n: n, k: k, batch: batch, transposeA: transA, transposeB: transB,
                               broadcastA: broadcastA, broadcastB: broadcastB,
                               constantB: constantB ? bp.baseAddress! : nil, bias: bias, postOps: relu ? [.relu] : [])
            }
            var actual = [Float](repeating: 0, count: batch * m * n)
            if constantB {
                try matmul.execute(a: a, b: nil, c: &actual, threads: 1 + index % 2)
            } else {
                try matmul.execute(a: a, b: b, c: &actual, threads: 1 + index % 2)
            }
            worstRel = max(worstRel, Self.compare(actual, expected, label).rel)
        }
        print("OneDNN matmul differential: max rel \(worstRel)")
    }
}
