import Foundation
import Testing
@testable import CBAMRuntime

/// The pass that runs a stride-1 ConvTranspose as a Conv with flipped weights
/// (`Passes.strideOneTransposedAsConv`) against the ConvTranspose reference kernel (the same
/// model without passes), on random geometries; and the cases it must leave alone.
@Suite struct TransposedAsConvTests {
    static func model(c: Int, m: Int, k: Int, attributes: [String: Attribute], w: [Float], b: [Float]?, x: Tensor) throws -> Model {
        var initializers = ["W": try Tensor(shape: [c, m, k, k], floats: w)]
        if let b { initializers["B"] = try Tensor(shape: [m], floats: b) }
        return Model(graph: Graph(
            nodes: [Node(name: "lift", opType: "ConvTranspose", inputs: ["x", "W"] + (b == nil ? [] : ["B"]), outputs: ["t"], attributes: attributes),
                    Node(name: "relu", opType: "Relu", inputs: ["t"], outputs: ["y"])],
            initializers: initializers, inputs: [ValueInfo(name: "x", shape: x.shape.map { .fixed($0) })], outputs: [ValueInfo(name: "y")]))
    }

    @Test func strideOneTransposeRunsAsConvAndMatchesTheReference() throws {
        var random = SplitMix(state: 0x7C0D)
        var rewrittenCases = 0
        for index in 0..<16 {
            func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }
            let (c, m, k, d, size) = (int(1...9), int(1...17), [1, 3, 5][index % 3], int(1...2), int(3...9))
            let extent = (k - 1) * d
            let pads = (0..<4).map { _ in int(0...extent) }
            let input = try Tensor(shape: [1 + index % 2, c, size, size + 1], floats: OneDNNTests.values((1 + index % 2) * c * size * (size + 1), &random))
            let w = OneDNNTests.values(c * m * k * k, &random), b = index % 2 == 0 ? OneDNNTests.values(m, &random) : nil
            let attributes: [String: Attribute] = ["kernel_shape": .ints([k, k]), "dilations": .ints([d, d]), "pads": .ints(pads)]
            let model = try Self.model(c: c, m: m, k: k, attributes: attributes, w: w, b: b, x: input)
            let optimized = try Session(model: model, options: SessionOptions(threads: 1 + index % 2))
            let plan = try optimized.plan(for: ["x": input])
            let steps = plan.steps.map(\.entry.node.opType)
            let asConv = !steps.contains("ConvTranspose") && steps.contains { $0 == "Conv" || $0 == "FusedConv" }
            #expect(asConv, "case \(index): \(steps)")
            if asConv { rewrittenCases += 1 }
            let actual = try #require(try optimized.run(["x": input])["y"]).floats()
            let reference = try #require(try Session(model: model, options: SessionOptions(threads: 1, optimize: false)).run(["x": input])["y"]).floats()
            _ = OneDNNTests.compare(actual, reference, "case \(index): C \(c) M \(m) k \(k) d \(d) pads \(pads)")
        }
        #expect(rewrittenCases == 16)
    }

    /// Strides, output padding and pads past the window are left to the ConvTranspose kernels.
    @Test func otherTransposesAreLeftAlone() throws {
        var random = SplitMix(state: 0x7C0E)
        let input = try Tensor(shape: [1, 4, 6, 6], floats: OneDNNTests.values(4 * 36, &random))
        let w = OneDNNTests.values(4 * 8 * 9, &random)
        for attributes: [String: Attribute] in [
            ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])],
            ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]), "output_padding": .ints([1, 1])],
            ["kernel_shape": .ints([3, 3]), "pads": .ints([3, 0, 0, 0])],
        ] {
            let model = try Self.model(c: 4, m: 8, k: 3, attributes: attributes, w: w, b: nil, x: input)
            let session = try Session(model: model, options: SessionOptions(threads: 1))
            let steps = try session.plan(for: ["x": input]).steps.map(\.entry.node.opType)
            #expect(steps.contains("ConvTranspose"), "\(attributes): \(steps)")
            let reference = try #require(try Session(model: model, options: SessionOptions(threads: 1, optimize: false)).run(["x": input])["y"]).floats()
            _ = OneDNNTests.compare(try #require(try session.run(["x": input])["y"]).floats(), reference, "\(attributes)")
        }
    }
}

