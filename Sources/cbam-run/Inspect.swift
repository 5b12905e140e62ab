import ArgumentParser
import CBAMRuntime
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model: interface, op counts, parameters, every tensor's shape, MACs, attention blocks.",
        discussion: """
            Shapes come from compiling the model at batch 1 and 2 (nothing runs), so symbolic \
            dimensions show as N, 2*N, …; MACs (multiply-accumulates of Conv, ConvTranspose, Gemm, \
            MatMul) and memory are for batch 1. --plan prints the optimised plan: every step, the \
            nodes it stands for, how it computes, and what each rewrite pass did. A model with \
            unsupported ops still gets its static part.
            """)

    @Argument(help: "The .onnx model file.")
    var model: String

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(name: .customLong("all-nodes"), help: "List every node (default: the 25 with most MACs).")
    var allNodes = false

    @Flag(name: .customLong("plan"), help: "Print the optimised plan's steps and what each rewrite pass did.")
    var showPlan = false

    @Option(name: .customLong("default-size"), help: "Size given to symbolic dimensions other than the batch.")
    var defaultSize = 64

    func validate() throws {
        guard defaultSize >= 1 && defaultSize <= 4096 else { throw ValidationError("--default-size must be between 1 and 4096") }
    }

    func run() throws {
        do {
            let report = try Inspector.inspect(contentsOf: model, defaultSize: defaultSize)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                printTable(report)
            }
        } catch {
            throw fail(error)
        }
    }

    func printTable(_ r: InspectionReport) {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        func grouped(_ n: Int) -> String {
            n >= 1_000_000_000 ? String(format: "%.3f G", Double(n) / 1e9) : n >= 1_000_000 ? String(format: "%.3f M", Double(n) / 1e6)
                : n >= 1000 ? String(format: "%.1f k", Double(n) / 1e3) : String(n)
        }
        print("model       \(r.file)")
        print("producer    \(r.producer.isEmpty ? "(not recorded)" : r.producer)")
        print("ir          \(r.irVersion)    opsets \(r.opsets.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
        print("inputs");  for v in r.inputs { print("  \(pad(v.name, 28)) \(pad(v.type, 8)) \(v.shape)") }
        print("outputs"); for v in r.outputs { print("  \(pad(v.name, 28)) \(pad(v.type, 8)) \(v.shape)") }
        print("parameters  \(r.parameterCount) (\(grouped(r.parameterCount))) in float initializers; \(r.constantCount) integer constants; \(r.initializerCount) initializers")
        print("MACs        \(r.totalMACs) (\(grouped(r.totalMACs))) at batch 1")
        print("ops         \(r.opCounts.values.reduce(0, +)) nodes")
        for (op, count) in r.opCounts.sorted(by: { $0.key < $1.key }) {
            print("  \(pad(op, 24)) \(count)\(r.unsupportedOps.contains(op) ? "   UNSUPPORTED" : "")")
        }
        if !r.attention.isEmpty {
            print("attention   \(r.attention.count) map(s) in \(Set(r.attention.map(\.block)).count) block(s)")
            for a in r.attention { print("  block \(pad(String(a.block), 3)) \(pad(a.kind, 8)) \(pad(a.shape, 18)) \(a.tensor)") }
        } else if r.unsupportedOps.isEmpty {
            print("attention   none found")
        }
        if !r.nodes.isEmpty {
            let shown = allNodes ? r.nodes : Array(r.nodes.sorted { $0.macs > $1.macs }.prefix(25)).sorted { $0.index < $1.index }
            print(allNodes ? "nodes (execution order)" : "nodes with the most MACs (execution order; --all-nodes for every node and tensor shape)")
            print("  \(pad("#", 5)) \(pad("op", 20)) \(pad("MACs", 12)) \(pad("output shape", 22)) node")
            for n in shown {
                print("  \(pad(String(n.index), 5)) \(pad(n.opType, 20)) \(pad(grouped(n.macs), 12)) \(pad(n.outputs.first?.shape ?? "", 22)) \(n.name)")
            }
        }
        if let plan = r.plan {
            func mb(_ bytes: Int) -> String { String(format: "%.2f MB", Double(bytes) / 1e6) }
            print("memory      weights \(mb(plan.weightBytes)); one run at batch 1: arena \(mb(plan.arenaBytes)) + scratch \(mb(plan.scratchBytes)) + folded constants \(mb(plan.foldedBytes)) = \(mb(plan.peakBytes))")
            print("plan        \(plan.steps) steps for \(plan.nodes) nodes; \(plan.sharedValues) values share another's bytes (views, in place)")
            if let layout = plan.carriedLayout {
                print("layout      \(plan.carriedValues) values kept in \(layout) between convolutions; \(plan.reorders) reorder(s) inside Conv steps")
            } else {
                print("layout      every value plain NCHW; \(plan.reorders) reorder(s) inside Conv steps")
            }
            if showPlan {
                for line in plan.passes { print("  pass \(line)") }
                print("  \(pad("#", 5)) \(pad("op", 20)) \(pad("kernel", 16)) \(pad("MACs", 12)) \(pad("output shape", 20)) step (nodes it stands for)")
                for (index, step) in r.planSteps.enumerated() {
                    // A fused step by its first and last node and how many it stands for (--json lists them all).
                    let name = step.replaces.count > 1 ? "\(step.replaces.first!) … \(step.replaces.last!) (\(step.replaces.count) nodes)" : step.name
                    print("  \(pad(String(index), 5)) \(pad(step.opType, 20)) \(pad(step.kernel, 16)) \(pad(grouped(step.macs), 12)) \(pad(step.output, 20)) \(name)")
                }
            }
        }
        for note in r.notes { print("note: \(note)") }
    }
}
