import Foundation
import Testing
@testable import CBAMRuntime

/// The ConvNeXt-style fusions (NormalizationFusion.swift): LayerNorm over the channels as
/// exporters write it (Transpose → LayerNormalization → Transpose) into one
/// `cbam::ChannelLayerNorm` step, TorchScript's Erf chain into one Gelu, and Gelu (and
/// HardSwish, and SiLU) into the Conv before it. Each compared with the plan without passes (odd shapes, 1 and 2
/// threads, every Conv kernel), a hand-worked value, forms that must stay as they are, and
/// the counts on the ConvNeXt exports of Models/timm.
@Suite("Normalization and Gelu fusion")
struct NormalizationFusionTests {
    func f32(_ shape: [Int], _ values: [Float]) throws -> Tensor { try Tensor(shape: shape, floats: values) }

    func random(_ shape: [Int], _ rng: inout SplitMix, scale: Float = 1, offset: Float = 0) throws -> Tensor {
        try f32(shape, (0..<shape.reduce(1, *)).map { _ in offset + Float.random(in: -scale...scale, using: &rng) })
    }

    func session(_ nodes: [Node], initializers: [String: Tensor] = [:], x: [Int], outputs: [String], optimize: Bool = true,
                 threads: Int = 1, convolution: ConvolutionKernel = .fastest) throws -> Session {
        try Session(model: Model(graph: Graph(nodes: nodes, initializers: initializers,
                                              inputs: [ValueInfo(name: "x", shape: x.map { .fixed($0) })],
                                              outputs: outputs.map { ValueInfo(name: $0) })),
                    options: SessionOptions(threads: threads, optimize: optimize, convolution: convolution))
    }

    /// How many nodes `pass` says it fused (0 when it did not log).
    func fused(_ session: Session, _ x: Tensor, _ pass: String) throws -> Int {
        let line = try session.plan(for: ["x": x]).typed.log.first { $0.hasPrefix(pass + ": ") }
        return line.flatMap { Int($0.dropFirst(pass.count + 2).prefix { $0.isNumber }) } ?? 0
    }

    /// Runs the graph with and without passes on `x`; the outputs must agree.
    func expectSameAsUnfused(_ nodes: [Node], initializers: [String: Tensor], x: Tensor, outputs: [String] = ["y"], threads: Int = 1,
                             convolution: ConvolutionKernel = .fastest, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let fast = try session(nodes, initializers: initializers, x: x.shape, outputs: outputs, threads: threads, convolution: convolution)
        let reference = try session(nodes, initializers: initializers, x: x.shape, outputs: outputs, optimize: false)
        let (a, b) = (try fast.run(["x": x]), try reference.run(["x": x]))
        for name in outputs {
            let actual = try #require(a[name]), expected = try #require(b[name])
            let comparison = Comparison(actual: actual, expected: expected, atol: 1e-5, rtol: 1e-5)
            #expect(comparison.passed, "output \(name) (threads \(threads), \(convolution)): \(comparison)", sourceLocation: sourceLocation)
        }
    }

    // MARK: - Channel LayerNorm

    /// timm's LayerNorm2d as exported: x `[N, C, …]` → Transpose to channels last →
    /// LayerNormalization(axis −1) → Transpose back.
    func layerNorm2d(rank: Int, perm: [Int]? = nil, axis: Int = -1, bias: Bool = true, statistics: Bool = false) -> [Node] {
        let forward = perm ?? [0] + Array(2..<rank) + [1], backward = [0, rank - 1] + Array(1..<(rank - 1))
        return [Node(name: "permute", opType: "Transpose", inputs: ["x"], outputs: ["t"], attributes: ["perm": .ints(forward)]),
                Node(name: "norm", opType: "LayerNormalization", inputs: ["t", "scale"] + (bias ? ["bias"] : []),
                     outputs: ["n"] + (statistics ? ["mean", "inv"] : []), attributes: ["axis": .int(axis), "epsilon": .float(1e-6)]),
                Node(name: "permute_back", opType: "Transpose", inputs: ["n"], outputs: ["y"], attributes: ["perm": .ints(backward)])]
    }

    /// One position, C = 2, x = [1, 3]: mean 2, variance 1, so (x − mean)/√(1 + ε) ≈ [−1, 1];
    /// scale [2, 1], bias [0, 1] → [−2, 2].
    @Test func channelLayerNormByHand() throws {
        let s = try session(layerNorm2d(rank: 4), initializers: ["scale": try f32([2], [2, 1]), "bias": try f32([2], [0, 1])],
                            x: [1, 2, 1, 1], outputs: ["y"])
        let x = try f32([1, 2, 1, 1], [1, 3])
        #expect(try fused(s, x, "fuse-channel-layernorm") == 1)
        let y = try #require(try s.run(["x": x])["y"]?.floats())
        #expect(abs(y[0] + 2) < 1e-5 && abs(y[1] - 2) < 1e-5, "\(y)")
        let plan = try s.plan(for: ["x": x])
        #expect(plan.steps.map { "\($0.entry.node.domain)::\($0.entry.node.opType)" } == ["cbam::ChannelLayerNorm"])
        #expect(plan.steps[0].entry.replaces.map(\.name) == ["permute", "norm", "permute_back"])
    }

    /// Odd shapes (positions not a multiple of the 64-position block, one channel, rank 3
    /// and 4, with and without bias), large enough for two threads to share the work.
    @Test(arguments: [([2, 5, 3, 7], true), ([1, 1, 5, 9], true), ([3, 7, 11], false), ([1, 40, 41, 43], true), ([2, 96, 13, 13], false)])
    func channelLayerNormMatchesTheUnfusedPlan(_ shape: [Int], _ bias: Bool) throws {
        var rng = SplitMix(state: UInt64(shape.reduce(7, *)))
        let c = shape[1]
        let initializers = ["scale": try random([c], &rng, offset: 1), "bias": try random([c], &rng)]
        let nodes = layerNorm2d(rank: shape.count, bias: bias)
        // An offset far from zero: the variance must not come from E[x²] − E[x]².
        let x = try random(shape, &rng, scale: 2, offset: 30)
        #expect(try fused(try session(nodes, initializers: initializers, x: shape, outputs: ["y"]), x, "fuse-channel-layernorm") == 1)
        for threads in [1, 2] { try expectSameAsUnfused(nodes, initializers: initializers, x: x, threads: threads) }
    }

    /// Another permutation, another axis, a statistics output that is read, an intermediate
    /// read elsewhere: left as they are, with the same numbers.
    @Test func otherLayerNormFormsAreLeftAlone() throws {
        var rng = SplitMix(state: 11)
        let shape = [2, 4, 3, 5]
        let x = try random(shape, &rng)
        let forms: [(nodes: [Node], outputs: [String], scale: [Int])] = [
            (layerNorm2d(rank: 4, perm: [0, 3, 1, 2]), ["y"], [3]),   // normalises H's axis, not C's
            (layerNorm2d(rank: 4, axis: 2), ["y"], [5, 4]),           // over W and C
            (layerNorm2d(rank: 4, statistics: true), ["y", "mean"], [4]),
            (layerNorm2d(rank: 4), ["y", "t"], [4]),
        ]
        for form in forms {
            let initializers = ["scale": try random(form.scale, &rng, offset: 1), "bias": try random(form.scale, &rng)]
            let s = try session(form.nodes, initializers: initializers, x: shape, outputs: form.outputs)
            #expect(try fused(s, x, "fuse-channel-layernorm") == 0, "\(form.nodes.map(\.attributes))")
            try expectSameAsUnfused(form.nodes, initializers: initializers, x: x, outputs: form.outputs)
        }
    }

    // MARK: - Gelu

    /// nn.GELU as TorchScript writes it: `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)`, or with
    /// the 0.5 taken first (`halfFirst`), reading `source`.
    func geluChain(_ source: String, output: String = "y", halfFirst: Bool = false) -> [Node] {
        var nodes = [Node(name: "div", opType: "Div", inputs: [source, "sqrt2"], outputs: ["g_div"]),
                     Node(name: "erf", opType: "Erf", inputs: ["g_div"], outputs: ["g_erf"]),
                     Node(name: "add", opType: "Add", inputs: ["g_erf", "one"], outputs: ["g_add"])]
        if halfFirst {
            nodes += [Node(name: "half", opType: "Mul", inputs: ["half", source], outputs: ["g_half"]),
                      Node(name: "mul", opType: "Mul", inputs: ["g_add", "g_half"], outputs: [output])]
        } else {
            nodes += [Node(name: "mul", opType: "Mul", inputs: [source, "g_add"], outputs: ["g_mul"]),
                      Node(name: "half", opType: "Mul", inputs: ["g_mul", "half"], outputs: [output])]
        }
        return nodes
    }

    func geluConstants() throws -> [String: Tensor] {
        ["sqrt2": try f32([], [1.4142135]), "one": try f32([], [1]), "half": try f32([], [0.5])]
    }

    @Test(arguments: [false, true])
    func geluChainBecomesOneGelu(_ halfFirst: Bool) throws {
        var rng = SplitMix(state: 3)
        let x = try random([2, 3, 5, 7], &rng, scale: 4)
        let nodes = geluChain("x", halfFirst: halfFirst)
        let s = try session(nodes, initializers: try geluConstants(), x: x.shape, outputs: ["y"])
        #expect(try fused(s, x, "fuse-gelu-chain") == 1)
        #expect(try s.plan(for: ["x": x]).steps.map(\.entry.node.opType) == ["Gelu"])
        try expectSameAsUnfused(nodes, initializers: try geluConstants(), x: x)
        // Gelu(−1) = −0.5·(1 − erf(1/√2)) ≈ −0.158655 (PyTorch: torch.nn.functional.gelu(torch.tensor(-1.)) = −0.1587).
        let one = try f32([1, 1, 1, 1], [-1])
        let y = try session(nodes, initializers: try geluConstants(), x: [1, 1, 1, 1], outputs: ["y"]).run(["x": one])["y"]?.floats()
        #expect(abs((y?[0] ?? 0) + 0.158655) < 1e-5)
    }

    /// A chain whose erf is read elsewhere, or with another constant, stays as it is.
    @Test func otherErfChainsAreLeftAlone() throws {
        var rng = SplitMix(state: 5)
        let x = try random([1, 2, 3, 3], &rng, scale: 3)
        var constants = try geluConstants()
        let shared = geluChain("x")
        let s = try session(shared, initializers: constants, x: x.shape, outputs: ["y", "g_erf"])
        #expect(try fused(s, x, "fuse-gelu-chain") == 0)
        try expectSameAsUnfused(shared, initializers: constants, x: x, outputs: ["y", "g_erf"])
        constants["half"] = try f32([], [0.25])
        #expect(try fused(try session(shared, initializers: constants, x: x.shape, outputs: ["y"]), x, "fuse-gelu-chain") == 0)
        try expectSameAsUnfused(shared, initializers: constants, x: x)
    }

    /// `Gelu(Conv(x))`: 1×1 (ConvNeXt's fc1) and 3×3 strided, grouped, odd sizes; both
    /// approximations, the opset-20 op and the TorchScript chain; every Conv kernel (the
    /// im2col epilogue and oneDNN's post-op), 1 and 2 threads.
    @Test(arguments: [(1, 1, 1), (3, 2, 1), (3, 1, 3)])
    func convGeluMatchesTheUnfusedPlan(_ kernel: Int, _ stride: Int, _ group: Int) throws {
        var rng = SplitMix(state: UInt64(kernel * 100 + stride * 10 + group))
        let (c, m) = (24, 48)
        let x = try random([2, c, 19, 23], &rng)
        var initializers = try geluConstants()
        initializers["W"] = try random([m, c / group, kernel, kernel], &rng, scale: 0.3)
        initializers["B"] = try random([m], &rng, scale: 0.1)
        let conv = Node(name: "fc1", opType: "Conv", inputs: ["x", "W", "B"], outputs: ["c"],
                        attributes: ["kernel_shape": .ints([kernel, kernel]), "strides": .ints([stride, stride]), "group": .int(group),
                                     "pads": .ints(Array(repeating: kernel / 2, count: 4))])
        let forms: [[Node]] = [[conv, Node(name: "gelu", opType: "Gelu", inputs: ["c"], outputs: ["y"], attributes: ["approximate": .string("none")])],
                               [conv, Node(name: "gelu", opType: "Gelu", inputs: ["c"], outputs: ["y"], attributes: ["approximate": .string("tanh")])],
                               [conv] + geluChain("c")]
        for nodes in forms {
            #expect(try fused(try session(nodes, initializers: initializers, x: x.shape, outputs: ["y"]), x, "fuse-conv-gelu") == 1)
            for convolution in ConvolutionKernel.allCases {
                for threads in [1, 2] {
                    try expectSameAsUnfused(nodes, initializers: initializers, x: x, threads: threads, convolution: convolution)
                }
            }
        }
    }

    /// A Conv whose output is read besides the Gelu, or that already has a Relu, keeps its Gelu apart.
    @Test func convGeluNeedsTheConvOutputToItself() throws {
        var rng = SplitMix(state: 9)
        let x = try random([1, 4, 6, 6], &rng)
        let initializers = ["W": try random([8, 4, 1, 1], &rng)]
        let conv = Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["c"])
        let gelu = Node(name: "gelu", opType: "Gelu", inputs: ["c"], outputs: ["y"])
        let s = try session([conv, gelu], initializers: initializers, x: x.shape, outputs: ["y", "c"])
        #expect(try fused(s, x, "fuse-conv-gelu") == 0)
        try expectSameAsUnfused([conv, gelu], initializers: initializers, x: x, outputs: ["y", "c"])
        let relu = [conv, Node(name: "relu", opType: "Relu", inputs: ["c"], outputs: ["r"]), Node(name: "gelu", opType: "Gelu", inputs: ["r"], outputs: ["y"])]
        let t = try session(relu, initializers: initializers, x: x.shape, outputs: ["y"])
        #expect(try fused(t, x, "fuse-conv-relu") == 1 && fused(t, x, "fuse-conv-gelu") == 0)
        try expectSameAsUnfused(relu, initializers: initializers, x: x)
    }

    // MARK: - Conv + HardSwish, Conv + SiLU

    /// The activation after `c` as exported: HardSwish, or SiLU as `Mul(c, Sigmoid(c))` (either order).
    func activation(_ kind: String, _ c: String, _ y: String, swapped: Bool = false) -> [Node] {
        if kind == "HardSwish" { return [Node(name: "act", opType: "HardSwish", inputs: [c], outputs: [y])] }
        return [Node(name: "sig", opType: "Sigmoid", inputs: [c], outputs: ["s_" + c]),
                Node(name: "mul", opType: "Mul", inputs: swapped ? ["s_" + c, c] : [c, "s_" + c], outputs: [y])]
    }

    /// `HardSwish(Conv(x))` (MobileNetV3's, EfficientViT's) and `Conv(x) · sigmoid(Conv(x))` (SiLU:
    /// NFNet's, GCResNeXt's, MobileViT's): 1×1, 3×3 strided, depthwise, with and without a bias,
    /// and after a residual Add (`act(Conv(x) + R)`); every Conv kernel (the im2col epilogue,
    /// oneDNN's post-op, the C kernels standing aside), 1 and 2 threads, against the plan
    /// without passes. Inputs reach ±8, past HardSwish's bends at ±3.
    @Test(arguments: ["HardSwish", "SiLU"], [(1, 1, 1, true), (3, 2, 1, false), (3, 1, 24, true)])
    func convActivationMatchesTheUnfusedPlan(_ kind: String, _ geometry: (Int, Int, Int, Bool)) throws {
        let (kernel, stride, group, withBias) = geometry
        var rng = SplitMix(state: UInt64(kernel * 100 + stride * 10 + group))
        let (c, m) = (24, group == 1 ? 40 : 24)
        let x = try random([2, c, 13, 17], &rng, scale: 4)
        var initializers = ["W": try random([m, c / group, kernel, kernel], &rng, scale: 1)]
        if withBias { initializers["B"] = try random([m], &rng, scale: 2) }
        let conv = Node(name: "conv", opType: "Conv", inputs: ["x", "W"] + (withBias ? ["B"] : []), outputs: ["c"],
                        attributes: ["kernel_shape": .ints([kernel, kernel]), "strides": .ints([stride, stride]), "group": .int(group),
                                     "pads": .ints(Array(repeating: kernel / 2, count: 4))])
        let plain = [conv] + activation(kind, "c", "y", swapped: withBias)
        // A residual of the Conv output's shape: x itself where the Conv keeps it.
        let residual = stride == 1 && m == c ? [conv, Node(name: "add", opType: "Add", inputs: ["c", "x"], outputs: ["a"])] + activation(kind, "a", "y") : nil
        let tag = kind == "HardSwish" ? "fuse-conv-hardswish" : "fuse-conv-silu"
        for nodes in [plain] + (residual.map { [$0] } ?? []) {
            let s = try session(nodes, initializers: initializers, x: x.shape, outputs: ["y"])
            #expect(try fused(s, x, tag) == 1)
            #expect(try s.plan(for: ["x": x]).steps.map(\.entry.node.opType) == ["FusedConv"])
            for convolution in ConvolutionKernel.allCases {
                for threads in [1, 2] {
                    try expectSameAsUnfused(nodes, initializers: initializers, x: x, threads: threads, convolution: convolution)
                }
            }
        }
    }

    /// A Conv whose output is read besides the activation, or that already has a Relu, keeps the
    /// activation apart; so does a Mul of the Conv output by the sigmoid of another value.
    @Test(arguments: ["HardSwish", "SiLU"])
    func convActivationNeedsTheConvOutputToItself(_ kind: String) throws {
        var rng = SplitMix(state: 11)
        let x = try random([1, 4, 6, 6], &rng, scale: 4)
        let initializers = ["W": try random([8, 4, 1, 1], &rng), "W2": try random([8, 4, 1, 1], &rng)]
        let tag = kind == "HardSwish" ? "fuse-conv-hardswish" : "fuse-conv-silu"
        let conv = Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["c"])
        let shared = [conv] + activation(kind, "c", "y")
        let s = try session(shared, initializers: initializers, x: x.shape, outputs: ["y", "c"])
        #expect(try fused(s, x, tag) == 0)
        try expectSameAsUnfused(shared, initializers: initializers, x: x, outputs: ["y", "c"])
        let relu = [conv, Node(name: "relu", opType: "Relu", inputs: ["c"], outputs: ["r"])] + activation(kind, "r", "y")
        let t = try session(relu, initializers: initializers, x: x.shape, outputs: ["y"])
        #expect(try fused(t, x, "fuse-conv-relu") == 1 && fused(t, x, tag) == 0)
        try expectSameAsUnfused(relu, initializers: initializers, x: x)
        // c · sigmoid(d): a gate, not a SiLU.
        let gate = [conv, Node(name: "conv2", opType: "Conv", inputs: ["x", "W2"], outputs: ["d"]),
                    Node(name: "sig", opType: "Sigmoid", inputs: ["d"], outputs: ["s"]), Node(name: "mul", opType: "Mul", inputs: ["c", "s"], outputs: ["y"])]
        #expect(try fused(try session(gate, initializers: initializers, x: x.shape, outputs: ["y"]), x, "fuse-conv-silu") == 0)
        try expectSameAsUnfused(gate, initializers: initializers, x: x)
    }

    // MARK: - MatMul + bias + Gelu

    /// ConvNeXt's channels-last fc1: `Gelu(MatMul(x, W) + b)`, x `[…, K]`, W `[K, N]`.
    func linearGelu(tanh: Bool, biasFirst: Bool) -> [Node] {
        [Node(name: "matmul", opType: "MatMul", inputs: ["x", "W"], outputs: ["p"]),
         Node(name: "linear", opType: "Add", inputs: biasFirst ? ["b", "p"] : ["p", "b"], outputs: ["l"]),
         Node(name: "gelu", opType: "Gelu", inputs: ["l"], outputs: ["y"], attributes: ["approximate": .string(tanh ? "tanh" : "none")])]
    }

    @Test(arguments: [([2, 5, 7, 24], 40), ([2, 16, 16, 24], 96), ([3, 9], 13)])
    func linearGeluMatchesTheUnfusedPlan(_ shape: [Int], _ n: Int) throws {
        var rng = SplitMix(state: UInt64(shape.reduce(n, *)))
        let k = shape.last!
        let initializers = ["W": try random([k, n], &rng, scale: 0.5), "b": try random([n], &rng)]
        let x = try random(shape, &rng, scale: 3)
        for (tanh, biasFirst) in [(true, false), (false, true)] {
            let nodes = linearGelu(tanh: tanh, biasFirst: biasFirst)
            let s = try session(nodes, initializers: initializers, x: shape, outputs: ["y"])
            #expect(try fused(s, x, "fuse-linear-gelu") == 1)
            #expect(try s.plan(for: ["x": x]).steps.map(\.entry.node.opType) == ["LinearGelu"])
            for threads in [1, 2] { try expectSameAsUnfused(nodes, initializers: initializers, x: x, threads: threads) }
        }
    }

    /// The planned steps' Gelu (`cbam_vm_gelu`, every variant, with and without a bias, counts off
    /// the vector width) against the reference kernel's, taken in Double, on a fine sweep (both
    /// tails, zero, the region where tanh and erf bend), and NaN, ±∞ as the formula gives them.
    @Test(arguments: [VectorMath.InstructionSet.portable, .avx2, .avx512])
    func plannedGeluFollowsTheReferenceGelu(_ isa: VectorMath.InstructionSet) {
        for tanh in [false, true] {
            let xs = (-16_000...16_000).map { Float($0) / 1000 }
            let bias = (0..<xs.count).map { Float($0 % 7) / 8 - 0.375 }
            var worst: Float = 0
            for withBias in [false, true] {
                for count in [xs.count, 13] {  // 13: a tail shorter than a vector
                    var y = [Float](repeating: .nan, count: count)
                    bias.withUnsafeBufferPointer { b in
                        VectorMath.gelu(xs, bias: withBias ? b.baseAddress : nil, &y, count, tanh: tanh, isa: isa)
                    }
                    for i in 0..<count {
                        let x = xs[i] + (withBias ? bias[i] : 0)
                        worst = Swift.max(worst, abs(y[i] - gelu(x, tanh: tanh)) / Swift.max(1, abs(x)))
                    }
                }
            }
            #expect(worst <= 1e-6, "\(isa) tanh \(tanh): largest error \(worst)")
            let special: [Float] = [.nan, .infinity, -.infinity, 0, -0.0, 1e30, -1e30]
            var y = [Float](repeating: 42, count: special.count)
            VectorMath.gelu(special, bias: nil, &y, special.count, tanh: tanh, isa: isa)
            for (x, actual) in zip(special, y) {
                let expected = gelu(x, tanh: tanh)
                #expect(actual == expected || actual.isNaN && expected.isNaN, "\(isa) tanh \(tanh): Gelu(\(x)) = \(actual), the formula \(expected)")
            }
        }
    }

    /// A product read elsewhere, or a bias that is not a constant of N, keeps the three steps.
    @Test func otherLinearFormsAreLeftAlone() throws {
        var rng = SplitMix(state: 13)
        let x = try random([2, 3, 8], &rng)
        let initializers = ["W": try random([8, 16], &rng), "b": try random([16], &rng)]
        let nodes = linearGelu(tanh: false, biasFirst: false)
        let s = try session(nodes, initializers: initializers, x: x.shape, outputs: ["y", "p"])
        #expect(try fused(s, x, "fuse-linear-gelu") == 0)
        try expectSameAsUnfused(nodes, initializers: initializers, x: x, outputs: ["y", "p"])
        let wide = ["W": initializers["W"]!, "b": try random([3, 16], &rng)]   // a bias per row: not a linear layer's
        #expect(try fused(try session(nodes, initializers: wide, x: x.shape, outputs: ["y"]), x, "fuse-linear-gelu") == 0)
        try expectSameAsUnfused(nodes, initializers: wide, x: x)
    }

    // MARK: - The ConvNeXt exports

    /// Every LayerNorm2d of the exports fuses (ConvNeXt's linear-MLP blocks keep their
    /// LayerNorm on channels-last values, which is not this form); with `conv_mlp` every
    /// Gelu merges into its fc1, and every TorchScript Erf chain becomes a Gelu first.
    /// Counts from the exported graphs (`ops` in the manifest, block structure of timm);
    /// convnext_test's 9 blocks have the channels-last MLP (MatMul + bias, Gelu).
    @Test(arguments: [("timm/convnext_atto_small/torchscript_op17.onnx", 10, 5, 5, 0),
                      ("timm/convnext_atto_small/dynamo.onnx", 10, 0, 5, 0),
                      ("timm/convnext_test/dynamo.onnx", 5, 0, 0, 9)])
    func firesOnTheConvNeXtExports(_ file: String, _ layerNorms: Int, _ chains: Int, _ convGelus: Int, _ linearGelus: Int) throws {
        let path = Repo.path("Models/" + file)
        #expect(FileManager.default.fileExists(atPath: path), "\(path) is missing: run tools/export_timm.py")
        let session = try Session(contentsOf: path)
        let input = try NPY.read(contentsOf: Repo.path("Models/" + file.split(separator: "/").dropLast().joined(separator: "/") + "/input.npy"))
        let log = try session.plan(for: ["input": input]).typed.log
        func count(_ pass: String) -> Int {
            log.first { $0.hasPrefix(pass + ": ") }.flatMap { Int($0.dropFirst(pass.count + 2).prefix { $0.isNumber }) } ?? 0
        }
        #expect(count("fuse-channel-layernorm") == layerNorms, "\(log)")
        #expect(count("fuse-gelu-chain") == chains, "\(log)")
        #expect(count("fuse-conv-gelu") == convGelus, "\(log)")
        #expect(count("fuse-linear-gelu") == linearGelus, "\(log)")
    }
}
