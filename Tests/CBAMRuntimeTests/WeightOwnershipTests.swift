import Foundation
import Testing
@testable import CBAMRuntime

/// A session loaded from a file keeps its weights once: the first plan takes them, lets each
/// go once a oneDNN primitive holds its reordered copy, and a plan for new shapes reads them
/// from the file again. These tests hold that to what the same model gives from memory.
@Suite(.serialized)
struct WeightOwnershipTests {
    static let model = "Models/seed002_resnet18_cbam_prepost/torchscript_op17.onnx"

    func input(batch: Int, seed: UInt64) throws -> Tensor {
        var state = seed
        let values = (0..<(batch * 3 * 64 * 64)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(state >> 41) % 2001 - 1000) / 500
        }
        return try Tensor(shape: [batch, 3, 64, 64], floats: values)
    }

    func expectClose(_ a: [String: Tensor], _ b: [String: Tensor], sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(a.keys.sorted() == b.keys.sorted(), sourceLocation: sourceLocation)
        for (name, expected) in b {
            let comparison = Comparison(actual: try #require(a[name]), expected: expected, atol: 1e-5, rtol: 1e-5)
            #expect(comparison.passed, "output \(name): \(comparison)", sourceLocation: sourceLocation)
        }
    }

    /// The weights leave the session's model, the plan lets the convolutions' weights go, and
    /// runs at two batch sizes (the second compiled from weights read again) give what a
    /// session holding every weight in memory gives.
    @Test func aFileSessionHandsItsWeightsToThePlans() throws {
        let path = Repo.path(Self.model)
        let fromFile = try Session(contentsOf: path)
        let inMemory = try Session(model: try ModelLoader.load(contentsOf: path), fileName: path)
        let big = inMemory.model.graph.initializers.filter { $0.value.valueType.byteCount >= Session.weightThresholdBytes }
        #expect(big.count > 5)
        for name in big.keys { #expect(fromFile.model.graph.initializers[name] == nil, "\(name) still in the session's model") }

        for (batch, seed) in [(2, 1), (1, 2), (3, 3)] as [(Int, UInt64)] {
            let x = try input(batch: batch, seed: seed)
            try expectClose(try fromFile.run(["input": x]), try inMemory.run(["input": x]))
            let plan = try fromFile.plan(for: ["input": x])
            if LayoutPass.machineLayout != nil {
                // oneDNN is there: its convolutions hold their weights, and the plan does not.
                #expect(!plan.releasedConstants.isEmpty, "batch \(batch): no weight was let go")
                for name in plan.releasedConstants { #expect(plan.typed.constants[name] == nil) }
            }
        }
    }

    /// Observers see no tensor for a weight the plan let go (its operand points nowhere), and
    /// the same outputs as a plain run.
    @Test func observersSeeNilForWeightsLetGo() throws {
        final class Inputs: RunObserver {
            var seen: [String: Bool] = [:]
            func nodeDidRun(_ event: NodeEvent) throws {
                for (name, tensor) in zip(event.node.inputs, event.inputs) where !name.isEmpty { seen[name] = tensor != nil }
            }
        }
        let session = try Session(contentsOf: Repo.path(Self.model))
        let x = try input(batch: 2, seed: 9)
        let observer = Inputs()
        let observed = try session.run(["input": x], observer: observer)
        try expectClose(observed, try session.run(["input": x]))
        let plan = try session.plan(for: ["input": x])
        if LayoutPass.machineLayout != nil { #expect(!plan.releasedConstants.isEmpty) }
        for name in plan.releasedConstants { #expect(observer.seen[name] == false, "\(name)") }
    }

    /// A plan for new shapes reads the weights from the file again: a file rewritten since the
    /// session loaded it is refused with an error, not read as the same model.
    @Test func aChangedFileIsRefusedForNewShapes() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weights-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("model.onnx").path
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Repo.path(Self.model)))
        try bytes.write(to: URL(fileURLWithPath: path))

        let session = try Session(contentsOf: path)
        _ = try session.run(["input": try input(batch: 2, seed: 4)])
        // Same bytes, written again: a new modification time (set apart from the first).
        try bytes.write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 60)], ofItemAtPath: path)
        let error = try #require(thrownCBAMError { _ = try session.run(["input": try input(batch: 1, seed: 5)]) })
        #expect(error.description.contains("the model file changed since the session loaded it"), "\(error)")
        #expect(error.description.contains(path))
        // Shapes it has a plan for still run.
        _ = try session.run(["input": try input(batch: 2, seed: 6)])
    }
}
