import Foundation
import Testing
@testable import CBAMRuntime

/// Differential tests of the planned kernels: each op runs as a one-node graph through a
/// Session (its planned kernel, on the arena) and through its reference kernel directly,
/// on random shapes and attributes from a seeded generator; the results must agree
/// exactly where both share a loop or compute the same expression, and within 1e-5
/// relative otherwise. Each case also checks that the plan picked the planned kernel.
@Suite("Planned kernels")
struct PlannedKernelTests {
    typealias Random = SplitMix

    // MARK: Harness

    /// Runs `node` both ways and compares every named output. `feeds` are the runtime
    /// inputs, `constants` the initializers (shape-like inputs the planner needs to know).
    func check(_ node: Node, feeds: [String: Tensor], constants: [String: Tensor] = [:], opset: Int = 17,
               tolerance: Double = 0, threads: Int = 1, planned: Bool = true, _ note: String = "",
               sourceLocation: SourceLocation = #_sourceLocation) throws {
        let graph = Graph(nodes: [node], initializers: constants,
                          inputs: feeds.keys.sorted().map { ValueInfo(name: $0, elementType: feeds[$0]!.dataType) },
                          outputs: node.outputs.filter { !$0.isEmpty }.map { ValueInfo(name: $0) })
        let session = try Session(model: Model(opsetImports: ["": opset], graph: graph), options: SessionOptions(threads: threads))
        let actual = try session.run(feeds)
        let inputs: [Tensor?] = node.inputs.map { $0.isEmpty ? nil : feeds[$0] ?? constants[$0] }
        let context = NodeContext(node: node, opset: opset, constants: node.inputs.map { constants[$0] })
        let builder = try #require(OpRegistry.standard.builder(for: node))
        let expected = try builder(context).run(inputs)
        let shapes = inputs.map { $0.map { Shape.describe($0.shape) } ?? "-" }
        let label = "\(node.opType) \(shapes.joined(separator: " ")) \(node.attributes) \(note)"
        for (index, name) in node.outputs.enumerated() where !name.isEmpty {
            guard let result = actual[name] else { Issue.record("\(label): no output \(name)", sourceLocation: sourceLocation); continue }
            let comparison = Comparison(actual: result, expected: expected[index], atol: tolerance, rtol: tolerance)
            #expect(comparison.passed, "\(label) output \(index): \(comparison)", sourceLocation: sourceLocation)
        }
        if planned {
            let kernels = try session.plan(for: feeds).steps.map(\.kernel.detail)
            #expect(!kernels.contains("reference"), "\(label): the plan ran \(kernels)", sourceLocation: sourceLocation)
        }
    }

    func int(_ range: ClosedRange<Int>, _ random: inout Random) -> Int { Int.random(in: range, using: &random) }
    func bool(_ random: inout Random) -> Bool { Bool.random(using: &random) }

    /// Floats in [-3, 3], with NaN, ±∞ and ±0 sprinkled in when `special`.
    func floats(_ shape: [Int], _ random: inout Random, special: Bool = false, range: ClosedRange<Float> = -3...3) -> Tensor {
        let count = shape.reduce(1, *)
        let specials: [Float] = [.nan, .infinity, -.infinity, 0, -0.0]
        let values = (0..<count).map { _ -> Float in
            if special && int(0...15, &random) == 0 { return specials[int(0...4, &random)] }
            return Float.random(in: range, using: &random)
        }
        return Tensor.float(shape, values)
    }

    func shape(rank: ClosedRange<Int>, extent: ClosedRange<Int>, _ random: inout Random) -> [Int] {
        (0..<int(rank, &random)).map { _ in int(extent, &random) }
    }

    func ints(_ values: [Int]) -> Tensor { Tensor.int64([values.count], values.map { Int64($0) }) }

    // MARK: Pooling

    @Test(arguments: ["MaxPool", "AveragePool", "LpPool"])
    func windowPools(_ op: String) throws {
        var random = Random(state: UInt64(op.count) &* 7919)
        for round in 0..<40 {
            let big = round % 10 == 9
            let (n, c) = big ? (2, 8) : (int(1...3, &random), int(1...5, &random))
            let (h, w) = big ? (int(60...70, &random), int(60...70, &random)) : (int(1...17, &random), int(1...17, &random))
            // Small windows (the stems), and now and then one as large as the image (CBAM's channel gate).
            let kernel = round % 7 == 3 ? [int(1...h, &random), w] : [int(1...Swift.min(4, h), &random), int(1...Swift.min(4, w), &random)]
            var attributes: [String: Attribute] = ["kernel_shape": .ints(kernel), "strides": .ints([int(1...3, &random), int(1...3, &random)])]
            if int(0...4, &random) == 0 {
                attributes["auto_pad"] = .string(["SAME_UPPER", "SAME_LOWER", "VALID"][int(0...2, &random)])
            } else {
                attributes["pads"] = .ints((0..<4).map { kernel[$0 % 2] > 1 ? int(0...(kernel[$0 % 2] - 1), &random) : 0 })
                if op != "LpPool" { attributes["ceil_mode"] = .int(int(0...1, &random)) }
            }
            if op == "MaxPool", bool(&random), attributes["auto_pad"] == nil { attributes["dilations"] = .ints([1, int(1...2, &random)]) }
            if op == "AveragePool" { attributes["count_include_pad"] = .int(int(0...1, &random)) }
            if op == "LpPool" { attributes["p"] = .int(int(1...3, &random)) }
            if case .ints(let d)? = attributes["dilations"], (kernel[1] - 1) * d[1] + 1 > w { attributes["dilations"] = nil }
            let indices = op == "MaxPool" && round % 3 == 0
            let node = Node(opType: op, inputs: ["x"], outputs: indices ? ["y", "i"] : ["y"], attributes: attributes)
            try check(node, feeds: ["x": floats([n, c, h, w], &random, special: op == "MaxPool")], opset: op == "AveragePool" ? 11 : 17,
                      tolerance: 0, threads: big ? 2 : 1)
        }
    }

    @Test(arguments: ["GlobalAveragePool", "GlobalMaxPool"])
    func globalPools(_ op: String) throws {
        var random = Random(state: 41)
        for round in 0..<20 {
            let x = round == 19 ? [2, 16, 48, 48] : [int(1...3, &random), int(1...6, &random)] + shape(rank: 1...2, extent: 1...13, &random)
            try check(Node(opType: op, inputs: ["x"], outputs: ["y"]), feeds: ["x": floats(x, &random)], threads: round == 19 ? 2 : 1)
        }
    }

    // MARK: Reductions

    @Test(arguments: ["ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin", "ReduceSumSquare", "ReduceL2"])
    func reductions(_ op: String) throws {
        var random = Random(state: UInt64(op.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) }))
        for round in 0..<50 {
            let big = round % 10 == 9
            // The CBAM pools: over the channels of [N, C, H, W], over its spatial axes; then random ranks.
            var x: [Int], axes: [Int]
            switch round % 5 {
            case 0: x = big ? [2, 32, 48, 48] : [int(1...3, &random), int(1...16, &random), int(1...9, &random), int(1...9, &random)]; axes = [1]
            case 1: x = big ? [2, 32, 48, 48] : [int(1...3, &random), int(1...16, &random), int(1...9, &random), int(1...9, &random)]; axes = [2, 3]
            default:
                x = shape(rank: 1...4, extent: 1...7, &random)
                let first = int(0...(x.count - 1), &random), last = int(first...(x.count - 1), &random)
                axes = Array(first...last)
            }
            if bool(&random) { axes = axes.map { $0 - x.count } }  // negative axes
            let keep = int(0...1, &random)
            let all = round % 7 == 3  // no axes: reduce everything
            let axesFromInput = bool(&random)
            let since = op == "ReduceSum" ? 13 : 18
            let opset = axesFromInput ? since : since - 1
            var attributes: [String: Attribute] = ["keepdims": .int(keep)]
            var inputs = ["x"], constants: [String: Tensor] = [:]
            if !all {
                if axesFromInput { inputs.append("axes"); constants["axes"] = ints(axes) } else { attributes["axes"] = .ints(axes) }
            }
            let node = Node(opType: op, inputs: inputs, outputs: ["y"], attributes: attributes)
            // Values away from zero: float sums stay within 1e-5 of the Double ones (squares of any sign do).
            let squares = op == "ReduceSumSquare" || op == "ReduceL2"
            try check(node, feeds: ["x": floats(x, &random, range: squares ? -3...3 : 0.5...3)], constants: constants, opset: opset,
                      tolerance: 1e-5, threads: big ? 2 : 1)
        }
    }

    @Test func reductionsOverAxesApartFallBackToTheReference() throws {
        var random = Random(state: 5)
        // Axes 0 and 2 of [2, 3, 4] are not adjacent: the reference kernel computes it.
        let node = Node(opType: "ReduceMean", inputs: ["x"], outputs: ["y"], attributes: ["axes": .ints([0, 2])])
        try check(node, feeds: ["x": floats([2, 3, 4], &random)], tolerance: 1e-6, planned: false)
        // With axis 1 of extent 1 between them they are adjacent in memory: planned.
        try check(node, feeds: ["x": floats([2, 1, 4], &random)], tolerance: 1e-6)
    }

    @Test(arguments: ["Softmax", "LogSoftmax"])
    func softmax(_ op: String) throws {
        var random = Random(state: UInt64(op.count) &* 104_729)
        for round in 0..<40 {
            let big = round % 10 == 9
            // SK / ResNeSt: [N, radix, C, 1, 1] over the radix axis; then random.
            let x = round % 4 == 0 ? [int(1...3, &random), int(2...4, &random), int(1...40, &random), 1, 1]
                : big ? [2, 4, 96, 96] : shape(rank: 1...4, extent: 1...9, &random)
            let axis = round % 4 == 0 ? 1 : int(-x.count...(x.count - 1), &random)
            let opset = round % 3 == 0 ? 11 : 13
            let node = Node(opType: op, inputs: ["x"], outputs: ["y"], attributes: ["axis": .int(axis)])
            try check(node, feeds: ["x": floats(x, &random)], opset: opset, tolerance: 1e-5, threads: big ? 2 : 1)
        }
    }

    // MARK: Data movement

    @Test func concat() throws {
        var random = Random(state: 11)
        for round in 0..<40 {
            let big = round % 10 == 9
            var base = big ? [1, 64, 40, 40] : shape(rank: 1...4, extent: 1...6, &random)
            let axis = int(0...(base.count - 1), &random)
            let parts = int(1...4, &random)
            var feeds: [String: Tensor] = [:], names: [String] = []
            let integer = round % 8 == 5
            for p in 0..<parts {
                base[axis] = int(0...5, &random) + (p == 0 ? 1 : 0)
                let name = "x\(p)"
                feeds[name] = integer ? Tensor.int64(base, (0..<base.reduce(1, *)).map { _ in Int64.random(in: -99...99, using: &random) })
                    : floats(base, &random)
                names.append(name)
            }
            let node = Node(opType: "Concat", inputs: names, outputs: ["y"], attributes: ["axis": .int(bool(&random) ? axis : axis - base.count)])
            try check(node, feeds: feeds, threads: big ? 2 : 1)
        }
    }

    @Test func split() throws {
        var random = Random(state: 13)
        for round in 0..<40 {
            let x = round % 10 == 9 ? [1, 128, 32, 32] : shape(rank: 1...4, extent: 1...8, &random)
            let axis = int(0...(x.count - 1), &random)
            let extent = x[axis]
            var attributes: [String: Attribute] = ["axis": .int(bool(&random) ? axis : axis - x.count)]
            var inputs = ["x"], constants: [String: Tensor] = [:]
            var opset = 13
            let outputs: Int
            switch round % 4 {
            case 0:  // sizes as an input
                var sizes: [Int] = [], left = extent
                while left > 0 { let s = int(1...left, &random); sizes.append(s); left -= s }
                if bool(&random) { sizes.append(0) }
                inputs.append("split"); constants["split"] = ints(sizes); outputs = sizes.count
            case 1:  // sizes as an attribute
                var sizes: [Int] = [], left = extent
                while left > 0 { let s = int(1...left, &random); sizes.append(s); left -= s }
                attributes["split"] = .ints(sizes); opset = 11; outputs = sizes.count
            case 2:  // num_outputs, the last part smaller
                let parts = int(1...Swift.max(1, extent), &random)
                attributes["num_outputs"] = .int(parts); opset = 18; outputs = parts
            default:  // equal parts, one per output
                let divisors = (1...extent).filter { extent % $0 == 0 }
                outputs = divisors[int(0...(divisors.count - 1), &random)]
            }
            // Now and then an output nobody reads.
            let names = (0..<outputs).map { outputs > 1 && int(0...5, &random) == 0 ? "" : "y\($0)" }
            let node = Node(opType: "Split", inputs: inputs, outputs: names.allSatisfy(\.isEmpty) ? ["y0"] + names.dropFirst() : names,
                            attributes: attributes)
            try check(node, feeds: ["x": floats(x, &random)], constants: constants, opset: opset, threads: round % 10 == 9 ? 2 : 1)
        }
    }

    @Test func slice() throws {
        var random = Random(state: 17)
        for round in 0..<50 {
            let x = round % 10 == 9 ? [2, 64, 40, 40] : shape(rank: 1...4, extent: 1...9, &random)
            let count = int(1...x.count, &random)
            let axes = Array((0..<x.count).shuffled(using: &random).prefix(count))
            func bound() -> Int {
                switch int(0...9, &random) {
                case 0: return Int(Int64.max)
                case 1: return Int(Int64.min)
                default: return int(-12...12, &random)
                }
            }
            let starts = axes.map { _ in bound() }, ends = axes.map { _ in bound() }
            let steps = axes.map { _ in int(0...2, &random) == 0 ? int(-3...(-1), &random) : int(1...3, &random) }
            let node: Node, constants: [String: Tensor], opset: Int
            if round % 5 == 4 {
                // Opset 9: attributes, step 1.
                node = Node(opType: "Slice", inputs: ["x"], outputs: ["y"],
                            attributes: ["starts": .ints(starts), "ends": .ints(ends), "axes": .ints(axes)])
                (constants, opset) = ([:], 9)
            } else {
                let withAxes = bool(&random)
                let full = withAxes ? ["x", "starts", "ends", "axes", "steps"] : ["x", "starts", "ends"]
                let ordered = withAxes ? (starts, ends) : (Array(starts.prefix(count)), Array(ends.prefix(count)))
                node = Node(opType: "Slice", inputs: full, outputs: ["y"])
                var c = ["starts": ints(ordered.0), "ends": ints(ordered.1)]
                if withAxes { c["axes"] = ints(axes.map { bool(&random) ? $0 : $0 - x.count }); c["steps"] = ints(steps) }
                (constants, opset) = (c, 13)  // without axes the bounds apply to the first axes in order
            }
            try check(node, feeds: ["x": floats(x, &random)], constants: constants, opset: opset, threads: round % 10 == 9 ? 2 : 1)
        }
    }

    @Test func transpose() throws {
        var random = Random(state: 19)
        for round in 0..<40 {
            let x = round % 10 == 9 ? [2, 32, 40, 40] : shape(rank: 1...5, extent: 1...6, &random)
            let perm = Array((0..<x.count).shuffled(using: &random))
            let node = Node(opType: "Transpose", inputs: ["x"], outputs: ["y"], attributes: round % 6 == 0 ? [:] : ["perm": .ints(perm)])
            try check(node, feeds: ["x": floats(x, &random)], threads: round % 10 == 9 ? 2 : 1)
        }
    }

    @Test func expand() throws {
        var random = Random(state: 23)
        for round in 0..<40 {
            let big = round % 10 == 9
            // The channel gate's [N, C, 1, 1] → [N, C, H, W]; then random broadcasts.
            var target = big ? [2, 32, 48, 48] : shape(rank: 1...4, extent: 1...6, &random)
            var x = target.map { int(0...2, &random) == 0 ? 1 : $0 }
            if round % 3 == 0 { x[x.count - 1] = 1; if x.count > 1 { x[x.count - 2] = 1 } }
            x = Array(x.dropFirst(int(0...(x.count - 1), &random)))
            // The shape input may itself hold 1s where X is larger.
            target = target.enumerated().map { index, extent in
                let offset = target.count - x.count
                return index >= offset && int(0...4, &random) == 0 ? 1 : extent
            }
            let node = Node(opType: "Expand", inputs: ["x", "shape"], outputs: ["y"])
            try check(node, feeds: ["x": floats(x, &random)], constants: ["shape": ints(target)], threads: big ? 2 : 1)
        }
    }

    @Test func tile() throws {
        var random = Random(state: 29)
        for _ in 0..<30 {
            let x = shape(rank: 1...4, extent: 1...5, &random)
            let repeats = x.map { _ in int(0...5, &random) == 0 ? 0 : int(1...3, &random) }
            let node = Node(opType: "Tile", inputs: ["x", "repeats"], outputs: ["y"])
            try check(node, feeds: ["x": floats(x, &random)], constants: ["repeats": ints(repeats)])
        }
    }

    @Test func gather() throws {
        var random = Random(state: 31)
        for _ in 0..<30 {
            let x = shape(rank: 1...4, extent: 1...6, &random)
            let axis = int(0...(x.count - 1), &random)
            let indexShape = shape(rank: 0...2, extent: 1...4, &random)
            let values = (0..<indexShape.reduce(1, *)).map { _ in Int64(int(-x[axis]...(x[axis] - 1), &random)) }
            let node = Node(opType: "Gather", inputs: ["x", "i"], outputs: ["y"], attributes: ["axis": .int(bool(&random) ? axis : axis - x.count)])
            try check(node, feeds: ["x": floats(x, &random)], constants: ["i": Tensor.int64(indexShape, values)])
        }
    }

    /// Constant-mode Pad, planned: pads from the attribute (opset 2), the input (13), for some
    /// axes only (18); negative pads crop; the fill from the value attribute or constant_value
    /// (NaN and ±∞ too). Reflect, edge and wrap stay on the reference kernel.
    @Test func pad() throws {
        var random = Random(state: 37)
        for round in 0..<60 {
            let big = round % 10 == 9
            let x = big ? [2, 16, 40, 41] : shape(rank: 1...4, extent: 1...6, &random)
            let rank = x.count
            // A negative pad removes at most what the axis holds.
            var pads = [Int](repeating: 0, count: 2 * rank)
            for axis in 0..<rank {
                pads[axis] = int(-x[axis]...3, &random)
                pads[axis + rank] = int(Swift.max(-3, -(x[axis] + pads[axis]))...3, &random)
            }
            let fills: [Float] = [0, 1, -2.5, .nan, .infinity, -.infinity]
            let value = fills[int(0...(fills.count - 1), &random)]
            let node: Node, constants: [String: Tensor], opset: Int
            switch round % 4 {
            case 0:
                node = Node(opType: "Pad", inputs: ["x"], outputs: ["y"], attributes: ["pads": .ints(pads), "value": .float(value)])
                (constants, opset) = ([:], 2)
            case 1:
                node = Node(opType: "Pad", inputs: ["x", "pads"], outputs: ["y"])
                (constants, opset) = (["pads": ints(pads)], 13)
            case 2:
                node = Node(opType: "Pad", inputs: ["x", "pads", "value"], outputs: ["y"])
                (constants, opset) = (["pads": ints(pads), "value": Tensor.float([], [value])], 13)
            default:
                // Some axes, in any order, negative or not.
                let axes = Array((0..<rank).shuffled(using: &random).prefix(int(1...rank, &random)))
                let given = axes.map { pads[$0] } + axes.map { pads[$0 + rank] }
                node = Node(opType: "Pad", inputs: ["x", "pads", "value", "axes"], outputs: ["y"])
                constants = ["pads": ints(given), "value": Tensor.float([1], [value]),
                             "axes": ints(axes.map { bool(&random) ? $0 : $0 - rank })]
                opset = 18
            }
            try check(node, feeds: ["x": floats(x, &random, special: true)], constants: constants, opset: opset,
                      threads: big ? 2 : 1, "pads \(pads)")
        }
        for mode in ["reflect", "edge", "wrap"] {
            let node = Node(opType: "Pad", inputs: ["x", "pads"], outputs: ["y"], attributes: ["mode": .string(mode)])
            try check(node, feeds: ["x": floats([2, 3, 4], &random)], constants: ["pads": ints([0, 1, 2, 0, 1, 1])], planned: false)
        }
    }

    // MARK: Convolution

    /// A 3-D Conv with a kernel 1 wide on the last axis (LambdaResNet's `Conv3d(1, k, (r, r, 1))`)
    /// runs as the 2-D Conv over the joined last two axes: random sizes, depth strides,
    /// dilations, asymmetric pads, groups, with and without bias, 1 and 2 threads, against the
    /// reference 3-D kernel. A kernel wider than 1 there, or a stride on the middle axis, stays
    /// on the reference kernel.
    @Test func threeDConvWithAFlatLastAxis() throws {
        var random = Random(state: 41)
        for round in 0..<24 {
            let group = [1, 1, 2][int(0...2, &random)]
            let (c, m) = (group * int(1...3, &random), group * int(1...4, &random))
            let (kd, kh) = (int(1...5, &random), int(1...5, &random))
            let (dd, dh) = (int(1...2, &random), int(1...2, &random))
            let (depth, height) = (dd * (kd - 1) + 1, dh * (kh - 1) + 1)  // at least the window (pads may add more)
            let x = [int(1...2, &random), c, int(depth...(depth + 4), &random), int(height...(height + 4), &random), int(1...9, &random)]
            let pads = [int(0...2, &random), int(0...2, &random), 0, int(0...2, &random), int(0...2, &random), 0]
            var inputs = ["x", "w"], constants = ["w": floats([m, c / group, kd, kh, 1], &random)]
            if bool(&random) { inputs.append("b"); constants["b"] = floats([m], &random) }
            let node = Node(opType: "Conv", inputs: inputs, outputs: ["y"],
                            attributes: ["kernel_shape": .ints([kd, kh, 1]), "strides": .ints([int(1...2, &random), 1, 1]),
                                         "dilations": .ints([dd, dh, int(1...2, &random)]), "pads": .ints(pads), "group": .int(group)])
            try check(node, feeds: ["x": floats(x, &random)], constants: constants, tolerance: 1e-5, threads: round % 4 == 3 ? 2 : 1,
                      "x \(x)")
        }
        let x = floats([1, 2, 5, 5, 4], &random)
        for (kernel, strides) in [([3, 3, 3], [1, 1, 1]), ([3, 3, 1], [1, 2, 1])] {
            let node = Node(opType: "Conv", inputs: ["x", "w"], outputs: ["y"], attributes: ["kernel_shape": .ints(kernel), "strides": .ints(strides)])
            try check(node, feeds: ["x": x], constants: ["w": floats([3, 2] + kernel, &random)], tolerance: 1e-5, planned: false)
        }
    }

    // MARK: Linear

    @Test func gemm() throws {
        var random = Random(state: 37)
        for round in 0..<40 {
            let big = round % 10 == 9
            let (m, n, k) = big ? (int(60...90, &random), int(60...90, &random), int(60...90, &random))
                : (int(1...9, &random), int(1...17, &random), int(1...13, &random))
            let transA = bool(&random), transB = bool(&random)
            var attributes: [String: Attribute] = ["transA": .int(transA ? 1 : 0), "transB": .int(transB ? 1 : 0)]
            if bool(&random) { attributes["alpha"] = .float(Float.random(in: -2...2, using: &random)) }
            if bool(&random) { attributes["beta"] = .float(int(0...3, &random) == 0 ? 0 : Float.random(in: -2...2, using: &random)) }
            let cShapes: [[Int]?] = [nil, [n], [1, n], [m, 1], [m, n], [], [1]]
            let cShape = cShapes[int(0...(cShapes.count - 1), &random)]
            var feeds = ["a": floats(transA ? [k, m] : [m, k], &random)], constants: [String: Tensor] = [:]
            let b = floats(transB ? [n, k] : [k, n], &random)
            // Weights are initializers in the zoo; a runtime B also works.
            if bool(&random) { constants["b"] = b } else { feeds["b"] = b }
            var inputs = ["a", "b"]
            if let cShape { inputs.append("c"); constants["c"] = floats(cShape, &random) }
            let node = Node(opType: "Gemm", inputs: inputs, outputs: ["y"], attributes: attributes)
            try check(node, feeds: feeds, constants: constants, tolerance: 1e-5, threads: big ? 2 : 1)
        }
    }

    @Test func matmul() throws {
        var random = Random(state: 43)
        for round in 0..<40 {
            let (m, n, k) = round % 10 == 9 ? (int(100...130, &random), int(60...90, &random), int(60...90, &random))
                : (int(1...9, &random), int(1...9, &random), int(1...9, &random))
            var a = [m, k], b = [k, n]
            switch round % 5 {
            case 0: a = [k]                                          // vector · matrix
            case 1: b = [k]                                          // matrix · vector
            case 2: a = [int(1...3, &random), int(1...2, &random), m, k]  // a stack against one B (the channel MLPs)
            case 3:
                let batch = shape(rank: 1...2, extent: 1...3, &random)
                a = batch.map { int(0...2, &random) == 0 ? 1 : $0 } + a
                b = Array(batch.dropFirst(int(0...(batch.count - 1), &random))) + b
            default: break
            }
            let node = Node(opType: "MatMul", inputs: ["a", "b"], outputs: ["y"])
            var feeds = ["a": floats(a, &random)], constants: [String: Tensor] = [:]
            if bool(&random) { constants["b"] = floats(b, &random) } else { feeds["b"] = floats(b, &random) }
            try check(node, feeds: feeds, constants: constants, tolerance: 1e-5, threads: round % 10 == 9 ? 2 : 1)
        }
    }

    // MARK: Elementwise math

    static let unaryOps = ["Exp", "Log", "Tanh", "Erf", "Softplus", "Sqrt", "Neg", "Abs", "Reciprocal", "Floor", "Ceil", "Round",
                           "Sign", "Softsign", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Sin", "Cos", "Gelu"]

    @Test(arguments: unaryOps)
    func unaryFunctions(_ op: String) throws {
        var random = Random(state: UInt64(op.utf8.reduce(0) { $0 &* 131 &+ UInt64($1) }))
        for round in 0..<20 {
            let x = round == 19 ? [2, 8, 64, 64] : shape(rank: 0...4, extent: 1...9, &random)
            var attributes: [String: Attribute] = [:]
            if ["HardSigmoid", "LeakyRelu", "Elu"].contains(op), bool(&random) { attributes["alpha"] = .float(Float.random(in: 0...1, using: &random)) }
            if op == "HardSigmoid", bool(&random) { attributes["beta"] = .float(Float.random(in: 0...1, using: &random)) }
            if op == "Gelu", bool(&random) { attributes["approximate"] = .string("tanh") }
            let node = Node(opType: op, inputs: ["x"], outputs: ["y"], attributes: attributes)
            // Exp's planned loop is CVectorMath's (FMA on AVX2 and AVX-512), the reference kernel's the Swift SIMD8 one: ulps apart.
            // Gelu's planned loop is cbam_vm_gelu (erf by Abramowitz–Stegun, within 1e-6 · max(1, |x|)), the reference's Double erf.
            try check(node, feeds: ["x": floats(x, &random, special: true)], opset: op == "Gelu" ? 20 : 17,
                      tolerance: op == "Exp" ? 3e-7 : op == "Gelu" ? 1e-6 : 0, threads: round == 19 ? 2 : 1)
        }
    }

    // MARK: Normalisation

    /// LayerNormalization over random axes, with and without B and the statistics outputs;
    /// Instance and GroupNormalization (both opsets) with constant parameters.
    @Test func featureNormalizations() throws {
        var random = Random(state: 97)
        for round in 0..<40 {
            let big = round % 10 == 9
            let op = ["LayerNormalization", "InstanceNormalization", "GroupNormalization"][round % 3]
            var x = big ? [2, 32, 24, 24] : [int(1...3, &random), int(1...8, &random)] + shape(rank: 0...2, extent: 1...7, &random)
            var attributes: [String: Attribute] = ["epsilon": .float(Float.random(in: 1e-6...1e-2, using: &random))]
            var constants: [String: Tensor] = [:], inputs = ["x", "scale", "bias"], outputs = ["y"], opset = 17
            switch op {
            case "LayerNormalization":
                let axis = int(0...(x.count - 1), &random)
                attributes["axis"] = .int(bool(&random) ? axis : axis - x.count)
                constants["scale"] = floats(Array(x[axis...]), &random)
                if bool(&random) { constants["bias"] = floats(Array(x[axis...]), &random) } else { inputs.removeLast() }
                if bool(&random) { outputs += ["mean", "inv"] }
            case "InstanceNormalization":
                constants["scale"] = floats([x[1]], &random)
                constants["bias"] = floats([x[1]], &random)
            default:
                let groups = [1, 2, 4][int(0...2, &random)]
                x[1] = groups * int(1...3, &random)
                attributes["num_groups"] = .int(groups)
                opset = bool(&random) ? 18 : 21
                let count = opset == 18 ? groups : x[1]
                constants["scale"] = floats([count], &random)
                constants["bias"] = floats([count], &random)
            }
            let node = Node(opType: op, inputs: inputs, outputs: outputs, attributes: attributes)
            // The planned rows are summed in float32, eight lanes at a time.
            try check(node, feeds: ["x": floats(x, &random)], constants: constants, opset: opset, tolerance: 2e-6, threads: big ? 2 : 1)
        }
    }

    /// The float32 rows on values far from zero (a mean 100 times the spread) and long rows (ViT
    /// widths, a 64×64 plane), against the Double loop of the reference kernel.
    @Test func normalizationOfOffsetRows() throws {
        var random = Random(state: 101)
        for (shape, offset) in [([4, 37], Float(100)), ([3, 768], 100), ([2, 5, 1], 1000), ([16, 64], -50)] {
            let values = try floats(shape, &random).floats().map { $0 + offset }
            let node = Node(opType: "LayerNormalization", inputs: ["x", "scale", "bias"], outputs: ["y", "mean", "inv"], attributes: ["axis": .int(-1)])
            try check(node, feeds: ["x": Tensor.float(shape, values)],
                      constants: ["scale": floats([shape.last!], &random), "bias": floats([shape.last!], &random)], tolerance: 1e-6,
                      "offset \(offset)")
        }
        for (shape, offset) in [([2, 3, 5, 7], Float(100)), ([1, 2, 64, 64], -300)] {
            let values = try floats(shape, &random).floats().map { $0 + offset }
            let node = Node(opType: "InstanceNormalization", inputs: ["x", "scale", "bias"], outputs: ["y"])
            try check(node, feeds: ["x": Tensor.float(shape, values)],
                      constants: ["scale": floats([shape[1]], &random), "bias": floats([shape[1]], &random)], tolerance: 1e-6, "offset \(offset)")
        }
    }

    /// In place: a chain whose every step may write over the value it reads.
    @Test func unaryChainRunsInPlace() throws {
        var random = Random(state: 47)
        let ops = ["Neg", "Abs", "Exp", "Sqrt", "Tanh", "Reciprocal", "Clip", "HardSigmoid", "LeakyRelu", "HardSwish"]
        var nodes: [Node] = [Node(opType: "Relu", inputs: ["x"], outputs: ["v0"])]
        for (index, op) in ops.enumerated() {
            nodes.append(Node(name: op, opType: op, inputs: ["v\(index)"], outputs: ["v\(index + 1)"],
                              attributes: op == "Clip" ? ["min": .float(0.1), "max": .float(2)] : [:]))
        }
        let session = try Session(model: Model(opsetImports: ["": 6], graph: Graph(nodes: nodes, inputs: [ValueInfo(name: "x")],
                                                                                   outputs: [ValueInfo(name: "v\(ops.count)")])))
        let x = floats([3, 37], &random, special: true)
        let plan = try session.plan(for: ["x": x])
        #expect(plan.sharedValues >= ops.count)
        #expect(!plan.steps.map(\.kernel.detail).contains("reference"))
        var expected = x
        for node in nodes {
            expected = try OpRegistry.standard.builder(for: node)!(NodeContext(node: node, opset: 6)).run([expected])[0]
        }
        let comparison = Comparison(actual: try #require(session.run(["x": x])["v\(ops.count)"]), expected: expected, atol: 0, rtol: 0)
        #expect(comparison.passed, "\(comparison)")
    }

    @Test func clip() throws {
        var random = Random(state: 53)
        for round in 0..<30 {
            let x = shape(rank: 0...4, extent: 1...7, &random)
            let low = Float.random(in: -2...0, using: &random), high = Float.random(in: 0...2, using: &random)
            let which = int(0...3, &random)  // none, min, max, both
            if round % 2 == 0 {
                var attributes: [String: Attribute] = [:]
                if which & 1 != 0 { attributes["min"] = .float(low) }
                if which & 2 != 0 { attributes["max"] = .float(high) }
                try check(Node(opType: "Clip", inputs: ["x"], outputs: ["y"], attributes: attributes),
                          feeds: ["x": floats(x, &random, special: true)], opset: 6)
            } else {
                let inputs = ["x", which & 1 != 0 ? "lo" : "", which & 2 != 0 ? "hi" : ""]
                let trimmed = Array(inputs.prefix(which & 2 != 0 ? 3 : which & 1 != 0 ? 2 : 1))
                try check(Node(opType: "Clip", inputs: trimmed, outputs: ["y"]), feeds: ["x": floats(x, &random, special: true)],
                          constants: ["lo": Tensor.float([], [low]), "hi": Tensor.float([], [high])].filter { trimmed.contains($0.key) },
                          opset: 13)
            }
        }
    }

    @Test func powWithOneExponent() throws {
        var random = Random(state: 59)
        for (round, exponent) in ([1, 2, 3, 0.5, 1.7, -1, 0, 2.5] as [Float]).enumerated() {
            for _ in 0..<4 {
                let x = shape(rank: 1...4, extent: 1...7, &random)
                let e = round % 2 == 0 ? Tensor.float([], [exponent]) : Tensor.float([1], [exponent])
                try check(Node(opType: "Pow", inputs: ["x", "e"], outputs: ["y"]), feeds: ["x": floats(x, &random, special: true)],
                          constants: ["e": e])
            }
        }
    }

    @Test(arguments: ["Sum", "Max", "Min", "Mean"])
    func variadic(_ op: String) throws {
        var random = Random(state: UInt64(op.count) &* 977)
        for round in 0..<30 {
            let big = round % 10 == 9
            let target = big ? [2, 16, 48, 48] : shape(rank: 1...4, extent: 1...6, &random)
            let count = int(1...4, &random)
            var feeds: [String: Tensor] = [:], names: [String] = []
            for index in 0..<count {
                // Each input broadcasts to a part of the target (the first may be the smaller one).
                var s = target.map { int(0...2, &random) == 0 ? 1 : $0 }
                s = Array(s.dropFirst(int(0...(s.count - 1), &random)))
                if index == count - 1 && !feeds.values.contains(where: { $0.shape == target }) && bool(&random) { s = target }
                feeds["x\(index)"] = floats(s, &random, special: op == "Max" || op == "Min")
                names.append("x\(index)")
            }
            try check(Node(opType: op, inputs: names, outputs: ["y"]), feeds: feeds, threads: big ? 2 : 1)
        }
    }
}

@Suite("Layouts: conversions place every element")
struct LayoutConversionTests {
    /// NHWC and nChw8c written out by their definitions, against the converter both ways.
    @Test func nhwcAndBlockedByDefinition() {
        let (n, c, h, w) = (2, 16, 2, 3)
        let plain = (0..<(n * c * h * w)).map { Float($0) }
        var nhwc = [Float](repeating: -1, count: plain.count), blocked8 = nhwc
        for i in 0..<n { for ch in 0..<c { for y in 0..<h { for x in 0..<w {
            let value = plain[((i * c + ch) * h + y) * w + x]
            nhwc[((i * h + y) * w + x) * c + ch] = value                              // [N, H, W, C]
            blocked8[((((i * (c / 8) + ch / 8) * h + y) * w + x) * 8) + ch % 8] = value  // [N, C/8, H, W, 8]
        } } } }
        for (layout, expected) in [(Layout.channelsLast, nhwc), (.channelBlocked(8), blocked8)] {
            var converted = [Float](repeating: .nan, count: plain.count), back = converted
            converted.withUnsafeMutableBufferPointer { Layout.convert(plain, from: .plain, $0.baseAddress!, to: layout, shape: [n, c, h, w]) }
            #expect(converted == expected, "plain → \(layout)")
            back.withUnsafeMutableBufferPointer { Layout.convert(converted, from: layout, $0.baseAddress!, to: .plain, shape: [n, c, h, w]) }
            #expect(back == plain, "\(layout) → plain")
        }
    }
}

@Suite("sgemm: oneDNN against the triple loop")
struct SGEMMTests {
    /// Random shapes, strides wider than the rows, every transpose, alpha and beta: the
    /// library call and the textbook loop must agree.
    @Test func matchesTheReferenceOnRandomShapes() {
        var random = SplitMix(state: 13)
        for _ in 0..<60 {
            let (m, n, k) = (Int.random(in: 1...40, using: &random), Int.random(in: 1...40, using: &random), Int.random(in: 1...70, using: &random))
            let (transA, transB) = (Bool.random(using: &random), Bool.random(using: &random))
            let lda = (transA ? m : k) + Int.random(in: 0...3, using: &random), ldb = (transB ? k : n) + Int.random(in: 0...3, using: &random)
            let ldc = n + Int.random(in: 0...3, using: &random)
            let alpha: Float = [1, 0.5, -2].randomElement(using: &random)!, beta: Float = [0, 1, 0.25].randomElement(using: &random)!
            let a = (0..<((transA ? k : m) * lda)).map { _ in Float.random(in: -1...1, using: &random) }
            let b = (0..<((transB ? n : k) * ldb)).map { _ in Float.random(in: -1...1, using: &random) }
            let c0 = (0..<(m * ldc)).map { _ in Float.random(in: -1...1, using: &random) }
            var fast = c0, slow = c0
            fast.withUnsafeMutableBufferPointer { BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: $0.baseAddress!, ldc: ldc) }
            slow.withUnsafeMutableBufferPointer { BLAS.reference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: $0.baseAddress!, ldc: ldc) }
            let error = zip(fast, slow).map { abs($0 - $1) }.max() ?? 0
            #expect(error <= 1e-4, "m \(m) n \(n) k \(k) transA \(transA) transB \(transB): max error \(error)")
        }
    }
}

/// The carried layouts' per-channel pooling (a channel gate's first pass) against a plain
/// loop over the same values: NHWC and channel blocks, channel counts that leave a short
/// last unit, and NaN, ±∞ and ∞ − ∞ (whose sum is NaN without a NaN element) in some channels.
@Suite("Carried channel statistics")
struct CarriedChannelStatisticsTests {
    @Test(arguments: [(Layout.channelsLast, 8), (.channelsLast, 24), (.channelsLast, 80), (.channelsLast, 256),
                      (.channelBlocked(8), 16), (.channelBlocked(16), 48)])
    func matchesAPlainLoop(_ layout: Layout, _ channels: Int) throws {
        let (n, h, w) = (2, 3, 5)
        let pixels = h * w
        var rng = SplitMix(state: UInt64(channels))
        // Plain [N, C, H·W] values, then the same in the carried layout.
        var plain = (0..<(n * channels * pixels)).map { _ in Float.random(in: -4...4, using: &rng) }
        plain[(0 * channels + 1) * pixels + 3] = .nan                       // item 0, channel 1
        plain[(1 * channels + 2) * pixels + 0] = .infinity                  // item 1, channel 2: max ∞
        plain[(1 * channels + 3) * pixels + 4] = .infinity                  // item 1, channel 3: ∞ − ∞
        plain[(1 * channels + 3) * pixels + 7] = -.infinity
        let operand = Operand(type: ValueType(.float, [n, channels, h, w]), address: .arena(0), layout: layout)
        let blocks = ChannelBlocks(operand)
        var carried = [Float](repeating: 0, count: plain.count)
        for item in 0..<n {
            for channel in 0..<channels {
                let (block, lane) = (channel / blocks.block, channel % blocks.block)
                for p in 0..<pixels {
                    carried[blocks.offset(item: item, block: block) + p * blocks.block + lane] = plain[(item * channels + channel) * pixels + p]
                }
            }
        }
        var means = [Float](repeating: 0, count: n * channels), maxima = means
        carried.withUnsafeBufferPointer { x in
            means.withUnsafeMutableBufferPointer { m in
                maxima.withUnsafeMutableBufferPointer { mx in
                    CarriedLoops.channelStatistics(x.baseAddress!, blocks, units: 0..<blocks.units, means: m.baseAddress!, maxima: mx.baseAddress!)
                }
            }
        }
        for plane in 0..<(n * channels) {
            let values = plain[(plane * pixels)..<((plane + 1) * pixels)]
            let expectedMax = values.contains { $0.isNaN } ? Float.nan : values.max()!
            let expectedMean = values.reduce(0, +) / Float(pixels)
            #expect(maxima[plane] == expectedMax || (maxima[plane].isNaN && expectedMax.isNaN), "plane \(plane): max \(maxima[plane]) vs \(expectedMax)")
            #expect(means[plane] == expectedMean || abs(means[plane] - expectedMean) <= 1e-5 * Swift.max(1, abs(expectedMean)) || (means[plane].isNaN && expectedMean.isNaN),
                    "plane \(plane): mean \(means[plane]) vs \(expectedMean)")
        }
        #expect(maxima[1].isNaN && maxima[channels + 2] == .infinity && maxima[channels + 3] == .infinity && means[channels + 3].isNaN)
    }
}
