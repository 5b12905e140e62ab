import Foundation
import Testing
@testable import CBAMRuntime

/// The attention-gate fusions (GateFusion.swift, PlannedGates.swift): hand-built channel
/// and spatial gates in the forms exporters write, with values worked out by hand or
/// compared with the plan without passes; regions that must not fuse; observers; and
/// the fusion firing on every CBAM block of the zoo.
@Suite("Attention gate fusion")
struct GateFusionTests {
    func f32(_ shape: [Int], _ values: [Float]) throws -> Tensor { try Tensor(shape: shape, floats: values) }
    func i64(_ values: [Int64]) throws -> Tensor { try Tensor(shape: [values.count], int64s: values) }

    fileprivate func random(_ shape: [Int], _ rng: inout SplitMix, scale: Float = 1) throws -> Tensor {
        try f32(shape, (0..<shape.reduce(1, *)).map { _ in Float.random(in: -scale...scale, using: &rng) })
    }

    func session(_ nodes: [Node], initializers: [String: Tensor] = [:], x: [Int], outputs: [String],
                 optimize: Bool = true, threads: Int = 1) throws -> Session {
        try Session(model: Model(graph: Graph(nodes: nodes, initializers: initializers,
                                              inputs: [ValueInfo(name: "x", shape: x.map { .fixed($0) })],
                                              outputs: outputs.map { ValueInfo(name: $0) })),
                    options: SessionOptions(threads: threads, optimize: optimize))
    }

    /// What the passes logged for this input.
    func log(_ session: Session, _ x: Tensor) throws -> [String] { try session.plan(for: ["x": x]).typed.log }

    func fused(_ session: Session, _ x: Tensor, _ pass: String) throws -> Int {
        let line = try log(session, x).first { $0.hasPrefix(pass + ": ") }
        return line.flatMap { Int($0.dropFirst(pass.count + 2).prefix { $0.isNumber }) } ?? 0
    }

    /// Runs the graph with and without passes on `x`; every output must agree.
    func expectSameAsUnfused(_ nodes: [Node], initializers: [String: Tensor], x: Tensor, outputs: [String], threads: Int = 1,
                             sourceLocation: SourceLocation = #_sourceLocation) throws {
        let fast = try session(nodes, initializers: initializers, x: x.shape, outputs: outputs, threads: threads)
        let reference = try session(nodes, initializers: initializers, x: x.shape, outputs: outputs, optimize: false)
        let (a, b) = (try fast.run(["x": x]), try reference.run(["x": x]))
        for name in outputs {
            let actual = try #require(a[name]), expected = try #require(b[name])
            let comparison = Comparison(actual: actual, expected: expected, atol: 1e-5, rtol: 1e-5)
            #expect(comparison.passed, "output \(name): \(comparison)", sourceLocation: sourceLocation)
        }
    }

    // MARK: - Channel gate: graphs

    enum ChannelForm: CaseIterable { case gemm, reduceConv, matmulPools }

    /// A CBAM channel gate on x `[n, c, h, w]` with a shared MLP c → hidden → c, in the
    /// form of one exporter: (`gemm`) GlobalAveragePool/GlobalMaxPool, Flatten, Gemm with
    /// transB, Unsqueeze to `[n, c, 1, 1]`; (`reduceConv`) ReduceMean/ReduceMax over the
    /// spatial axes, 1×1 Convs, the sigmoid multiplied directly; (`matmulPools`) AveragePool
    /// and MaxPool over the whole map, Reshape, MatMul + Add, Reshape and Expand to x's shape.
    /// `gateFirst` puts the gate as the Mul's first operand.
    fileprivate func channelGate(_ form: ChannelForm, n: Int, c: Int, h: Int, w: Int, hidden: Int, gateFirst: Bool,
                                 _ rng: inout SplitMix) throws -> (nodes: [Node], initializers: [String: Tensor]) {
        var nodes: [Node] = []
        var inits: [String: Tensor] = [:]
        let w1 = try random([hidden, c], &rng), b1 = try random([hidden], &rng, scale: 0.1)
        let w2 = try random([c, hidden], &rng), b2 = try random([c], &rng, scale: 0.1)
        let gate: String
        switch form {
        case .gemm:
            inits = ["W1": w1, "B1": b1, "W2": w2, "B2": b2, "axes": try i64([2, 3])]
            nodes += [Node(name: "avg", opType: "GlobalAveragePool", inputs: ["x"], outputs: ["pa"]),
                      Node(name: "max", opType: "GlobalMaxPool", inputs: ["x"], outputs: ["pm"])]
            for branch in ["a", "m"] {
                nodes += [Node(name: "flat_\(branch)", opType: "Flatten", inputs: ["p\(branch)"], outputs: ["f\(branch)"]),
                          Node(name: "fc1_\(branch)", opType: "Gemm", inputs: ["f\(branch)", "W1", "B1"], outputs: ["h\(branch)"], attributes: ["transB": .int(1)]),
                          Node(name: "relu_\(branch)", opType: "Relu", inputs: ["h\(branch)"], outputs: ["r\(branch)"]),
                          Node(name: "fc2_\(branch)", opType: "Gemm", inputs: ["r\(branch)", "W2", "B2"], outputs: ["o\(branch)"], attributes: ["transB": .int(1)])]
            }
            nodes += [Node(name: "sum", opType: "Add", inputs: ["oa", "om"], outputs: ["t"]),
                      Node(name: "sig", opType: "Sigmoid", inputs: ["t"], outputs: ["s"]),
                      Node(name: "unsqueeze", opType: "Unsqueeze", inputs: ["s", "axes"], outputs: ["g"])]
            gate = "g"
        case .reduceConv:
            inits = ["W1": try w1.reshaped([hidden, c, 1, 1]), "B1": b1, "W2": try w2.reshaped([c, hidden, 1, 1]), "B2": b2]
            nodes += [Node(name: "avg", opType: "ReduceMean", inputs: ["x"], outputs: ["pa"], attributes: ["axes": .ints([2, 3])]),
                      Node(name: "max", opType: "ReduceMax", inputs: ["x"], outputs: ["pm"], attributes: ["axes": .ints([-2, -1])])]
            for branch in ["a", "m"] {
                nodes += [Node(name: "fc1_\(branch)", opType: "Conv", inputs: ["p\(branch)", "W1", "B1"], outputs: ["h\(branch)"]),
                          Node(name: "relu_\(branch)", opType: "Relu", inputs: ["h\(branch)"], outputs: ["r\(branch)"]),
                          Node(name: "fc2_\(branch)", opType: "Conv", inputs: ["r\(branch)", "W2", "B2"], outputs: ["o\(branch)"])]
            }
            nodes += [Node(name: "sum", opType: "Add", inputs: ["oa", "om"], outputs: ["t"]),
                      Node(name: "sig", opType: "Sigmoid", inputs: ["t"], outputs: ["s"])]
            gate = "s"
        case .matmulPools:
            inits = ["W1": try w1.reshaped([c, hidden]), "B1": b1, "W2": try w2.reshaped([hidden, c]), "B2": b2,
                     "flat": try i64([Int64(n), Int64(c)]), "square": try i64([Int64(n), Int64(c), 1, 1]),
                     "full": try i64([Int64(n), Int64(c), Int64(h), Int64(w)])]
            let window: [String: Attribute] = ["kernel_shape": .ints([h, w])]
            nodes += [Node(name: "avg", opType: "AveragePool", inputs: ["x"], outputs: ["pa"], attributes: window),
                      Node(name: "max", opType: "MaxPool", inputs: ["x"], outputs: ["pm"], attributes: window)]
            for branch in ["a", "m"] {
                nodes += [Node(name: "view_\(branch)", opType: "Reshape", inputs: ["p\(branch)", "flat"], outputs: ["f\(branch)"]),
                          Node(name: "mm1_\(branch)", opType: "MatMul", inputs: ["f\(branch)", "W1"], outputs: ["u\(branch)"]),
                          Node(name: "bias1_\(branch)", opType: "Add", inputs: ["u\(branch)", "B1"], outputs: ["h\(branch)"]),
                          Node(name: "relu_\(branch)", opType: "Relu", inputs: ["h\(branch)"], outputs: ["r\(branch)"]),
                          Node(name: "mm2_\(branch)", opType: "MatMul", inputs: ["r\(branch)", "W2"], outputs: ["v\(branch)"]),
                          Node(name: "bias2_\(branch)", opType: "Add", inputs: ["B2", "v\(branch)"], outputs: ["o\(branch)"])]
            }
            nodes += [Node(name: "sum", opType: "Add", inputs: ["oa", "om"], outputs: ["t"]),
                      Node(name: "sig", opType: "Sigmoid", inputs: ["t"], outputs: ["s"]),
                      Node(name: "back", opType: "Reshape", inputs: ["s", "square"], outputs: ["q"]),
                      Node(name: "expand", opType: "Expand", inputs: ["q", "full"], outputs: ["g"])]
            gate = "g"
        }
        nodes.append(Node(name: "mul", opType: "Mul", inputs: gateFirst ? [gate, "x"] : ["x", gate], outputs: ["y"]))
        return (nodes, inits)
    }

    // MARK: - Channel gate: tests

    /// x (n = 1, c = 2, 1×2) = [[1, 3], [-2, 0]]: avg [2, -1], max [3, 0]. MLP with identity
    /// weights: relu([2, -1]) + relu([3, 0]) = [5, 0] → s = [σ(5), ½] → y = [[σ5, 3σ5], [-1, 0]].
    @Test func channelGateByHand() throws {
        let identity = try f32([2, 2], [1, 0, 0, 1])
        let nodes = [Node(name: "avg", opType: "GlobalAveragePool", inputs: ["x"], outputs: ["pa"]),
                     Node(name: "max", opType: "GlobalMaxPool", inputs: ["x"], outputs: ["pm"]),
                     Node(name: "flat_a", opType: "Flatten", inputs: ["pa"], outputs: ["fa"]),
                     Node(name: "flat_m", opType: "Flatten", inputs: ["pm"], outputs: ["fm"]),
                     Node(name: "fc1_a", opType: "Gemm", inputs: ["fa", "I"], outputs: ["ha"]),
                     Node(name: "fc1_m", opType: "Gemm", inputs: ["fm", "I"], outputs: ["hm"]),
                     Node(name: "relu_a", opType: "Relu", inputs: ["ha"], outputs: ["ra"]),
                     Node(name: "relu_m", opType: "Relu", inputs: ["hm"], outputs: ["rm"]),
                     Node(name: "fc2_a", opType: "MatMul", inputs: ["ra", "I"], outputs: ["oa"]),
                     Node(name: "fc2_m", opType: "MatMul", inputs: ["rm", "I"], outputs: ["om"]),
                     Node(name: "sum", opType: "Add", inputs: ["oa", "om"], outputs: ["t"]),
                     Node(name: "sig", opType: "Sigmoid", inputs: ["t"], outputs: ["s"]),
                     Node(name: "shape", opType: "Reshape", inputs: ["s", "square"], outputs: ["g"]),
                     Node(name: "mul", opType: "Mul", inputs: ["x", "g"], outputs: ["y"])]
        let s = try session(nodes, initializers: ["I": identity, "square": try i64([1, 2, 1, 1])], x: [1, 2, 1, 2], outputs: ["y", "s"])
        let x = try f32([1, 2, 1, 2], [1, 3, -2, 0])
        #expect(try fused(s, x, "fuse-channel-gate") == 1)
        #expect(try s.prepare(["x": x]).steps == 1)
        let out = try s.run(["x": x])
        let s5 = 1 / (1 + Foundation.exp(Float(-5)))
        for (a, e) in zip(try #require(out["y"]).floats(), [s5, 3 * s5, -1, 0]) { #expect(abs(a - e) < 1e-6) }
        #expect(try #require(out["s"]).shape == [1, 2])
        for (a, e) in zip(try #require(out["s"]).floats(), [s5, 0.5]) { #expect(abs(a - e) < 1e-6) }
    }

    @Test(arguments: ChannelForm.allCases)
    func channelGateFormsMatchTheUnfusedPlan(_ form: ChannelForm) throws {
        var rng = SplitMix(state: 7)
        for gateFirst in [false, true] {
            for (n, c, h, w) in [(1, 8, 5, 3), (2, 16, 4, 4)] {
                let (nodes, inits) = try channelGate(form, n: n, c: c, h: h, w: w, hidden: 3, gateFirst: gateFirst, &rng)
                let x = try random([n, c, h, w], &rng, scale: 3)
                let s = try session(nodes, initializers: inits, x: x.shape, outputs: ["y"])
                #expect(try fused(s, x, "fuse-channel-gate") == 1, "\(form) gateFirst \(gateFirst)")
                #expect(try s.prepare(["x": x]).steps == 1, "\(form): one step for the whole gate")
                try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: ["y"])
            }
        }
    }

    /// Only one statistic (SE: average only; a max-only gate) and no hidden Relu.
    /// A fused gate's MLP reads the initializers' own buffers where they already are
    /// `[out, in]` (Gemm with transB, 1×1 Conv): the plan holds no second copy of them, and
    /// its folded-constant figure does not count them. MatMul's `[in, out]` is transposed once.
    @Test(arguments: ChannelForm.allCases)
    func channelGateSharesTheMLPWeights(_ form: ChannelForm) throws {
        var rng = SplitMix(state: 11)
        let (n, c, hidden) = (2, 256, 64)
        let (nodes, inits) = try channelGate(form, n: n, c: c, h: 4, w: 4, hidden: hidden, gateFirst: false, &rng)
        let x = try random([n, c, 4, 4], &rng)
        let summary = try session(nodes, initializers: inits, x: x.shape, outputs: ["y"]).prepare(["x": x])
        #expect(summary.steps == 1)
        let mlpBytes = 2 * hidden * c * MemoryLayout<Float>.size
        if form == .matmulPools {
            #expect(summary.foldedBytes >= mlpBytes, "MatMul's weights are transposed into a copy")
        } else {
            // What remains are the biases broadcast to the batch.
            #expect(summary.foldedBytes < mlpBytes / 10, "\(form): \(summary.foldedBytes) folded bytes")
        }
    }

    @Test func singlePoolGatesFuse() throws {
        var rng = SplitMix(state: 11)
        for pool in ["GlobalAveragePool", "GlobalMaxPool"] {
            let nodes = [Node(name: "pool", opType: pool, inputs: ["x"], outputs: ["p"]),
                         Node(name: "fc", opType: "Conv", inputs: ["p", "W"], outputs: ["t"]),
                         Node(name: "sig", opType: "Sigmoid", inputs: ["t"], outputs: ["s"]),
                         Node(name: "mul", opType: "Mul", inputs: ["s", "x"], outputs: ["y"])]
            let inits = ["W": try random([6, 6, 1, 1], &rng)]
            let x = try random([2, 6, 3, 5], &rng, scale: 2)
            #expect(try fused(try session(nodes, initializers: inits, x: x.shape, outputs: ["y"]), x, "fuse-channel-gate") == 1)
            try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: ["y"])
        }
    }

    /// ECA-style channel mixing: pooled [n, c, 1, 1] → Squeeze → Transpose → 1-D conv along
    /// the channels (k = 3, pad 1) → Transpose → Unsqueeze.
    @Test func channelConvolutionGateFuses() throws {
        var rng = SplitMix(state: 13)
        var nodes: [Node] = []
        for (pool, branch) in [("GlobalAveragePool", "a"), ("GlobalMaxPool", "m")] {
            nodes += [Node(name: "pool_\(branch)", opType: pool, inputs: ["x"], outputs: ["p\(branch)"]),
                      Node(name: "squeeze_\(branch)", opType: "Squeeze", inputs: ["p\(branch)", "last"], outputs: ["q\(branch)"]),
                      Node(name: "t1_\(branch)", opType: "Transpose", inputs: ["q\(branch)"], outputs: ["u\(branch)"], attributes: ["perm": .ints([0, 2, 1])]),
                      Node(name: "mix_\(branch)", opType: "Conv", inputs: ["u\(branch)", "K"], outputs: ["v\(branch)"], attributes: ["pads": .ints([1, 1])]),
                      Node(name: "t2_\(branch)", opType: "Transpose", inputs: ["v\(branch)"], outputs: ["w\(branch)"], attributes: ["perm": .ints([0, 2, 1])]),
                      Node(name: "unsqueeze_\(branch)", opType: "Unsqueeze", inputs: ["w\(branch)", "last"], outputs: ["o\(branch)"])]
        }
        nodes += [Node(name: "sum", opType: "Add", inputs: ["oa", "om"], outputs: ["t"]),
                  Node(name: "sig", opType: "Sigmoid", inputs: ["t"], outputs: ["s"]),
                  Node(name: "mul", opType: "Mul", inputs: ["x", "s"], outputs: ["y"])]
        let inits = ["K": try random([1, 1, 3], &rng), "last": try i64([-1])]
        let x = try random([2, 10, 4, 3], &rng, scale: 2)
        #expect(try fused(try session(nodes, initializers: inits, x: x.shape, outputs: ["y"]), x, "fuse-channel-gate") == 1)
        try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: ["y"])
    }

    /// The pools as two chained reductions over the last axis (keepdims 0), a Gemm MLP
    /// with a BatchNormalization, and Unsqueeze + Expand + Tile on the way to the Mul.
    @Test func chainedReductionsBatchNormAndTileFuse() throws {
        var rng = SplitMix(state: 17)
        var nodes: [Node] = []
        for (reduce, branch) in [("ReduceMean", "a"), ("ReduceMax", "m")] {
            nodes += [Node(name: "r1_\(branch)", opType: reduce, inputs: ["x"], outputs: ["k\(branch)"], attributes: ["axes": .ints([-1]), "keepdims": .int(0)]),
                      Node(name: "r2_\(branch)", opType: reduce, inputs: ["k\(branch)"], outputs: ["p\(branch)"], attributes: ["axes": .ints([-1]), "keepdims": .int(0)]),
                      Node(name: "fc1_\(branch)", opType: "Gemm", inputs: ["p\(branch)", "W1"], outputs: ["h\(branch)"], attributes: ["alpha": .float(0.5)]),
                      Node(name: "bn_\(branch)", opType: "BatchNormalization", inputs: ["h\(branch)", "sc", "sh", "mu", "var"], outputs: ["n\(branch)"]),
                      Node(name: "relu_\(branch)", opType: "Relu", inputs: ["n\(branch)"], outputs: ["r\(branch)"]),
                      Node(name: "fc2_\(branch)", opType: "Gemm", inputs: ["r\(branch)", "W2", "B2"], outputs: ["o\(branch)"], attributes: ["beta": .float(2)])]
        }
        nodes += [Node(name: "sum", opType: "Add", inputs: ["oa", "om"], outputs: ["t"]),
                  Node(name: "sig", opType: "Sigmoid", inputs: ["t"], outputs: ["s"]),
                  Node(name: "u1", opType: "Unsqueeze", inputs: ["s", "two"], outputs: ["s1"]),
                  Node(name: "u2", opType: "Unsqueeze", inputs: ["s1", "three"], outputs: ["s2"]),
                  Node(name: "expand", opType: "Expand", inputs: ["s2", "ones"], outputs: ["s3"]),
                  Node(name: "tile", opType: "Tile", inputs: ["s3", "repeats"], outputs: ["g"]),
                  Node(name: "mul", opType: "Mul", inputs: ["x", "g"], outputs: ["y"])]
        let inits = ["W1": try random([6, 4], &rng), "W2": try random([4, 6], &rng), "B2": try random([6], &rng),
                     "sc": try random([4], &rng), "sh": try random([4], &rng), "mu": try random([4], &rng),
                     "var": try f32([4], [0.5, 1, 2, 0.25]),
                     "two": try i64([2]), "three": try i64([3]), "ones": try i64([1, 1, 1, 1]), "repeats": try i64([1, 1, 5, 7])]
        let x = try random([3, 6, 5, 7], &rng, scale: 2)
        #expect(try fused(try session(nodes, initializers: inits, x: x.shape, outputs: ["y"]), x, "fuse-channel-gate") == 1)
        try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: ["y"])
    }

    /// x large enough (2·32·32·32 values) that both passes split across two threads.
    @Test func channelGateWithThreads() throws {
        var rng = SplitMix(state: 19)
        let (nodes, inits) = try channelGate(.gemm, n: 2, c: 32, h: 32, w: 32, hidden: 8, gateFirst: false, &rng)
        try expectSameAsUnfused(nodes, initializers: inits, x: try random([2, 32, 32, 32], &rng, scale: 4), outputs: ["y"], threads: 2)
    }

    // MARK: - Spatial gate

    /// A CBAM spatial gate on x with a k×k conv: (`maxFirst`) ReduceMax/ReduceMean keepdims 1,
    /// Concat [max, mean], a bias, Mul(x, s); otherwise keepdims 0 + Unsqueeze, Concat
    /// [mean, max], no bias, the map tiled over the channels and Mul(s, x).
    fileprivate func spatialGate(k: Int, dilation: Int = 1, maxFirst: Bool, c: Int, _ rng: inout SplitMix) throws -> (nodes: [Node], initializers: [String: Tensor]) {
        let pad = dilation * (k - 1) / 2
        let conv: [String: Attribute] = ["pads": .ints([pad, pad, pad, pad]), "dilations": .ints([dilation, dilation])]
        var inits = ["W": try random([1, 2, k, k], &rng), "one": try i64([1]), "repeats": try i64([1, Int64(c), 1, 1])]
        if maxFirst {
            inits["B"] = try f32([1], [0.25])
            return ([Node(name: "max", opType: "ReduceMax", inputs: ["x"], outputs: ["mx"], attributes: ["axes": .ints([1])]),
                     Node(name: "mean", opType: "ReduceMean", inputs: ["x"], outputs: ["mn"], attributes: ["axes": .ints([1])]),
                     Node(name: "cat", opType: "Concat", inputs: ["mx", "mn"], outputs: ["cat"], attributes: ["axis": .int(1)]),
                     Node(name: "conv", opType: "Conv", inputs: ["cat", "W", "B"], outputs: ["t"], attributes: conv),
                     Node(name: "sig", opType: "Sigmoid", inputs: ["t"], outputs: ["s"]),
                     Node(name: "mul", opType: "Mul", inputs: ["x", "s"], outputs: ["y"])], inits)
        }
        return ([Node(name: "max", opType: "ReduceMax", inputs: ["x"], outputs: ["mx0"], attributes: ["axes": .ints([1]), "keepdims": .int(0)]),
                 Node(name: "umax", opType: "Unsqueeze", inputs: ["mx0", "one"], outputs: ["mx"]),
                 Node(name: "mean", opType: "ReduceMean", inputs: ["x"], outputs: ["mn0"], attributes: ["axes": .ints([-3]), "keepdims": .int(0)]),
                 Node(name: "umean", opType: "Unsqueeze", inputs: ["mn0", "one"], outputs: ["mn"]),
                 Node(name: "cat", opType: "Concat", inputs: ["mn", "mx"], outputs: ["cat"], attributes: ["axis": .int(-3)]),
                 Node(name: "conv", opType: "Conv", inputs: ["cat", "W"], outputs: ["t"], attributes: conv),
                 Node(name: "sig", opType: "Sigmoid", inputs: ["t"], outputs: ["s"]),
                 Node(name: "tile", opType: "Tile", inputs: ["s", "repeats"], outputs: ["g"]),
                 Node(name: "mul", opType: "Mul", inputs: ["g", "x"], outputs: ["y"])], inits)
    }

    /// 1×1 kernel: x (c = 2, 1×2) = [[1, 4], [3, -2]] → max [3, 4], mean [2, 1];
    /// W = [1 (max), -1 (mean)], bias ½ → [1.5, 3.5] → s = σ, y = x · s per pixel.
    @Test func spatialGateByHand() throws {
        let nodes = [Node(name: "max", opType: "ReduceMax", inputs: ["x"], outputs: ["mx"], attributes: ["axes": .ints([1])]),
                     Node(name: "mean", opType: "ReduceMean", inputs: ["x"], outputs: ["mn"], attributes: ["axes": .ints([1])]),
                     Node(name: "cat", opType: "Concat", inputs: ["mx", "mn"], outputs: ["cat"], attributes: ["axis": .int(1)]),
                     Node(name: "conv", opType: "Conv", inputs: ["cat", "W", "B"], outputs: ["t"]),
                     Node(name: "sig", opType: "Sigmoid", inputs: ["t"], outputs: ["s"]),
                     Node(name: "mul", opType: "Mul", inputs: ["x", "s"], outputs: ["y"])]
        let s = try session(nodes, initializers: ["W": try f32([1, 2, 1, 1], [1, -1]), "B": try f32([1], [0.5])],
                            x: [1, 2, 1, 2], outputs: ["y", "s"])
        let x = try f32([1, 2, 1, 2], [1, 4, 3, -2])
        #expect(try fused(s, x, "fuse-spatial-gate") == 1)
        #expect(try s.prepare(["x": x]).steps == 1)
        let out = try s.run(["x": x])
        let (a, b) = (1 / (1 + Foundation.exp(Float(-1.5))), 1 / (1 + Foundation.exp(Float(-3.5))))
        for (value, expected) in zip(try #require(out["y"]).floats(), [a, 4 * b, 3 * a, -2 * b]) { #expect(abs(value - expected) < 1e-6) }
        for (value, expected) in zip(try #require(out["s"]).floats(), [a, b]) { #expect(abs(value - expected) < 1e-6) }
    }

    @Test func spatialGateFormsMatchTheUnfusedPlan() throws {
        var rng = SplitMix(state: 23)
        for (k, dilation) in [(7, 1), (3, 1), (3, 2), (5, 1)] {
            for maxFirst in [true, false] {
                for shape in [[1, 5, 9, 6], [2, 16, 4, 11]] {
                    let (nodes, inits) = try spatialGate(k: k, dilation: dilation, maxFirst: maxFirst, c: shape[1], &rng)
                    let x = try random(shape, &rng, scale: 3)
                    let s = try session(nodes, initializers: inits, x: shape, outputs: ["y"])
                    #expect(try fused(s, x, "fuse-spatial-gate") == 1, "k \(k) maxFirst \(maxFirst)")
                    #expect(try s.prepare(["x": x]).steps == 1)
                    try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: ["y"])
                }
            }
        }
    }

    /// The spatial-attention module exported on its own returns σ(conv(max, mean)) without
    /// applying it: one map-only step (apply = 0) at 1 and 2 threads, the map and the attention
    /// capture those of the plan without passes; an intermediate read elsewhere stops it.
    @Test func aReturnedSpatialMapFuses() throws {
        var rng = SplitMix(state: 37)
        for (k, maxFirst) in [(7, true), (3, false)] {
            var (nodes, inits) = try spatialGate(k: k, maxFirst: maxFirst, c: 12, &rng)
            nodes.removeAll { $0.opType == "Mul" || $0.opType == "Tile" }
            let x = try random([2, 12, 9, 13], &rng, scale: 3)
            for threads in [1, 2] {
                let s = try session(nodes, initializers: inits, x: x.shape, outputs: ["s"], threads: threads)
                #expect(try fused(s, x, "fuse-spatial-map") == 1, "k \(k)")
                #expect(try s.plan(for: ["x": x]).steps.map(\.kernel.detail) == ["stats+conv (map only)"])
                // The step's MACs are the k×k conv's over the two statistics planes, as unfused.
                #expect(try s.plan(for: ["x": x]).macs == 2 * 9 * 13 * 2 * k * k)
                try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: ["s"], threads: threads)
                let reference = try session(nodes, initializers: inits, x: x.shape, outputs: ["s"], optimize: false)
                let (got, expected) = (try s.runCapturingAttention(["x": x]).maps, try reference.runCapturingAttention(["x": x]).maps)
                #expect(got.count == 1 && got.map(\.kind) == expected.map(\.kind), "\(got.map(\.kind)) vs \(expected.map(\.kind))")
                #expect(got.map(\.tensor.shape) == expected.map(\.tensor.shape))
            }
            // The conv's output also returned: the map-only gate would hide it, so nothing fuses.
            let s = try session(nodes, initializers: inits, x: x.shape, outputs: ["s", "t"])
            #expect(try fused(s, x, "fuse-spatial-map") == 0)
            try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: ["s", "t"])
        }
    }

    @Test func spatialGateWithThreads() throws {
        var rng = SplitMix(state: 29)
        let (nodes, inits) = try spatialGate(k: 7, maxFirst: true, c: 32, &rng)
        try expectSameAsUnfused(nodes, initializers: inits, x: try random([2, 32, 32, 32], &rng, scale: 4), outputs: ["y"], threads: 2)
    }

    /// A BatchNormalization after the gate's conv folds into it first (a bias), then the gate fuses.
    @Test func spatialGateWithBatchNormFuses() throws {
        var rng = SplitMix(state: 31)
        var (nodes, inits) = try spatialGate(k: 3, maxFirst: true, c: 4, &rng)
        nodes[3].outputs = ["c"]
        nodes.insert(Node(name: "bn", opType: "BatchNormalization", inputs: ["c", "sc", "sh", "mu", "var"], outputs: ["t"]), at: 4)
        inits.merge(["sc": try f32([1], [1.5]), "sh": try f32([1], [-0.5]), "mu": try f32([1], [0.2]), "var": try f32([1], [2])]) { a, _ in a }
        let x = try random([2, 4, 6, 6], &rng)
        let s = try session(nodes, initializers: inits, x: x.shape, outputs: ["y"])
        #expect(try fused(s, x, "fold-batchnorm") == 1)
        #expect(try fused(s, x, "fuse-spatial-gate") == 1)
        try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: ["y"])
    }

    // MARK: - Residual Add (+ Relu) after a gate

    /// The last gate of a block, then `Add(y, r)` with r computed apart (the block's shortcut)
    /// and, with `relu`, a Relu: both gate kinds merge them (one step for gate, Add and Relu)
    /// and compute what the unfused plan does, at 1 and 2 threads; when y is read elsewhere
    /// (a graph output) nothing merges.
    @Test(arguments: [true, false])
    func aResidualAddAndReluMergeIntoTheGate(_ relu: Bool) throws {
        var rng = SplitMix(state: 41)
        let (spatialNodes, spatialInits) = try spatialGate(k: 3, maxFirst: true, c: 16, &rng)
        let (channelNodes, channelInits) = try channelGate(.gemm, n: 2, c: 16, h: 5, w: 7, hidden: 4, gateFirst: false, &rng)
        for (gateNodes, inits, pass) in [(spatialNodes, spatialInits, "fuse-spatial-gate"), (channelNodes, channelInits, "fuse-channel-gate")] {
            let x = try random([2, 16, 5, 7], &rng, scale: 2)
            var nodes = [Node(name: "shortcut", opType: "Neg", inputs: ["x"], outputs: ["r"])] + gateNodes
            nodes.append(Node(name: "add", opType: "Add", inputs: ["y", "r"], outputs: ["z"]))
            if relu { nodes.append(Node(name: "relu", opType: "Relu", inputs: ["z"], outputs: ["out"])) }
            let output = relu ? "out" : "z"
            let s = try session(nodes, initializers: inits, x: x.shape, outputs: [output])
            #expect(try fused(s, x, pass) == 1)
            #expect(try fused(s, x, "fuse-gate-residual") == 1, "\(pass)")
            #expect(try s.prepare(["x": x]).steps == 2, "\(pass): the shortcut and the gate with its Add\(relu ? " and Relu" : "")")
            for threads in [1, 2] { try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: [output], threads: threads) }
            // y also a graph output: the Add stays apart.
            let kept = try session(nodes, initializers: inits, x: x.shape, outputs: [output, "y"])
            #expect(try fused(kept, x, "fuse-gate-residual") == 0)
            try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: [output, "y"])
        }
    }

    // MARK: - What must not fuse

    /// Each gate with one value in between also read outside it (a graph output): the
    /// graph stays as it is, and still computes the same.
    @Test func anIntermediateReadElsewhereIsNotFused() throws {
        var rng = SplitMix(state: 37)
        let (channelNodes, channelInits) = try channelGate(.gemm, n: 2, c: 8, h: 3, w: 3, hidden: 2, gateFirst: false, &rng)
        let (spatialNodes, spatialInits) = try spatialGate(k: 3, maxFirst: true, c: 8, &rng)
        let x = try random([2, 8, 3, 3], &rng)
        for (nodes, inits, pass, seen) in [(channelNodes, channelInits, "fuse-channel-gate", "ra"),
                                           (channelNodes, channelInits, "fuse-channel-gate", "pm"),
                                           (channelNodes, channelInits, "fuse-channel-gate", "t"),
                                           (spatialNodes, spatialInits, "fuse-spatial-gate", "cat"),
                                           (spatialNodes, spatialInits, "fuse-spatial-gate", "mn")] {
            let s = try session(nodes, initializers: inits, x: x.shape, outputs: ["y", seen])
            #expect(try fused(s, x, pass) == 0, "\(seen) is read outside the gate")
            try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: ["y", seen])
        }
    }

    /// The map itself may be read elsewhere (here a graph output and another node): the
    /// fused step writes it under its own name.
    @Test func theSigmoidMapMayBeReadElsewhere() throws {
        var rng = SplitMix(state: 41)
        var (nodes, inits) = try channelGate(.reduceConv, n: 2, c: 8, h: 3, w: 3, hidden: 2, gateFirst: true, &rng)
        nodes.append(Node(name: "neg", opType: "Neg", inputs: ["s"], outputs: ["minus"]))
        let x = try random([2, 8, 3, 3], &rng)
        let s = try session(nodes, initializers: inits, x: x.shape, outputs: ["y", "s", "minus"])
        #expect(try fused(s, x, "fuse-channel-gate") == 1)
        try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: ["y", "s", "minus"])
    }

    /// Forms the kernel does not run stay unfused: an op it does not know (Tanh) in the MLP,
    /// statistics of another tensor than the one the gate multiplies, SiLU (x · σ(x)).
    @Test func unrecognisedFormsAreLeftAlone() throws {
        var rng = SplitMix(state: 43)
        let x = try random([1, 4, 3, 3], &rng)
        var (tanh, inits) = try channelGate(.reduceConv, n: 1, c: 4, h: 3, w: 3, hidden: 2, gateFirst: false, &rng)
        tanh[tanh.firstIndex { $0.name == "relu_a" }!].opType = "Tanh"
        var (other, _) = try channelGate(.reduceConv, n: 1, c: 4, h: 3, w: 3, hidden: 2, gateFirst: false, &rng)
        other = [Node(name: "pre", opType: "Relu", inputs: ["x"], outputs: ["rx"])] + other.map { node in
            var node = node
            if node.opType.hasPrefix("Reduce") { node.inputs = ["rx"] }
            return node
        }
        let silu = [Node(name: "sig", opType: "Sigmoid", inputs: ["x"], outputs: ["s"]),
                    Node(name: "mul", opType: "Mul", inputs: ["x", "s"], outputs: ["y"])]
        for nodes in [tanh, other, silu] {
            let s = try session(nodes, initializers: inits, x: x.shape, outputs: ["y"])
            #expect(try fused(s, x, "fuse-channel-gate") == 0)
            #expect(try fused(s, x, "fuse-spatial-gate") == 0)
            try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: ["y"])
        }
    }

    // MARK: - Observers

    final class Seen: RunObserver {
        var events: [NodeEvent] = []
        func nodeDidRun(_ event: NodeEvent) throws { events.append(event) }
    }

    /// A CBAM block on x `[2, c, h, w]`: the channel gate (maps "s", output "y"), then the
    /// spatial gate on y, its names prefixed "sp_" (map "sp_s", output "sp_y").
    fileprivate func cbamBlock(_ form: ChannelForm, c: Int, h: Int, w: Int, hidden: Int, gateFirst: Bool, maxFirst: Bool,
                               _ rng: inout SplitMix) throws -> (nodes: [Node], initializers: [String: Tensor], channelNodes: [Node]) {
        let (channelNodes, channelInits) = try channelGate(form, n: 2, c: c, h: h, w: w, hidden: hidden, gateFirst: gateFirst, &rng)
        let (spatialNodes, spatialInits) = try spatialGate(k: 3, maxFirst: maxFirst, c: c, &rng)
        let renamed = spatialNodes.map { node in
            var node = node
            node.name = "sp_" + node.name
            node.inputs = node.inputs.map { $0 == "x" ? "y" : ["W", "B", "one", "repeats"].contains($0) ? $0 : "sp_" + $0 }
            node.outputs = node.outputs.map { "sp_" + $0 }
            return node
        }
        return (channelNodes + renamed, channelInits.merging(spatialInits) { a, _ in a }, channelNodes)
    }

    /// A CBAM block (channel gate, then spatial gate on its output): two steps, and attention
    /// capture still finds both maps by the Sigmoid nodes' names, classified by the feature map.
    @Test func observersStillSeeBothGates() throws {
        var rng = SplitMix(state: 47)
        let (nodes, inits, channelNodes) = try cbamBlock(.gemm, c: 8, h: 5, w: 5, hidden: 2, gateFirst: false, maxFirst: false, &rng)
        let x = try random([2, 8, 5, 5], &rng)
        let s = try session(nodes, initializers: inits, x: x.shape, outputs: ["sp_y"])
        #expect(try s.prepare(["x": x]).steps == 2)
        let (outputs, maps) = try s.runCapturingAttention(["x": x])
        #expect(maps.map(\.kind) == [.channel, .spatial])
        #expect(maps.map(\.gate.node.name) == ["sig", "sp_sig"])
        #expect(maps.map(\.featureShape) == [[2, 8, 5, 5], [2, 8, 5, 5]])
        #expect(maps.map(\.tensor.shape) == [[2, 8], [2, 1, 5, 5]])
        // The same maps as the plan without passes computes.
        let reference = try session(nodes, initializers: inits, x: x.shape, outputs: ["sp_y"], optimize: false)
        let (expectedOutputs, expectedMaps) = try reference.runCapturingAttention(["x": x])
        for (map, expected) in zip(maps, expectedMaps) {
            #expect(Comparison(actual: map.tensor, expected: expected.tensor, atol: 1e-6, rtol: 1e-5).passed)
        }
        #expect(Comparison(actual: try #require(outputs["sp_y"]), expected: try #require(expectedOutputs["sp_y"]), atol: 1e-6, rtol: 1e-5).passed)
        // The fused step stands for all its nodes; the Sigmoid is reported after it under its own name.
        let seen = Seen()
        _ = try s.run(["x": x], observer: seen)
        #expect(seen.events.map(\.node.opType) == ["ChannelGate", "Sigmoid", "SpatialGate", "Sigmoid"])
        #expect(seen.events[0].replaced.count == channelNodes.count)
        #expect(seen.events[0].node.name.hasSuffix("+mul"))
        #expect(seen.events[1].node.name == "sig" && seen.events[1].outputs.first?.shape == [2, 8])
    }

    // MARK: - The zoo

    /// Gates each zoo model has (channel, spatial) that fuse, in every export of it.
    /// Not fused: LP and log-sum-exp pooling (seed004_channelgate_lp/lse/all), and a channel
    /// map returned rather than multiplied (seed002_channel_attention). A spatial map returned
    /// (seed002_spatial_attention_k*, ``zooSpatialMaps``) fuses into a map-only spatial gate.
    static let zooGates: [String: (channel: Int, spatial: Int)] = [
        "seed000_cbam_fc_k3": (1, 1), "seed000_cbam_fc_k5": (1, 1), "seed000_cbam_fc_k7": (1, 1),
        "seed000_cbam_conv_k3": (1, 1), "seed000_cbam_conv_k5": (1, 1), "seed000_cbam_conv_k7": (1, 1),
        "seed001_cbam_convmlp": (1, 1), "seed001_cbam_residual": (1, 1), "seed002_cbam": (1, 1),
        "seed003_cbam": (1, 1), "seed004_cbam": (1, 1),
        "seed001_resnetfpn4_cbam": (7, 7), "seed002_resnet18_cbam_prepost": (2, 2), "seed003_vgg19bn_cbam": (5, 5),
        "seed004_resnet50_cbam": (16, 16),
        "seed000_ca_fc": (1, 0), "seed000_ca_conv": (1, 0), "seed002_se_block": (1, 0), "seed002_se_resnet34": (16, 0),
        "seed002_splat_r1": (1, 0), "seed003_cam": (1, 0), "seed004_cbam_nospatial": (1, 0),
        "seed004_channelgate_avg": (1, 0), "seed004_channelgate_max": (1, 0), "seed004_channelgate_avg_max": (1, 0),
        "seed000_sa_k3": (0, 1), "seed000_sa_k5": (0, 1), "seed000_sa_k7": (0, 1), "seed003_sam": (0, 1),
        "seed004_spatialgate": (0, 1),
        "seed004_channelgate_lp": (0, 0), "seed004_channelgate_lse": (0, 0), "seed004_channelgate_all": (0, 0),
        "seed002_channel_attention": (0, 0), "seed002_spatial_attention_k3": (0, 0), "seed002_spatial_attention_k7": (0, 0),
    ]

    /// Zoo models whose spatial map is the output: one map-only spatial gate each.
    static let zooSpatialMaps: Set<String> = ["seed002_spatial_attention_k3", "seed002_spatial_attention_k7"]

    static let zooEntries = ZooEntry.all.filter { zooGates[String($0.name.prefix { $0 != "/" })] != nil }

    @Test(arguments: zooEntries)
    func fusesEveryGateOfTheZoo(_ entry: ZooEntry) throws {
        let expected = try #require(Self.zooGates[String(entry.name.prefix { $0 != "/" })])
        let session = try Session(contentsOf: Repo.path("Models/" + entry.file))
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
        let log = try session.plan(for: feeds).typed.log
        func count(_ pass: String) -> Int {
            log.first { $0.hasPrefix(pass + ": ") }.flatMap { Int($0.dropFirst(pass.count + 2).prefix { $0.isNumber }) } ?? 0
        }
        #expect(count("fuse-channel-gate") == expected.channel, "\(entry.name): \(log)")
        #expect(count("fuse-spatial-gate") == expected.spatial, "\(entry.name): \(log)")
        let maps = Self.zooSpatialMaps.contains(String(entry.name.prefix { $0 != "/" })) ? 1 : 0
        #expect(count("fuse-spatial-map") == maps, "\(entry.name): \(log)")
        let plan = try session.plan(for: feeds)
        let gateSteps = plan.steps.filter { $0.entry.node.domain == Passes.domain && $0.entry.node.opType.hasSuffix("Gate") }
        #expect(gateSteps.count == expected.channel + expected.spatial + maps)
        // In a CBAM block (channel then spatial) the spatial gate applies the channel scale.
        let blocks = entry.name.contains("cbam") && !entry.name.contains("nospatial") ? Swift.min(expected.channel, expected.spatial) : 0
        #expect(count("merge-channel-scale") == blocks, "\(entry.name): \(log)")
    }

    /// A CBAM block, with and without a residual Add + Relu after it, at 1 and 2 threads:
    /// the channel gate only computes its map, the spatial gate applies it as it reads x,
    /// and the outputs and both maps are those of the plan without passes.
    @Test(arguments: [false, true])
    func theSpatialGateAppliesTheChannelScale(_ residual: Bool) throws {
        var rng = SplitMix(state: 53)
        var (nodes, inits, _) = try cbamBlock(.reduceConv, c: 16, h: 6, w: 5, hidden: 4, gateFirst: true, maxFirst: true, &rng)
        var output = "sp_y"
        if residual {
            nodes += [Node(name: "add", opType: "Add", inputs: ["sp_y", "x"], outputs: ["sum"]),
                      Node(name: "relu", opType: "Relu", inputs: ["sum"], outputs: ["out"])]
            output = "out"
        }
        let x = try random([2, 16, 6, 5], &rng, scale: 2)
        for threads in [1, 2] {
            let s = try session(nodes, initializers: inits, x: x.shape, outputs: [output, "s", "sp_s"], threads: threads)
            #expect(try fused(s, x, "merge-channel-scale") == 1)
            let plan = try s.plan(for: ["x": x])
            #expect(plan.steps.map(\.kernel.detail).contains { $0.hasPrefix("channel scale+stats+conv+scale") }, "\(plan.steps.map(\.kernel.detail))")
            #expect(plan.steps.map(\.kernel.detail).contains("pool+mlp"))
            try expectSameAsUnfused(nodes, initializers: inits, x: x, outputs: [output, "s", "sp_s"], threads: threads)
        }
    }

    @Test func everyZooModelIsListed() {
        let models = Set(ZooEntry.all.map { String($0.name.prefix { $0 != "/" }) })
        let withGates = models.filter { name in ZooEntry.all.contains { $0.name.hasPrefix(name + "/") && !($0.attention ?? []).isEmpty } }
        // Every model whose PyTorch forward has a sigmoid gate is in the table (Softmax-only ones are not gates here).
        let sigmoidModels = withGates.filter { name in
            ZooEntry.all.first { $0.name.hasPrefix(name + "/") }?.attention?.contains { $0.kind != "other" } ?? false
        }
        #expect(sigmoidModels.subtracting(Self.zooGates.keys).isEmpty, "not listed: \(sigmoidModels.subtracting(Self.zooGates.keys).sorted())")
    }
}

/// ONNX does not require node names to be unique or present: gates are found and ordered by
/// the values they write, so two gates whose nodes share a name (or have none) both appear.
@Suite("Attention maps by value, not node name")
struct AttentionIdentityTests {
    @Test(arguments: [true, false])
    func duplicateAndEmptyNodeNamesKeepEveryGate(_ optimize: Bool) throws {
        let nodes = [
            Node(name: "pool", opType: "GlobalAveragePool", inputs: ["x"], outputs: ["p1"]),
            Node(name: "gate", opType: "Sigmoid", inputs: ["p1"], outputs: ["s1"]),
            Node(name: "", opType: "Mul", inputs: ["x", "s1"], outputs: ["y1"]),
            Node(name: "pool", opType: "GlobalAveragePool", inputs: ["y1"], outputs: ["p2"]),
            Node(name: "gate", opType: "Sigmoid", inputs: ["p2"], outputs: ["s2"]),
            Node(name: "", opType: "Mul", inputs: ["y1", "s2"], outputs: ["y2"]),
        ]
        let session = try Session(model: Model(graph: Graph(nodes: nodes, initializers: [:],
                                                            inputs: [ValueInfo(name: "x", shape: [.fixed(1), .fixed(2), .fixed(1), .fixed(2)])],
                                                            outputs: [ValueInfo(name: "y2")])),
                                  options: SessionOptions(optimize: optimize))
        // x: channel 0 = (0, 2), mean 1; channel 1 = (-1, 1), mean 0.
        let x = try Tensor(shape: [1, 2, 1, 2], floats: [0, 2, -1, 1])
        func sigmoid(_ v: Float) -> Float { 1 / (1 + exp(-v)) }
        let s1 = [sigmoid(1), 0.5], s2 = [sigmoid(sigmoid(1)), 0.5]  // y1's channel means: σ(1) and 0
        let (_, maps) = try session.runCapturingAttention(["x": x])
        #expect(maps.map(\.gate.tensor) == ["s1", "s2"])
        for (map, expected) in zip(maps, [s1, s2]) {
            let values = try map.tensor.floats()
            #expect(values.count == 2 && zip(values, expected).allSatisfy { abs($0 - $1) < 1e-6 }, "\(map.gate.tensor): \(values) vs \(expected)")
        }
    }
}
