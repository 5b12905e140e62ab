import ArgumentParser
import CBAMRuntime
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model: producer, opsets, inputs and outputs, op counts, parameters, unsupported ops.")

    @Argument(help: "The .onnx model file.")
    var model: String

    func run() throws {
        do {
            let loaded = try ModelLoader.load(contentsOf: model)
            let graph = loaded.graph
            print("model     \(model)")
            print("producer  \(loaded.producerName) \(loaded.producerVersion)")
            print("ir        \(loaded.irVersion)   opsets \(loaded.opsetImports.sorted { $0.key < $1.key }.map { "\($0.key.isEmpty ? "ai.onnx" : $0.key):\($0.value)" }.joined(separator: " "))")
            print("inputs")
            for info in graph.requiredInputs { print("  \(info.name)  \(info.elementType?.description ?? DataType.onnxName(of: info.elementTypeCode)) \(info.shapeDescription)") }
            print("outputs")
            for info in graph.outputs { print("  \(info.name)  \(info.elementType?.description ?? DataType.onnxName(of: info.elementTypeCode)) \(info.shapeDescription)") }
            let parameters = graph.initializers.values.reduce(0) { $0 + $1.count }
            print("parameters  \(parameters) in \(graph.initializers.count) initializers")
            var counts: [String: Int] = [:]
            for node in graph.nodes { counts[node.opType, default: 0] += 1 }
            print("nodes     \(graph.nodes.count)")
            let supported = Set(OpRegistry.standard.supportedOps)
            for (op, count) in counts.sorted(by: { $0.key < $1.key }) {
                print("  \(op.padding(toLength: 22, withPad: " ", startingAt: 0)) \(count)\(supported.contains(op) ? "" : "   (unsupported)")")
            }
        } catch {
            throw fail(error)
        }
    }
}
