import Testing
@testable import CBAMRuntime

/// A plain run folds each Relu into its producer; observed runs and shared outputs must not notice.
@Suite("Relu fusion")
struct FusionTests {
    /// s = a + b, y = relu(s); `exposeSum` also makes s a graph output.
    func session(exposeSum: Bool) throws -> Session {
        let graph = Graph(
            nodes: [Node(name: "add", opType: "Add", inputs: ["a", "b"], outputs: ["s"]),
                    Node(name: "relu", opType: "Relu", inputs: ["s"], outputs: ["y"])],
            inputs: [ValueInfo(name: "a", shape: [.fixed(4)]), ValueInfo(name: "b", shape: [.fixed(4)])],
            outputs: [ValueInfo(name: "y")] + (exposeSum ? [ValueInfo(name: "s")] : []))
        return try Session(model: Model(graph: graph))
    }

    let feeds: [String: Tensor] = try! ["a": Tensor(shape: [4], floats: [1, -2, 3, -4]),
                                        "b": Tensor(shape: [4], floats: [0.5, 0.5, -5, 5])]

    @Test func fusedRunGivesTheReluOfTheSum() throws {
        let s = try session(exposeSum: false)
        #expect(s.fusedSteps.count == 1, "Add and Relu run as one step")
        // a + b = [1.5, -1.5, -2, 1] → relu = [1.5, 0, 0, 1]
        #expect(try s.run(feeds)["y"]?.floats() == [1.5, 0, 0, 1])
    }

    @Test func aSumThatIsAlsoAnOutputIsNotFused() throws {
        let s = try session(exposeSum: true)
        #expect(s.fusedSteps.count == 2)
        let out = try s.run(feeds)
        #expect(try out["s"]?.floats() == [1.5, -1.5, -2, 1])
        #expect(try out["y"]?.floats() == [1.5, 0, 0, 1])
    }

    final class Seen: RunObserver {
        var outputs: [String: Tensor] = [:]
        func nodeDidRun(_ event: NodeEvent) throws { outputs[event.node.name] = event.outputs[0] }
    }

    @Test func anObserverSeesTheUnfusedSum() throws {
        let seen = Seen()
        _ = try session(exposeSum: false).run(feeds, observer: seen)
        #expect(try seen.outputs["add"]?.floats() == [1.5, -1.5, -2, 1])
        #expect(try seen.outputs["relu"]?.floats() == [1.5, 0, 0, 1])
    }
}
