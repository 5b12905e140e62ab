import Foundation
import Testing
@testable import CBAMRuntime

// Tiny exact cases per op family. Every expected value is worked out by hand in
// the comment next to it (or is obvious from the op's definition).

/// All kernel tests, grouped by op family (`swift test --filter KernelTests`).
@Suite struct KernelTests {}

// MARK: - Helpers

/// A float32 tensor.
fileprivate func f32(_ shape: [Int], _ values: [Float]) throws -> Tensor { try Tensor(shape: shape, floats: values) }
/// An int64 tensor.
fileprivate func i64(_ shape: [Int], _ values: [Int64]) throws -> Tensor { try Tensor(shape: shape, int64s: values) }
/// A bool tensor.
fileprivate func bools(_ shape: [Int], _ values: [Bool]) throws -> Tensor { try Tensor(shape: shape, storage: .bool(values)) }

/// Builds a one-node model and runs it. Input `i` is named `x<i>`; `nil` omits it
/// (empty input name). Inputs whose index is in `constants` become initializers
/// (as exporters store weights); the others are fed at run time. Outputs are `y0`, `y1`, …
fileprivate func runOp(_ opType: String, _ inputs: [Tensor?], attributes: [String: Attribute] = [:],
           opset: Int = 17, outputs: Int = 1, constants: Set<Int> = []) throws -> [Tensor] {
    var initializers: [String: Tensor] = [:]
    var graphInputs: [ValueInfo] = []
    var feeds: [String: Tensor] = [:]
    var names: [String] = []
    for (i, tensor) in inputs.enumerated() {
        guard let tensor else { names.append(""); continue }
        let name = "x\(i)"
        names.append(name)
        if constants.contains(i) {
            initializers[name] = tensor
        } else {
            graphInputs.append(ValueInfo(name: name, elementType: tensor.dataType))
            feeds[name] = tensor
        }
    }
    let outputNames = (0..<outputs).map { "y\($0)" }
    let node = Node(name: "\(opType.lowercased())_node", opType: opType, inputs: names, outputs: outputNames,
                    attributes: attributes)
    let graph = Graph(nodes: [node], initializers: initializers, inputs: graphInputs,
                      outputs: outputNames.map { ValueInfo(name: $0, elementType: nil) })
    let session = try Session(model: Model(opsetImports: ["": opset], graph: graph), fileName: "kernel-test.onnx")
    let results = try session.run(feeds)
    return try outputNames.map { name in try #require(results[name]) }
}

/// Runs a single-output op.
fileprivate func run1(_ opType: String, _ inputs: [Tensor?], attributes: [String: Attribute] = [:],
          opset: Int = 17, constants: Set<Int> = []) throws -> Tensor {
    try runOp(opType, inputs, attributes: attributes, opset: opset, constants: constants)[0]
}

/// Checks shape and float32 values (within `tolerance`).
fileprivate func expectFloats(_ tensor: Tensor, _ shape: [Int], _ expected: [Float], tolerance: Float = 1e-5,
                  sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(tensor.shape == shape, "shape", sourceLocation: sourceLocation)
    guard case .float(let values) = tensor.storage else {
        Issue.record("expected float32, got \(tensor.dataType)", sourceLocation: sourceLocation)
        return
    }
    #expect(values.count == expected.count, "count", sourceLocation: sourceLocation)
    let close = zip(values, expected).allSatisfy { abs($0 - $1) <= tolerance * max(1, abs($1)) }
    #expect(close, "got \(values), expected \(expected)", sourceLocation: sourceLocation)
}

/// Checks shape and int64 values.
fileprivate func expectInt64s(_ tensor: Tensor, _ shape: [Int], _ expected: [Int64], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(tensor.shape == shape, "shape", sourceLocation: sourceLocation)
    #expect(tensor.storage == .int64(expected), sourceLocation: sourceLocation)
}


fileprivate let int64Max = Int64.max, int64Min = Int64.min

// MARK: - Elementwise

extension KernelTests {
    @Suite struct Elementwise {
        @Test func addBroadcastsRowVector() throws {
            // [[1,2,3],[4,5,6]] + [10,20,30]
            let y = try run1("Add", [f32([2, 3], [1, 2, 3, 4, 5, 6]), f32([3], [10, 20, 30])])
            expectFloats(y, [2, 3], [11, 22, 33, 14, 25, 36])
        }

        @Test func addBroadcastsBothOperands() throws {
            // [[1],[2]] + [[10,20,30]] → [[11,21,31],[12,22,32]]
            let y = try run1("Add", [f32([2, 1], [1, 2]), f32([1, 3], [10, 20, 30])])
            expectFloats(y, [2, 3], [11, 21, 31, 12, 22, 32])
        }

        @Test func mulChannelGate() throws {
            // [1,2,2,2] * [1,2,1,1]: channel 0 (1,2,3,4) ×2, channel 1 (5,6,7,8) ×10
            let y = try run1("Mul", [f32([1, 2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]), f32([1, 2, 1, 1], [2, 10])])
            expectFloats(y, [1, 2, 2, 2], [2, 4, 6, 8, 50, 60, 70, 80])
        }

        @Test func mulSpatialGate() throws {
            // [1,2,2,2] * [1,1,2,2]: both channels × (1, 0, 2, -1) position by position
            let y = try run1("Mul", [f32([1, 2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]), f32([1, 1, 2, 2], [1, 0, 2, -1])])
            expectFloats(y, [1, 2, 2, 2], [1, 0, 6, -4, 5, 0, 14, -8])
        }

        @Test func gateFirstOperandBroadcasts() throws {
            // Same as above with the operands swapped: Mul is commutative.
            let y = try run1("Mul", [f32([1, 1, 2, 2], [1, 0, 2, -1]), f32([1, 2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8])])
            expectFloats(y, [1, 2, 2, 2], [1, 0, 6, -4, 5, 0, 14, -8])
        }

        @Test func incompatibleShapesAreAnError() throws {
            let error = thrownCBAMError { _ = try run1("Add", [f32([2], [1, 2]), f32([3], [1, 2, 3])]) }
            #expect(error?.kind == .shapeMismatch)
            #expect(error?.node?.opType == "Add")
        }

        @Test func subAndDiv() throws {
            // 5-1=4, 3-4=-1
            expectFloats(try run1("Sub", [f32([2], [5, 3]), f32([2], [1, 4])]), [2], [4, -1])
            // 1/2=0.5, 7/2=3.5, scalar divisor broadcast
            expectFloats(try run1("Div", [f32([2], [1, 7]), f32([], [2])]), [2], [0.5, 3.5])
        }

        @Test func integerDivTruncatesTowardZero() throws {
            // 7/2=3, -7/2=-3 (toward zero, not floor), 6/-3=-2
            expectInt64s(try run1("Div", [i64([3], [7, -7, 6]), i64([3], [2, 2, -3])]), [3], [3, -3, -2])
        }

        @Test func integerDivByZeroThrows() throws {
            let error = thrownCBAMError { _ = try run1("Div", [i64([2], [1, 2]), i64([2], [1, 0])]) }
            #expect(error?.node?.opType == "Div")
            #expect(error?.description.contains("division by zero") == true)
            #expect(error?.description.contains("kernel-test.onnx") == true)
        }

        @Test func pow() throws {
            // 2^3=8, 3^2=9, 4^0.5=2
            expectFloats(try run1("Pow", [f32([3], [2, 3, 4]), f32([3], [3, 2, 0.5])]), [3], [8, 9, 2])
            // float base, int64 exponent: 2^2=4, 4^2=16
            expectFloats(try run1("Pow", [f32([2], [2, 4]), i64([], [2])]), [2], [4, 16])
        }

        @Test func equalGivesBool() throws {
            let y = try run1("Equal", [f32([3], [1, 2, 3]), f32([3], [1, 5, 3])])
            #expect(y.shape == [3])
            #expect(y.storage == .bool([true, false, true]))
            // int64 with a broadcast scalar
            #expect(try run1("Equal", [i64([3], [4, 5, 4]), i64([], [4])]).storage == .bool([true, false, true]))
        }

        @Test func whereSelectsAndBroadcasts() throws {
            // condition [T,F,T], X [1,2,3], Y scalar 0 → [1,0,3]
            let y = try run1("Where", [bools([3], [true, false, true]), f32([3], [1, 2, 3]), f32([], [0])])
            expectFloats(y, [3], [1, 0, 3])
            // condition [2,1] against X [1,2]: row 0 takes X, row 1 takes Y
            let z = try run1("Where", [bools([2, 1], [true, false]), f32([1, 2], [1, 2]), f32([1, 2], [-1, -2])])
            expectFloats(z, [2, 2], [1, 2, -1, -2])
        }

        @Test func castFloatToInt64Truncates() throws {
            // toward zero: 1.7→1, -1.7→-1, 2→2, -0.5→0
            let y = try run1("Cast", [f32([4], [1.7, -1.7, 2, -0.5])], attributes: ["to": .int(7)])
            expectInt64s(y, [4], [1, -1, 2, 0])
        }

        @Test func castInt64ToFloatAndBool() throws {
            expectFloats(try run1("Cast", [i64([2], [3, -4])], attributes: ["to": .int(1)]), [2], [3, -4])
            #expect(try run1("Cast", [i64([2], [0, 5])], attributes: ["to": .int(9)]).storage == .bool([false, true]))
        }

        @Test func castNaNToIntegerThrows() throws {
            let error = thrownCBAMError { _ = try run1("Cast", [f32([2], [1, .nan])], attributes: ["to": .int(7)]) }
            #expect(error?.kind == .typeMismatch)
            #expect(error?.node?.opType == "Cast")
        }

        @Test func castToUnsupportedTypeIsAnAttributeError() throws {
            // 16 = BFLOAT16
            let error = thrownCBAMError { _ = try run1("Cast", [f32([1], [1])], attributes: ["to": .int(16)]) }
            #expect(error?.kind == .invalidAttribute)
            #expect(error?.description.contains("BFLOAT16") == true)
        }
    }
}

// MARK: - Activations

extension KernelTests {
    @Suite struct Activation {
        @Test func sigmoid() throws {
            // σ(0) = 1/(1+1) = 0.5; σ(ln 3) = 1/(1+1/3) = 0.75
            expectFloats(try run1("Sigmoid", [f32([2], [0, Float(log(3.0))])]), [2], [0.5, 0.75])
        }

        @Test func relu() throws {
            expectFloats(try run1("Relu", [f32([4], [-1, 0, 2, -0.5])]), [4], [0, 0, 2, 0])
        }

        @Test func leakyRelu() throws {
            // alpha 0.1: -2 → -0.2, 3 → 3
            expectFloats(try run1("LeakyRelu", [f32([2], [-2, 3])], attributes: ["alpha": .float(0.1)]), [2], [-0.2, 3])
            // default alpha 0.01: -100 → -1
            expectFloats(try run1("LeakyRelu", [f32([1], [-100])]), [1], [-1])
        }

        @Test func clipOpset11Inputs() throws {
            // clamp to [0, 1]: -2→0, 0.5→0.5, 3→1
            let x = try f32([3], [-2, 0.5, 3])
            expectFloats(try run1("Clip", [x, f32([], [0]), f32([], [1])], opset: 11), [3], [0, 0.5, 1])
            // min omitted: only the upper bound applies
            expectFloats(try run1("Clip", [x, nil, f32([], [1])], opset: 11), [3], [-2, 0.5, 1])
            // no bounds at all: identity
            expectFloats(try run1("Clip", [x], opset: 13), [3], [-2, 0.5, 3])
        }

        @Test func clipOpset6Attributes() throws {
            let y = try run1("Clip", [f32([3], [-2, 0.5, 3])], attributes: ["min": .float(-1), "max": .float(2)], opset: 6)
            expectFloats(y, [3], [-1, 0.5, 2])
        }

        @Test func hardSigmoid() throws {
            // max(0, min(1, 0.2x + 0.5)): -5→0, 0→0.5, 1→0.7, 5→1
            expectFloats(try run1("HardSigmoid", [f32([4], [-5, 0, 1, 5])]), [4], [0, 0.5, 0.7, 1])
            // alpha 0.5, beta 0: 1 → 0.5
            expectFloats(try run1("HardSigmoid", [f32([1], [1])], attributes: ["alpha": .float(0.5), "beta": .float(0)]), [1], [0.5])
        }
    }
}

// MARK: - Convolution

extension KernelTests {
    @Suite struct Convolution {
        /// X = 1…9 as a 1x1x3x3 image.
        static func image3x3() throws -> Tensor { try f32([1, 1, 3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]) }
        static func ones3x3() throws -> Tensor { try f32([1, 1, 3, 3], [Float](repeating: 1, count: 9)) }

        @Test func pointwise() throws {
            // X channels (1,2) and (3,4); W [2,2,1,1] = [[1,0],[1,1]]
            // out0 = 1·c0 = (1,2); out1 = c0 + c1 = (4,6)
            let x = try f32([1, 2, 1, 2], [1, 2, 3, 4]), w = try f32([2, 2, 1, 1], [1, 0, 1, 1])
            expectFloats(try run1("Conv", [x, w], constants: [1]), [1, 2, 1, 2], [1, 2, 4, 6])
            // with bias (1, -1): (2,3) and (3,5)
            expectFloats(try run1("Conv", [x, w, f32([2], [1, -1])], constants: [1, 2]), [1, 2, 1, 2], [2, 3, 3, 5])
        }

        /// A 1×1 convolution padded at the end only: the output grows past the image, so X is not
        /// its own column matrix (both kernels once read it as one, past the image's end).
        @Test func pointwiseWithEndPaddingGrowsTheOutput() throws {
            // X [[1, 2], [3, 4]], W = 2, pads [0, 0, 1, 1]: 2·X, then a row and a column of zeros.
            let x = try f32([1, 1, 2, 2], [1, 2, 3, 4]), w = try f32([1, 1, 1, 1], [2])
            let expected: [Float] = [2, 4, 0, 6, 8, 0, 0, 0, 0]
            // W a constant: the plan's kernels; W fed at run time: the reference kernel.
            expectFloats(try run1("Conv", [x, w], attributes: ["pads": .ints([0, 0, 1, 1])], constants: [1]), [1, 1, 3, 3], expected)
            expectFloats(try run1("Conv", [x, w], attributes: ["pads": .ints([0, 0, 1, 1]), "kernel_shape": .ints([1, 1])]), [1, 1, 3, 3], expected)
        }

        @Test func threeByThreePadOne() throws {
            // Sum of each in-bounds 3x3 neighbourhood of [[1,2,3],[4,5,6],[7,8,9]]:
            // corners 1+2+4+5=12, 2+3+5+6=16, 4+5+7+8=24, 5+6+8+9=28;
            // edges 1..6=21, 1+2+4+5+7+8=27, 2+3+5+6+8+9=33, 4..9=39; centre 45.
            let y = try run1("Conv", [Self.image3x3(), Self.ones3x3()], attributes: ["pads": .ints([1, 1, 1, 1])], constants: [1])
            expectFloats(y, [1, 1, 3, 3], [12, 21, 16, 27, 45, 33, 24, 39, 28])
        }

        @Test func strideTwo() throws {
            // Output (3+2-3)/2+1 = 2 per axis: the corner windows of the case above.
            let y = try run1("Conv", [Self.image3x3(), Self.ones3x3()],
                             attributes: ["pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])], constants: [1])
            expectFloats(y, [1, 1, 2, 2], [12, 16, 24, 28])
        }

        @Test func weightAsRuntimeInputWithKernelShape() throws {
            // Same as the 3x3 pad-1 case, but W is fed at run time and kernel_shape says 3x3.
            let y = try run1("Conv", [Self.image3x3(), Self.ones3x3()],
                             attributes: ["pads": .ints([1, 1, 1, 1]), "kernel_shape": .ints([3, 3])])
            expectFloats(y, [1, 1, 3, 3], [12, 21, 16, 27, 45, 33, 24, 39, 28])
        }

        @Test func groupTwo() throws {
            // 4 input channels (1,2,3,4), 2 groups of 2; W [2,2,1,1] = [[1,1],[1,-1]]
            // out0 = 1+2 = 3 (group 0), out1 = 3-4 = -1 (group 1)
            let y = try run1("Conv", [f32([1, 4, 1, 1], [1, 2, 3, 4]), f32([2, 2, 1, 1], [1, 1, 1, -1])],
                             attributes: ["group": .int(2)], constants: [1])
            expectFloats(y, [1, 2, 1, 1], [3, -1])
        }

        @Test func dilationTwo() throws {
            // X[i][j] = 5i + j on 5x5, 2x2 ones kernel dilated by 2 (extent 3) → 3x3 output:
            // X[y][x] + X[y][x+2] + X[y+2][x] + X[y+2][x+2] = 4(5y+x) + 2 + 10 + 12 = 20y + 4x + 24
            let x = try f32([1, 1, 5, 5], (0..<25).map { Float($0) })
            let y = try run1("Conv", [x, f32([1, 1, 2, 2], [1, 1, 1, 1])], attributes: ["dilations": .ints([2, 2])], constants: [1])
            expectFloats(y, [1, 1, 3, 3], [24, 28, 32, 44, 48, 52, 64, 68, 72])
        }

        @Test func autoPadSameUpperVersusLower() throws {
            // X = (1,2,3,4) as 1x1x1x4, kernel (1,10): total pad (4-1)+2-4 = 1.
            // SAME_UPPER pads at the end:   x[i] + 10·x[i+1] → 21, 32, 43, 4
            // SAME_LOWER pads at the start: x[i-1] + 10·x[i] → 10, 21, 32, 43
            let x = try f32([1, 1, 1, 4], [1, 2, 3, 4]), w = try f32([1, 1, 1, 2], [1, 10])
            let upper = try run1("Conv", [x, w], attributes: ["auto_pad": .string("SAME_UPPER")], constants: [1])
            expectFloats(upper, [1, 1, 1, 4], [21, 32, 43, 4])
            let lower = try run1("Conv", [x, w], attributes: ["auto_pad": .string("SAME_LOWER")], constants: [1])
            expectFloats(lower, [1, 1, 1, 4], [10, 21, 32, 43])
        }

        @Test func oneDimensional() throws {
            // X (1,2,3,4), W (1,10), no padding: 1+20, 2+30, 3+40; bias 0.5 added
            let y = try run1("Conv", [f32([1, 1, 4], [1, 2, 3, 4]), f32([1, 1, 2], [1, 10]), f32([1], [0.5])], constants: [1, 2])
            expectFloats(y, [1, 1, 3], [21.5, 32.5, 43.5])
        }

        @Test func batchOfTwo() throws {
            // 1x1 conv with weight 2 on a batch of two 1-pixel images: 3→6, -1→-2
            let y = try run1("Conv", [f32([2, 1, 1, 1], [3, -1]), f32([1, 1, 1, 1], [2])], constants: [1])
            expectFloats(y, [2, 1, 1, 1], [6, -2])
        }

        @Test func convTransposeStrideTwo() throws {
            // Each input pixel of [[1,2],[3,4]] scatters into its own 2x2 block (kernel of ones, stride 2).
            let y = try run1("ConvTranspose", [f32([1, 1, 2, 2], [1, 2, 3, 4]), f32([1, 1, 2, 2], [1, 1, 1, 1])],
                             attributes: ["strides": .ints([2, 2])], constants: [1])
            expectFloats(y, [1, 1, 4, 4], [1, 1, 2, 2,
                                           1, 1, 2, 2,
                                           3, 3, 4, 4,
                                           3, 3, 4, 4])
        }

        @Test func convTransposeOverlapAddsAndBias() throws {
            // 1-D, stride 1, kernel (1,1): (1,2,3) → (1, 1+2, 2+3, 3) = (1,3,5,3); bias 1
            let y = try run1("ConvTranspose", [f32([1, 1, 3], [1, 2, 3]), f32([1, 1, 2], [1, 1]), f32([1], [1])], constants: [1, 2])
            expectFloats(y, [1, 1, 4], [2, 4, 6, 4])
        }
    }
}

// MARK: - Pooling

extension KernelTests {
    @Suite struct Pooling {
        static let twoChannels: [Float] = [1, 2, 3, 4, 5, 6, 7, 8]

        @Test func globalAveragePool() throws {
            // (1+2+3+4)/4 = 2.5, (5+6+7+8)/4 = 6.5
            expectFloats(try run1("GlobalAveragePool", [f32([1, 2, 2, 2], Self.twoChannels)]), [1, 2, 1, 1], [2.5, 6.5])
        }

        @Test func globalMaxPool() throws {
            expectFloats(try run1("GlobalMaxPool", [f32([1, 2, 2, 2], Self.twoChannels)]), [1, 2, 1, 1], [4, 8])
        }

        @Test func maxPoolWithIndices() throws {
            // channel 0:            windows (2x2, stride 2):
            //  1 5 | 2 0            {1,5,3,4} → 5 at (0,1) = flat 1
            //  3 4 | 8 1            {2,0,8,1} → 8 at (1,2) = flat 6
            //  ----+----            {0,9,2,1} → 9 at (2,1) = flat 9
            //  0 9 | 6 7            {6,7,3,5} → 7 at (2,3) = flat 11
            //  2 1 | 3 5
            // channel 1 = channel 0 + 100: same positions, offset by the 16 elements of channel 0.
            let c0: [Float] = [1, 5, 2, 0, 3, 4, 8, 1, 0, 9, 6, 7, 2, 1, 3, 5]
            let outputs = try runOp("MaxPool", [f32([1, 2, 4, 4], c0 + c0.map { $0 + 100 })],
                                    attributes: ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])], outputs: 2)
            expectFloats(outputs[0], [1, 2, 2, 2], [5, 8, 9, 7, 105, 108, 109, 107])
            expectInt64s(outputs[1], [1, 2, 2, 2], [1, 6, 9, 11, 17, 22, 25, 27])
        }

        @Test func maxPoolCeilMode() throws {
            // (1,2,3,4,5), window 2 stride 2: floor → (5-2)/2+1 = 2 windows {1,2},{3,4};
            // ceil → 3 windows, the last {5} hangs past the end.
            let x = try f32([1, 1, 1, 5], [1, 2, 3, 4, 5])
            let attributes: [String: Attribute] = ["kernel_shape": .ints([1, 2]), "strides": .ints([1, 2])]
            expectFloats(try run1("MaxPool", [x], attributes: attributes), [1, 1, 1, 2], [2, 4])
            var ceil = attributes
            ceil["ceil_mode"] = .int(1)
            expectFloats(try run1("MaxPool", [x], attributes: ceil), [1, 1, 1, 3], [2, 4, 5])
        }

        @Test func averagePoolPadsCountIncludePad() throws {
            // X [[1,2],[3,4]], 2x2 window, stride 1, pads 1 all round → 3x3 windows.
            // In-bounds sums: 1, 1+2=3, 2 / 1+3=4, 10, 2+4=6 / 3, 3+4=7, 4
            // count_include_pad 0 divides by in-bounds count (1,2,1 / 2,4,2 / 1,2,1):
            //   1, 1.5, 2 / 2, 2.5, 3 / 3, 3.5, 4
            // count_include_pad 1 divides by 4: 0.25, 0.75, 0.5 / 1, 2.5, 1.5 / 0.75, 1.75, 1
            let x = try f32([1, 1, 2, 2], [1, 2, 3, 4])
            let base: [String: Attribute] = ["kernel_shape": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]
            var exclude = base; exclude["count_include_pad"] = .int(0)
            var include = base; include["count_include_pad"] = .int(1)
            expectFloats(try run1("AveragePool", [x], attributes: exclude), [1, 1, 3, 3], [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4])
            expectFloats(try run1("AveragePool", [x], attributes: include), [1, 1, 3, 3], [0.25, 0.75, 0.5, 1, 2.5, 1.5, 0.75, 1.75, 1])
        }

        @Test func lpPoolP2() throws {
            // windows {3,4} and {6,8}: √(9+16) = 5, √(36+64) = 10
            let y = try run1("LpPool", [f32([1, 1, 1, 4], [3, 4, 6, 8])],
                             attributes: ["kernel_shape": .ints([1, 2]), "strides": .ints([1, 2]), "p": .int(2)])
            expectFloats(y, [1, 1, 1, 2], [5, 10])
        }

        @Test func maxPoolWithoutKernelShapeIsAnAttributeError() throws {
            let error = thrownCBAMError { _ = try run1("MaxPool", [f32([1, 1, 2, 2], [1, 2, 3, 4])]) }
            #expect(error?.kind == .invalidAttribute)
            #expect(error?.description.contains("kernel_shape") == true)
            #expect(error?.description.contains("(MaxPool)") == true)
        }
    }
}

// MARK: - Reduction

extension KernelTests {
    @Suite struct Reduction {
        /// [[1,2,3],[4,5,6]]
        static func matrix() throws -> Tensor { try f32([2, 3], [1, 2, 3, 4, 5, 6]) }

        @Test func reduceMeanAxesAttributeOpset13() throws {
            // row means: 2, 5 (keepdims default 1)
            expectFloats(try run1("ReduceMean", [Self.matrix()], attributes: ["axes": .ints([1])], opset: 13), [2, 1], [2, 5])
        }

        @Test func reduceMeanAxesInputOpset18() throws {
            // column means: 2.5, 3.5, 4.5
            expectFloats(try run1("ReduceMean", [Self.matrix(), i64([1], [0])], opset: 18), [1, 3], [2.5, 3.5, 4.5])
        }

        @Test func reduceMeanKeepDimsZero() throws {
            let y = try run1("ReduceMean", [Self.matrix()], attributes: ["axes": .ints([1]), "keepdims": .int(0)], opset: 13)
            expectFloats(y, [2], [2, 5])
        }

        @Test func reduceMeanEmptyAxes() throws {
            // no axes: reduce everything, 21/6 = 3.5
            expectFloats(try run1("ReduceMean", [Self.matrix()], opset: 18), [1, 1], [3.5])
            // noop_with_empty_axes: the input comes back unchanged
            let y = try run1("ReduceMean", [Self.matrix()], attributes: ["noop_with_empty_axes": .int(1)], opset: 18)
            expectFloats(y, [2, 3], [1, 2, 3, 4, 5, 6])
        }

        @Test func reduceMaxOverChannels() throws {
            // CBAM spatial pool: channel 0 (1,6,3,4), channel 1 (5,2,7,0) → elementwise max (5,6,7,4)
            let x = try f32([1, 2, 2, 2], [1, 6, 3, 4, 5, 2, 7, 0])
            expectFloats(try run1("ReduceMax", [x], attributes: ["axes": .ints([1])], opset: 13), [1, 1, 2, 2], [5, 6, 7, 4])
            // and ReduceMean over channels: (3, 4, 5, 2)
            expectFloats(try run1("ReduceMean", [x], attributes: ["axes": .ints([1])], opset: 13), [1, 1, 2, 2], [3, 4, 5, 2])
        }

        @Test func reduceSumAxesInputOpset13() throws {
            // column sums 5, 7, 9; row sums (axis -1) 6, 15
            expectFloats(try run1("ReduceSum", [Self.matrix(), i64([1], [0])], opset: 13), [1, 3], [5, 7, 9])
            expectFloats(try run1("ReduceSum", [Self.matrix(), i64([1], [-1])], attributes: ["keepdims": .int(0)], opset: 13), [2], [6, 15])
        }

        @Test func reduceSumInt64() throws {
            expectInt64s(try run1("ReduceSum", [i64([2, 2], [1, 2, 3, 4]), i64([1], [1])], opset: 13), [2, 1], [3, 7])
        }

        @Test func reduceLogSumExp() throws {
            // log(e^0 + e^(ln 3)) = log 4
            let y = try run1("ReduceLogSumExp", [f32([1, 2], [0, Float(log(3.0))])], attributes: ["axes": .ints([1])], opset: 13)
            expectFloats(y, [1, 1], [Float(log(4.0))])
        }

        @Test func argMaxSelectLastIndex() throws {
            // (1,3,3,2): the maximum 3 first occurs at 1, last at 2
            let x = try f32([1, 4], [1, 3, 3, 2])
            expectInt64s(try run1("ArgMax", [x], attributes: ["axis": .int(1)]), [1, 1], [1])
            expectInt64s(try run1("ArgMax", [x], attributes: ["axis": .int(1), "select_last_index": .int(1)]), [1, 1], [2])
            // ArgMin along axis 0 of [[1,2,3],[4,0,6]] without keepdims: 0, 1, 0
            expectInt64s(try run1("ArgMin", [f32([2, 3], [1, 2, 3, 4, 0, 6])], attributes: ["keepdims": .int(0)]), [3], [0, 1, 0])
        }

        @Test func reduceAxisOutOfRangeIsAnError() throws {
            let error = thrownCBAMError { _ = try run1("ReduceSum", [Self.matrix(), i64([1], [2])], opset: 13) }
            #expect(error?.kind == .invalidAttribute)
            #expect(error?.node?.opType == "ReduceSum")
        }
    }
}

// MARK: - Linear

extension KernelTests {
    @Suite struct Linear {
        @Test func gemmTransBAlphaBetaBias() throws {
            // A [[1,2],[3,4]], B [[1,0],[0,1],[1,1]] (transB → Bᵀ is 2x3)
            // A·Bᵀ = [[1,2,3],[3,4,7]]; ×alpha 2 = [[2,4,6],[6,8,14]]
            // + beta 0.5 · C (1,2,3) broadcast over rows = + (0.5,1,1.5)
            let y = try run1("Gemm", [f32([2, 2], [1, 2, 3, 4]), f32([3, 2], [1, 0, 0, 1, 1, 1]), f32([3], [1, 2, 3])],
                             attributes: ["transB": .int(1), "alpha": .float(2), "beta": .float(0.5)], constants: [1, 2])
            expectFloats(y, [2, 3], [2.5, 5, 7.5, 6.5, 9, 15.5])
        }

        @Test func gemmTransA() throws {
            // Aᵀ of [[1,3],[2,4]] is [[1,2],[3,4]]; · I = itself
            let y = try run1("Gemm", [f32([2, 2], [1, 3, 2, 4]), f32([2, 2], [1, 0, 0, 1])], attributes: ["transA": .int(1)])
            expectFloats(y, [2, 2], [1, 2, 3, 4])
        }

        @Test func matMul2D() throws {
            // [[1,2,3],[4,5,6]] · [[1,0],[0,1],[1,1]] = [[1+3, 2+3],[4+6, 5+6]]
            let y = try run1("MatMul", [f32([2, 3], [1, 2, 3, 4, 5, 6]), f32([3, 2], [1, 0, 0, 1, 1, 1])])
            expectFloats(y, [2, 2], [4, 5, 10, 11])
        }

        @Test func matMulBatchedBroadcast() throws {
            // A [2,1,2] = (1,2), (3,4); B [2,1] = (1,10) shared by both batches: 1+20 = 21, 3+40 = 43
            let y = try run1("MatMul", [f32([2, 1, 2], [1, 2, 3, 4]), f32([2, 1], [1, 10])])
            expectFloats(y, [2, 1, 1], [21, 43])
            // A [1,1,2] broadcast against B [3,2,1] = (1,0), (0,1), (1,1): A=(5,7) → 5, 7, 12
            let z = try run1("MatMul", [f32([1, 1, 2], [5, 7]), f32([3, 2, 1], [1, 0, 0, 1, 1, 1])])
            expectFloats(z, [3, 1, 1], [5, 7, 12])
        }

        @Test func matMulOneDimensionalPromotion() throws {
            // vector · matrix: (1,2,3) · [[1,0],[0,1],[1,1]] = (4, 5)
            expectFloats(try run1("MatMul", [f32([3], [1, 2, 3]), f32([3, 2], [1, 0, 0, 1, 1, 1])]), [2], [4, 5])
            // matrix · vector: [[1,2,3],[4,5,6]] · (1,1,1) = (6, 15)
            expectFloats(try run1("MatMul", [f32([2, 3], [1, 2, 3, 4, 5, 6]), f32([3], [1, 1, 1])]), [2], [6, 15])
            // vector · vector: 4 + 10 + 18 = 32, a scalar
            expectFloats(try run1("MatMul", [f32([3], [1, 2, 3]), f32([3], [4, 5, 6])]), [], [32])
        }

        @Test func matMulInt64() throws {
            // [[1,2],[3,4]] · [[1],[1]] = (3, 7)
            expectInt64s(try run1("MatMul", [i64([2, 2], [1, 2, 3, 4]), i64([2, 1], [1, 1])]), [2, 1], [3, 7])
        }

        @Test func matMulInnerMismatchIsAnError() throws {
            let error = thrownCBAMError { _ = try run1("MatMul", [f32([2, 3], [1, 2, 3, 4, 5, 6]), f32([2, 2], [1, 0, 0, 1])]) }
            #expect(error?.kind == .shapeMismatch)
            #expect(error?.node?.opType == "MatMul")
        }
    }
}

// MARK: - Normalization

extension KernelTests {
    @Suite struct Normalization {
        @Test func batchNormalization() throws {
            // channel 0 (1,3): scale 1, B 0, mean 2, var 4  → (x-2)/2   = (-0.5, 0.5)
            // channel 1 (10,20): scale 2, B 1, mean 15, var 25 → 2(x-15)/5 + 1 = (-1, 3)
            // (epsilon 1e-5 shifts these by < 1e-5 relative)
            let y = try run1("BatchNormalization", [f32([1, 2, 1, 2], [1, 3, 10, 20]), f32([2], [1, 2]), f32([2], [0, 1]),
                                                    f32([2], [2, 15]), f32([2], [4, 25])], constants: [1, 2, 3, 4])
            expectFloats(y, [1, 2, 1, 2], [-0.5, 0.5, -1, 3], tolerance: 1e-4)
        }

        @Test func trainingBatchNormalizationOfAScalarIsAnError() throws {
            // A rank-0 X has no channel axis: refused (it used to index an empty shape and trap).
            let error = thrownCBAMError {
                _ = try runOp("BatchNormalization", [f32([], [1]), f32([1], [1]), f32([1], [0]), f32([1], [0]), f32([1], [1])],
                              attributes: ["training_mode": .int(1)], opset: 15, outputs: 3)
            }
            #expect(error?.kind == .shapeMismatch)
        }

        @Test func softmaxLastAxisOpset13() throws {
            // (0,0) → (½,½); (0, ln 3) → (1/4, 3/4)
            let y = try run1("Softmax", [f32([2, 2], [0, 0, 0, Float(log(3.0))])], opset: 13)
            expectFloats(y, [2, 2], [0.5, 0.5, 0.25, 0.75])
        }

        @Test func softmaxLegacyFlattensOpset11() throws {
            // X [1,2,2] = (0, ln3, 0, ln3); exps (1,3,1,3)
            // opset 11, axis 1: normalise over the flattened 2·2 = 4 values → (1,3,1,3)/8
            // opset 13, axis 1: normalise over axis 1 only, pairs (0,0) and (ln3,ln3) → all ½
            let x = try f32([1, 2, 2], [0, Float(log(3.0)), 0, Float(log(3.0))])
            expectFloats(try run1("Softmax", [x], opset: 11), [1, 2, 2], [0.125, 0.375, 0.125, 0.375])
            expectFloats(try run1("Softmax", [x], attributes: ["axis": .int(1)], opset: 13), [1, 2, 2], [0.5, 0.5, 0.5, 0.5])
        }
    }
}

// MARK: - Shape ops

extension KernelTests {
    @Suite struct ShapeOp {
        static let iota24 = (0..<24).map { Float($0) }

        @Test func reshapeZeroAndMinusOne() throws {
            // [2,3,4] with (0,-1): keep axis 0 (2), infer 24/2 = 12
            let y = try run1("Reshape", [f32([2, 3, 4], Self.iota24), i64([2], [0, -1])])
            expectFloats(y, [2, 12], Self.iota24)
            // (-1, 0): 0 copies axis 1 (3), -1 infers 24/3 = 8
            expectFloats(try run1("Reshape", [f32([2, 3, 4], Self.iota24), i64([2], [-1, 0])]), [8, 3], Self.iota24)
        }

        @Test func flatten() throws {
            let x = try f32([2, 3, 4], Self.iota24)
            expectFloats(try run1("Flatten", [x]), [2, 12], Self.iota24)
            expectFloats(try run1("Flatten", [x], attributes: ["axis": .int(2)]), [6, 4], Self.iota24)
            expectFloats(try run1("Flatten", [x], attributes: ["axis": .int(0)]), [1, 24], Self.iota24)
            expectFloats(try run1("Flatten", [x], attributes: ["axis": .int(-1)]), [6, 4], Self.iota24)
        }

        @Test func squeezeAndUnsqueezeOpset11Attributes() throws {
            let x = try f32([2, 1, 3], [1, 2, 3, 4, 5, 6])
            expectFloats(try run1("Squeeze", [x], attributes: ["axes": .ints([1])], opset: 11), [2, 3], [1, 2, 3, 4, 5, 6])
            expectFloats(try run1("Unsqueeze", [f32([3], [1, 2, 3])], attributes: ["axes": .ints([0])], opset: 11), [1, 3], [1, 2, 3])
        }

        @Test func squeezeAndUnsqueezeOpset13Inputs() throws {
            let x = try f32([2, 1, 3], [1, 2, 3, 4, 5, 6])
            expectFloats(try run1("Squeeze", [x, i64([1], [-2])], opset: 13), [2, 3], [1, 2, 3, 4, 5, 6])
            // no axes: every size-1 axis goes
            expectFloats(try run1("Squeeze", [f32([1, 3, 1], [1, 2, 3])], opset: 13), [3], [1, 2, 3])
            // axes (-1) on rank 1 → output rank 2, new last axis
            expectFloats(try run1("Unsqueeze", [f32([3], [1, 2, 3]), i64([1], [-1])], opset: 13), [3, 1], [1, 2, 3])
            // axes (0, 2) on [2] → [1, 2, 1]
            expectFloats(try run1("Unsqueeze", [f32([2], [7, 8]), i64([2], [0, 2])], opset: 13), [1, 2, 1], [7, 8])
        }

        @Test func squeezeNonUnitAxisIsAnError() throws {
            let error = thrownCBAMError { _ = try run1("Squeeze", [f32([2, 3], [1, 2, 3, 4, 5, 6]), i64([1], [0])], opset: 13) }
            #expect(error?.kind == .shapeMismatch)
        }

        @Test func transpose() throws {
            // [[1,2,3],[4,5,6]]ᵀ = [[1,4],[2,5],[3,6]] (default perm reverses)
            let x = try f32([2, 3], [1, 2, 3, 4, 5, 6])
            expectFloats(try run1("Transpose", [x]), [3, 2], [1, 4, 2, 5, 3, 6])
            expectFloats(try run1("Transpose", [x], attributes: ["perm": .ints([1, 0])]), [3, 2], [1, 4, 2, 5, 3, 6])
            // [1,2,2] with perm (0,2,1): each 2x2 matrix transposed
            expectFloats(try run1("Transpose", [f32([1, 2, 2], [1, 2, 3, 4])], attributes: ["perm": .ints([0, 2, 1])]), [1, 2, 2], [1, 3, 2, 4])
        }

        @Test func concat() throws {
            // axis 1: [[1,2],[3,4]] ++ [[5],[6]] = [[1,2,5],[3,4,6]]
            let y = try run1("Concat", [f32([2, 2], [1, 2, 3, 4]), f32([2, 1], [5, 6])], attributes: ["axis": .int(1)])
            expectFloats(y, [2, 3], [1, 2, 5, 3, 4, 6])
            // axis -2 (= 0): rows appended
            let z = try run1("Concat", [f32([1, 2], [1, 2]), f32([2, 2], [3, 4, 5, 6])], attributes: ["axis": .int(-2)])
            expectFloats(z, [3, 2], [1, 2, 3, 4, 5, 6])
        }

        @Test func splitEqual() throws {
            let parts = try runOp("Split", [f32([6], [1, 2, 3, 4, 5, 6])], outputs: 3)
            expectFloats(parts[0], [2], [1, 2])
            expectFloats(parts[1], [2], [3, 4])
            expectFloats(parts[2], [2], [5, 6])
        }

        @Test func splitWithSizes() throws {
            // axis 1 of [[1,2,3],[4,5,6]] into sizes (1,2): [[1],[4]] and [[2,3],[5,6]]
            let x = try f32([2, 3], [1, 2, 3, 4, 5, 6])
            let parts = try runOp("Split", [x, i64([2], [1, 2])], attributes: ["axis": .int(1)], opset: 13, outputs: 2)
            expectFloats(parts[0], [2, 1], [1, 4])
            expectFloats(parts[1], [2, 2], [2, 3, 5, 6])
            // opset 11: sizes from the attribute
            let legacy = try runOp("Split", [x], attributes: ["axis": .int(1), "split": .ints([2, 1])], opset: 11, outputs: 2)
            expectFloats(legacy[0], [2, 2], [1, 2, 4, 5])
            expectFloats(legacy[1], [2, 1], [3, 6])
        }

        @Test func sliceStepsAndExtremeBounds() throws {
            let x = try f32([5], [0, 1, 2, 3, 4])
            // x[-1::-1] written as ends INT64_MIN: the whole array reversed
            expectFloats(try run1("Slice", [x, i64([1], [-1]), i64([1], [int64Min]), i64([1], [0]), i64([1], [-1])]), [5], [4, 3, 2, 1, 0])
            // x[1::2] with ends INT64_MAX: 1, 3
            expectFloats(try run1("Slice", [x, i64([1], [1]), i64([1], [int64Max]), i64([1], [0]), i64([1], [2])]), [2], [1, 3])
            // x[-2:-100:-1]: from 3 down past the start → 3, 2, 1, 0
            expectFloats(try run1("Slice", [x, i64([1], [-2]), i64([1], [-100]), i64([1], [0]), i64([1], [-1])]), [4], [3, 2, 1, 0])
            // x[4:0:-2] → 4, 2
            expectFloats(try run1("Slice", [x, i64([1], [4]), i64([1], [0]), nil, i64([1], [-2])]), [2], [4, 2])
        }

        @Test func sliceTwoDimensionalAxes() throws {
            // [[1,2,3],[4,5,6]][:, ::-1] = [[3,2,1],[6,5,4]]
            let x = try f32([2, 3], [1, 2, 3, 4, 5, 6])
            let y = try run1("Slice", [x, i64([1], [int64Max]), i64([1], [int64Min]), i64([1], [1]), i64([1], [-1])])
            expectFloats(y, [2, 3], [3, 2, 1, 6, 5, 4])
            // rows 1: and columns 0:2 (no steps input): [[4,5]]
            expectFloats(try run1("Slice", [x, i64([2], [1, 0]), i64([2], [2, 2])]), [1, 2], [4, 5])
        }

        @Test func gatherNegativeIndex() throws {
            // rows (-1, 0) of [[1,2],[3,4],[5,6]] = [[5,6],[1,2]]
            let data = try f32([3, 2], [1, 2, 3, 4, 5, 6])
            expectFloats(try run1("Gather", [data, i64([2], [-1, 0])]), [2, 2], [5, 6, 1, 2])
            // scalar index -1 on axis 1: the last column, rank drops → (2, 4, 6)
            expectFloats(try run1("Gather", [data, i64([], [-1])], attributes: ["axis": .int(1)]), [3], [2, 4, 6])
        }

        @Test func gatherOutOfRangeIsAnError() throws {
            let error = thrownCBAMError { _ = try run1("Gather", [f32([3], [1, 2, 3]), i64([1], [3])]) }
            #expect(error?.kind == .shapeMismatch)
            #expect(error?.node?.opType == "Gather")
        }

        @Test func expand() throws {
            // [3,1] (1,2,3) to shape (2,1,2) → broadcast [2,3,2]: each value twice per row, block repeated
            let y = try run1("Expand", [f32([3, 1], [1, 2, 3]), i64([3], [2, 1, 2])])
            expectFloats(y, [2, 3, 2], [1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3])
        }

        @Test func tile() throws {
            let x = try f32([2, 2], [1, 2, 3, 4])
            // repeats (1,2): [[1,2,1,2],[3,4,3,4]]
            expectFloats(try run1("Tile", [x, i64([2], [1, 2])]), [2, 4], [1, 2, 1, 2, 3, 4, 3, 4])
            // repeats (2,1): [[1,2],[3,4],[1,2],[3,4]]
            expectFloats(try run1("Tile", [x, i64([2], [2, 1])]), [4, 2], [1, 2, 3, 4, 1, 2, 3, 4])
        }

        @Test func shapeWithStartAndEnd() throws {
            let x = try f32([2, 3, 4, 5], [Float](repeating: 0, count: 120))
            expectInt64s(try run1("Shape", [x]), [4], [2, 3, 4, 5])
            expectInt64s(try run1("Shape", [x], attributes: ["start": .int(1), "end": .int(-1)]), [2], [3, 4])
            expectInt64s(try run1("Shape", [x], attributes: ["start": .int(-2)]), [2], [4, 5])
        }

        @Test func constantOfShape() throws {
            // value 7 (int64), shape (2,3)
            let y = try run1("ConstantOfShape", [i64([2], [2, 3])], attributes: ["value": .tensor(i64([1], [7]))])
            expectInt64s(y, [2, 3], [7, 7, 7, 7, 7, 7])
            // default: float zeros
            expectFloats(try run1("ConstantOfShape", [i64([1], [2])]), [2], [0, 0])
        }

        @Test func padModes() throws {
            // (1,2,3) padded by 2 on each side of axis 1 (pads = [0,2,0,2])
            let x = try f32([1, 3], [1, 2, 3]), pads = try i64([4], [0, 2, 0, 2])
            // reflect mirrors without repeating the edge: 3 2 | 1 2 3 | 2 1
            expectFloats(try run1("Pad", [x, pads], attributes: ["mode": .string("reflect")]), [1, 7], [3, 2, 1, 2, 3, 2, 1])
            // edge repeats the border value: 1 1 | 1 2 3 | 3 3
            expectFloats(try run1("Pad", [x, pads], attributes: ["mode": .string("edge")]), [1, 7], [1, 1, 1, 2, 3, 3, 3])
            // constant with constant_value 9: 9 9 | 1 2 3 | 9 9
            expectFloats(try run1("Pad", [x, pads, f32([], [9])]), [1, 7], [9, 9, 1, 2, 3, 9, 9])
            // constant, default value 0
            expectFloats(try run1("Pad", [x, pads]), [1, 7], [0, 0, 1, 2, 3, 0, 0])
        }

        @Test func padLegacyAttributes() throws {
            // opset 2: pads and value are attributes; one row of 5 above [[1,2]]
            let y = try run1("Pad", [f32([1, 2], [1, 2])], attributes: ["pads": .ints([1, 0, 0, 0]), "value": .float(5)], opset: 2)
            expectFloats(y, [2, 2], [5, 5, 1, 2])
        }
    }
}

// MARK: - Runner

/// Records every node the runner reports.
fileprivate final class RecordingObserver: RunObserver {
    var events: [(index: Int, name: String, outputs: [Tensor])] = []
    func nodeDidRun(_ event: NodeEvent) throws {
        events.append((event.index, event.node.name, event.outputs))
    }
}

extension KernelTests {
    @Suite struct Runner {
        @Test func nodesInReverseFileOrderStillRun() throws {
            // File order: Relu(t) → y first, then Neg(x) → t. Run order must be Neg, Relu.
            // x (-1, 2) → t (1, -2) → y (1, 0)
            let graph = Graph(nodes: [Node(name: "relu", opType: "Relu", inputs: ["t"], outputs: ["y"]),
                                      Node(name: "neg", opType: "Neg", inputs: ["x"], outputs: ["t"])],
                              inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")])
            let session = try Session(model: Model(graph: graph))
            #expect(session.executionOrder.map(\.name) == ["neg", "relu"])
            expectFloats(try #require(session.run(["x": f32([2], [-1, 2])])["y"]), [2], [1, 0])
        }

        @Test func initializerIsAnInputDefault() throws {
            // y = x + b, b defaults to 10 but can be overridden.
            let graph = Graph(nodes: [Node(name: "add", opType: "Add", inputs: ["x", "b"], outputs: ["y"])],
                              initializers: ["b": try f32([1], [10])],
                              inputs: [ValueInfo(name: "x", shape: [.fixed(2)]), ValueInfo(name: "b", shape: [.fixed(1)])],
                              outputs: [ValueInfo(name: "y")])
            let session = try Session(model: Model(graph: graph))
            #expect(session.requiredInputs.map(\.name) == ["x"])
            expectFloats(try #require(session.run(["x": f32([2], [1, 2])])["y"]), [2], [11, 12])
            expectFloats(try #require(session.run(["x": f32([2], [1, 2]), "b": f32([1], [-1])])["y"]), [2], [0, 1])
        }

        @Test func symbolicBatchAcceptsAnySize() throws {
            let graph = Graph(nodes: [Node(name: "relu", opType: "Relu", inputs: ["x"], outputs: ["y"])],
                              inputs: [ValueInfo(name: "x", shape: [.symbolic("batch"), .fixed(2)])],
                              outputs: [ValueInfo(name: "y")])
            let session = try Session(model: Model(graph: graph))
            expectFloats(try #require(session.run(["x": f32([1, 2], [-1, 1])])["y"]), [1, 2], [0, 1])
            expectFloats(try #require(session.run(["x": f32([3, 2], [-1, 1, 2, -2, 3, 0])])["y"]), [3, 2], [0, 1, 2, 0, 3, 0])
            // the fixed axis is still checked
            let error = thrownCBAMError { _ = try session.run(["x": f32([3, 3], [Float](repeating: 0, count: 9))]) }
            #expect(error?.kind == .shapeMismatch)
        }

        @Test func constantSubgraphIsFolded() throws {
            // c = Neg(w) depends only on an initializer: folded at build, not a step.
            let graph = Graph(nodes: [Node(name: "neg", opType: "Neg", inputs: ["w"], outputs: ["c"]),
                                      Node(name: "add", opType: "Add", inputs: ["x", "c"], outputs: ["y"])],
                              initializers: ["w": try f32([1], [3])],
                              inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")])
            let session = try Session(model: Model(graph: graph))
            #expect(session.executionOrder.map(\.name) == ["add"])
            // 5 + (-3) = 2
            expectFloats(try #require(session.run(["x": f32([1], [5])])["y"]), [1], [2])
        }

        @Test func fullyConstantGraphAndPassThroughOutput() throws {
            // y = Add(a, b) with both initializers is folded at build: (1,2) + (10,20) = (11,22);
            // x is also returned as-is as a second output.
            let graph = Graph(nodes: [Node(name: "add", opType: "Add", inputs: ["a", "b"], outputs: ["y"])],
                              initializers: ["a": try f32([2], [1, 2]), "b": try f32([2], [10, 20])],
                              inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y"), ValueInfo(name: "x")])
            let session = try Session(model: Model(graph: graph))
            #expect(session.executionOrder.isEmpty)
            let results = try session.run(["x": f32([1], [7])])
            expectFloats(try #require(results["y"]), [2], [11, 22])
            expectFloats(try #require(results["x"]), [1], [7])
        }

        @Test func observerSeesEveryNodeOnce() throws {
            // x → Neg → a → Relu → b → Mul(b, x) → y; x = (-1, 2): a (1,-2), b (1,0), y (-1, 0)
            let graph = Graph(nodes: [Node(name: "neg", opType: "Neg", inputs: ["x"], outputs: ["a"]),
                                      Node(name: "relu", opType: "Relu", inputs: ["a"], outputs: ["b"]),
                                      Node(name: "mul", opType: "Mul", inputs: ["b", "x"], outputs: ["y"])],
                              inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")])
            let session = try Session(model: Model(graph: graph))
            let observer = RecordingObserver()
            let results = try session.run(["x": f32([2], [-1, 2])], observer: observer)
            #expect(observer.events.map(\.name) == ["neg", "relu", "mul"])
            #expect(observer.events.map(\.index) == [0, 1, 2])
            #expect(observer.events.allSatisfy { $0.outputs.count == 1 })
            expectFloats(observer.events[0].outputs[0], [2], [1, -2])
            expectFloats(observer.events[1].outputs[0], [2], [1, 0])
            expectFloats(observer.events[2].outputs[0], [2], [-1, 0])
            expectFloats(try #require(results["y"]), [2], [-1, 0])
        }

        @Test func observerErrorStopsTheRun() throws {
            final class Failing: RunObserver {
                func nodeDidRun(_ event: NodeEvent) throws { throw CBAMError(.io, "disk full") }
            }
            let graph = Graph(nodes: [Node(name: "relu", opType: "Relu", inputs: ["x"], outputs: ["y"])],
                              inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")])
            let session = try Session(model: Model(graph: graph), fileName: "obs.onnx")
            let error = thrownCBAMError { _ = try session.run(["x": f32([1], [1])], observer: Failing()) }
            #expect(error?.kind == .io)
            #expect(error?.description.contains("obs.onnx") == true)
        }
    }
}

// MARK: - Modern ops (issue 15)

extension KernelTests {
    @Suite struct ModernOps {
        @Test func layerNormalizationLastAxis() throws {
            // rows (1,3): mean 2, var 1; (2,6): mean 4, var 4 → both normalise to (−1, 1);
            // scale (1, 2), B (0, 1) → (−1, 3). Mean (2, 4), InvStdDev (1, ½), shaped [2, 1].
            let x = try f32([2, 2], [1, 3, 2, 6])
            for constants: Set<Int> in [[], [1, 2]] {
                let outputs = try runOp("LayerNormalization", [x, f32([2], [1, 2]), f32([2], [0, 1])],
                                        attributes: ["epsilon": .float(0)], outputs: 3, constants: constants)
                expectFloats(outputs[0], [2, 2], [-1, 3, -1, 3])
                expectFloats(outputs[1], [2, 1], [2, 4])
                expectFloats(outputs[2], [2, 1], [1, 0.5])
            }
        }

        @Test func layerNormalizationAxisZeroWithoutBiasAndABroadcastScale() throws {
            // One row (1, 3, 5, 7): mean 4, var (9+1+1+9)/4 = 5 → (−3, −1, 1, 3)/√5;
            // scale [2, 1] = (1, 2) per row of the [2, 2] block → (−3, −1, 2, 6)/√5.
            let r = 1 / Float(5).squareRoot()
            for constants: Set<Int> in [[], [1]] {
                let y = try run1("LayerNormalization", [f32([2, 2], [1, 3, 5, 7]), f32([2, 1], [1, 2])],
                                 attributes: ["axis": .int(0), "epsilon": .float(0)], constants: constants)
                expectFloats(y, [2, 2], [-3 * r, -r, 2 * r, 6 * r])
            }
        }

        @Test func layerNormalizationScaleThatDoesNotBroadcastIsAnError() throws {
            let error = thrownCBAMError { _ = try run1("LayerNormalization", [f32([2, 3], [1, 2, 3, 4, 5, 6]), f32([2], [1, 1])]) }
            #expect(error?.kind == .shapeMismatch)
            #expect(error?.field == "Scale")
            #expect(error?.node?.opType == "LayerNormalization")
        }

        @Test func instanceNormalization() throws {
            // channel 0 (1, 3): mean 2, var 1 → (−1, 1) · 2 + 1 = (−1, 3)
            // channel 1 (0, 4): mean 2, var 4 → (−1, 1) · 1 + 0 = (−1, 1)
            for constants: Set<Int> in [[], [1, 2]] {
                let y = try run1("InstanceNormalization", [f32([1, 2, 2], [1, 3, 0, 4]), f32([2], [2, 1]), f32([2], [1, 0])],
                                 attributes: ["epsilon": .float(0)], constants: constants)
                expectFloats(y, [1, 2, 2], [-1, 3, -1, 1])
            }
        }

        @Test func groupNormalizationBothOpsets() throws {
            // groups (1, 3) and (0, 4) of channels (0, 1) and (2, 3) both normalise to (−1, 1, −1, 1).
            let x = try f32([1, 4, 1], [1, 3, 0, 4])
            for constants: Set<Int> in [[], [1, 2]] {
                // opset 21: per channel, scale (1, 2, 3, 4), bias (0, 0, 0, 1) → (−1, 2, −3, 5)
                let y21 = try run1("GroupNormalization", [x, f32([4], [1, 2, 3, 4]), f32([4], [0, 0, 0, 1])],
                                   attributes: ["num_groups": .int(2), "epsilon": .float(0)], opset: 21, constants: constants)
                expectFloats(y21, [1, 4, 1], [-1, 2, -3, 5])
                // opset 18: per group, scale (1, 2), bias (0, 1) → (−1, 1, −2 + 1, 2 + 1)
                let y18 = try run1("GroupNormalization", [x, f32([2], [1, 2]), f32([2], [0, 1])],
                                   attributes: ["num_groups": .int(2), "epsilon": .float(0)], opset: 18, constants: constants)
                expectFloats(y18, [1, 4, 1], [-1, 1, -1, 3])
            }
        }

        @Test func groupNormalizationRefusals() throws {
            // 3 channels do not split into 2 groups; num_groups is required.
            let x = try f32([1, 3, 1], [1, 2, 3])
            let uneven = thrownCBAMError {
                _ = try run1("GroupNormalization", [x, f32([3], [1, 1, 1]), f32([3], [0, 0, 0])], attributes: ["num_groups": .int(2)], opset: 21)
            }
            #expect(uneven?.kind == .invalidAttribute)
            #expect(uneven?.field == "attribute \"num_groups\"")
            let missing = thrownCBAMError { _ = try run1("GroupNormalization", [x, f32([3], [1, 1, 1]), f32([3], [0, 0, 0])], opset: 21) }
            #expect(missing?.kind == .invalidAttribute)
        }

        @Test func geluBothForms() throws {
            // PyTorch: F.gelu((−1, 0, 1, 2)) and F.gelu(…, approximate="tanh")
            let x = try f32([4], [-1, 0, 1, 2])
            expectFloats(try run1("Gelu", [x], opset: 20), [4], [-0.15865525603294373, 0, 0.8413447141647339, 1.9544997215270996])
            expectFloats(try run1("Gelu", [x], attributes: ["approximate": .string("tanh")], opset: 20), [4],
                         [-0.15880799293518066, 0, 0.8411920070648193, 1.9545977115631104])
            let error = thrownCBAMError { _ = try run1("Gelu", [x], attributes: ["approximate": .string("sigmoid")], opset: 20) }
            #expect(error?.kind == .invalidAttribute)
        }

        @Test func sinAndCos() throws {
            let x = try f32([3], [0, Float.pi / 2, Float.pi])
            expectFloats(try run1("Sin", [x]), [3], [0, 1, 0])
            expectFloats(try run1("Cos", [x]), [3], [1, 0, -1])
        }

        @Test func cumSumModes() throws {
            // (1, 2, 3): inclusive (1, 3, 6); exclusive (0, 1, 3); reverse (6, 5, 3); both (5, 3, 0)
            let x = try f32([3], [1, 2, 3]), axis = try i64([], [0])
            expectFloats(try run1("CumSum", [x, axis], opset: 14), [3], [1, 3, 6])
            expectFloats(try run1("CumSum", [x, axis], attributes: ["exclusive": .int(1)], opset: 14), [3], [0, 1, 3])
            expectFloats(try run1("CumSum", [x, axis], attributes: ["reverse": .int(1)], opset: 14), [3], [6, 5, 3])
            expectFloats(try run1("CumSum", [x, axis], attributes: ["exclusive": .int(1), "reverse": .int(1)], opset: 14), [3], [5, 3, 0])
            // [[1, 2], [3, 4]] along axis −2 → [[1, 2], [4, 6]]; int64 too.
            expectInt64s(try run1("CumSum", [i64([2, 2], [1, 2, 3, 4]), i64([1], [-2])], opset: 14), [2, 2], [1, 2, 4, 6])
            let error = thrownCBAMError { _ = try run1("CumSum", [x, i64([], [1])], opset: 14) }
            #expect(error?.kind == .shapeMismatch)
            #expect(error?.field == "axis")
        }

        @Test func modSignFollowsTheDivisorOrTheDividend() throws {
            // Python: −7 % 3 = 2, 7 % −3 = −2, −7 % −3 = −1, 7 % 3 = 1; C: −1, 1, −1, 1
            let a = try i64([4], [-7, 7, -7, 7]), b = try i64([4], [3, -3, -3, 3])
            expectInt64s(try run1("Mod", [a, b], opset: 13), [4], [2, -2, -1, 1])
            expectInt64s(try run1("Mod", [a, b], attributes: ["fmod": .int(1)], opset: 13), [4], [-1, 1, -1, 1])
            // fmod(−7.5, 2) = −1.5, fmod(7.5, −2) = 1.5
            expectFloats(try run1("Mod", [f32([2], [-7.5, 7.5]), f32([1], [2])], attributes: ["fmod": .int(1)], opset: 13), [2], [-1.5, 1.5])
            let error = thrownCBAMError { _ = try run1("Mod", [a, i64([1], [0])], opset: 13) }
            #expect(error?.description.contains("modulo by zero") == true)
            // Int64.min % −1 overflows in C; here it is 0, not a trap.
            expectInt64s(try run1("Mod", [i64([1], [int64Min]), i64([1], [-1])], opset: 13), [1], [0])
        }

        @Test func conv3D() throws {
            // X [1, 1, 2, 2, 2] = 1…8, W [1, 1, 2, 1, 1] = (1, 10), B 0.5: each output (h, w) is
            // x[0][h][w] + 10·x[1][h][w] + ½ → (1 + 50, 2 + 60, 3 + 70, 4 + 80) + ½.
            let y = try run1("Conv", [f32([1, 1, 2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]), f32([1, 1, 2, 1, 1], [1, 10]), f32([1], [0.5])],
                             constants: [1, 2])
            expectFloats(y, [1, 1, 1, 2, 2], [51.5, 62.5, 73.5, 84.5])
        }

        /// A 3-D Conv whose first spatial axis has extent 1 (input and kernel) is the 2-D Conv of
        /// the rest: the direct N-D loop against im2col + sgemm, with strides, pads, dilations, groups.
        @Test func conv3DAgreesWithConv2D() throws {
            var random = SplitMix(state: 3)
            func values(_ count: Int) -> [Float] { (0..<count).map { _ in Float.random(in: -1...1, using: &random) } }
            for round in 0..<12 {
                let group = [1, 2][round % 2], c = 2 * Int.random(in: 1...2, using: &random), m = group * Int.random(in: 1...3, using: &random)
                let (h, w) = (Int.random(in: 3...7, using: &random), Int.random(in: 3...7, using: &random))
                let (kh, kw) = (Int.random(in: 1...3, using: &random), Int.random(in: 1...3, using: &random))
                let stride = Int.random(in: 1...2, using: &random), dilation = Int.random(in: 1...2, using: &random), pad = Int.random(in: 0...1, using: &random)
                guard (kh - 1) * dilation + 1 <= h + 2 * pad, (kw - 1) * dilation + 1 <= w + 2 * pad else { continue }
                let x = values(2 * c * h * w), weights = values(m * (c / group) * kh * kw), bias = values(m)
                let planar = try run1("Conv", [f32([2, c, h, w], x), f32([m, c / group, kh, kw], weights), f32([m], bias)],
                                      attributes: ["group": .int(group), "strides": .ints([stride, stride]), "dilations": .ints([dilation, dilation]),
                                                   "pads": .ints([pad, pad, pad, pad])], constants: [1, 2])
                let volume = try run1("Conv", [f32([2, c, 1, h, w], x), f32([m, c / group, 1, kh, kw], weights), f32([m], bias)],
                                      attributes: ["group": .int(group), "strides": .ints([1, stride, stride]), "dilations": .ints([1, dilation, dilation]),
                                                   "pads": .ints([0, pad, pad, 0, pad, pad])], constants: [1, 2])
                #expect(volume.shape == [planar.shape[0], planar.shape[1], 1] + planar.shape[2...])
                let comparison = Comparison(actual: try volume.reshaped(planar.shape), expected: planar, atol: 1e-5, rtol: 1e-5)
                #expect(comparison.passed, "round \(round): \(comparison)")
            }
        }

        @Test func gatherND() throws {
            // data [[0, 1], [2, 3]]: tuples (0, 0), (1, 1) → (0, 3); tuples (1), (0) → rows 1 and 0
            let data = try f32([2, 2], [0, 1, 2, 3])
            expectFloats(try run1("GatherND", [data, i64([2, 2], [0, 0, 1, 1])], opset: 13), [2], [0, 3])
            expectFloats(try run1("GatherND", [data, i64([2, 1], [1, -2])], opset: 13), [2, 2], [2, 3, 0, 1])
            // batch_dims 1, data [2, 2, 2] = 0…7: batch 0 takes its row 1 (2, 3), batch 1 its row 0 (4, 5)
            let cube = try f32([2, 2, 2], [0, 1, 2, 3, 4, 5, 6, 7])
            expectFloats(try run1("GatherND", [cube, i64([2, 1], [1, 0])], attributes: ["batch_dims": .int(1)], opset: 13), [2, 2], [2, 3, 4, 5])
            let error = thrownCBAMError { _ = try run1("GatherND", [data, i64([1, 2], [0, 2])], opset: 13) }
            #expect(error?.kind == .shapeMismatch)
            #expect(error?.field == "indices")
            let depth = thrownCBAMError { _ = try run1("GatherND", [data, i64([1, 3], [0, 0, 0])], opset: 13) }
            #expect(depth?.kind == .shapeMismatch)
        }
    }
}
