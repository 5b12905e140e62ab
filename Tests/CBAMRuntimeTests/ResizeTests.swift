import Foundation
import Testing
@testable import CBAMRuntime

// Resize / Upsample: small cases worked out by hand (the ONNX node conformance
// cases cover the modes in depth), and the errors bad scales, sizes, roi and
// attributes must raise instead of trapping.

@Suite struct ResizeTests {
    /// Runs one Resize/Upsample node. `inputs[0]` is X; `nil` omits an input.
    private func resize(_ inputs: [Tensor?], opType: String = "Resize", opset: Int = 19,
                        attributes: [String: Attribute] = [:]) throws -> Tensor {
        var names: [String] = [], graphInputs: [ValueInfo] = [], feeds: [String: Tensor] = [:]
        for (i, tensor) in inputs.enumerated() {
            guard let tensor else { names.append(""); continue }
            names.append("x\(i)")
            graphInputs.append(ValueInfo(name: "x\(i)", elementType: tensor.dataType))
            feeds["x\(i)"] = tensor
        }
        let node = Node(name: "resize", opType: opType, inputs: names, outputs: ["y"], attributes: attributes)
        let graph = Graph(nodes: [node], inputs: graphInputs, outputs: [ValueInfo(name: "y", elementType: nil)])
        let session = try Session(model: Model(opsetImports: ["": opset], graph: graph), fileName: "resize-test.onnx")
        return try #require(try session.run(feeds)["y"])
    }

    private func f32(_ shape: [Int], _ values: [Float]) throws -> Tensor { try Tensor(shape: shape, floats: values) }
    private func i64(_ values: [Int]) throws -> Tensor { try Tensor(shape: [values.count], int64s: values.map { Int64($0) }) }

    private func expect(_ tensor: Tensor, _ shape: [Int], _ expected: [Float],
                        sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(tensor.shape == shape, sourceLocation: sourceLocation)
        let values = (try? tensor.floats()) ?? []
        #expect(values.count == expected.count && zip(values, expected).allSatisfy { abs($0 - $1) <= 1e-5 },
                "got \(values), expected \(expected)", sourceLocation: sourceLocation)
    }

    private func error(_ body: () throws -> Tensor, sourceLocation: SourceLocation = #_sourceLocation) -> CBAMError? {
        thrownCBAMError(sourceLocation: sourceLocation) { _ = try body() }
    }

    @Test func linearHalfPixelDownsample() throws {
        // x_original = (o + 0.5) / 0.5 - 0.5 = 0.5, 2.5 → 1.5, 3.5.
        let y = try resize([f32([4], [1, 2, 3, 4]), nil, f32([1], [0.5])], attributes: ["mode": .string("linear")])
        expect(y, [2], [1.5, 3.5])
    }

    @Test func nearestScaleOneAxesAreCopied() throws {
        // [1, 1, 1, 2] × [1, 1, 1, 2], asymmetric floor: each column twice.
        let y = try resize([f32([1, 1, 1, 2], [5, 7]), nil, f32([4], [1, 1, 1, 2])],
                           attributes: ["coordinate_transformation_mode": .string("asymmetric"), "nearest_mode": .string("floor")])
        expect(y, [1, 1, 1, 4], [5, 5, 7, 7])
    }

    @Test func sizesWithAxes() throws {
        // Only axis 1 (of [2, 2]) resized to 1: half_pixel, x_original = 0.5 → linear mean of the row.
        let y = try resize([f32([2, 2], [1, 3, 5, 9]), nil, nil, i64([1])],
                           attributes: ["mode": .string("linear"), "axes": .ints([-1])])
        expect(y, [2, 1], [2, 7])
    }

    @Test func resize10NearestDownsampleRoundsUp() throws {
        // Resize-10: asymmetric, ceil when downsampling: x_original = 0, 1.67 → indices 0, 2.
        let y = try resize([f32([1, 1, 2, 4], [1, 2, 3, 4, 5, 6, 7, 8]), f32([4], [1, 1, 0.6, 0.6])], opset: 10)
        expect(y, [1, 1, 1, 2], [1, 3])
    }

    @Test func upsample9Linear() throws {
        // x_original = o / 2 = 0, 0.5, 1, 1.5 → 1, 2, 3, 3 (the last clamps to the edge).
        let y = try resize([f32([2], [1, 3]), f32([1], [2])], opType: "Upsample", opset: 9,
                           attributes: ["mode": .string("linear")])
        expect(y, [4], [1, 2, 3, 3])
    }

    @Test func upsample7NearestScalesAttribute() throws {
        let y = try resize([f32([1, 2], [1, 2])], opType: "Upsample", opset: 7,
                           attributes: ["scales": .floats([2, 2])])
        expect(y, [2, 4], [1, 1, 2, 2, 1, 1, 2, 2])
    }

    @Test func tfCropAndResizeExtrapolates() throws {
        // roi [0.5, 1.5] over width 3: x_original = 1 + o * 2 / 1 → 1 (inside), 3 (outside → 9).
        let y = try resize([f32([3], [10, 20, 30]), f32([2], [0.5, 1.5]), nil, i64([2])],
                           attributes: ["mode": .string("linear"), "coordinate_transformation_mode": .string("tf_crop_and_resize"),
                                        "extrapolation_value": .float(9)])
        expect(y, [2], [20, 9])
    }

    @Test func scaleToNothingGivesAnEmptyTensor() throws {
        let y = try resize([f32([2], [1, 2]), nil, f32([1], [0.25])])
        expect(y, [0], [])
    }

    @Test func badScalesAndSizesThrow() throws {
        let x = try f32([2, 2], [1, 2, 3, 4])
        for bad: Float in [.nan, .infinity, 0, -1, 1e30] {
            #expect(error { try resize([x, nil, f32([2], [1, bad])]) } != nil, "scale \(bad)")
        }
        #expect(error { try resize([x, nil, f32([3], [1, 1, 1])]) }?.kind == .shapeMismatch)
        #expect(error { try resize([x, nil, f32([2], [1, 1]), i64([2, 2])]) } != nil)
        #expect(error { try resize([x, nil, nil, nil]) }?.kind == .missingInput)
        #expect(error { try resize([x, nil, nil, i64([2, -1])]) }?.kind == .invalidShape)
        #expect(error { try resize([x, nil, nil, i64([2, 1 << 40])]) }?.kind == .invalidShape)
        #expect(error { try resize([x, nil, nil, i64([2, 2])], attributes: ["axes": .ints([0, 0])]) } != nil)
        #expect(error { try resize([x, nil, nil, i64([2])], attributes: ["axes": .ints([2])]) } != nil)
        #expect(error { try resize([x, nil, nil, i64([1, 1]).reshaped([2])],
                                   attributes: ["mode": .string("bicubic")]) }?.kind == .invalidAttribute)
        let crop: [String: Attribute] = ["coordinate_transformation_mode": .string("tf_crop_and_resize")]
        #expect(error { try resize([x, f32([2], [0, 1]), nil, i64([2, 2])], attributes: crop) }?.kind == .shapeMismatch)
        #expect(error { try resize([x, f32([4], [0, .nan, 1, 1]), nil, i64([2, 2])], attributes: crop) } != nil)
    }

    @Test func antialiasWithTinyScaleDoesNotTrap() throws {
        // A huge downscale to one element: the antialias filter spans the whole axis.
        let x = try f32([1, 8], [1, 1, 1, 1, 1, 1, 1, 1])
        let y = try resize([x, nil, f32([2], [1, 0.125])], attributes: ["mode": .string("cubic"), "antialias": .int(1)])
        expect(y, [1, 1], [1])
    }
}
