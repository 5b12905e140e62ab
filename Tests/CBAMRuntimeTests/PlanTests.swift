import Foundation
import Testing
@testable import CBAMRuntime

/// The compiled plan: each rewrite pass on a tiny graph with hand-computed values, the
/// memory it shares, the limits it enforces before allocating, and sessions used from
/// several threads.
@Suite("Compiled plan")
struct PlanTests {
    func f32(_ shape: [Int], _ values: [Float]) throws -> Tensor { try Tensor(shape: shape, floats: values) }

    func session(_ nodes: [Node], initializers: [String: Tensor] = [:], inputs: [ValueInfo], outputs: [String],
                 options: SessionOptions = SessionOptions()) throws -> Session {
        try Session(model: Model(graph: Graph(nodes: nodes, initializers: initializers, inputs: inputs,
                                              outputs: outputs.map { ValueInfo(name: $0) })), options: options)
    }

    // MARK: Passes

    /// y = Relu(BN(Conv(x))) with a 1×1 conv of 2 channels → 2 channels.
    /// W = [[1, 0], [0, 2]], B = [0, 1]; BN scale [2, 1], bias [0, -1], mean [1, 0], var [3, 0] (ε = 1, so √(var+ε) = [2, 1]).
    /// x (one pixel) = [3, -2] → conv [3, -3] → BN [2·(3−1)/2 + 0, 1·(−3−0)/1 − 1] = [2, −4] → relu [2, 0].
    func convBatchNormRelu(optimize: Bool) throws -> Session {
        try session(
            [Node(name: "conv", opType: "Conv", inputs: ["x", "W", "B"], outputs: ["c"]),
             Node(name: "bn", opType: "BatchNormalization", inputs: ["c", "s", "b", "m", "v"], outputs: ["n"], attributes: ["epsilon": .float(1)]),
             Node(name: "relu", opType: "Relu", inputs: ["n"], outputs: ["y"])],
            initializers: ["W": try f32([2, 2, 1, 1], [1, 0, 0, 2]), "B": try f32([2], [0, 1]),
                           "s": try f32([2], [2, 1]), "b": try f32([2], [0, -1]), "m": try f32([2], [1, 0]), "v": try f32([2], [3, 0])],
            inputs: [ValueInfo(name: "x", shape: [.fixed(1), .fixed(2), .fixed(1), .fixed(1)])], outputs: ["y"],
            options: SessionOptions(optimize: optimize))
    }

    @Test func batchNormFoldsIntoTheConvAndReluFuses() throws {
        for optimize in [true, false] {
            let s = try convBatchNormRelu(optimize: optimize)
            let x = try f32([1, 2, 1, 1], [3, -2])
            #expect(try s.run(["x": x])["y"]?.floats() == [2, 0], "optimize: \(optimize)")
            let plan = try s.prepare(["x": x])
            #expect(plan.steps == (optimize ? 1 : 3))
            #expect(plan.nodes == 3)
            if optimize {
                #expect(plan.passes.contains { $0.hasPrefix("fold-batchnorm: 1") })
                #expect(plan.passes.contains { $0.hasPrefix("fuse-conv-relu: 1") })
            }
        }
    }

    /// y = Relu(Conv(x) + r): 1×1 conv, W = [[1, 1]] (2 → 1 channels), no bias; x = [[1, 2], [-3, -4]] (2 channels, 2 pixels),
    /// r = [0.5, 10] → conv [-2, -2] → + r [-1.5, 8] → relu [0, 8].
    @Test func residualAddAndReluFuseIntoTheConv() throws {
        for optimize in [true, false] {
            let s = try session(
                [Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["c"]),
                 Node(name: "add", opType: "Add", inputs: ["r", "c"], outputs: ["a"]),
                 Node(name: "relu", opType: "Relu", inputs: ["a"], outputs: ["y"])],
                initializers: ["W": try f32([1, 2, 1, 1], [1, 1])],
                inputs: [ValueInfo(name: "x"), ValueInfo(name: "r")], outputs: ["y"], options: SessionOptions(optimize: optimize))
            let feeds = ["x": try f32([1, 2, 1, 2], [1, 2, -3, -4]), "r": try f32([1, 1, 1, 2], [0.5, 10])]
            #expect(try s.run(feeds)["y"]?.floats() == [0, 8])
            #expect(try s.prepare(feeds).steps == (optimize ? 1 : 3))
        }
    }

    /// A depthwise Conv with a channel multiplier (group = C, k > 1 outputs per group) runs as a plain
    /// depthwise one on repeated input channels: random C, k, kernels 1–7, strides, pads, with and
    /// without bias, 1 and 2 threads, against the plan without passes (the grouped im2col kernel).
    @Test func depthwiseWithAChannelMultiplierMatchesTheUnrewrittenPlan() throws {
        var random = SplitMix(state: 0xD3)
        func values(_ count: Int) -> [Float] { (0..<count).map { _ in Float.random(in: -1...1, using: &random) } }
        for round in 0..<12 {
            let (c, k) = (Int.random(in: 1...12, using: &random), Int.random(in: 2...3, using: &random))
            let kernel = [1, 3, 7][round % 3], stride = Int.random(in: 1...2, using: &random)
            let (h, w) = (Int.random(in: kernel...(kernel + 9), using: &random), Int.random(in: kernel...(kernel + 9), using: &random))
            let pad = kernel / 2
            var initializers = ["W": try f32([c * k, 1, kernel, kernel], values(c * k * kernel * kernel))]
            let withBias = round % 2 == 0
            if withBias { initializers["B"] = try f32([c * k], values(c * k)) }
            let conv = Node(name: "dw", opType: "Conv", inputs: ["x", "W"] + (withBias ? ["B"] : []), outputs: ["y"],
                            attributes: ["group": .int(c), "kernel_shape": .ints([kernel, kernel]), "strides": .ints([stride, stride]),
                                         "pads": .ints([pad, pad, pad, pad])])
            let x = try f32([2, c, h, w], values(2 * c * h * w))
            let label = "C \(c) k \(k) kernel \(kernel) stride \(stride) \(h)×\(w) bias \(withBias)"
            let reference = try session([conv], initializers: initializers, inputs: [ValueInfo(name: "x")], outputs: ["y"],
                                        options: SessionOptions(optimize: false)).run(["x": x])["y"]
            for threads in [1, 2] {
                let s = try session([conv], initializers: initializers, inputs: [ValueInfo(name: "x")], outputs: ["y"],
                                    options: SessionOptions(threads: threads))
                let plan = try s.plan(for: ["x": x])
                #expect(plan.typed.log.contains { $0.hasPrefix("depthwise-multiplier: 1") }, "\(label): \(plan.typed.log)")
                #expect(plan.steps.map(\.entry.node.opType).contains("Expand"), "\(label)")
                let actual = try #require(try s.run(["x": x])["y"]), expected = try #require(reference)
                let comparison = Comparison(actual: actual, expected: expected, atol: 1e-5, rtol: 1e-5)
                #expect(comparison.passed, "\(label), \(threads) thread(s): \(comparison)")
            }
        }
    }

    /// A Conv whose bias is a graph input (known only when it runs) keeps its Relu and residual
    /// Add apart: FusedConv's kernels need the bias when the plan is made, and it has no
    /// reference kernel (this failed with "no kernel for cbam::FusedConv"). 1×1 conv, W = [[1, 1]]
    /// (2 → 1 channels); x = [[1, 2], [-3, -4]] → conv [-2, -2] → + b (0.5) [-1.5, -1.5] → + r [0.5, -11.5]
    /// with r = [2, -10] → relu [0.5, 0].
    @Test func convWithARuntimeBiasIsNotFused() throws {
        let s = try session(
            [Node(name: "conv", opType: "Conv", inputs: ["x", "W", "b"], outputs: ["c"]),
             Node(name: "add", opType: "Add", inputs: ["c", "r"], outputs: ["a"]),
             Node(name: "relu", opType: "Relu", inputs: ["a"], outputs: ["y"])],
            initializers: ["W": try f32([1, 2, 1, 1], [1, 1])],
            inputs: [ValueInfo(name: "x"), ValueInfo(name: "b"), ValueInfo(name: "r")], outputs: ["y"])
        let feeds = ["x": try f32([1, 2, 1, 2], [1, 2, -3, -4]), "b": try f32([1], [0.5]), "r": try f32([1, 1, 1, 2], [2, -10])]
        #expect(try s.run(feeds)["y"]?.floats() == [0.5, 0])
        let plan = try s.prepare(feeds)
        #expect(!plan.passes.contains { $0.hasPrefix("fuse-conv-") }, "\(plan.passes)")
    }

    /// y = Relu(Relu(Conv(x)) + r), a ResNeXt block's end (its last Conv has its own Relu, so the
    /// sum cannot go into the Conv): the Add and the outer Relu become one cbam::AddRelu step.
    /// 1×1 conv, W = [[1, -1]] (2 → 1 channels); x = [[2, 1, 0, 3], [1, 3, 0, 1]] → conv [1, -2, 0, 2] → relu [1, 0, 0, 2];
    /// r = [-3, 4, -1, -0.5] (broadcast over nothing) → sum [-2, 4, -1, 1.5] → relu [0, 4, 0, 1.5].
    /// With the sum also a graph output, nothing is merged into it.
    @Test func addThenReluBecomesOneStep() throws {
        for (optimize, sumIsOutput) in [(true, false), (false, false), (true, true)] {
            let s = try session(
                [Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["c"]),
                 Node(name: "inner", opType: "Relu", inputs: ["c"], outputs: ["r1"]),
                 Node(name: "add", opType: "Add", inputs: ["r1", "r"], outputs: ["a"]),
                 Node(name: "outer", opType: "Relu", inputs: ["a"], outputs: ["y"])],
                initializers: ["W": try f32([1, 2, 1, 1], [1, -1])],
                inputs: [ValueInfo(name: "x"), ValueInfo(name: "r")], outputs: sumIsOutput ? ["y", "a"] : ["y"],
                options: SessionOptions(optimize: optimize))
            let feeds = ["x": try f32([1, 2, 2, 2], [2, 1, 0, 3, 1, 3, 0, 1]), "r": try f32([1, 1, 2, 2], [-3, 4, -1, -0.5])]
            let out = try s.run(feeds)
            #expect(try out["y"]?.floats() == [0, 4, 0, 1.5], "optimize \(optimize), sum is an output: \(sumIsOutput)")
            if sumIsOutput { #expect(try out["a"]?.floats() == [-2, 4, -1, 1.5]) }
            let plan = try s.prepare(feeds)
            #expect(plan.steps == (optimize ? (sumIsOutput ? 3 : 2) : 4), "optimize \(optimize), sum is an output: \(sumIsOutput)")
            #expect(plan.passes.contains { $0.hasPrefix("fuse-add-relu: 1") } == (optimize && !sumIsOutput))
        }
    }

    /// ReduceMean and ReduceMax over H and W (axes as an attribute at opset 17, as an input at
    /// 18; keepdims 1 and 0) read a Conv's output in the carried layout, as the global pools do,
    /// and give the plain plan's values: 3 → 32 channels, 3×3, 12×12, random values of both signs.
    @Test func spatialReductionsReadTheCarriedLayout() throws {
        guard let machine = LayoutPass.machineLayout else { return }
        var rng = SplitMix(state: 41)
        let weights = try Tensor(shape: [32, 3, 3, 3], floats: (0..<(32 * 27)).map { _ in Float.random(in: -1...1, using: &rng) })
        let x = try Tensor(shape: [2, 3, 12, 12], floats: (0..<(2 * 3 * 144)).map { _ in Float.random(in: -1...1, using: &rng) })
        for (opType, opset, keepDims) in [("ReduceMean", 17, 1), ("ReduceMax", 17, 0), ("ReduceMean", 18, 0), ("ReduceMax", 18, 1)] {
            let reduce = opset >= 18
                ? Node(name: "pool", opType: opType, inputs: ["c", "axes"], outputs: ["y"], attributes: ["keepdims": .int(keepDims)])
                : Node(name: "pool", opType: opType, inputs: ["c"], outputs: ["y"], attributes: ["axes": .ints([-1, 2]), "keepdims": .int(keepDims)])
            func run(carry: Bool) throws -> (Tensor, Session) {
                var options = SessionOptions(threads: 2, carryLayouts: carry)
                options.carryFromMACs = 0
                let model = Model(opsetImports: ["": opset], graph: Graph(
                    nodes: [Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["c"], attributes: ["pads": .ints([1, 1, 1, 1])]), reduce],
                    initializers: ["W": weights, "axes": try Tensor(shape: [2], int64s: [2, 3])],
                    inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")]))
                let session = try Session(model: model, options: options)
                return (try #require(try session.run(["x": x])["y"]), session)
            }
            let ((carried, session), (plain, _)) = (try run(carry: true), try run(carry: false))
            #expect(carried.shape == (keepDims == 1 ? [2, 32, 1, 1] : [2, 32]))
            let comparison = Comparison(actual: carried, expected: plain, atol: 1e-5, rtol: 1e-5)
            #expect(comparison.passed, "\(opType) opset \(opset): \(comparison)")
            let detail = try session.plan(for: ["x": x]).steps.last?.kernel.detail
            #expect(detail == "simd reduce \(machine)", "\(opType) opset \(opset)")
        }
    }

    /// Buffers from 2 MiB on start on a 2 MiB boundary and their whole 2 MiB pages are advised
    /// MADV_HUGEPAGE (the kernel marks the range `hg` in /proc/self/smaps), up to the last whole
    /// page only (the tail stays on small pages, so nothing resident is added); smaller ones are
    /// left alone. Checked where the kernel offers transparent huge pages.
    @Test func largeBuffersAskForHugePages() throws {
        guard HugePages.enabled, let mode = try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/enabled", encoding: .utf8),
              !mode.contains("[never]") else { return }
        /// The VmFlags of the mapping holding `address`.
        func flags(at address: UInt) throws -> [String] {
            var inside = false
            // /proc files report size 0: read to the end rather than by the size.
            let smaps = try #require(FileHandle(forReadingAtPath: "/proc/self/smaps")).readDataToEndOfFile()
            for line in String(decoding: smaps, as: UTF8.self).split(separator: "\n") {
                if let dash = line.firstIndex(of: "-"), let space = line.firstIndex(of: " "), dash < space,
                   let start = UInt(line[..<dash], radix: 16), let end = UInt(line[line.index(after: dash)..<space], radix: 16) {
                    inside = start <= address && address < end
                } else if inside, line.hasPrefix("VmFlags:") {
                    return line.dropFirst("VmFlags:".count).split(separator: " ").map(String.init)
                }
            }
            return []
        }
        let mib = 1 << 20
        let large = AlignedBuffer(byteCount: 5 * mib + 12345), small = AlignedBuffer(byteCount: mib)
        let (start, tail) = (UInt(bitPattern: large.pointer), UInt(bitPattern: large.pointer) + UInt(4 * mib))
        #expect(start % UInt(HugePages.size) == 0)
        #expect(try flags(at: start).contains("hg"))
        #expect(try flags(at: start + UInt(4 * mib - 1)).contains("hg"))
        #expect(try !flags(at: tail).contains("hg"), "the tail past the last whole 2 MiB page stays on small pages")
        #expect(try !flags(at: UInt(bitPattern: small.pointer)).contains("hg"))
    }

    @Test func aConvOutputReadTwiceIsNotFused() throws {
        // c feeds both the Relu and the graph output: the Relu must not be merged.
        let s = try session(
            [Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["c"]),
             Node(name: "relu", opType: "Relu", inputs: ["c"], outputs: ["y"])],
            initializers: ["W": try f32([1, 1, 1, 1], [-1])],
            inputs: [ValueInfo(name: "x")], outputs: ["y", "c"])
        let x = try f32([1, 1, 1, 2], [1, -2])
        let out = try s.run(["x": x])
        #expect(try out["c"]?.floats() == [-1, 2])
        #expect(try out["y"]?.floats() == [0, 2])
        #expect(try s.prepare(["x": x]).steps == 2)
    }

    final class Seen: RunObserver {
        var events: [NodeEvent] = []
        func nodeDidRun(_ event: NodeEvent) throws { events.append(event) }
    }

    @Test func anObserverSeesAFusedStepUnderTheNamesOfItsNodes() throws {
        let seen = Seen()
        _ = try convBatchNormRelu(optimize: true).run(["x": try f32([1, 2, 1, 1], [3, -2])], observer: seen)
        #expect(seen.events.count == 1)
        #expect(seen.events.first?.node.name == "conv+bn+relu")
        #expect(seen.events.first?.replaced.map(\.name) == ["conv", "bn", "relu"])
        #expect(try seen.events.first?.outputs.first?.floats() == [2, 0])
    }

    // MARK: Memory

    @Test func viewsAndInPlaceStepsShareBytes() throws {
        // x → Relu (in place on a dying value) → Reshape (a view) → Sigmoid.
        let s = try session(
            [Node(name: "neg", opType: "Neg", inputs: ["x"], outputs: ["t"]),
             Node(name: "relu", opType: "Relu", inputs: ["t"], outputs: ["r"]),
             Node(name: "flat", opType: "Flatten", inputs: ["r"], outputs: ["f"]),
             Node(name: "sig", opType: "Sigmoid", inputs: ["f"], outputs: ["y"])],
            inputs: [ValueInfo(name: "x")], outputs: ["y"])
        let x = try f32([1, 2, 2], [-1, 2, 0, -3])
        let y = try #require(s.run(["x": x])["y"])
        #expect(y.shape == [1, 4])
        // relu(-x) = [1, 0, 0, 3] → sigmoid
        let expected: [Float] = [1, 0, 0, 3].map { 1 / (1 + Foundation.exp(-$0)) }
        for (a, e) in zip(try y.floats(), expected) { #expect(abs(a - e) < 1e-6) }
        let plan = try s.prepare(["x": x])
        #expect(plan.steps == 3, "the Flatten is a view, not a step")
        #expect(plan.sharedValues >= 3, "Flatten's view, Relu and Sigmoid in place")
        // Everything fits in the bytes of the input plus one value: 2 × 16 bytes, each padded to 64.
        #expect(plan.arenaBytes <= 128)
    }

    @Test func arenaOffsetsNeverOverlapForLiveValues() {
        // Random lifetimes: any two values alive at once must not share bytes.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let intervals = (0..<40).map { i -> ArenaLayout.Interval in
                let first = Int.random(in: -1..<30, using: &generator)
                return .init(name: "v\(i)", bytes: Int.random(in: 1..<5000, using: &generator), first: first,
                             last: first + Int.random(in: 0..<10, using: &generator))
            }
            let layout = ArenaLayout(intervals)
            for a in intervals { for b in intervals where a.name < b.name && a.first <= b.last && b.first <= a.last {
                let (oa, ob) = (layout.offsets[a.name]!, layout.offsets[b.name]!)
                #expect(oa + a.bytes <= ob || ob + b.bytes <= oa, "\(a) and \(b) overlap")
            } }
            #expect(layout.size <= intervals.reduce(0) { $0 + ($1.bytes + 63) / 64 * 64 })
        }
    }

    // MARK: Limits, checked before anything is allocated

    /// Twelve 1 GiB tensors (2^28 floats, each under the per-tensor bound) all alive at the end.
    @Test func twelveGigabyteTensorsAliveAreRefused() throws {
        var nodes: [Node] = []
        var initializers = ["shape": try Tensor(shape: [1], int64s: [1 << 28])]
        for i in 0..<12 {
            initializers["k\(i)"] = try f32([1], [Float(i)])
            nodes.append(Node(name: "add\(i)", opType: "Add", inputs: ["x", "k\(i)"], outputs: ["s\(i)"]))
            nodes.append(Node(name: "expand\(i)", opType: "Expand", inputs: ["s\(i)", "shape"], outputs: ["e\(i)"]))
        }
        nodes.append(Node(name: "sum", opType: "Sum", inputs: (0..<12).map { "e\($0)" }, outputs: ["y"]))
        let s = try session(nodes, initializers: initializers, inputs: [ValueInfo(name: "x", shape: [.fixed(1)])], outputs: ["y"],
                            options: SessionOptions(limits: ResourceLimits(maxMemory: 8 << 30)))
        let error = thrownCBAMError { _ = try s.run(["x": try f32([1], [1])]) }
        #expect(error?.kind == .resourceLimit)
        #expect(error?.message.contains("--max-memory") == true)
        // 12 expanded copies and the Sum of them: 13 GiB alive at the end.
        #expect(error?.message.contains("13.0 GiB") == true, "\(error?.message ?? "")")
    }

    /// One input broadcast to 2^29 elements eight times, each copy kept to the end.
    @Test func eightHalfGigaElementBroadcastsAreRefused() throws {
        var nodes: [Node] = []
        var initializers = ["shape": try Tensor(shape: [2], int64s: [1 << 15, 1 << 14])]
        for i in 0..<8 {
            initializers["k\(i)"] = try f32([1, 1], [Float(i)])
            nodes.append(Node(name: "mul\(i)", opType: "Mul", inputs: ["x", "k\(i)"], outputs: ["m\(i)"]))
            nodes.append(Node(name: "expand\(i)", opType: "Expand", inputs: ["m\(i)", "shape"], outputs: ["e\(i)"]))
        }
        nodes.append(Node(name: "max", opType: "Max", inputs: (0..<8).map { "e\($0)" }, outputs: ["y"]))
        let s = try session(nodes, initializers: initializers, inputs: [ValueInfo(name: "x", shape: [.fixed(1), .fixed(1)])], outputs: ["y"],
                            options: SessionOptions(limits: ResourceLimits(maxMemory: 8 << 30)))
        let error = thrownCBAMError { _ = try s.run(["x": try f32([1, 1], [1])]) }
        #expect(error?.kind == .resourceLimit)
    }

    @Test func aHugeMatMulIsRefusedUnderAMACsLimit() throws {
        // [16384, 16384] · [16384, 16384] = 4.4e12 multiply-accumulates, limit 1e11.
        let s = try session(
            [Node(name: "ea", opType: "Expand", inputs: ["x", "shape"], outputs: ["a"]),
             Node(name: "mm", opType: "MatMul", inputs: ["a", "a"], outputs: ["y"])],
            initializers: ["shape": try Tensor(shape: [2], int64s: [16384, 16384])],
            inputs: [ValueInfo(name: "x", shape: [.fixed(1), .fixed(1)])], outputs: ["y"],
            options: SessionOptions(limits: ResourceLimits(maxMACs: 100_000_000_000)))
        let error = thrownCBAMError { _ = try s.run(["x": try f32([1, 1], [1])]) }
        #expect(error?.kind == .resourceLimit)
        #expect(error?.message.contains("4398046511104") == true)
        #expect(error?.message.contains("--max-macs") == true)
    }

    @Test func foldingAConstantPastTheLimitIsRefusedBeforeItIsComputed() throws {
        // ConstantOfShape [2^29] of an initializer shape would fold into a 2 GiB constant:
        // the session folds it once when it is built, after checking its size.
        let error = thrownCBAMError { _ = try session(
            [Node(name: "big", opType: "ConstantOfShape", inputs: ["shape"], outputs: ["c"]),
             Node(name: "add", opType: "Add", inputs: ["x", "c"], outputs: ["y"])],
            initializers: ["shape": try Tensor(shape: [1], int64s: [1 << 29])],
            inputs: [ValueInfo(name: "x", shape: [.fixed(1)])], outputs: ["y"],
            options: SessionOptions(limits: ResourceLimits(maxMemory: 1 << 30))) }
        #expect(error?.kind == .resourceLimit)
        #expect(error?.node?.name == "big")
    }

    // MARK: Plans per signature, threads

    @Test func aPlanIsCompiledOncePerInputShape() throws {
        let s = try session([Node(name: "relu", opType: "Relu", inputs: ["x"], outputs: ["y"])],
                            inputs: [ValueInfo(name: "x", shape: [.symbolic("batch"), .fixed(2)])], outputs: ["y"])
        let one = try f32([1, 2], [1, -1]), two = try f32([2, 2], [1, -1, -2, 2])
        #expect(try s.prepare(["x": one]).arenaBytes > 0)
        let first = try s.plan(for: ["x": one]), again = try s.plan(for: ["x": one]), other = try s.plan(for: ["x": two])
        #expect(first === again)
        #expect(first !== other)
        #expect(try s.run(["x": two])["y"]?.floats() == [1, 0, 0, 2])
    }

    @Test func oneSessionFromFourThreadsAndAnotherWithOtherThreadsAgree() throws {
        let path = Repo.path("Models/seed004_cbam/torchscript_op17.onnx")
        let input = try NPY.read(contentsOf: Repo.path("Models/seed004_cbam/input.npy"))
        let shared = try Session(contentsOf: path, options: SessionOptions(threads: 2))
        let single = try Session(contentsOf: path, options: SessionOptions(threads: 1))
        let expected = try shared.run(positional: [input])
        let results = UnsafeMutableBufferPointer<[String: Tensor]?>.allocate(capacity: 8)
        defer { _ = results.deinitialize(); results.deallocate() }  // deinitialize: LeakSanitizer found the outputs kept
        results.initialize(repeating: nil)
        let box = UncheckedSendable(results)
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            // Even iterations share one session; odd ones use the single-threaded one.
            box.value[i] = try? (i % 2 == 0 ? shared : single).run(positional: [input])
        }
        for i in 0..<8 {
            let got = try #require(results[i], "run \(i) failed")
            for (name, tensor) in expected {
                let comparison = Comparison(actual: try #require(got[name]), expected: tensor, atol: 1e-5, rtol: 1e-5)
                #expect(comparison.passed, "run \(i), output \(name): \(comparison)")
            }
        }
    }

    /// The C API's way in: inputs read from the caller's buffer straight into the plan's memory
    /// give what tensors give (outputs and attention maps, bit for bit), and are checked alike.
    @Test func borrowedInputsRunLikeTensors() throws {
        let session = try Session(contentsOf: Repo.path("Models/seed004_cbam/torchscript_op17.onnx"), options: SessionOptions(threads: 1))
        let input = try NPY.read(contentsOf: Repo.path("Models/seed004_cbam/input.npy"))
        let name = session.requiredInputs[0].name
        let values = try input.floats()
        let (expected, expectedMaps) = try session.runCapturingAttention([name: input])
        try values.withUnsafeBytes { bytes in
            let borrowed = BorrowedTensor(type: ValueType(.float, input.shape), pointer: bytes.baseAddress!)
            let (outputs, maps) = try session.runCapturingAttention(borrowing: [name: borrowed])
            #expect(outputs == expected)
            #expect(maps.map(\.tensor) == expectedMaps.map(\.tensor))
            #expect(try session.run(borrowing: [name: borrowed]) == expected)
            let wrongShape = BorrowedTensor(type: ValueType(.float, [1] + input.shape.dropFirst()), pointer: bytes.baseAddress!)
            let error = thrownCBAMError { _ = try session.run(borrowing: [name: wrongShape]) }
            #expect(error?.message.contains("must have shape") == true, "\(String(describing: error))")
            let wrongType = BorrowedTensor(type: ValueType(.int32, input.shape), pointer: bytes.baseAddress!)
            #expect(thrownCBAMError { _ = try session.run(borrowing: [name: wrongType]) }?.message.contains("must be float") == true)
        }
    }

    /// A residual block of two 3×3 convolutions (32 channels, 24×24 maps: ones oneDNN's Winograd
    /// kernel takes on AVX-512): with Winograd forced (the batch's primitive, and the batch-1 one
    /// image by image), timed (`fastest`) and left out (`direct`),
    /// at batch 1 (its F(2×2) kernel) and 2 (F(4×4)) and 1 and 2 threads, the output agrees with
    /// im2col on the plain plan; where Winograd exists on this CPU the forced plan runs it on
    /// both convolutions, and `direct` never does.
    @Test func winogradStepsAgreeWithTheDirectPlan() throws {
        var rng = SplitMix(state: 53)
        func random(_ shape: [Int], _ scale: Float) throws -> Tensor {
            try f32(shape, (0..<shape.reduce(1, *)).map { _ in Float.random(in: -scale...scale, using: &rng) })
        }
        let (nodes, initializers, cpuHasWinograd) = try Self.winogradBlock(random)
        for batch in [1, 2] {
            let x = try random([batch, 32, 24, 24], 2)
            let inputs = [ValueInfo(name: "x", shape: x.shape.map { .fixed($0) })]
            let expected = try #require(try session(nodes, initializers: initializers, inputs: inputs, outputs: ["y"],
                                                    options: SessionOptions(optimize: false, convolution: .im2col)).run(["x": x])["y"])
            for convolution in [ConvolutionKernel.oneDNNWinograd, .oneDNNWinogradPerImage, .fastest, .direct] {
                for threads in [1, 2] {
                    let s = try session(nodes, initializers: initializers, inputs: inputs, outputs: ["y"],
                                        options: SessionOptions(threads: threads, convolution: convolution))
                    let label = "batch \(batch), \(convolution), \(threads) thread(s)"
                    let comparison = Comparison(actual: try #require(try s.run(["x": x])["y"]), expected: expected, atol: 1e-4, rtol: 1e-4)
                    #expect(comparison.passed, "\(label): \(comparison)")
                    let details = try s.plan(for: ["x": x]).steps.map(\.kernel.detail)
                    let winogradSteps = details.filter { $0.contains("winograd") }.count
                    switch convolution {
                    case .oneDNNWinograd: #expect(winogradSteps == (cpuHasWinograd ? 2 : 0), "\(label)")
                    case .oneDNNWinogradPerImage:
                        #expect(winogradSteps == (cpuHasWinograd ? 2 : 0), "\(label)")
                        #expect(details.filter { $0.hasSuffix("per image") }.count == (cpuHasWinograd && batch > 1 ? 2 : 0), "\(label): \(details)")
                    case .direct: #expect(winogradSteps == 0, "\(label)")
                    default: break
                    }
                }
            }
        }
    }

    /// The residual block of two 3×3 convolutions (32 → 32 channels, 24×24 maps) the Winograd
    /// tests use, its weights, and whether oneDNN has a Winograd kernel for it on this CPU.
    static func winogradBlock(_ random: (_ shape: [Int], _ scale: Float) throws -> Tensor) throws
        -> (nodes: [Node], initializers: [String: Tensor], cpuHasWinograd: Bool) {
        let pads: [String: Attribute] = ["pads": .ints([1, 1, 1, 1]), "kernel_shape": .ints([3, 3])]
        let nodes = [Node(name: "conv1", opType: "Conv", inputs: ["x", "W1", "B1"], outputs: ["c1"], attributes: pads),
                     Node(name: "relu1", opType: "Relu", inputs: ["c1"], outputs: ["r1"]),
                     Node(name: "conv2", opType: "Conv", inputs: ["r1", "W2", "B2"], outputs: ["c2"], attributes: pads),
                     Node(name: "add", opType: "Add", inputs: ["c2", "x"], outputs: ["a"]),
                     Node(name: "relu2", opType: "Relu", inputs: ["a"], outputs: ["y"])]
        let initializers = ["W1": try random([32, 32, 3, 3], 0.1), "B1": try random([32], 0.5),
                            "W2": try random([32, 32, 3, 3], 0.1), "B2": try random([32], 0.5)]
        let probe = DNNLConvolution.Geometry(batch: 1, channels: 32, height: 24, width: 24, outputChannels: 32, kernelHeight: 3, kernelWidth: 3,
                                             padTop: 1, padLeft: 1, padBottom: 1, padRight: 1)
        let cpuHasWinograd = (try? DNNLConvolution(geometry: probe, weights: [Float](repeating: 0, count: 32 * 32 * 9),
                                                   layout: .chosenByPrimitive, algorithm: .winograd)).map { !$0.usesReferenceKernel } ?? false
        return (nodes, initializers, cpuHasWinograd)
    }

    /// Timed (the default), a Winograd step is taken only where its scratch fits memory the plan
    /// has anyway during that step (a gap of the arena, or scratch an earlier step already added)
    /// or, with ``MemoryPreference/speed``, is at most ``ConvCandidate/winogradFreeScratchBytes``; so
    /// with `lean` Winograd never makes a run's memory larger, with `speed` by at most that. Forced,
    /// it is taken regardless. Shown on the residual block at batch 1, 2, 4 and 16 and 1 and 2
    /// threads, where the forced plans' Winograd scratch runs past the arena by more than the cap
    /// (at batch 16), so the rule has something to refuse.
    @Test func timedWinogradTakesOnlyFreeScratch() throws {
        var rng = SplitMix(state: 59)
        func random(_ shape: [Int], _ scale: Float) throws -> Tensor {
            try f32(shape, (0..<shape.reduce(1, *)).map { _ in Float.random(in: -scale...scale, using: &rng) })
        }
        let (nodes, initializers, cpuHasWinograd) = try Self.winogradBlock(random)
        var forcedPastArena = 0
        let cap = ConvCandidate.winogradFreeScratchBytes
        for batch in [1, 2, 4, 16] {
            let x = try random([batch, 32, 24, 24], 2)
            let inputs = [ValueInfo(name: "x", shape: x.shape.map { .fixed($0) })]
            for threads in [1, 2] {
                for (convolution, memory) in [(ConvolutionKernel.fastest, MemoryPreference.lean), (.fastest, .speed), (.oneDNNWinograd, .lean)] {
                    let plan = try session(nodes, initializers: initializers, inputs: inputs, outputs: ["y"],
                                           options: SessionOptions(threads: threads, convolution: convolution, memory: memory)).plan(for: ["x": x])
                    var paidFor = plan.arenaBytes
                    for step in plan.steps where step.scratchBytes > 0 {
                        let end = step.scratchOffset + step.scratchBytes
                        if step.kernel.detail.contains("winograd") {
                            if convolution == .fastest {
                                #expect(end <= paidFor || memory == .speed && step.scratchBytes <= cap,
                                        "\(memory), batch \(batch), \(threads) thread(s), \(step.entry.node.name): scratch of \(step.scratchBytes) ends at \(end), the plan had \(paidFor)")
                            } else if end > paidFor && step.scratchBytes > cap {
                                forcedPastArena += 1
                            }
                        }
                        paidFor = Swift.max(paidFor, end)
                    }
                }
            }
        }
        if cpuHasWinograd { #expect(forcedPastArena > 0) }
    }

    /// The batch-folded GEMM (`CBAM_CONV=folded`) against im2col on the plain plan, on 40 seeded
    /// random ungrouped convolutions: kernel 1–3 each way, strides and dilations 1–2, pads 0–2,
    /// batch 1–3, with or without bias, a residual Add and a Relu (fused into the Conv), 1 and
    /// 2 threads; the folded plan must run the folded kernel on the Conv.
    @Test func batchFoldedConvolutionMatchesIm2col() throws {
        var rng = SplitMix(state: 61)
        func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
        func random(_ shape: [Int]) throws -> Tensor {
            try f32(shape, (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &rng) })
        }
        var folded = 0
        for round in 0..<40 {
            let (n, c, m) = (int(1...3), int(1...20), int(1...20))
            let (kh, kw, sh, sw, dh, dw) = (int(1...3), int(1...3), int(1...2), int(1...2), int(1...2), int(1...2))
            let pads = [int(0...2), int(0...2), int(0...2), int(0...2)]
            let (h, w) = (int(((kh - 1) * dh + 1)...9), int(((kw - 1) * dw + 1)...9))
            let attributes: [String: Attribute] = ["kernel_shape": .ints([kh, kw]), "strides": .ints([sh, sw]),
                                                   "dilations": .ints([dh, dw]), "pads": .ints(pads)]
            let withBias = round % 3 != 0
            var initializers = ["W": try random([m, c, kh, kw])]
            if withBias { initializers["B"] = try random([m]) }
            var nodes = [Node(name: "conv", opType: "Conv", inputs: withBias ? ["x", "W", "B"] : ["x", "W"], outputs: ["c"], attributes: attributes)]
            var output = "c"
            let (oh, ow) = ((h + pads[0] + pads[2] - (kh - 1) * dh - 1) / sh + 1, (w + pads[1] + pads[3] - (kw - 1) * dw - 1) / sw + 1)
            var inputs = [ValueInfo(name: "x", shape: [n, c, h, w].map { .fixed($0) })]
            var feeds = ["x": try random([n, c, h, w])]
            if round % 2 == 1 {
                inputs.append(ValueInfo(name: "r", shape: [n, m, oh, ow].map { .fixed($0) }))
                feeds["r"] = try random([n, m, oh, ow])
                nodes.append(Node(name: "add", opType: "Add", inputs: ["c", "r"], outputs: ["a"]))
                output = "a"
            }
            if round % 4 < 2 {
                nodes.append(Node(name: "relu", opType: "Relu", inputs: [output], outputs: ["y"]))
                output = "y"
            }
            let label = "round \(round): x \([n, c, h, w]) W \([m, c, kh, kw]) \(attributes) bias \(withBias) \(nodes.map(\.opType))"
            let expected = try #require(try session(nodes, initializers: initializers, inputs: inputs, outputs: [output],
                                                    options: SessionOptions(optimize: false, convolution: .im2col)).run(feeds)[output])
            let s = try session(nodes, initializers: initializers, inputs: inputs, outputs: [output],
                                options: SessionOptions(threads: 1 + round % 2, convolution: .folded))
            let comparison = Comparison(actual: try #require(try s.run(feeds)[output]), expected: expected, atol: 1e-5, rtol: 1e-5)
            #expect(comparison.passed, "\(label): \(comparison)")
            let kernels = try s.plan(for: feeds).steps.map(\.kernel.detail)
            #expect(kernels.contains { $0.hasPrefix("folded-gemm") }, "\(label): \(kernels)")
            if kernels.contains(where: { $0.hasPrefix("folded-gemm") }) { folded += 1 }
        }
        #expect(folded == 40)
    }

    /// Timed (the default), a weight-bound convolution takes the batch-folded kernel at batch 2
    /// and not at batch 1, or the streamed kernel at both where that is taken untimed: VGG-19's 512-channel 3×3 convolution at 2×2 (9.4 MB of weights, 8
    /// output pixels over the batch), against im2col on the plain plan.
    @Test func weightBoundConvolutionsFoldTheBatch() throws {
        var rng = SplitMix(state: 67)
        let weights = try f32([512, 512, 3, 3], (0..<(512 * 512 * 9)).map { _ in Float.random(in: -0.05...0.05, using: &rng) })
        let nodes = [Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["y"],
                          attributes: ["pads": .ints([1, 1, 1, 1]), "kernel_shape": .ints([3, 3])])]
        #expect(ConvCandidate.prefersBatchFolded(batch: 2, outputPixels: 4, weightBytes: weights.valueType.byteCount))
        #expect(!ConvCandidate.prefersBatchFolded(batch: 2, outputPixels: 49, weightBytes: weights.valueType.byteCount))
        #expect(!ConvCandidate.prefersBatchFolded(batch: 2, outputPixels: 4, weightBytes: 1 << 20))
        #expect(!ConvCandidate.prefersBatchFolded(batch: .max, outputPixels: 4, weightBytes: weights.valueType.byteCount))
        for batch in [1, 2] {
            let x = try f32([batch, 512, 2, 2], (0..<(batch * 2048)).map { _ in Float.random(in: -1...1, using: &rng) })
            let inputs = [ValueInfo(name: "x", shape: x.shape.map { .fixed($0) })]
            let expected = try #require(try session(nodes, initializers: ["W": weights], inputs: inputs, outputs: ["y"],
                                                    options: SessionOptions(optimize: false, convolution: .im2col)).run(["x": x])["y"])
            let s = try session(nodes, initializers: ["W": weights], inputs: inputs, outputs: ["y"], options: SessionOptions(threads: 2))
            let comparison = Comparison(actual: try #require(try s.run(["x": x])["y"]), expected: expected, atol: 1e-4, rtol: 1e-4)
            #expect(comparison.passed, "batch \(batch): \(comparison)")
            let kernels = try s.plan(for: ["x": x]).steps.map(\.kernel.detail)
            // Where the streamed kernel is taken untimed (AVX-512), it comes first.
            if batch * 4 <= ConvCandidate.streamedMaximumPixels && ConvCandidate.prefersStreamed() {
                #expect(kernels.contains { $0.hasPrefix("streamed") }, "batch \(batch): \(kernels)")
            } else {
                #expect(kernels.contains { $0.hasPrefix("folded-gemm") } == (batch == 2), "batch \(batch): \(kernels)")
            }
        }
    }

    /// A 1×1 convolution with 2 MB of weights (ResNeXt-50's 512 → 1024 layers) on 7×7 maps, 49 and
    /// 98 output pixels over the batch, with a residual Add and Relu: on the streamed kernel where
    /// that is taken untimed (AVX-512; 1×1 layers up to 128 pixels), and its output against
    /// im2col on the plain plan.
    @Test func pointwiseLayersTakeTheStreamedKernelUpTo128Pixels() throws {
        var rng = SplitMix(state: 71)
        let weights = try f32([1024, 512, 1, 1], (0..<(1024 * 512)).map { _ in Float.random(in: -0.05...0.05, using: &rng) })
        let bias = try f32([1024], (0..<1024).map { _ in Float.random(in: -1...1, using: &rng) })
        let nodes = [Node(name: "conv", opType: "Conv", inputs: ["x", "W", "B"], outputs: ["c"], attributes: ["kernel_shape": .ints([1, 1])]),
                     Node(name: "add", opType: "Add", inputs: ["c", "r"], outputs: ["s"]),
                     Node(name: "relu", opType: "Relu", inputs: ["s"], outputs: ["y"])]
        for batch in [1, 2] {
            let x = try f32([batch, 512, 7, 7], (0..<(batch * 512 * 49)).map { _ in Float.random(in: -1...1, using: &rng) })
            let r = try f32([batch, 1024, 7, 7], (0..<(batch * 1024 * 49)).map { _ in Float.random(in: -1...1, using: &rng) })
            let inputs = [ValueInfo(name: "x", shape: x.shape.map { .fixed($0) }), ValueInfo(name: "r", shape: r.shape.map { .fixed($0) })]
            let initializers = ["W": weights, "B": bias]
            let expected = try #require(try session(nodes, initializers: initializers, inputs: inputs, outputs: ["y"],
                                                    options: SessionOptions(optimize: false, convolution: .im2col)).run(["x": x, "r": r])["y"])
            let s = try session(nodes, initializers: initializers, inputs: inputs, outputs: ["y"], options: SessionOptions(threads: 2))
            let comparison = Comparison(actual: try #require(try s.run(["x": x, "r": r])["y"]), expected: expected, atol: 1e-4, rtol: 1e-4)
            #expect(comparison.passed, "batch \(batch): \(comparison)")
            let kernels = try s.plan(for: ["x": x, "r": r]).steps.map(\.kernel.detail)
            #expect(kernels.contains { $0.hasPrefix("streamed") } == ConvCandidate.prefersStreamed(), "batch \(batch): \(kernels)")
        }
    }

    /// A step's scratch memory lies in a gap of the arena or past it, never on the bytes of a
    /// value the step reads or writes, and inside the buffer a run allocates: on every zoo
    /// model (one export each) and a ResNet-sized residual block whose Winograd steps ask for
    /// MBs of scratch. (That no other live value is overwritten is what the zoo conformance
    /// tests show, outputs against PyTorch's.)
    @Test func stepScratchAvoidsTheStepsOwnOperands() throws {
        var checked = 0
        for entry in ZooEntry.all where entry.file.hasSuffix("torchscript_op17.onnx") {
            let session = try Session(contentsOf: Repo.path("Models/" + entry.file), options: SessionOptions(threads: 2))
            var feeds: [String: Tensor] = [:]
            for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
            let plan = try session.plan(for: feeds)
            for step in plan.steps where step.scratchBytes > 0 {
                let scratch = step.scratchOffset..<(step.scratchOffset + step.scratchBytes)
                #expect(scratch.upperBound <= plan.arenaBytes + plan.scratchBytes, "\(entry.name) \(step.entry.node.name)")
                for operand in (step.inputs + step.outputs).compactMap({ $0 }) {
                    guard case .arena(let offset) = operand.address else { continue }
                    let bytes = offset..<(offset + operand.type.byteCount)
                    #expect(!bytes.overlaps(scratch), "\(entry.name) \(step.entry.node.name): scratch \(scratch) on \(bytes)")
                }
                checked += 1
            }
        }
        #expect(checked > 0)
    }
}
