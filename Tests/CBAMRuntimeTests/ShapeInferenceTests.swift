import Foundation
import Testing
@testable import CBAMRuntime

/// A test-only walk of a graph the way a planner would use ``ShapeInference``, with every
/// node also run by its legacy kernel so the two can be compared node by node.
///
/// Constants are initializers, outputs of nodes whose inputs are all constants (run by
/// the kernel, as the planner folds them), outputs of `Shape` / `Size` (known from the
/// input's type) and graph inputs whose values reach an input listed by
/// ``ShapeInference/valueOperands(_:opset:)`` (the planner keys its plan on them). Every
/// other value's type comes from ``ShapeInference/infer(_:inputs:)``.
struct ShapeWalk {
    /// The planner's view: each value's type, from inference or from a folded value.
    var types: [String: ValueType] = [:]
    /// Nodes whose inferred outputs were compared with the kernel's.
    var nodesChecked = 0
    /// Outputs compared (named outputs of checked nodes).
    var outputsChecked = 0
    /// Nodes not folded: the planner's types of their outputs come from inference.
    var nodesInferred = 0
    /// Inferred types that differ from the kernel's, inference refusing what the kernel ran, or
    /// both refusing with different kinds of error.
    var mismatches: [String] = []
    /// Nodes the kernel and inference both refused, with the same kind of error (the walk stops there).
    var refusals: [String] = []
    /// Inference's errors for ``refusals``.
    var refusalErrors: [CBAMError] = []
    /// Nodes the kernel refused but inference accepted: right only when the refusal depends
    /// on values not known before running (an index out of range, a NaN cast to an integer).
    var kernelOnlyRefusals: [String] = []
    /// Every disagreement.
    var problems: [String] { mismatches + kernelOnlyRefusals }

    init(model: Model, feeds: [String: Tensor], label: String) {
        let graph = model.graph
        var values: [String: Tensor] = [:]
        var constants = Set<String>()
        let inputNames = Set(graph.inputs.map(\.name))
        for (name, tensor) in graph.initializers {
            values[name] = tensor
            // A graph input with an initializer is only its default: not a constant.
            if !inputNames.contains(name) { constants.insert(name) }
        }
        for (name, tensor) in feeds { values[name] = tensor }
        for (name, tensor) in values { types[name] = ValueType(of: tensor) }
        constants.formUnion(Self.inputsReachingValueOperands(model))

        for node in Self.topologicalOrder(graph) {
            let opset = model.opsetImports[node.domain] ?? model.onnxOpset
            let present = node.inputs.map { $0.isEmpty ? nil : $0 }
            let context = NodeContext(node: node, opset: opset,
                                      constants: present.map { $0.flatMap { constants.contains($0) ? values[$0] : nil } })
            let place = "\(label): node \"\(node.ref.name)\" (\(node.opType))"

            let inferred = Result { try ShapeInference.infer(context, inputs: present.map { $0.flatMap { types[$0] } }) }
            let actual = Result {
                guard let builder = OpRegistry.standard.builder(for: node) else {
                    throw CBAMError(.unsupportedOp, "no kernel for \(node.opType)")
                }
                let outputs = try builder(context).run(present.map { $0.flatMap { values[$0] } })
                // As the runner checks: every named output must be produced.
                if outputs.count < node.outputs.count, node.outputs[outputs.count...].contains(where: { !$0.isEmpty }) {
                    throw CBAMError(.malformedModel, "the node declares \(node.outputs.count) outputs but the op produces \(outputs.count)")
                }
                return outputs
            }
            switch (inferred, actual) {
            case (.success(let inferred), .success(let actual)):
                nodesChecked += 1
                if inferred.count != node.outputs.count {
                    mismatches.append("\(place): \(inferred.count) types for \(node.outputs.count) outputs")
                }
                for (index, name) in node.outputs.enumerated() where !name.isEmpty && index < actual.count && index < inferred.count {
                    outputsChecked += 1
                    let produced = ValueType(of: actual[index])
                    if inferred[index] != produced {
                        mismatches.append("\(place): output \(name) inferred \(inferred[index]) but the kernel made \(produced)")
                    }
                }
            case (.failure(let error), .success):
                mismatches.append("\(place): inference refused what the kernel ran: \(error)")
            case (.success(let inferred), .failure(let error)):
                kernelOnlyRefusals.append("\(place): the kernel refused (\(error)) but inference gave \(inferred)")
            case (.failure(let inferenceError), .failure(let kernelError)):
                // Both refuse: they must agree on the kind of error.
                let (a, b) = (inferenceError as? CBAMError, kernelError as? CBAMError)
                if a == nil || a?.kind != b?.kind {
                    mismatches.append("\(place): the kernel failed (\(b.map { "\($0.kind)" } ?? "?"): \(kernelError)); inference (\(a.map { "\($0.kind)" } ?? "?")): \(inferenceError)")
                } else {
                    refusals.append("\(place): \(inferenceError)")
                    refusalErrors.append(a!)
                }
            }

            guard case .success(let outputs) = actual else { return }
            let folded = (node.inputs.allSatisfy { $0.isEmpty || constants.contains($0) } || ["Shape", "Size"].contains(node.opType))
                && !node.outputs.isEmpty
            let inferredTypes = (try? inferred.get()) ?? []
            if !folded { nodesInferred += 1 }
            for (index, name) in node.outputs.enumerated() where !name.isEmpty && index < outputs.count {
                values[name] = outputs[index]
                if folded {
                    constants.insert(name)
                    types[name] = ValueType(of: outputs[index])
                } else {
                    types[name] = index < inferredTypes.count ? inferredTypes[index] : ValueType(of: outputs[index])
                }
            }
        }
    }

    /// Graph inputs whose values flow into a value operand: the planner's own walk, so the
    /// driver treats exactly the inputs the planner keys plans on as constants.
    static func inputsReachingValueOperands(_ model: Model) -> Set<String> {
        Session.inputsReachingShapeValues(model)
    }

    /// The nodes in an order where each runs after its inputs' producers (file order when it is one).
    static func topologicalOrder(_ graph: Graph) -> [Node] {
        var available = Set(graph.initializers.keys).union(graph.inputs.map(\.name))
        var remaining = graph.nodes, order: [Node] = []
        while !remaining.isEmpty {
            let before = remaining.count
            remaining.removeAll { node in
                guard node.inputs.allSatisfy({ $0.isEmpty || available.contains($0) }) else { return false }
                order.append(node)
                available.formUnion(node.outputs)
                return true
            }
            if remaining.count == before { order.append(contentsOf: remaining); break }  // a cycle: let the walk report it
        }
        return order
    }
}

@Suite("Shape inference agrees with the kernels")
struct ShapeInferenceTests {
    @Test func everyOpHasARule() {
        let ops = Set(OpRegistry.standard.supportedOps)
        #expect(ops.count == 96)
        #expect(ops.subtracting(ShapeInference.rules.keys).isEmpty, "ops without a rule: \(ops.subtracting(ShapeInference.rules.keys).sorted())")
        #expect(Set(ShapeInference.rules.keys).subtracting(ops).isEmpty, "rules without a kernel: \(Set(ShapeInference.rules.keys).subtracting(ops).sorted())")
    }

    @Test func valueOperandsFollowTheOpsets() {
        #expect(ShapeInference.valueOperands("Reshape", opset: 13) == [1])
        #expect(ShapeInference.valueOperands("Reshape", opset: 1) == [])
        #expect(ShapeInference.valueOperands("Slice", opset: 9) == [])
        #expect(ShapeInference.valueOperands("Slice", opset: 10) == [1, 2, 3, 4])
        #expect(ShapeInference.valueOperands("Pad", opset: 18) == [1, 3])
        #expect(ShapeInference.valueOperands("Resize", opset: 10) == [1])
        #expect(ShapeInference.valueOperands("Resize", opset: 19) == [1, 2, 3])
        #expect(ShapeInference.valueOperands("Upsample", opset: 7) == [])
        #expect(ShapeInference.valueOperands("Squeeze", opset: 11) == [])
        #expect(ShapeInference.valueOperands("Unsqueeze", opset: 13) == [1])
        #expect(ShapeInference.valueOperands("Split", opset: 18) == [1])
        #expect(ShapeInference.valueOperands("ReduceSum", opset: 13) == [1])
        #expect(ShapeInference.valueOperands("ReduceMean", opset: 17) == [])
        #expect(ShapeInference.valueOperands("ReduceMean", opset: 18) == [1])
        #expect(ShapeInference.valueOperands("ConstantOfShape", opset: 9) == [0])
        #expect(ShapeInference.valueOperands("Conv", opset: 17) == [])
    }

    /// Every ONNX node case that cbam-run passes: the graph outputs' inferred types equal
    /// the expected outputs', and every node's inferred types equal its kernel's outputs.
    @Test func nodeCases() throws {
        let cases = NodeCase.all.filter { NodeCase.recorded[$0.name]?.status == "pass" }
        #expect(cases.count > 600, "node cases missing; run tools/gen_node_tests.py")
        var nodes = 0, outputs = 0, inferred = 0, graphOutputs = 0, mismatches = 0
        for testCase in cases {
            let (model, feeds, expectedOutputs) = try testCase.loadForShapes()
            let walk = ShapeWalk(model: model, feeds: feeds, label: testCase.name)
            nodes += walk.nodesChecked
            outputs += walk.outputsChecked
            inferred += walk.nodesInferred
            for problem in walk.problems + walk.refusals { Issue.record(Comment(rawValue: problem)) }
            mismatches += walk.problems.count + walk.refusals.count
            for (name, expected) in expectedOutputs {
                graphOutputs += 1
                if walk.types[name] != ValueType(of: expected) {
                    mismatches += 1
                    Issue.record("\(testCase.name): output \(name) is \(walk.types[name].map(\.description) ?? "missing"), expected \(ValueType(of: expected))")
                }
            }
        }
        print("shape inference, node cases: \(cases.count) cases, \(graphOutputs) graph outputs, \(nodes) nodes (\(outputs) outputs) checked against the kernels (\(inferred) not folded), \(mismatches) mismatches")
    }

    /// The model zoo: every value whose type ONNX's own shape inference fixes
    /// (Fixtures/zoo_shapes.json, from tools/shape_reference.py) has that type here,
    /// and every node's inferred types equal its kernel's outputs.
    @Test func zoo() throws {
        struct Reference: Decodable { let type: Int32; let shape: [Int] }
        let data = try #require(FileManager.default.contents(atPath: Repo.path("Tests/CBAMRuntimeTests/Fixtures/zoo_shapes.json")),
                                "Fixtures/zoo_shapes.json is missing; run tools/shape_reference.py")
        let references = try JSONDecoder().decode([String: [String: Reference]].self, from: data)
        #expect(ZooEntry.all.count == references.count, "zoo_shapes.json covers \(references.count) exports, the zoo has \(ZooEntry.all.count); re-run tools/shape_reference.py")
        var nodes = 0, outputs = 0, inferred = 0, values = 0, mismatches = 0
        for entry in ZooEntry.all {
            let model = try ModelLoader.load(contentsOf: Repo.path("Models/" + entry.file))
            var feeds: [String: Tensor] = [:]
            for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
            let walk = ShapeWalk(model: model, feeds: feeds, label: entry.file)
            nodes += walk.nodesChecked
            outputs += walk.outputsChecked
            inferred += walk.nodesInferred
            for problem in walk.problems + walk.refusals { Issue.record(Comment(rawValue: problem)) }
            mismatches += walk.problems.count + walk.refusals.count
            guard let expected = references[entry.file] else {
                Issue.record("\(entry.file) is not in zoo_shapes.json; re-run tools/shape_reference.py")
                continue
            }
            for (name, reference) in expected.sorted(by: { $0.key < $1.key }) {
                values += 1
                let type = DataType(rawValue: reference.type).map { ValueType($0, reference.shape) }
                if walk.types[name] == nil || walk.types[name] != type {
                    mismatches += 1
                    Issue.record("\(entry.file): \(name) is \(walk.types[name].map(\.description) ?? "missing"), ONNX infers \(DataType.onnxName(of: reference.type))\(Shape.describe(reference.shape))")
                }
            }
        }
        print("shape inference, zoo: \(ZooEntry.all.count) exports, \(values) ONNX-inferred values, \(nodes) nodes (\(outputs) outputs) checked against the kernels (\(inferred) not folded), \(mismatches) mismatches")
    }

    // MARK: Refusals

    private func node(_ op: String, inputs: Int, outputs: Int = 1, _ attributes: [String: Attribute] = [:]) -> Node {
        Node(name: "n", opType: op, inputs: (0..<inputs).map { "in\($0)" }, outputs: (0..<outputs).map { "out\($0)" }, attributes: attributes)
    }

    @Test func convWithMismatchedChannels() {
        let context = NodeContext(node: node("Conv", inputs: 2), opset: 17)
        let error = thrownCBAMError { _ = try ShapeInference.infer(context, inputs: [ValueType(.float, [1, 3, 8, 8]), ValueType(.float, [4, 2, 3, 3])]) }
        #expect(error?.kind == .shapeMismatch)
        #expect(error?.field == "W")
        #expect(error?.message.contains("3 channels") == true)
    }

    @Test func reshapeWithTwoMinusOnes() throws {
        let shape = try Tensor(shape: [3], int64s: [-1, 2, -1])
        let context = NodeContext(node: node("Reshape", inputs: 2), opset: 17, constants: [nil, shape])
        let error = thrownCBAMError { _ = try ShapeInference.infer(context, inputs: [ValueType(.float, [4, 2, 3]), ValueType(of: shape)]) }
        #expect(error?.kind == .shapeMismatch)
        #expect(error?.field == "shape")
        #expect(error?.message.contains("more than one -1") == true)
    }

    @Test func reshapeOfAValueNotKnownBeforeRunning() {
        let context = NodeContext(node: node("Reshape", inputs: 2), opset: 17)
        let error = thrownCBAMError { _ = try ShapeInference.infer(context, inputs: [ValueType(.float, [4, 6]), ValueType(.int64, [2])]) }
        #expect(error?.kind == .shapeMismatch)
        #expect(error?.field == "shape")
        #expect(error?.message.contains("not known before running") == true)
    }

    @Test func expandToAnIncompatibleShape() throws {
        let shape = try Tensor(shape: [2], int64s: [4, 5])
        let context = NodeContext(node: node("Expand", inputs: 2), opset: 13, constants: [nil, shape])
        let error = thrownCBAMError { _ = try ShapeInference.infer(context, inputs: [ValueType(.float, [3, 1]), ValueType(of: shape)]) }
        #expect(error?.kind == .shapeMismatch)
        #expect(error?.field == "shape")
        #expect(error?.message.contains("do not broadcast") == true)
    }

    /// 2^40 elements: refused by the element-count bound, without allocating anything.
    @Test func constantOfShapePastTheElementBound() throws {
        let shape = try Tensor(shape: [2], int64s: [1 << 20, 1 << 20])
        let context = NodeContext(node: node("ConstantOfShape", inputs: 1), opset: 20, constants: [shape])
        let error = thrownCBAMError { _ = try ShapeInference.infer(context, inputs: [ValueType(of: shape)]) }
        #expect(error?.kind == .invalidShape)
        #expect(error?.field == "input")
        #expect(error?.message.contains("2^30") == true)
    }

    @Test func broadcastMismatch() {
        let context = NodeContext(node: node("Add", inputs: 2), opset: 14)
        let error = thrownCBAMError { _ = try ShapeInference.infer(context, inputs: [ValueType(.float, [2, 3]), ValueType(.float, [4])]) }
        #expect(error?.kind == .shapeMismatch)
        #expect(error?.field == "B")
        #expect(error?.message.contains("do not broadcast") == true)
    }

    @Test func concatRankMismatch() {
        let context = NodeContext(node: node("Concat", inputs: 2, ["axis": .int(1)]), opset: 13)
        let error = thrownCBAMError { _ = try ShapeInference.infer(context, inputs: [ValueType(.float, [2, 3]), ValueType(.float, [2, 3, 1])]) }
        #expect(error?.kind == .shapeMismatch)
        #expect(error?.field == "inputs[1]")
        #expect(error?.message.contains("cannot concatenate") == true)
    }

    @Test func emptyAxesNeedNoValue() throws {
        // ReduceMean-18 with its axes input an empty runtime tensor: every axis is reduced.
        let context = NodeContext(node: node("ReduceMean", inputs: 2), opset: 18)
        let types = try ShapeInference.infer(context, inputs: [ValueType(.float, [2, 3, 4]), ValueType(.int64, [0])])
        #expect(types == [ValueType(.float, [1, 1, 1])])
    }

    @Test func hostileAttributesAreRefusedNotTrapped() throws {
        // A Tile of huge repeats and a Split into 2^62 parts.
        let repeats = try Tensor(shape: [2], int64s: [1 << 40, 1 << 40])
        let tile = NodeContext(node: node("Tile", inputs: 2), opset: 13, constants: [nil, repeats])
        let tileError = thrownCBAMError { _ = try ShapeInference.infer(tile, inputs: [ValueType(.float, [3, 3]), ValueType(of: repeats)]) }
        #expect(tileError?.kind == .invalidShape)
        #expect(tileError?.field == "repeats")
        // num_outputs must match the node's outputs (the kernel refuses it too, rather than make 2^62 parts).
        let split = NodeContext(node: node("Split", inputs: 1, outputs: 2, ["num_outputs": .int(1 << 62)]), opset: 18)
        let splitError = thrownCBAMError { _ = try ShapeInference.infer(split, inputs: [ValueType(.float, [4, 6])]) }
        #expect(splitError?.kind == .invalidAttribute)
        #expect(splitError?.field == "attribute \"num_outputs\"")
    }
}

extension NodeCase {
    /// The case's model, its inputs by graph input name and its expected outputs by name.
    func loadForShapes() throws -> (model: Model, feeds: [String: Tensor], outputs: [(String, Tensor)]) {
        let folder = NodeCase.directory + "/" + name
        let model = try ModelLoader.load(contentsOf: folder + "/model.onnx")
        let dataSet = folder + "/test_data_set_0"
        let files = try FileManager.default.contentsOfDirectory(atPath: dataSet)
        func numbered(_ prefix: String) -> [String] {
            files.filter { $0.hasPrefix(prefix) }.sorted { Int($0.filter(\.isNumber)) ?? 0 < Int($1.filter(\.isNumber)) ?? 0 }
        }
        var feeds: [String: Tensor] = [:]
        let required = model.graph.requiredInputs.map(\.name)
        for (index, file) in numbered("input_").enumerated() {
            let (stored, tensor) = try ModelLoader.loadTensor(contentsOf: dataSet + "/" + file)
            feeds[stored.isEmpty && index < required.count ? required[index] : stored] = tensor
        }
        var outputs: [(String, Tensor)] = []
        for (index, file) in numbered("output_").enumerated() {
            let (stored, tensor) = try ModelLoader.loadTensor(contentsOf: dataSet + "/" + file)
            outputs.append((stored.isEmpty ? model.graph.outputs[index].name : stored, tensor))
        }
        return (model, feeds, outputs)
    }
}

/// Opt-in (`CBAM_SHAPE_FUZZ=1`, about two and a half minutes in a debug build): every passing node
/// case again with one input or attribute changed at a time — inputs reshaped (rank ± 1,
/// sizes changed) or retyped, value inputs (shapes, axes, pads, …) changed (negated, zeroed,
/// ±1, 2^40, INT64_MIN/MAX, one value fewer or more) and attributes removed or changed.
/// Inference must accept what the kernel runs, with the same types, and refuse what it
/// refuses with the same kind of error; the kernel may refuse more only where its refusal
/// depends on values not known before running.
@Suite("Shape inference agrees with the kernels on changed node cases")
struct ShapeInferenceFuzzTests {
    static let enabled = ProcessInfo.processInfo.environment["CBAM_SHAPE_FUZZ"] == "1"

    /// Kernel refusals that depend on runtime values (a non-constant input's elements).
    static let valueDependent = ["cannot cast", "is out of range for axis", "integer reduction result",
                                 "training-mode Dropout", "integer division by zero", "does not fit in int64",
                                 "is out of range for x of rank", "integer modulo by zero"]

    struct Tally {
        var walks = 0, nodes = 0, agreedRefusals = 0, valueDependentRefusals = 0, problems = 0

        mutating func add(_ walk: ShapeWalk) {
            walks += 1
            nodes += walk.nodesChecked
            agreedRefusals += walk.refusals.count
            for problem in walk.mismatches { Issue.record(Comment(rawValue: problem)); problems += 1 }
            for refusal in walk.kernelOnlyRefusals {
                if ShapeInferenceFuzzTests.valueDependent.contains(where: refusal.contains) {
                    valueDependentRefusals += 1
                } else {
                    Issue.record(Comment(rawValue: refusal))
                    problems += 1
                }
            }
        }
    }

    static func filled(_ type: DataType, _ shape: [Int]) throws -> Tensor {
        let n = try Shape.elementCount(shape)
        let storage: Tensor.Storage
        switch type {
        case .float: storage = .float(.init(repeating: 1, count: n))
        case .double: storage = .double(.init(repeating: 1, count: n))
        case .int64: storage = .int64(.init(repeating: 1, count: n))
        case .int32: storage = .int32(.init(repeating: 1, count: n))
        case .int8: storage = .int8(.init(repeating: 1, count: n))
        case .uint8: storage = .uint8(.init(repeating: 1, count: n))
        case .bool: storage = .bool(.init(repeating: true, count: n))
        case .float16: storage = .float16(.init(repeating: 1, count: n))
        }
        return try Tensor(shape: shape, storage: storage)
    }

    /// Variants of one graph input: reshaped and retyped (filled with ones), or, for an
    /// input whose values decide shapes, with changed values.
    static func variants(of original: Tensor, decidesShapes: Bool) throws -> [(String, Tensor)] {
        if decidesShapes, let values = try? original.integers() {
            var changed: [(String, [Int])] = [
                ("+1", values.map { $0 + 1 }), ("negated", values.map { -$0 }), ("zeros", values.map { _ in 0 }),
                ("-1s", values.map { _ in -1 }), ("2^40", values.map { _ in 1 << 40 }),
                ("INT64_MIN", values.map { _ in Int(Int64.min) }), ("INT64_MAX", values.map { _ in Int(Int64.max) }),
                ("one fewer", Array(values.dropLast())), ("one more", values + values.suffix(1)),
            ]
            if values.count > 1 { changed.append(("reversed", values.reversed())) }
            return try changed.compactMap { label, v in
                let tensor = try Tensor(shape: v.count == values.count ? original.shape : [v.count], int64s: v.map { Int64($0) })
                return (try? cast(tensor, to: original.dataType)).map { ("values \(label)", $0) }
            }
        }
        let (shape, type) = (original.shape, original.dataType)
        var shapes: [(String, [Int])] = [("rank+1", [1] + shape)]
        if !shape.isEmpty {
            shapes.append(("rank-1", Array(shape.dropFirst())))
            var last = shape; last[last.count - 1] += 1; shapes.append(("last+1", last))
            var first = shape; first[0] = first[0] * 2 + 1; shapes.append(("first·2+1", first))
        }
        if shape.count >= 2 { var second = shape; second[1] += 2; shapes.append(("second+2", second)) }
        var result = try shapes.map { ("shape \($0.0)", try filled(type, $0.1)) }
        for other in DataType.allCases where other != type && other != .int8 {
            result.append(("type \(other)", try filled(other, shape)))
        }
        return result
    }

    /// Variants of one attribute (nil: removed).
    static func variants(of attribute: Attribute) -> [(String, Attribute?)] {
        var result: [(String, Attribute?)] = [("removed", nil)]
        switch attribute {
        case .int(let v):
            for w in Set([0, 1, 2, -1, -2, v + 1, v - 1, 1 << 40, Int(Int64.min)]).sorted() where w != v { result.append(("\(w)", .int(w))) }
            result.append(("as float", .float(Float(v))))
            result.append(("as ints", .ints([v, v])))
        case .ints(let v):
            result += [("[]", .ints([])), ("one fewer", .ints(Array(v.dropLast()))), ("one more", .ints(v + v.suffix(1))),
                       ("+1", .ints(v.map { $0 + 1 })), ("negated", .ints(v.map { -$0 })), ("zeros", .ints(v.map { _ in 0 })),
                       ("2^40", .ints(v.map { _ in 1 << 40 })), ("reversed", .ints(v.reversed()))]
        case .float(let v):
            result += [("NaN", .float(.nan)), ("0", .float(0)), ("as int", .int(Int(v))), ("as string", .string("x"))]
        case .floats(let v):
            result += [("one fewer", .floats(Array(v.dropLast()))), ("1e12", .floats(v.map { _ in 1e12 }))]
        case .string:
            let names = ["BOGUS", "SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET", "linear", "cubic", "nearest", "edge", "reflect",
                         "wrap", "not_larger", "not_smaller", "tf_crop_and_resize", "align_corners"]
            result += names.map { ($0, .string($0)) }
        default: break
        }
        return result
    }

    @Test(.enabled(if: enabled)) func changedInputsAndAttributes() throws {
        var tally = Tally()
        for testCase in NodeCase.all where NodeCase.recorded[testCase.name]?.status == "pass" {
            let (model, feeds, _) = try testCase.loadForShapes()
            let decidesShapes = ShapeWalk.inputsReachingValueOperands(model)
            for (name, original) in feeds.sorted(by: { $0.key < $1.key }) {
                for (label, tensor) in try Self.variants(of: original, decidesShapes: decidesShapes.contains(name)) {
                    var changed = feeds
                    changed[name] = tensor
                    tally.add(ShapeWalk(model: model, feeds: changed, label: "\(testCase.name) with input \(name) \(label)"))
                }
            }
            for (index, node) in model.graph.nodes.enumerated() {
                for (key, attribute) in node.attributes.sorted(by: { $0.key < $1.key }) {
                    for (label, replacement) in Self.variants(of: attribute) {
                        var changed = model
                        changed.graph.nodes[index].attributes[key] = replacement
                        tally.add(ShapeWalk(model: changed, feeds: feeds, label: "\(testCase.name) with node \(index)'s \(key) \(label)"))
                    }
                }
            }
        }
        print("shape inference, changed node cases: \(tally.walks) walks, \(tally.nodes) nodes agreed with the kernels, \(tally.agreedRefusals) refused by both (same kind), \(tally.valueDependentRefusals) value-dependent kernel refusals, \(tally.problems) problems")
    }
}

/// One node built in code, for the op forms and opsets the stored cases do not reach
/// (attribute forms before opsets 5–18, Upsample-7, Resize-10, MaxPool's Indices, …).
struct SingleNodeCase: Sendable, CustomTestStringConvertible {
    struct Input: Sendable {
        let name: String
        let tensor: Tensor?
        let constant: Bool
    }

    let label: String
    let op: String
    let opset: Int
    let attributes: [String: Attribute]
    let inputs: [Input]
    let outputs: Int
    var testDescription: String { label }

    init(_ label: String, _ op: String, opset: Int, _ attributes: [String: Attribute] = [:], inputs: [Input], outputs: Int = 1) {
        self.label = label
        self.op = op
        self.opset = opset
        self.attributes = attributes
        self.inputs = inputs
        self.outputs = outputs
    }

    /// A graph input fed with a float32 tensor of `shape` (values 0.1·i − 1).
    static func x(_ shape: [Int], _ name: String = "x") -> Input {
        let n = shape.reduce(1, *)
        return Input(name: name, tensor: .float(shape, (0..<n).map { Float($0) * 0.1 - 1 }), constant: false)
    }
    /// A graph input fed with `tensor`.
    static func fed(_ name: String, _ tensor: Tensor) -> Input { Input(name: name, tensor: tensor, constant: false) }
    /// An initializer.
    static func constant(_ name: String, _ tensor: Tensor) -> Input { Input(name: name, tensor: tensor, constant: true) }
    static func ints(_ name: String, _ values: [Int], shape: [Int]? = nil) -> Input {
        constant(name, .int64(shape ?? [values.count], values.map { Int64($0) }))
    }
    static func floats(_ name: String, _ values: [Float], shape: [Int]? = nil) -> Input {
        constant(name, .float(shape ?? [values.count], values))
    }
    static func weights(_ name: String, _ shape: [Int], constant: Bool = true) -> Input {
        let n = shape.reduce(1, *)
        return Input(name: name, tensor: .float(shape, (0..<n).map { Float($0 % 7) * 0.25 - 0.5 }), constant: constant)
    }
    static let omitted = Input(name: "", tensor: nil, constant: false)

    var model: Model {
        let node = Node(name: label, opType: op, inputs: inputs.map(\.name), outputs: (0..<outputs).map { "y\($0)" }, attributes: attributes)
        var initializers: [String: Tensor] = [:]
        var graphInputs: [ValueInfo] = []
        for input in inputs where !input.name.isEmpty {
            if input.constant { initializers[input.name] = input.tensor } else {
                graphInputs.append(ValueInfo(name: input.name, elementType: input.tensor?.dataType))
            }
        }
        let graph = Graph(nodes: [node], initializers: initializers, inputs: graphInputs,
                          outputs: (0..<outputs).map { ValueInfo(name: "y\($0)") })
        return Model(opsetImports: ["": opset], graph: graph)
    }

    var feeds: [String: Tensor] {
        var feeds: [String: Tensor] = [:]
        for input in inputs where !input.name.isEmpty && !input.constant { feeds[input.name] = input.tensor }
        return feeds
    }

    static let all: [SingleNodeCase] = [
        .init("Squeeze-11 axes attribute", "Squeeze", opset: 11, ["axes": .ints([1])], inputs: [x([2, 1, 3])]),
        .init("Squeeze-11 every size-1 axis", "Squeeze", opset: 11, inputs: [x([1, 2, 1])]),
        .init("Unsqueeze-11 axes attribute", "Unsqueeze", opset: 11, ["axes": .ints([0, -1])], inputs: [x([2, 3])]),
        .init("Slice-9 attributes", "Slice", opset: 9, ["starts": .ints([0, 1]), "ends": .ints([2, 100]), "axes": .ints([0, 1])], inputs: [x([3, 4])]),
        .init("Slice-13 negative step to INT64_MIN", "Slice", opset: 13,
              inputs: [x([3, 5]), ints("starts", [-1]), ints("ends", [Int(Int64.min)]), ints("axes", [1]), ints("steps", [-2])]),
        .init("Pad-2 constant value attribute", "Pad", opset: 2, ["pads": .ints([1, 0, 0, 2]), "value": .float(1.5)], inputs: [x([2, 3])]),
        .init("Pad-2 reflect", "Pad", opset: 2, ["pads": .ints([0, 1, 0, 1]), "mode": .string("reflect")], inputs: [x([2, 3])]),
        .init("Pad-18 axes and constant_value", "Pad", opset: 18,
              inputs: [x([2, 3]), ints("pads", [2, 1]), floats("value", [7], shape: []), ints("axes", [-1])]),
        .init("Pad-18 negative pads crop", "Pad", opset: 18, ["mode": .string("edge")], inputs: [x([4, 5]), ints("pads", [-1, 2, 0, -3])]),
        .init("Split-11 split attribute", "Split", opset: 11, ["axis": .int(1), "split": .ints([1, 2])], inputs: [x([2, 3])], outputs: 2),
        .init("Split-18 num_outputs uneven", "Split", opset: 18, ["num_outputs": .int(3)], inputs: [x([7])], outputs: 3),
        .init("Split-13 equal parts", "Split", opset: 13, ["axis": .int(-1)], inputs: [x([2, 6])], outputs: 3),
        .init("Softmax-11 default axis", "Softmax", opset: 11, inputs: [x([2, 3, 4])]),
        .init("LogSoftmax-11 axis 0", "LogSoftmax", opset: 11, ["axis": .int(0)], inputs: [x([2, 3])]),
        .init("Clip-6 attribute bounds", "Clip", opset: 6, ["min": .float(-0.5), "max": .float(0.5)], inputs: [x([2, 3])]),
        .init("Clip-13 int64 with min only", "Clip", opset: 13,
              inputs: [fed("x", .int64([4], [-3, 0, 2, 9])), ints("min", [1], shape: []), omitted]),
        .init("Reshape-1 shape attribute", "Reshape", opset: 1, ["shape": .ints([3, -1])], inputs: [x([2, 3, 2])]),
        .init("Reshape-14 allowzero", "Reshape", opset: 14, ["allowzero": .int(1)], inputs: [x([0, 4]), ints("shape", [4, 0])]),
        .init("Reshape-13 copies a dimension", "Reshape", opset: 13, inputs: [x([2, 3, 4]), ints("shape", [0, -1])]),
        .init("Resize-10 scales", "Resize", opset: 10, inputs: [x([1, 1, 2, 2]), floats("scales", [1, 1, 2, 2])]),
        .init("Resize-10 linear downsampling", "Resize", opset: 10, ["mode": .string("linear")], inputs: [x([1, 1, 5, 4]), floats("scales", [1, 1, 0.5, 0.7])]),
        .init("Upsample-7 scales attribute", "Upsample", opset: 7, ["scales": .floats([1, 1, 2, 3])], inputs: [x([1, 1, 2, 2])]),
        .init("Upsample-9 linear", "Upsample", opset: 9, ["mode": .string("linear")], inputs: [x([1, 1, 2, 2]), floats("scales", [1, 1, 2, 2.5])]),
        .init("Resize-19 sizes, axes, not_smaller", "Resize", opset: 19, ["axes": .ints([2, 3]), "keep_aspect_ratio_policy": .string("not_smaller")],
              inputs: [x([1, 1, 4, 6]), omitted, omitted, ints("sizes", [6, 6])]),
        .init("Resize-19 sizes not_larger", "Resize", opset: 19, ["keep_aspect_ratio_policy": .string("not_larger")],
              inputs: [x([1, 1, 4, 6]), omitted, omitted, ints("sizes", [1, 1, 3, 3])]),
        .init("Resize-13 tf_crop_and_resize", "Resize", opset: 13, ["mode": .string("linear"), "coordinate_transformation_mode": .string("tf_crop_and_resize")],
              inputs: [x([1, 1, 4, 4]), floats("roi", [0, 0, 0.2, 0.2, 1, 1, 0.8, 0.8]), floats("scales", []), ints("sizes", [1, 1, 3, 3])]),
        .init("Resize-18 antialias cubic", "Resize", opset: 18, ["mode": .string("cubic"), "antialias": .int(1)],
              inputs: [x([1, 1, 5, 5]), omitted, floats("scales", [1, 1, 0.6, 0.6])]),
        .init("ReduceSum-11 axes attribute", "ReduceSum", opset: 11, ["axes": .ints([0, 2]), "keepdims": .int(0)], inputs: [x([2, 3, 4])]),
        .init("ReduceMean-13 axes attribute", "ReduceMean", opset: 13, ["axes": .ints([-1])], inputs: [x([2, 3])]),
        .init("ReduceMax-18 noop with empty axes", "ReduceMax", opset: 18, ["noop_with_empty_axes": .int(1)],
              inputs: [fed("x", Tensor(unchecked: [2, 2], .int32([1, 5, 3, 2])))]),
        .init("ReduceL2-18 axes input", "ReduceL2", opset: 18, ["keepdims": .int(0)], inputs: [x([2, 3, 4]), ints("axes", [1, -1])]),
        .init("GlobalLpPool", "GlobalLpPool", opset: 2, ["p": .int(3)], inputs: [x([1, 2, 3, 3])]),
        .init("MaxPool-12 Indices, column-major", "MaxPool", opset: 12, ["kernel_shape": .ints([2, 2]), "storage_order": .int(1)],
              inputs: [x([1, 1, 4, 4])], outputs: 2),
        .init("MaxPool 2-D Indices", "MaxPool", opset: 12, ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])],
              inputs: [x([1, 2, 6, 5])], outputs: 2),
        .init("MaxPool 1-D Indices", "MaxPool", opset: 12, ["kernel_shape": .ints([3]), "strides": .ints([2]), "pads": .ints([1, 1])],
              inputs: [x([1, 2, 7])], outputs: 2),
        .init("AveragePool-19 ceil_mode, dilations", "AveragePool", opset: 19,
              ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]), "dilations": .ints([2, 2]),
               "ceil_mode": .int(1), "count_include_pad": .int(1)], inputs: [x([1, 1, 7, 8])]),
        .init("AveragePool SAME_LOWER 3-D", "AveragePool", opset: 11, ["kernel_shape": .ints([2, 3, 2]), "auto_pad": .string("SAME_LOWER"), "strides": .ints([2, 2, 1])],
              inputs: [x([1, 1, 5, 4, 3])]),
        .init("LpPool-18 1-D", "LpPool", opset: 18, ["kernel_shape": .ints([2]), "p": .int(3)], inputs: [x([1, 1, 5])]),
        .init("ConvTranspose output_shape", "ConvTranspose", opset: 11, ["strides": .ints([2, 2]), "output_shape": .ints([6, 7])],
              inputs: [x([1, 2, 3, 3]), weights("w", [2, 3, 2, 2])]),
        .init("ConvTranspose SAME_UPPER, output_padding", "ConvTranspose", opset: 11,
              ["strides": .ints([2, 1]), "auto_pad": .string("SAME_UPPER"), "output_padding": .ints([1, 0])],
              inputs: [x([1, 2, 3, 3]), weights("w", [2, 3, 3, 3])]),
        .init("ConvTranspose 3-D with pads", "ConvTranspose", opset: 11, ["pads": .ints([0, 1, 0, 0, 1, 0]), "dilations": .ints([1, 2, 1])],
              inputs: [x([1, 1, 2, 3, 2]), weights("w", [1, 2, 2, 2, 2])]),
        .init("ConvTranspose group 2, runtime weight, bias", "ConvTranspose", opset: 11, ["group": .int(2)],
              inputs: [x([1, 4, 3, 3]), weights("w", [4, 1, 3, 3], constant: false), floats("b", [0.5, -0.5])]),
        .init("Conv 1-D SAME_LOWER, strides, dilations", "Conv", opset: 11,
              ["auto_pad": .string("SAME_LOWER"), "strides": .ints([2]), "dilations": .ints([2])],
              inputs: [x([1, 2, 9]), weights("w", [4, 2, 3]), floats("b", [1, 2, 3, 4])]),
        .init("Conv kernel_shape, runtime weight, group 2", "Conv", opset: 11, ["kernel_shape": .ints([3, 3]), "group": .int(2), "pads": .ints([1, 0, 1, 0])],
              inputs: [x([1, 4, 5, 5]), weights("w", [6, 2, 3, 3], constant: false)]),
        .init("Conv VALID", "Conv", opset: 11, ["auto_pad": .string("VALID"), "strides": .ints([3, 2])],
              inputs: [x([2, 1, 8, 7]), weights("w", [1, 1, 2, 3])]),
        .init("BatchNormalization training mode", "BatchNormalization", opset: 15, ["training_mode": .int(1)],
              inputs: [x([2, 3, 2, 2]), floats("scale", [1, 2, 3]), floats("B", [0, 1, 0]), floats("mean", [0, 0, 0]), floats("var", [1, 1, 1])],
              outputs: 3),
        .init("BatchNormalization rank 2", "BatchNormalization", opset: 9,
              inputs: [x([4, 3]), floats("scale", [1, 2, 3]), floats("B", [0, 1, 0]), floats("mean", [0, 0, 0]), floats("var", [1, 1, 1])]),
        .init("Dropout-12 with mask", "Dropout", opset: 12,
              inputs: [x([2, 3]), floats("ratio", [0.3], shape: []), constant("training_mode", Tensor(unchecked: [], .bool([false])))], outputs: 2),
        .init("Constant value_ints", "Constant", opset: 13, ["value_ints": .ints([1, 2, 3])], inputs: []),
        .init("Constant value_float", "Constant", opset: 13, ["value_float": .float(2.5)], inputs: []),
        .init("Constant value tensor", "Constant", opset: 13, ["value": .tensor(Tensor(unchecked: [2, 1], .int32([4, 5])))], inputs: []),
        .init("ConstantOfShape int32 value", "ConstantOfShape", opset: 9, ["value": .tensor(Tensor(unchecked: [1], .int32([3])))],
              inputs: [ints("shape", [2, 3])]),
        .init("Shape-15 start and end", "Shape", opset: 15, ["start": .int(-3), "end": .int(-1)], inputs: [x([2, 3, 4, 5])]),
        .init("Shape-15 empty range", "Shape", opset: 15, ["start": .int(3), "end": .int(1)], inputs: [x([2, 3, 4, 5])]),
        .init("Size", "Size", opset: 13, inputs: [x([2, 3])]),
        .init("MatMul vector · vector", "MatMul", opset: 13, inputs: [x([3]), x([3], "b")]),
        .init("MatMul vector · batch", "MatMul", opset: 13, inputs: [x([3]), x([2, 3, 4], "b")]),
        .init("MatMul broadcast batches", "MatMul", opset: 13, inputs: [x([2, 1, 3, 4]), x([5, 4, 2], "b")]),
        .init("MatMul int64 batch · vector", "MatMul", opset: 13,
              inputs: [fed("a", .int64([2, 2, 3], (0..<12).map { Int64($0) })), fed("b", .int64([3], [1, 2, 3]))]),
        .init("Gemm transA, transB, C vector", "Gemm", opset: 13, ["transA": .int(1), "transB": .int(1)],
              inputs: [x([3, 2]), x([4, 3], "b"), floats("c", [1, 2, 3, 4])]),
        .init("Gemm beta 0 ignores C", "Gemm", opset: 13, ["beta": .float(0)], inputs: [x([2, 3]), x([3, 4], "b"), floats("c", [1, 2, 3, 4, 5, 6, 7])]),
        .init("Expand", "Expand", opset: 13, inputs: [x([3, 1]), ints("shape", [2, 1, 4])]),
        .init("Tile with a zero", "Tile", opset: 13, inputs: [x([2, 3]), ints("repeats", [0, 2])]),
        .init("Flatten axis 0", "Flatten", opset: 13, ["axis": .int(0)], inputs: [x([2, 3])]),
        .init("Flatten axis = rank", "Flatten", opset: 13, ["axis": .int(2)], inputs: [x([2, 3])]),
        .init("ArgMax last index, no keepdims", "ArgMax", opset: 13, ["axis": .int(-1), "keepdims": .int(0), "select_last_index": .int(1)],
              inputs: [x([2, 3])]),
        .init("Cast int64 to float16", "Cast", opset: 13, ["to": .int(10)], inputs: [fed("x", .int64([2], [1, 2]))]),
        .init("CastLike bool to float64", "CastLike", opset: 15,
              inputs: [fed("x", Tensor(unchecked: [2], .bool([true, false]))), fed("like", Tensor(unchecked: [], .double([0])))]),
        .init("Where broadcast", "Where", opset: 16,
              inputs: [fed("c", Tensor(unchecked: [2, 1], .bool([true, false]))), x([1, 3]), x([], "y")]),
        .init("Mean of three", "Mean", opset: 13, inputs: [x([2, 1]), x([3], "b"), x([1], "c")]),
        .init("Max of one bool", "Max", opset: 13, inputs: [fed("x", Tensor(unchecked: [2], .bool([true, false])))]),
        .init("Sum uint8", "Sum", opset: 13, inputs: [fed("a", Tensor(unchecked: [2], .uint8([1, 2]))), fed("b", Tensor(unchecked: [1], .uint8([3])))]),
        .init("Gather 2-D indices", "Gather", opset: 13, ["axis": .int(1)], inputs: [x([3, 4]), ints("indices", [0, -1, 1, 1], shape: [2, 2])]),
        .init("Gather scalar index", "Gather", opset: 13, inputs: [x([3, 4]), ints("indices", [2], shape: [])]),
        .init("Concat three, axis -1", "Concat", opset: 13, ["axis": .int(-1)], inputs: [x([2, 1]), x([2, 3], "b"), x([2, 0], "c")]),
        .init("Transpose default perm", "Transpose", opset: 13, inputs: [x([2, 3, 4])]),
        .init("Pow int64 base, float exponent", "Pow", opset: 15, inputs: [fed("x", .int64([2, 1], [2, 3])), x([3], "y")]),
        .init("Equal int32 broadcast", "Equal", opset: 13,
              inputs: [fed("a", Tensor(unchecked: [2, 1], .int32([1, 2]))), fed("b", Tensor(unchecked: [3], .int32([1, 2, 3])))]),
        .init("Identity int8", "Identity", opset: 13, inputs: [fed("x", Tensor(unchecked: [2], .int8([1, -1])))]),
        .init("Relu int8", "Relu", opset: 14, inputs: [fed("x", Tensor(unchecked: [2], .int8([1, -1])))]),
        .init("Not", "Not", opset: 1, inputs: [fed("x", Tensor(unchecked: [2, 2], .bool([true, false, false, true])))]),
        .init("Conv 3-D", "Conv", opset: 11, ["pads": .ints([1, 0, 0, 1, 0, 0])], inputs: [x([1, 1, 3, 3, 3]), weights("w", [1, 1, 2, 2, 2])]),
    ]
}

extension SingleNodeCase {
    /// Nodes that the kernel refuses: inference must refuse them too, with the same kind, naming a field.
    static let refused: [SingleNodeCase] = [
        .init("Conv int32 X", "Conv", opset: 11, inputs: [fed("x", Tensor(unchecked: [1, 1, 2, 2], .int32([1, 2, 3, 4]))), weights("w", [1, 1, 1, 1])]),
        .init("Conv bias of the wrong length", "Conv", opset: 11, inputs: [x([1, 1, 3, 3]), weights("w", [2, 1, 1, 1]), floats("b", [1, 2, 3])]),
        .init("Conv window larger than the input", "Conv", opset: 11, inputs: [x([1, 1, 2, 2]), weights("w", [1, 1, 3, 3])]),
        .init("ConvTranspose output_shape out of reach", "ConvTranspose", opset: 11, ["output_shape": .ints([20, 20])],
              inputs: [x([1, 1, 3, 3]), weights("w", [1, 1, 2, 2])]),
        .init("MaxPool without kernel_shape", "MaxPool", opset: 12, inputs: [x([1, 1, 4, 4])]),
        .init("MaxPool on a rank-3 X with a 2-D window", "MaxPool", opset: 12, ["kernel_shape": .ints([2, 2])], inputs: [x([1, 4, 4])]),
        .init("GlobalAveragePool of an empty X", "GlobalAveragePool", opset: 1, inputs: [x([1, 2, 0, 3])]),
        .init("Softmax of int32", "Softmax", opset: 13, inputs: [fed("x", Tensor(unchecked: [2], .int32([1, 2])))]),
        .init("Resize of int64", "Resize", opset: 13, inputs: [fed("x", .int64([1, 1, 2, 2], [1, 2, 3, 4])), omitted, floats("scales", [1, 1, 2, 2])]),
        .init("Resize with scales and sizes", "Resize", opset: 13,
              inputs: [x([1, 1, 2, 2]), omitted, floats("scales", [1, 1, 2, 2]), ints("sizes", [1, 1, 4, 4])]),
        .init("Split sizes that do not add up", "Split", opset: 13, inputs: [x([5]), ints("split", [2, 2])], outputs: 2),
        .init("Slice step 0", "Slice", opset: 13, inputs: [x([4]), ints("starts", [0]), ints("ends", [3]), ints("axes", [0]), ints("steps", [0])]),
        .init("Gemm C that does not broadcast", "Gemm", opset: 13, inputs: [x([2, 3]), x([3, 4], "b"), floats("c", [1, 2, 3])]),
        .init("MatMul inner sizes", "MatMul", opset: 13, inputs: [x([2, 3]), x([4, 2], "b")]),
        .init("Transpose perm not a permutation", "Transpose", opset: 13, ["perm": .ints([0, 0, 1])], inputs: [x([2, 3, 4])]),
        .init("Unsqueeze repeated axis", "Unsqueeze", opset: 13, inputs: [x([2]), ints("axes", [0, 0])]),
        .init("Squeeze of a size-2 axis", "Squeeze", opset: 13, inputs: [x([2, 1]), ints("axes", [0])]),
        .init("ReduceMean repeated axis", "ReduceMean", opset: 18, inputs: [x([2, 3]), ints("axes", [1, -1])]),
        .init("ArgMax over an empty axis", "ArgMax", opset: 13, ["axis": .int(1)], inputs: [x([2, 0])]),
        .init("Where with int32 condition", "Where", opset: 16,
              inputs: [fed("c", Tensor(unchecked: [1], .int32([1]))), x([1]), x([1], "y")]),
        .init("Add float32 + int64", "Add", opset: 14, inputs: [x([2]), fed("b", .int64([2], [1, 2]))]),
        .init("Sigmoid of float16", "Sigmoid", opset: 13, inputs: [fed("x", Tensor(unchecked: [1], .float16([1])))]),
        .init("Tile repeats of the wrong length", "Tile", opset: 13, inputs: [x([2, 3]), ints("repeats", [2])]),
        .init("Pad reflect on an empty axis", "Pad", opset: 18, ["mode": .string("reflect")], inputs: [x([0, 2]), ints("pads", [1, 0, 1, 0])]),
        .init("Pad constant_value of another type", "Pad", opset: 18, inputs: [x([2]), ints("pads", [1, 1]), ints("value", [0], shape: [])]),
        .init("Pad-2 value that does not fit int8", "Pad", opset: 2, ["pads": .ints([1, 1]), "value": .float(300)],
              inputs: [fed("x", Tensor(unchecked: [2], .int8([1, 2])))]),
        .init("Cast to string", "Cast", opset: 13, ["to": .int(8)], inputs: [x([2])]),
        .init("BatchNormalization with too few channels", "BatchNormalization", opset: 15,
              inputs: [x([2, 3]), floats("scale", [1, 2]), floats("B", [0, 1]), floats("mean", [0, 0]), floats("var", [1, 1])]),
        .init("Concat without axis", "Concat", opset: 13, inputs: [x([2]), x([2], "b")]),
        .init("Constant without a value", "Constant", opset: 13, inputs: []),
        .init("ConstantOfShape with a negative dimension", "ConstantOfShape", opset: 9, inputs: [ints("shape", [2, -3])]),
        .init("AveragePool with one output too many", "AveragePool", opset: 11, ["kernel_shape": .ints([2])], inputs: [x([1, 1, 4])], outputs: 2),
    ]
}

extension ShapeInferenceTests {
    /// What a kernel refuses, inference refuses too: same kind of error, a field named.
    @Test(arguments: SingleNodeCase.refused)
    func refusedNode(_ testCase: SingleNodeCase) {
        let walk = ShapeWalk(model: testCase.model, feeds: testCase.feeds, label: testCase.label)
        for problem in walk.problems { Issue.record(Comment(rawValue: problem)) }
        #expect(walk.refusals.count == 1, "\(testCase.label): not refused by both")
        if let error = walk.refusalErrors.first, error.kind != .malformedModel {
            #expect(error.field != nil, "\(testCase.label): \(error) names no field")
        }
    }

    /// Inference and the kernel agree on each built node (no refusal expected).
    @Test(arguments: SingleNodeCase.all)
    func singleNode(_ testCase: SingleNodeCase) {
        let walk = ShapeWalk(model: testCase.model, feeds: testCase.feeds, label: testCase.label)
        #expect(walk.nodesChecked == 1)
        for problem in walk.problems + walk.refusals { Issue.record(Comment(rawValue: problem)) }
    }
}
